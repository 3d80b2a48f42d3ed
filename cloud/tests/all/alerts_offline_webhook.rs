//! A device that goes offline raises an `OFFLINE` alert that reaches the webhook once, signed,
//! and a "resolved" follows when it comes back, though two instances share the database and
//! both evaluate the rule.

use crate::alerts_sinks::{SECRET, Webhook};
use crate::common;

use chrono::Utc;
use common::{Backend, TestServer, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::{AlertEvent, AlertKind, AlertRecord};
use std::time::Duration;

/// The test figment with alerts checked every 200 ms and sent to `webhook`.
pub fn alerting(url: &str, webhook: &str) -> rocket::figment::Figment {
    common::figment(url)
        .merge(("alerts.evaluate_interval_ms", 200))
        .merge(("alerts.webhook_url", webhook))
        .merge(("alerts.webhook_secret", SECRET))
        .merge(("alerts.retry_base_ms", 50))
}

async fn offline_alert_once_then_resolved(backend: Backend) {
    let Some(url) = common::fresh_database_on(backend).await else {
        return;
    };
    let mut hook = Webhook::start(&[]).await;
    let a = TestServer::with(alerting(&url, &hook.url), &url, reqwest::Client::new()).await;
    let b = TestServer::with(alerting(&url, &hook.url), &url, reqwest::Client::new()).await;
    let token = a.add_device("ems_off").await;
    a.add_device("ems_other").await;
    let (status, rule) = a
        .post_json(
            "/alert-rules",
            &a.admin,
            &serde_json::json!({"name": "gone", "kind": "OFFLINE", "device_id": "ems_off",
                "for_s": 1}),
        )
        .await;
    assert_eq!(status, 201, "{rule}");

    let mut device = a.device("ems_off", &token).await;
    let second = Timestamp::now().unix() - 30;
    device
        .send_stored(&[packet(
            "ems_off",
            Timestamp::from_unix(second).unwrap(),
            50.0,
        )])
        .await;
    device.ws.close(None).await.unwrap();
    let closed = Utc::now();

    let opened = hook.next().await;
    assert!(opened.signature_valid(), "bad signature: {opened:?}");
    let n = opened.notification();
    assert_eq!(n.event, AlertEvent::Opened);
    assert_eq!(n.alert.kind, AlertKind::Offline);
    assert_eq!(n.alert.device_id, "ems_off");
    assert_eq!(n.alert.rule_name, "gone");
    assert!(n.alert.resolved_at.is_none());
    assert!(
        n.alert.opened_at >= closed + chrono::Duration::milliseconds(900),
        "opened at {} though the device closed at {closed} and the rule wants 1 s",
        n.alert.opened_at
    );
    // Both instances have run several ticks meanwhile; none opens a second alert.
    assert!(
        hook.next_within(Duration::from_secs(1)).await.is_none(),
        "a second notification while the device stays offline"
    );
    let open: Vec<AlertRecord> = b.get_json("/alerts?state=open").await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].id, n.alert.id);

    // It comes back, to the other instance.
    let _device = b.device("ems_off", &token).await;
    let resolved = hook.next().await;
    assert!(resolved.signature_valid());
    let r = resolved.notification();
    assert_eq!(r.event, AlertEvent::Resolved);
    assert_eq!(r.alert.id, n.alert.id);
    assert!(r.alert.resolved_at.is_some());
    assert!(
        hook.next_within(Duration::from_secs(1)).await.is_none(),
        "a notification after the resolution"
    );
    let open: Vec<AlertRecord> = a.get_json("/alerts?state=open").await;
    assert!(open.is_empty(), "{open:?}");
    let resolved: Vec<AlertRecord> = a.get_json("/alerts?state=resolved&device=ems_off").await;
    assert_eq!(resolved.len(), 1);
    // The device never connected: no alert for it.
    let other: Vec<AlertRecord> = a.get_json("/alerts?device=ems_other").await;
    assert!(other.is_empty(), "{other:?}");
}

on_both_backends!(offline_alert_once_then_resolved);
