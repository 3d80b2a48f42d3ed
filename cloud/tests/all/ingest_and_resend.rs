//! Telemetry is stored with every spec field typed, acknowledged, and a resent packet is
//! acknowledged again without being stored twice.

use crate::common;

on_both_backends!(
    packets_are_stored_once_and_acked_every_time,
    the_copy_path_stores_every_column_and_yields_to_a_stored_packet
);

use common::{Backend, TestServer, count_rows, packet, recent_seconds};
use ems_protocol::Telemetry;

async fn packets_are_stored_once_and_acked_every_time(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
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
    server.stop().await;
}

/// Batches of packets newer than everything stored go in by binary COPY: every column, null,
/// flag and extension arrives as the `UNNEST` insert stores it. A packet another instance stored
/// meanwhile (the cache cannot know) makes the COPY fail as a whole; the batch is then inserted
/// with `ON CONFLICT DO NOTHING`, acknowledged, and nothing is stored twice.
async fn the_copy_path_stores_every_column_and_yields_to_a_stored_packet(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    let token = server.add_device("ems_cp").await;
    let mut device = server.device("ems_cp", &token).await;
    let ts = recent_seconds(4);
    let flagged = |i: usize| {
        let mut p = packet("ems_cp", ts[i], 40.0);
        p.system_status.state = ems_protocol::State::Error;
        p.system_status.error_flags = vec![
            ems_protocol::ErrorFlag::Overheat,
            ems_protocol::ErrorFlag::CommLoss,
        ];
        p.battery.current = None;
        p
    };
    // The first packet raises flags (events: the transaction path); the second carries the same
    // state and flags and an extension field, so it is a quiet batch of new packets: COPY.
    device.send(&flagged(0)).await;
    device.await_acks(&[ts[0]]).await;
    let mut raw: serde_json::Value = serde_json::from_str(&flagged(1).to_json()).unwrap();
    raw["firmware"] = "2.0".into();
    device.send_text(raw.to_string()).await;
    device.await_acks(&[ts[1]]).await;

    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    let row = async |t: ems_protocol::Timestamp| -> Vec<Option<String>> {
        let sql = format!(
            "SELECT state, mode, error_flags::text, wifi_strength::text, battery_voltage::text, \
             battery_current::text, battery_power::text, battery_soc::text, grid_voltage::text, \
             grid_power::text, grid_frequency::text, extensions::text \
             FROM telemetry WHERE device_id = 'ems_cp' AND time = to_timestamp({})",
            t.unix()
        );
        let r = client.query_one(&sql, &[]).await.unwrap();
        (0..12).map(|i| r.get(i)).collect()
    };
    let (first, copied) = (row(ts[0]).await, row(ts[1]).await);
    assert_eq!(
        first[..11],
        copied[..11],
        "the paths store the same columns"
    );
    assert_eq!(copied[2].as_deref(), Some("{OVERHEAT,COMM_LOSS}"));
    assert_eq!(copied[5], None, "null stays null");
    assert_eq!(first[11], None);
    assert_eq!(copied[11].as_deref(), Some(r#"{"firmware": "2.0"}"#));

    // Another instance stored ts[3] already (written here straight into the table): the batch
    // [ts[2], ts[3]] fails as a COPY, is inserted instead, both are acked, ts[3] is not doubled.
    client
        .execute(
            &format!(
                "INSERT INTO telemetry SELECT to_timestamp({}), device_id, state, mode, error_flags, \
                 wifi_strength, battery_voltage, battery_current, battery_power, battery_soc, \
                 grid_voltage, grid_power, grid_frequency, NULL FROM telemetry \
                 WHERE device_id = 'ems_cp' AND time = to_timestamp({})",
                ts[3].unix(),
                ts[1].unix()
            ),
            &[],
        )
        .await
        .unwrap();
    // Not yet known to the server's cache: its newest row for the device is still ts[1].
    device.send(&flagged(2)).await;
    device.send(&flagged(3)).await;
    device.await_acks(&[ts[2], ts[3]]).await;
    assert_eq!(
        count_rows(
            &server.db_url,
            "SELECT count(*) FROM telemetry WHERE device_id = 'ems_cp'"
        )
        .await,
        4
    );
    server.stop().await;
}
