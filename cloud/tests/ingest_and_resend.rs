//! Telemetry is stored with every spec field typed, acknowledged, and a resent packet is
//! acknowledged again without being stored twice.

mod common;

use common::{TestServer, count_rows, packet, recent_seconds};
use ems_protocol::Telemetry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_are_stored_once_and_acked_every_time() {
    let server = TestServer::fresh().await;
    let token = server.add_device("ems_001").await;
    let mut device = server.device("ems_001", &token).await;

    let seconds = recent_seconds(50);
    for (i, ts) in seconds.iter().enumerate() {
        device.send(&packet("ems_001", *ts, i as f64)).await;
    }
    device.await_acks(&seconds).await;
    assert_eq!(
        count_rows(&server.db_url, "SELECT count(*) FROM telemetry").await,
        50
    );

    // Resend the first 20: acked again, nothing duplicated.
    for (i, ts) in seconds.iter().take(20).enumerate() {
        device.send(&packet("ems_001", *ts, i as f64)).await;
    }
    device.await_acks(&seconds[..20]).await;
    assert_eq!(
        count_rows(&server.db_url, "SELECT count(*) FROM telemetry").await,
        50
    );

    // Typed columns, nulls, and extension fields survive.
    let mut last = packet("ems_001", ems_protocol::Timestamp::now(), 85.0);
    last.battery.current = None;
    last.system_status.error_flags = vec![ems_protocol::ErrorFlag::Overheat];
    let mut raw: serde_json::Value = serde_json::from_str(&last.to_json()).unwrap();
    raw["firmware"] = "1.2.3".into();
    raw["battery"]["temperature"] = 21.5.into();
    device.send_text(raw.to_string()).await;
    device.await_acks(&[last.timestamp]).await;

    let latest: Telemetry = server.get_json("/devices/ems_001/telemetry/latest").await;
    assert_eq!(latest, last);
    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    let row = client
        .query_one(
            "SELECT extensions, battery_current, error_flags FROM telemetry \
             WHERE device_id = 'ems_001' ORDER BY time DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let ext: serde_json::Value = row.get(0);
    assert_eq!(
        ext,
        serde_json::json!({"firmware": "1.2.3", "battery": {"temperature": 21.5}})
    );
    assert_eq!(row.get::<_, Option<f64>>(1), None);
    assert_eq!(row.get::<_, Vec<String>>(2), vec!["OVERHEAT".to_string()]);

    // The device list shows it online and recently seen.
    let devices: Vec<ems_protocol::api::DeviceInfo> = server.get_json("/devices").await;
    assert_eq!(devices.len(), 1);
    assert!(devices[0].online);
    assert!(devices[0].last_seen.is_some());
    server.running.stop().await;
}
