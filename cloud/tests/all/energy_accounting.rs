//! The energy endpoint's kWh equal a hand computation on a synthetic day: an hour charging at
//! 1 kW, an hour discharging at 500 W with one dropped packet (bridged), an hour offline (not
//! invented), an hour exporting 1 kW; the grid importing 2 kW for the first two hours. Another
//! device's packets do not mix in. With the agent's `site` extension (PV and house power): PV
//! and house kWh, self-consumption and self-sufficiency, where a second whose extension is not a
//! sane number counts as unknown rather than breaking the sums. Same answers on TimescaleDB and
//! plain PostgreSQL.

use crate::common;

on_both_backends!(
    energy_matches_a_hand_computation,
    pv_house_and_the_ratios_match_a_hand_computation
);

use common::{Backend, TestServer};
use ems_protocol::api::{Energy, Role};

const DAY: &str = "2026-11-29";

async fn fill(url: &str, device: &str, scale: f64) {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .execute(
            &format!(
                "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power) \
                 SELECT t, $1, 'IDLE', 'AUTO', \
                   $2::float8 * CASE WHEN t < '{DAY} 01:00Z' THEN 1000 WHEN t < '{DAY} 02:00Z' THEN -500 \
                        ELSE 0 END, \
                   $2::float8 * CASE WHEN t < '{DAY} 02:00Z' THEN 2000 ELSE -1000 END \
                 FROM generate_series('{DAY} 00:00:00Z'::timestamptz, '{DAY} 03:59:59Z', \
                   interval '1 second') AS t \
                 WHERE NOT (t >= '{DAY} 02:00Z' AND t < '{DAY} 03:00Z') AND t <> '{DAY} 01:30:00Z'"
            ),
            &[&device, &scale],
        )
        .await
        .unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

async fn energy_matches_a_hand_computation(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    server.add_device("ems_energy").await;
    server.add_device("ems_other").await;
    fill(&server.db_url, "ems_energy", 1.0).await;
    fill(&server.db_url, "ems_other", 7.0).await;
    let viewer = server.token("owner", Role::Viewer).await;

    // The day.
    let resp = server
        .get(
            &format!("/devices/ems_energy/energy?from={DAY}T00:00:00Z&to={DAY}T23:59:59Z"),
            &viewer,
        )
        .await;
    assert_eq!(resp.status(), 200);
    let day: Energy = resp.json().await.unwrap();
    assert_eq!(day.bucket_s, 86_400);
    assert_eq!(day.buckets.len(), 1, "{day:?}");
    let d = day.buckets[0];
    assert_eq!(d.time.to_rfc3339(), format!("{DAY}T00:00:00+00:00"));
    // 3600 s at 1 kW; 3600 s at 500 W (the dropped packet's second held by the one before);
    // the grid: 7200 s importing 2 kW, 3600 s exporting 1 kW. The hour offline adds nothing.
    assert!(close(d.charged_kwh, 1.0), "{d:?}");
    assert!(close(d.discharged_kwh, 0.5), "{d:?}");
    assert!(close(d.imported_kwh, 4.0), "{d:?}");
    assert!(close(d.exported_kwh, 1.0), "{d:?}");
    assert!(close(d.covered_s, 10_800.0), "{d:?}");

    // By the hour: three buckets, none for the hour offline.
    let hourly: Energy = server
        .get_json(&format!(
            "/devices/ems_energy/energy?from={DAY}T00:00:00Z&to={DAY}T04:00:00Z&bucket=1h"
        ))
        .await;
    let got: Vec<(u32, f64, f64, f64, f64)> = hourly
        .buckets
        .iter()
        .map(|b| {
            (
                chrono::Timelike::hour(&b.time),
                b.charged_kwh,
                b.discharged_kwh,
                b.imported_kwh,
                b.exported_kwh,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 1.0, 0.0, 2.0, 0.0),
            (1, 0.0, 0.5, 2.0, 0.0),
            (3, 0.0, 0.0, 0.0, 1.0)
        ]
    );

    // Refusals name the parameter.
    for (query, field) in [
        ("bucket=5s", "bucket"),
        ("bucket=1y", "bucket"),
        ("bucket=1min&from=2026-01-01T00:00:00Z", "bucket"),
        ("from=2026-11-30T00:00:00Z&to=2026-11-29T00:00:00Z", "from"),
    ] {
        let resp = server
            .get(&format!("/devices/ems_energy/energy?{query}"), &viewer)
            .await;
        assert_eq!(resp.status(), 400, "{query}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    server.stop().await;
}

async fn pv_house_and_the_ratios_match_a_hand_computation(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    server.add_device("ems_pv").await;
    let client = ems_cloud::db::connect(&server.db_url).await.unwrap();
    // 00-01 h: no sun, house 500 W from the grid. 01-02 h: PV 3 kW, house 1 kW, battery charging
    // 1 kW, exporting 1 kW. 02-03 h: offline. 03-04 h: PV 2 kW, house 1.5 kW, exporting 500 W;
    // at 03:30:00 a packet whose extension holds a string and a number beyond any float.
    let day = "2026-11-28";
    client
        .execute(
            &format!(
                "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power, \
                   extensions) \
                 SELECT t, 'ems_pv', 'IDLE', 'AUTO', \
                   CASE WHEN t >= '{day} 01:00Z' AND t < '{day} 02:00Z' THEN 1000 ELSE 0 END, \
                   CASE WHEN t < '{day} 01:00Z' THEN 500 WHEN t < '{day} 02:00Z' THEN -1000 \
                        ELSE -500 END, \
                   CASE WHEN t = '{day} 03:30:00Z' \
                        THEN '{{\"site\": {{\"pv_power\": \"x\", \"house_power\": 1e400}}}}'::jsonb \
                        ELSE jsonb_build_object('site', jsonb_build_object( \
                          'pv_power', CASE WHEN t < '{day} 01:00Z' THEN 0 \
                                           WHEN t < '{day} 02:00Z' THEN 3000 ELSE 2000 END, \
                          'house_power', CASE WHEN t < '{day} 01:00Z' THEN 500 \
                                              WHEN t < '{day} 02:00Z' THEN 1000 ELSE 1500 END)) \
                   END \
                 FROM generate_series('{day} 00:00:00Z'::timestamptz, '{day} 03:59:59Z', \
                   interval '1 second') AS t \
                 WHERE NOT (t >= '{day} 02:00Z' AND t < '{day} 03:00Z')"
            ),
            &[],
        )
        .await
        .unwrap();
    let e: Energy = server
        .get_json(&format!(
            "/devices/ems_pv/energy?from={day}T00:00:00Z&to={day}T23:59:59Z"
        ))
        .await;
    assert_eq!(e.buckets.len(), 1, "{e:?}");
    let d = e.buckets[0];
    // By hand, in watt-seconds; the 03:30:00 packet's PV and house are unknown.
    let pv = (3000.0 * 3600.0 + 2000.0 * 3599.0) / 3.6e6;
    let house = (500.0 * 3600.0 + 1000.0 * 3600.0 + 1500.0 * 3599.0) / 3.6e6;
    let exported_with_pv = (1000.0 * 3600.0 + 500.0 * 3599.0) / 3.6e6;
    let imported_with_house = 500.0 * 3600.0 / 3.6e6;
    let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
    assert!(near(d.pv_kwh, pv), "{d:?} vs {pv}");
    assert!(near(d.house_kwh, house), "{d:?} vs {house}");
    assert!(
        near(d.self_consumption, 1.0 - exported_with_pv / pv),
        "{d:?}"
    );
    assert!(
        near(d.self_sufficiency, 1.0 - imported_with_house / house),
        "{d:?}"
    );
    // The spec's four are unchanged by the extension: exported counts every second.
    assert!(
        close(d.exported_kwh, (1000.0 * 3600.0 + 500.0 * 3600.0) / 3.6e6),
        "{d:?}"
    );

    // A device without the extension gets no PV, house or ratios (absent, not zero).
    server.add_device("ems_plain").await;
    client
        .execute(
            "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power) \
             VALUES ('2026-11-28 10:00:00Z', 'ems_plain', 'IDLE', 'AUTO', 0, 100)",
            &[],
        )
        .await
        .unwrap();
    let plain: serde_json::Value = server
        .get_json(&format!(
            "/devices/ems_plain/energy?from={day}T00:00:00Z&to={day}T23:59:59Z"
        ))
        .await;
    let b = &plain["buckets"][0];
    for key in [
        "pv_kwh",
        "house_kwh",
        "self_consumption",
        "self_sufficiency",
    ] {
        assert!(b.get(key).is_none(), "{key} in {b}");
    }
    server.stop().await;
}
