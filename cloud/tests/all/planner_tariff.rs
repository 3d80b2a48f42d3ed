//! A device's tariff round-trips through `PUT`/`GET /devices/<id>/tariff` and is stored in the
//! `tariffs` table; a second `PUT` replaces the first as a whole and an empty list clears it.
//! Overlapping, unordered or non-finite periods are refused with the period named, and nothing
//! is stored. Viewers read, only operators write; another device's tariff does not mix in.
//! Same answers on TimescaleDB and plain PostgreSQL.

use crate::common;

on_both_backends!(tariff_round_trips_replaces_and_refuses_bad_periods);

use common::{Backend, TestServer, count_rows};
use ems_protocol::api::{Role, Tariff};
use serde_json::json;

async fn put(
    server: &TestServer,
    device: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let resp = server
        .http
        .put(server.api(&format!("/devices/{device}/tariff")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn night_and_peak() -> serde_json::Value {
    json!([
        {"start": "2026-12-01T00:00:00Z", "end": "2026-12-01T06:00:00Z", "import_price": 0.10, "export_price": 0.05},
        {"start": "2026-12-01T06:00:00Z", "end": "2026-12-01T17:00:00Z", "import_price": 0.25, "export_price": 0.05},
        {"start": "2026-12-01T17:00:00Z", "end": "2026-12-01T21:00:00Z", "import_price": 0.40, "export_price": -0.01},
    ])
}

async fn tariff_round_trips_replaces_and_refuses_bad_periods(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    server.add_device("ems_tariff").await;
    server.add_device("ems_other").await;
    let operator = server.token("op", Role::Operator).await;
    let viewer = server.token("owner", Role::Viewer).await;

    // No tariff yet: an empty list.
    let none: Tariff = server.get_json("/devices/ems_tariff/tariff").await;
    assert!(none.periods.is_empty());

    let (status, body) = put(&server, "ems_tariff", &operator, night_and_peak()).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = put(&server, "ems_other", &operator, json!([
        {"start": "2026-12-01T00:00:00Z", "end": "2026-12-02T00:00:00Z", "import_price": 9.0, "export_price": 0.0}
    ])).await;
    assert_eq!(status, 200);

    let resp = server.get("/devices/ems_tariff/tariff", &viewer).await;
    assert_eq!(resp.status(), 200);
    let got: Tariff = resp.json().await.unwrap();
    assert_eq!(got.device_id, "ems_tariff");
    assert_eq!(
        serde_json::to_value(&got.periods).unwrap(),
        night_and_peak()
    );
    assert_eq!(
        count_rows(
            &server.db_url,
            "SELECT count(*) FROM tariffs WHERE device_id = 'ems_tariff'"
        )
        .await,
        3
    );

    // Refused, with the offending period named; the stored tariff stays.
    let mut overlapping = night_and_peak();
    overlapping[2]["start"] = json!("2026-12-01T16:00:00Z");
    let mut reversed = night_and_peak();
    reversed[0]["end"] = json!("2026-11-30T23:00:00Z");
    let mut huge = night_and_peak();
    huge[1]["import_price"] = json!(1e300);
    for (bad, field) in [
        (overlapping, "[2].start"),
        (reversed, "[0].end"),
        (huge, "[1].import_price"),
    ] {
        let (status, body) = put(&server, "ems_tariff", &operator, bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
    let (status, _) = put(
        &server,
        "ems_tariff",
        &operator,
        json!([{"start": "2026-12-01T00:00:00Z"}]),
    )
    .await;
    assert!(status == 400 || status == 422, "{status}");
    // A viewer may not write; an unknown device is 404.
    let (status, _) = put(&server, "ems_tariff", &viewer, night_and_peak()).await;
    assert_eq!(status, 403);
    let (status, _) = put(&server, "ems_nobody", &operator, night_and_peak()).await;
    assert_eq!(status, 404);
    let still: Tariff = server.get_json("/devices/ems_tariff/tariff").await;
    assert_eq!(still.periods.len(), 3);

    // A second PUT replaces the whole tariff; an empty list clears it.
    let (status, _) = put(&server, "ems_tariff", &operator, json!([
        {"start": "2026-12-02T00:00:00Z", "end": "2026-12-02T01:00:00Z", "import_price": 0.2, "export_price": 0.1}
    ])).await;
    assert_eq!(status, 200);
    let replaced: Tariff = server.get_json("/devices/ems_tariff/tariff").await;
    assert_eq!(replaced.periods.len(), 1);
    assert_eq!(replaced.periods[0].import_price, 0.2);
    let (status, _) = put(&server, "ems_tariff", &operator, json!([])).await;
    assert_eq!(status, 200);
    let cleared: Tariff = server.get_json("/devices/ems_tariff/tariff").await;
    assert!(cleared.periods.is_empty());
    // The other device's tariff is untouched.
    let other: Tariff = server.get_json("/devices/ems_other/tariff").await;
    assert_eq!(other.periods.len(), 1);
    assert_eq!(other.periods[0].import_price, 9.0);
    // Each replacement is in the audit trail (written in batches: wait for it).
    ems_testkit::wait::until(
        "TARIFF_SET in the audit trail",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(50),
        || async {
            let audit: Vec<ems_protocol::api::AuditRecord> = server
                .get_json("/audit?action=TARIFF_SET&device=ems_tariff")
                .await;
            (audit.len() >= 3).then_some(())
        },
    )
    .await;
}
