//! A webhook that fails is retried with backoff until it takes the notification: the receiver
//! answers 500 twice, then 200, and gets the same signed body three times.

use crate::alerts_offline_webhook::alerting;
use crate::alerts_sinks::Webhook;
use crate::common;

use std::time::Duration;

use common::{DEADLINE, TestServer, packet};
use ems_protocol::ErrorFlag;
use ems_protocol::Timestamp;
use ems_protocol::api::AlertEvent;

/// The value of the metric line that starts with `name` and has all of `labels`.
async fn metric(server: &TestServer, name: &str, labels: &[&str]) -> Option<f64> {
    let text = server
        .http
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhook_is_retried_and_delivered() {
    let url = ems_testkit::pg::fresh_database().await;
    let mut hook = Webhook::start(&[500, 500]).await;
    let server = TestServer::with(alerting(&url, &hook.url), &url, reqwest::Client::new()).await;
    let token = server.add_device("ems_hot").await;
    let (status, body) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "hot", "kind": "ERROR_FLAG", "flag": "OVERHEAT"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let mut device = server.device("ems_hot", &token).await;
    let second = Timestamp::now().unix() - 30;
    let mut p = packet("ems_hot", Timestamp::from_unix(second).unwrap(), 50.0);
    p.system_status.error_flags = vec![ErrorFlag::GridFault];
    device.send_stored(&[p.clone()]).await;
    p.timestamp = Timestamp::from_unix(second + 1).unwrap();
    p.system_status.error_flags = vec![ErrorFlag::GridFault, ErrorFlag::Overheat];
    device.send_stored(&[p]).await;

    let hits = [hook.next().await, hook.next().await, hook.next().await];
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for h in &hits {
        assert_eq!(h.body, hits[0].body, "a retry sends the same body");
        assert!(h.signature_valid(), "{h:?}");
    }
    let n = hits[2].notification();
    assert_eq!(n.event, AlertEvent::Opened);
    assert_eq!(n.alert.rule_name, "hot");
    assert!(n.alert.message.contains("OVERHEAT"), "{}", n.alert.message);
    assert!(
        hook.next_within(Duration::from_millis(500)).await.is_none(),
        "nothing more after the delivery"
    );

    let webhook = "channel=\"webhook\"";
    let retried = ems_testkit::wait::until(
        "the delivery to be counted",
        DEADLINE,
        Duration::from_millis(20),
        || async {
            let sent = metric(
                &server,
                "ems_cloud_alert_notifications",
                &[webhook, "outcome=\"sent\""],
            )
            .await;
            if sent != Some(1.0) {
                return None;
            }
            metric(
                &server,
                "ems_cloud_alert_notifications",
                &[webhook, "outcome=\"retried\""],
            )
            .await
        },
    )
    .await;
    assert_eq!(retried, 2.0);
    assert_eq!(
        metric(&server, "ems_cloud_alerts_opened", &[]).await,
        Some(1.0)
    );
}
