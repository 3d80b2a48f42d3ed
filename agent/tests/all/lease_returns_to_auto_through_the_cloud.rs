//! A manual mode with a lease ends by itself: MANUAL_DISCHARGE 500 W for 3 s, posted to the real
//! cloud's REST API, discharges the simulated battery, and about 3 s after the agent accepted it
//! the agent is back in AUTO with nobody telling it, and the cloud stores mode AUTO.

use crate::common;

use std::time::Duration;

use common::cloud::Cloud;
use ems_protocol::{Mode, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_manual_discharge_returns_to_auto() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::on(&db_url).await;
    let mut bench = common::start_with_cloud(&cloud, "").await;
    // The agent is connected once its telemetry is stored.
    common::wait_stored(&db_url, "bench_1", 1).await;

    let (status, record) = cloud
        .command(
            "bench_1",
            serde_json::json!({"command_id": "lease_cmd", "action": "SET_MODE",
                               "payload": {"target_mode": "MANUAL_DISCHARGE", "target_power": 500,
                                           "duration_s": 3}}),
            10,
        )
        .await;
    // The agent started the lease a little before this answer arrived here.
    let answered = tokio::time::Instant::now();
    assert!(status == 200 || status == 201, "{status} {record}");
    assert_eq!(record["status"], "ACCEPTED", "{record}");
    assert_eq!(record["payload"]["duration_s"], 3, "{record}");

    // The battery discharges while the lease runs.
    let e0 = bench.sim.state().site.energy_wh;
    bench
        .wait_status("discharging 500 W", 3, |s| {
            s.setpoint_w == -500.0
                && s.telemetry.system_status.state == State::Discharging
                && s.telemetry.system_status.mode == Mode::Manual
        })
        .await;
    common::wait_for("the inverter at -500 W", 2.0, || {
        bench.sim.state().site.setpoint_w == -500.0
    })
    .await;

    // Then AUTO by itself.
    let auto = bench
        .wait_status("AUTO after the lease", 8, |s| {
            s.telemetry.system_status.mode == Mode::Auto
        })
        .await;
    let after = answered.elapsed();
    assert!(
        bench.sim.state().site.energy_wh < e0,
        "the battery discharged"
    );
    assert!(
        after >= Duration::from_millis(2500) && after <= Duration::from_secs(5),
        "AUTO {after:?} after the answer, for a 3 s lease"
    );
    eprintln!("lease of 3 s: AUTO in telemetry {after:?} after the REST answer");

    // The cloud stores that AUTO packet, after packets in MANUAL.
    let client = ems_cloud::db::connect(&db_url).await.unwrap();
    let second = auto.telemetry.timestamp.unix();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let modes = loop {
        let rows = client
            .query(
                "SELECT extract(epoch FROM time)::bigint, mode FROM telemetry
                 WHERE device_id = 'bench_1' ORDER BY time",
                &[],
            )
            .await
            .unwrap();
        let modes: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if modes.iter().any(|(t, _)| *t >= second) {
            break modes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the AUTO packet of {second} not stored: {modes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stored_auto = modes.iter().find(|(t, _)| *t == second).map(|(_, m)| m);
    assert_eq!(stored_auto.map(String::as_str), Some("AUTO"), "{modes:?}");
    assert!(
        modes.iter().any(|(t, m)| *t < second && m == "MANUAL"),
        "MANUAL before it: {modes:?}"
    );
    bench.agent.stop().await;
}
