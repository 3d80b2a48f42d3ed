//! A webhook that never answers does not pile notifications up: with `alerts.queue = 1` one
//! notification waits on the hung receiver, one waits in the queue, and the others are dropped
//! and counted.

use crate::alerts_sinks::SECRET;
use crate::common;

use std::time::Duration;

use common::{DEADLINE, TestServer, packet};
use ems_protocol::{ErrorFlag, Timestamp};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_webhook_drops_beyond_the_queue_and_counts_them() {
    let url = ems_testkit::pg::fresh_database().await;
    // Accepts connections and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", hung.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            sockets.push(s);
        }
    });
    let figment = common::figment(&url)
        .merge(("alerts.evaluate_interval_ms", 200))
        .merge(("alerts.webhook_url", &hook))
        .merge(("alerts.webhook_secret", SECRET))
        .merge(("alerts.timeout_s", 120))
        .merge(("alerts.queue", 1));
    let server = TestServer::with(figment, &url, reqwest::Client::new()).await;
    let (status, body) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "any-fault", "kind": "ERROR_FLAG"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let second = Timestamp::now().unix() - 30;
    let mut devices = Vec::new();
    for i in 0..5 {
        let id = format!("ems_q{i}");
        let token = server.add_device(&id).await;
        let mut device = server.device(&id, &token).await;
        let mut p = packet(&id, Timestamp::from_unix(second).unwrap(), 50.0);
        p.system_status.error_flags = vec![ErrorFlag::CommLoss];
        device.send_stored(&[p]).await;
        devices.push(device);
    }
    // Five alerts open (stored whatever becomes of their notifications) ...
    ems_testkit::wait::until(
        "five open alerts",
        DEADLINE,
        Duration::from_millis(50),
        || async {
            let open: Vec<serde_json::Value> = server.get_json("/alerts?state=open").await;
            (open.len() == 5).then_some(())
        },
    )
    .await;
    // ... one notification is on the hung socket, at most one queued: three or more dropped.
    let metrics = server
        .http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("ems_cloud_alert_notifications_total")
                && l.contains("channel=\"webhook\"")
                && l.contains("outcome=\"dropped\"")
        })
        .and_then(|l| l.rsplit_once(' ')?.1.parse().ok())
        .unwrap_or_else(|| panic!("no dropped counter:\n{metrics}"));
    assert!(dropped >= 3.0, "dropped {dropped}");
    held.abort();
}
