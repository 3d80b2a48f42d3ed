//! The planner's forecast query averages the device's own telemetry per local weekday and
//! 15-minute slot over the last four weeks: the same weekday when it has samples, all weekdays
//! otherwise, and the net load (grid − battery) when the agent sends no `site` extension.
//! History older than four weeks, other devices and non-numeric extension values do not count.
//! Same answers on TimescaleDB and plain PostgreSQL.

use crate::common;

on_both_backends!(forecast_averages_the_same_weekday_and_slot);

use chrono::{DateTime, Utc};
use common::{Backend, TestServer};
use ems_cloud::planner::forecast::{forecast, history};

/// 900 one-second packets from `from` with these powers and extension.
async fn fill(url: &str, device: &str, from: &str, grid: f64, battery: f64, site: &str) {
    let client = ems_cloud::db::connect(url).await.unwrap();
    client
        .execute(
            &format!(
                "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power, \
                   extensions) \
                 SELECT t, $1, 'IDLE', 'AUTO', $2, $3, {site} \
                 FROM generate_series('{from}'::timestamptz, \
                   '{from}'::timestamptz + interval '899 seconds', interval '1 second') AS t"
            ),
            &[&device, &battery, &grid],
        )
        .await
        .unwrap();
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn forecast_averages_the_same_weekday_and_slot(backend: Backend) {
    let Some(server) = TestServer::fresh_on(backend).await else {
        return;
    };
    server.add_device("ems_fc").await;
    server.add_device("ems_other").await;
    let url = &server.db_url;
    let site = |house: &str, pv: &str| {
        format!(
            "jsonb_build_object('site', jsonb_build_object('house_power', {house}, \
             'pv_power', {pv}))"
        )
    };
    // Monday 08:00 (house 1000 W, PV 200 W) and Tuesday 08:00 (house 500 W, no PV).
    fill(
        url,
        "ems_fc",
        "2026-11-23T08:00:00Z",
        800.0,
        0.0,
        &site("1000", "200"),
    )
    .await;
    fill(
        url,
        "ems_fc",
        "2026-11-24T08:00:00Z",
        500.0,
        0.0,
        &site("500", "0"),
    )
    .await;
    // Six weeks back: out of the window.
    fill(
        url,
        "ems_fc",
        "2026-10-12T08:00:00Z",
        0.0,
        0.0,
        &site("9999", "0"),
    )
    .await;
    // Another device at the same slot.
    fill(
        url,
        "ems_other",
        "2026-11-23T08:00:00Z",
        0.0,
        0.0,
        &site("7777", "0"),
    )
    .await;
    // Monday 09:00 without the extension: grid 300 W importing, battery charging 100 W, so
    // the house minus PV is 200 W; and a value that is not a number at 10:00.
    fill(url, "ems_fc", "2026-11-23T09:00:00Z", 300.0, 100.0, "NULL").await;
    fill(
        url,
        "ems_fc",
        "2026-11-23T10:00:00Z",
        -400.0,
        0.0,
        &site("'\"lots\"'::jsonb", "1e300"),
    )
    .await;

    let client = ems_cloud::db::connect(url).await.unwrap();
    let tz = &ems_protocol::zone::Zone::utc();
    let now = at("2026-11-30T07:00:00Z");
    let h = history(&client, "ems_fc", now, tz).await.unwrap();
    let f = forecast(
        &h,
        &[
            at("2026-11-30T08:00:00Z"),
            at("2026-12-02T08:10:00Z"),
            at("2026-11-30T09:00:00Z"),
            at("2026-11-30T10:00:00Z"),
            at("2026-11-30T11:00:00Z"),
        ],
        tz,
    );
    // The same weekday.
    assert_eq!(
        (f[0].load_w, f[0].pv_w, f[0].method),
        (1000.0, 200.0, "weekday"),
        "{f:?}"
    );
    // Wednesday has no 08:00 history: Monday's and Tuesday's together.
    assert_eq!(f[1].method, "all_days", "{f:?}");
    assert!((f[1].load_w - 750.0).abs() < 1e-9, "{f:?}");
    assert!((f[1].pv_w - 100.0).abs() < 1e-9, "{f:?}");
    // Only the net load.
    assert_eq!(
        (f[2].load_w, f[2].pv_w, f[2].method),
        (200.0, 0.0, "net"),
        "{f:?}"
    );
    // Non-numbers ignored: the net load (PV surplus of 400 W) stands in.
    assert_eq!(
        (f[3].load_w, f[3].pv_w, f[3].method),
        (0.0, 400.0, "net"),
        "{f:?}"
    );
    assert_eq!(f[4].method, "none", "{f:?}");
}
