//! Hysteresis: a SoC that wobbles around the alert threshold opens one alert, which resolves
//! only when the SoC rises past the clear threshold; no re-opening in between.

use crate::alerts_offline_webhook::alerting;
use crate::alerts_sinks::Webhook;
use crate::common;

use std::time::Duration;

use common::{Backend, TestServer, packet};
use ems_protocol::Timestamp;
use ems_protocol::api::{AlertEvent, AlertRecord};

async fn flapping_soc_opens_once(backend: Backend) {
    let Some(url) = common::fresh_database_on(backend).await else {
        return;
    };
    let mut hook = Webhook::start(&[]).await;
    let server = TestServer::with(alerting(&url, &hook.url), &url, reqwest::Client::new()).await;
    let token = server.add_device("ems_soc").await;
    let (status, body) = server
        .post_json(
            "/alert-rules",
            &server.admin,
            &serde_json::json!({"name": "low", "kind": "SOC_BELOW", "threshold": 20.0,
                "clear_threshold": 30.0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let mut device = server.device("ems_soc", &token).await;
    let start = Timestamp::now().unix() - 60;
    // Without hysteresis (resolving at 20 %) this would open three alerts.
    let socs = [50.0, 15.0, 25.0, 18.0, 25.0, 19.0, 28.0, 35.0];
    for (i, soc) in socs.iter().enumerate() {
        let p = packet(
            "ems_soc",
            Timestamp::from_unix(start + i as i64).unwrap(),
            *soc,
        );
        device.send_stored(&[p]).await;
    }

    let opened = hook.next().await.notification();
    assert_eq!(opened.event, AlertEvent::Opened);
    assert!(
        opened.alert.message.contains("15"),
        "{}",
        opened.alert.message
    );
    let resolved = hook.next().await.notification();
    assert_eq!(resolved.event, AlertEvent::Resolved, "{resolved:?}");
    assert_eq!(resolved.alert.id, opened.alert.id);
    assert!(
        hook.next_within(Duration::from_secs(1)).await.is_none(),
        "a third notification"
    );
    let all: Vec<AlertRecord> = server.get_json("/alerts?device=ems_soc").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].resolved_at.is_some());
}

on_both_backends!(flapping_soc_opens_once);
