//! Instances trust only notices signed with the cluster's secret. Any role that may connect to
//! the database may NOTIFY and LISTEN on any channel: such a role cannot read the secret, its
//! forged notices reach no live feed and close no socket, and replaying a real notice it
//! overheard does not close a device's newer socket.

use std::time::Duration;

use crate::common::{DEADLINE, TestServer, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::{LiveEvent, Role};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// A role that may connect and read the device list, nothing else.
async fn intruder(url: &str) -> tokio_postgres::Client {
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let role = format!("intruder_{db}");
    let admin = ems_cloud::db::connect(url).await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CONNECT ON DATABASE {db} TO {role}; \
             GRANT SELECT ON devices TO {role};"
        ))
        .await
        .unwrap();
    ems_cloud::db::connect(&url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1))
        .await
        .unwrap()
}

/// Every text frame the feed shows within `within`.
async fn feed_frames(
    feed: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
    within: Duration,
) -> Vec<LiveEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, feed.next()).await {
        if let Message::Text(t) = msg {
            seen.push(serde_json::from_str(&t).unwrap());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_notices_change_nothing() {
    let url = ems_testkit::pg::fresh_database().await;
    let a = TestServer::on(&url).await;
    let b = TestServer::on(&url).await;
    let token = a.add_device("ems_target").await;
    let viewer = a.token("screen", Role::Viewer).await;
    let evil = intruder(&url).await;

    // The secret is not the intruder's to read.
    let err = evil
        .query_one("SELECT secret FROM cluster_secret", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("42501"),
        "permission denied: {err}"
    );

    // It overhears what the instances say to each other.
    let (overheard_tx, mut overheard) = tokio::sync::mpsc::unbounded_channel::<String>();
    let role_url = {
        let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        url.replacen(
            "postgres://postgres@",
            &format!("postgres://intruder_{db}@"),
            1,
        )
    };
    let (listener, mut conn) = tokio_postgres::connect(&role_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(msg)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = msg {
                let _ = overheard_tx.send(n.payload().to_string());
            }
        }
    });
    listener.batch_execute("LISTEN ems_cloud").await.unwrap();

    // The device connects to A (A announces it), then moves to B, which closes its socket on A.
    let first = a.device("ems_target", &token).await;
    let announced_on_a = ems_testkit::wait::until(
        "the intruder to overhear A's CONNECTED notice",
        DEADLINE,
        Duration::from_millis(20),
        || {
            let mut found = None;
            while let Ok(n) = overheard.try_recv() {
                if n.contains("\"CONNECTED\"") {
                    found = Some(n);
                }
            }
            async move { found }
        },
    )
    .await;
    drop(first);
    let mut device = b.device("ems_target", &token).await;
    let p = packet(
        "ems_target",
        Timestamp::from_unix(Timestamp::now().unix() - 5).unwrap(),
        40.0,
    );
    device.send(&p).await;
    device.await_acks(&[p.timestamp]).await;

    // A live feed on A for the device on B (B forwards its telemetry to A).
    let mut feed = a.live_feed("ems_target", &viewer).await.unwrap();

    // Forgeries: unsigned, signed with a guessed key, and the overheard notice with its text
    // altered to name another moment; then the overheard notice itself, replayed.
    let forged_telemetry = serde_json::json!({
        "origin": "intruder", "sent_ms": chrono::Utc::now().timestamp_millis(),
        "kind": "TELEMETRY",
        "telemetry": serde_json::from_str::<serde_json::Value>(
            &packet("ems_target", Timestamp::now(), 99.0).to_json()).unwrap(),
    })
    .to_string();
    let forged_connected = serde_json::json!({
        "origin": "intruder", "sent_ms": chrono::Utc::now().timestamp_millis(),
        "kind": "CONNECTED", "device_id": "ems_target", "at": chrono::Utc::now(),
    })
    .to_string();
    let altered = announced_on_a.replacen("\"at\":\"20", "\"at\":\"21", 1);
    for payload in [
        forged_telemetry.clone(),
        format!("{}.{forged_telemetry}", "ab".repeat(32)),
        forged_connected.clone(),
        format!("{}.{forged_connected}", "00".repeat(32)),
        altered,
        announced_on_a.clone(),
    ] {
        evil.execute("SELECT pg_notify('ems_cloud', $1)", &[&payload])
            .await
            .unwrap();
    }

    // The device's socket on B stays open and keeps being acknowledged; the feed shows no
    // forged packet (its soc is 99).
    let p = packet(
        "ems_target",
        Timestamp::from_unix(Timestamp::now().unix() - 4).unwrap(),
        41.0,
    );
    device.send(&p).await;
    device.await_acks(&[p.timestamp]).await;
    let events = feed_frames(&mut feed, Duration::from_secs(1)).await;
    for e in &events {
        if let LiveEvent::Telemetry { telemetry } = e {
            assert_ne!(
                telemetry.battery.soc,
                Some(99.0),
                "a forged packet reached the feed"
            );
        }
    }
    assert!(
        device
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "the socket on B was told something: a forged or replayed notice acted"
    );
    let p = packet(
        "ems_target",
        Timestamp::from_unix(Timestamp::now().unix() - 3).unwrap(),
        42.0,
    );
    device.send(&p).await;
    device.await_acks(&[p.timestamp]).await;
    b.stop().await;
    a.stop().await;
}
