//! `emsctl plan` prints the cloud planner's slots and the expected cost against self-consumption
//! and no battery; `plan apply --no-wait` sends it as a `SET_SCHEDULE`; without the battery's
//! figures it is a usage error (exit 2) naming the missing flag, before any request.

use crate::common;

use chrono::{Duration, DurationRound, Utc};
use common::Cloud;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_costs_and_applies_as_a_schedule() {
    let cloud = Cloud::start().await;
    cloud.add_device("ems_plan").await;
    let client = ems_cloud::db::connect(&cloud.db_url).await.unwrap();
    client
        .execute(
            "INSERT INTO telemetry (time, device_id, state, mode, battery_power, grid_power, \
               battery_soc) \
             SELECT t, 'ems_plan', 'IDLE', 'AUTO', 0, 800, 30 \
             FROM generate_series(now() - interval '2 days', now() - interval '1 minute', \
               interval '1 minute') AS t",
            &[],
        )
        .await
        .unwrap();
    let hour = Utc::now().duration_trunc(Duration::hours(1)).unwrap() - Duration::hours(1);
    let mut csv = String::from("start,end,import_price,export_price\n");
    for h in 0..14 {
        let price = if h < 6 { 0.1 } else { 0.4 };
        let at = |h| (hour + Duration::hours(h)).to_rfc3339();
        csv.push_str(&format!("{},{},{price},0.05\n", at(h), at(h + 1)));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prices.csv");
    std::fs::write(&file, csv).unwrap();
    cloud
        .run(&["tariff", "set", file.to_str().unwrap(), "-d", "ems_plan"])
        .await
        .expect(0);

    let battery = [
        "--capacity-wh",
        "8000",
        "--max-charge-w",
        "2500",
        "--max-discharge-w",
        "2500",
        "--hours",
        "12",
    ];
    let mut args = vec!["plan", "-d", "ems_plan", "-o", "json"];
    args.extend(battery);
    let json = cloud.run(&args).await.expect(0).json();
    assert_eq!(json["slots"].as_array().unwrap().len(), 48, "{json}");
    assert_eq!(json["soc_pct"], 30.0);
    let cost = json["cost"].as_f64().unwrap();
    let sc = json["cost_self_consumption"].as_f64().unwrap();
    assert!(cost < sc, "{json}");

    let mut args = vec!["plan", "show", "-d", "ems_plan"];
    args.extend(battery);
    let table = cloud.run(&args).await.expect(0);
    assert!(table.stdout.starts_with("start"), "{}", table.stdout);
    assert!(table.stdout.contains("net"), "{}", table.stdout);
    assert!(
        table.stderr.contains("expected cost: plan"),
        "{}",
        table.stderr
    );

    let mut args = vec!["plan", "apply", "--no-wait", "-d", "ems_plan", "-o", "json"];
    args.extend(battery);
    let record = cloud.run(&args).await.expect(0).json();
    assert_eq!(record["action"], "SET_SCHEDULE", "{record}");
    assert!(
        record["payload"]["windows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["action"] == "CHARGE"),
        "{record}"
    );

    let missing = cloud
        .run(&["plan", "-d", "ems_plan", "--max-charge-w", "1000"])
        .await;
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("--capacity-wh"),
        "{}",
        missing.stderr
    );
}
