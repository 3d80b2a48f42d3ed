//! A device's access ends when an admin says so, on every instance: a rotated token keeps
//! working for its grace period and then its sockets close (4001); without a grace period at
//! once; a disabled device is refused (403) until enabled; a deleted one is gone, its
//! telemetry kept unless purged. Each change is in the audit trail.

use std::time::{Duration, Instant};

use crate::common::{Device, Seen, TestServer, count_rows, packet, recent_seconds};
use ems_protocol::api::{AuditRecord, DeviceDeleted, DeviceInfo, DeviceTokenRotated};

async fn status_of(server: &TestServer, id: &str, token: &str) -> u16 {
    match Device::connect(&server.ws(&format!("/ws/device/{id}")), token).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

/// Waits for the socket to be closed; the close code.
async fn close_code<S>(device: &mut Device<S>) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match device.next().await {
            Seen::Closed(Some(frame)) => return u16::from(frame.code),
            Seen::Closed(None) => panic!("closed without a close frame"),
            Seen::Frame(_) => continue,
        }
    }
}

async fn rotate(server: &TestServer, id: &str, grace_s: u64) -> DeviceTokenRotated {
    let resp = server
        .http
        .post(server.api(&format!("/devices/{id}/token?grace_s={grace_s}")))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn admin_post(server: &TestServer, path: &str) -> reqwest::Response {
    server
        .http
        .post(server.api(path))
        .bearer_auth(&server.admin)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_disabling_and_deletion_end_access_everywhere() {
    let url = ems_testkit::pg::fresh_database().await;
    let a = TestServer::on(&url).await;
    let b = TestServer::on(&url).await;
    let old = a.add_device("ems_rot").await;

    // Rotation with a 2 s grace period: the socket on B, opened with the old token, works on,
    // then closes with 4001 when the grace period ends; the old token is refused after it.
    let mut on_b = b.device("ems_rot", &old).await;
    let rotated = rotate(&a, "ems_rot", 2).await;
    let until = rotated.previous_valid_until.expect("a grace period");
    let ts = recent_seconds(2);
    on_b.send(&packet("ems_rot", ts[0], 50.0)).await;
    on_b.await_acks(&ts[..1]).await;
    assert_eq!(close_code(&mut on_b).await, 4001);
    let late = chrono::Utc::now() - until;
    println!("old token's socket closed {late} after the grace period ended");
    assert!(
        late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1),
        "{late}"
    );
    assert_eq!(status_of(&a, "ems_rot", &old).await, 401);
    let mut new = b.device("ems_rot", &rotated.token).await;
    new.send(&packet("ems_rot", ts[1], 51.0)).await;
    new.await_acks(&ts[1..]).await;

    // Rotation without grace: the socket (on B, rotated through A) closes at once.
    let started = Instant::now();
    let again = rotate(&a, "ems_rot", 0).await;
    assert!(again.previous_valid_until.is_none());
    assert_eq!(close_code(&mut new).await, 4001);
    println!(
        "socket on the other instance closed {:?} after the rotation was asked",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(status_of(&b, "ems_rot", &rotated.token).await, 401);

    // Disabled: its socket closes, its token is refused with 403, its data is still readable;
    // enabled: it connects again.
    let mut socket = a.device("ems_rot", &again.token).await;
    let resp = admin_post(&b, "/devices/ems_rot/disable").await;
    assert_eq!(resp.status(), 200);
    let info: DeviceInfo = resp.json().await.unwrap();
    assert!(info.disabled_at.is_some());
    assert_eq!(close_code(&mut socket).await, 4001);
    assert_eq!(status_of(&a, "ems_rot", &again.token).await, 403);
    assert_eq!(
        a.get("/devices/ems_rot/telemetry/latest", &a.admin)
            .await
            .status(),
        200
    );
    assert_eq!(
        admin_post(&a, "/devices/ems_rot/enable").await.status(),
        200
    );
    let mut socket = a.device("ems_rot", &again.token).await;

    // Deleted without purge: gone (404, token refused), its telemetry kept.
    let resp = a
        .http
        .delete(a.api("/devices/ems_rot"))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let deleted: DeviceDeleted = resp.json().await.unwrap();
    assert!(!deleted.purged);
    assert_eq!(deleted.telemetry_rows_deleted, 0);
    assert_eq!(close_code(&mut socket).await, 4001);
    assert_eq!(a.get("/devices/ems_rot", &a.admin).await.status(), 404);
    assert_eq!(status_of(&a, "ems_rot", &again.token).await, 401);
    let kept = count_rows(
        &url,
        "SELECT count(*) FROM telemetry WHERE device_id = 'ems_rot'",
    )
    .await;
    assert_eq!(kept, 2);

    // Registered anew and deleted with purge: its telemetry goes.
    a.add_device("ems_rot").await;
    let resp = a
        .http
        .delete(a.api("/devices/ems_rot?purge=true"))
        .bearer_auth(&a.admin)
        .send()
        .await
        .unwrap();
    let deleted: DeviceDeleted = resp.json().await.unwrap();
    assert!(deleted.purged);
    assert_eq!(deleted.telemetry_rows_deleted, 2);
    assert_eq!(
        count_rows(
            &url,
            "SELECT count(*) FROM telemetry WHERE device_id = 'ems_rot'"
        )
        .await,
        0
    );

    // Unknown devices: 404; a grace period over a week: 400.
    assert_eq!(
        admin_post(&a, "/devices/nobody/disable").await.status(),
        404
    );
    assert_eq!(admin_post(&a, "/devices/nobody/token").await.status(), 404);
    a.add_device("ems_other").await;
    assert_eq!(
        admin_post(&a, "/devices/ems_other/token?grace_s=604801")
            .await
            .status(),
        400
    );

    let audit = ems_testkit::wait::until(
        "the device changes in the audit trail",
        crate::common::DEADLINE,
        Duration::from_millis(50),
        || async {
            let audit: Vec<AuditRecord> = a.get_json("/audit?device=ems_rot").await;
            (audit
                .iter()
                .filter(|r| r.action == "DEVICE_DELETED")
                .count()
                == 2)
                .then_some(audit)
        },
    )
    .await;
    for action in ["DEVICE_TOKEN_ROTATED", "DEVICE_DISABLED", "DEVICE_ENABLED"] {
        assert!(audit.iter().any(|r| r.action == action), "{action}");
    }
    b.stop().await;
    a.stop().await;
}
