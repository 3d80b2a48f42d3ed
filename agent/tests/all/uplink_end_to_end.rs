//! The whole system on one machine: PostgreSQL, ems-cloud, ems-sim on pseudo-terminals and the
//! agent with its uplink. Telemetry lands in the database every second with the spec's values;
//! a command posted to the REST API reaches the agent, moves the simulated battery and its
//! ACCEPTED answer is recorded; a refused command is recorded as REJECTED with the reason.

use crate::common;

use common::cloud::Cloud;
use ems_protocol::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_and_commands_through_the_cloud() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::on(&db_url).await;
    let mut bench = common::start_with_cloud(&cloud, "").await;

    // Five consecutive seconds stored.
    let seconds = common::wait_stored(&db_url, "bench_1", 6).await;
    let tail = &seconds[seconds.len() - 5..];
    assert!(
        tail.windows(2).all(|w| w[1] - w[0] == 1),
        "not every second: {seconds:?}"
    );

    // The stored values are the spec's fields with the simulated site's values.
    let client = ems_cloud::db::connect(&db_url).await.unwrap();
    let row = client
        .query_one(
            "SELECT state, mode, battery_soc, battery_voltage, grid_frequency FROM telemetry
             WHERE device_id = 'bench_1' ORDER BY time DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let soc: f64 = row.get(2);
    assert!(
        (soc - bench.sim.state().site.soc_pct()).abs() < 0.5,
        "{soc}"
    );
    assert_eq!(row.get::<_, String>(1), "AUTO");
    assert!((row.get::<_, f64>(4) - 50.0).abs() < 0.01);

    // A command through the REST API, waiting for the device's answer.
    let (status, record) = cloud
        .command(
            "bench_1",
            serde_json::json!({"command_id": "e2e_1", "action": "SET_MODE",
                               "payload": {"target_mode": "MANUAL_DISCHARGE", "target_power": 500}}),
            10,
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {record}");
    assert_eq!(record["status"], "ACCEPTED", "{record}");
    bench
        .wait_status("discharging 500 W", 15, |s| {
            s.setpoint_w == -500.0 && s.telemetry.system_status.state == State::Discharging
        })
        .await;
    let ac = bench.sim.state().site.setpoint_w;
    assert_eq!(ac, -500.0);

    // Over the local limit: REJECTED with the reason, recorded.
    let (_, record) = cloud
        .command(
            "bench_1",
            serde_json::json!({"command_id": "e2e_2", "action": "SET_MODE",
                               "payload": {"target_mode": "MANUAL_CHARGE", "target_power": 9000}}),
            10,
        )
        .await;
    assert_eq!(record["status"], "REJECTED", "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains("charge limit"),
        "{record}"
    );
    let stored: String = client
        .query_one(
            "SELECT status FROM commands WHERE command_id = 'e2e_2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "REJECTED");
    bench.agent.stop().await;
}
