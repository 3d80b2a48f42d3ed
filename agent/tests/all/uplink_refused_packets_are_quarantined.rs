//! Packets the cloud refuses for good are set aside, not resent in a loop. The agent's clock runs
//! 10 minutes fast for a while: ems-cloud refuses each of those packets (BAD_FRAME naming its
//! timestamp), the agent moves them to its quarantine and counts them, the socket stays up (one
//! connection for the whole test), and once the clock is right again the following packets are
//! stored. A grid meter reporting an implausible -0.3 V is sent as `null` and stored, not refused.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::cloud::{Cloud, stored_seconds};

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_10_minutes_fast_is_quarantined_not_a_reconnect_loop() {
    let db_url = ems_testkit::pg::fresh_database().await;
    let cloud = Cloud::on(&db_url).await;
    let mut bench = common::start_with_cloud(&cloud, "").await;
    let seconds = common::record_seconds(bench.agent.status.clone());
    let uplink = bench.agent.uplink.clone();
    common::wait_for("the uplink connected", 20.0, || uplink.borrow().connected).await;

    // A meter value the cloud would refuse: sent as null, stored.
    bench.sim.state().site.grid_voltage_v = -0.3;
    let implausible = bench
        .wait_status("grid voltage unknown", 5, |s| {
            s.telemetry.grid.voltage.is_none()
        })
        .await
        .telemetry
        .timestamp
        .unix();
    bench.sim.state().site.grid_voltage_v = 230.0;

    // Ten minutes fast for at least 15 packets.
    bench.agent.clock.set_offset_for_tests(600.0);
    common::wait_for("15 packets refused and quarantined", 30.0, || {
        uplink.borrow().quarantined_total >= 15
    })
    .await;
    bench.agent.clock.set_offset_for_tests(0.0);
    let corrected = real_now();

    // The following packets are stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let s = stored_seconds(&db_url, "bench_1").await;
        if s.iter().filter(|t| **t > corrected).count() >= 5 {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing stored after the correction: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = uplink.borrow().clone();
    let seen = seconds.lock().unwrap().clone();
    let future: Vec<i64> = seen
        .iter()
        .copied()
        .filter(|t| *t > corrected + 300)
        .collect();
    println!(
        "{} future packets, {} quarantined, {} connection(s), {} rows stored, {} queued",
        future.len(),
        stats.quarantined_total,
        stats.connects,
        stored.len(),
        stats.queued
    );
    assert_eq!(
        stats.connects, 1,
        "the socket was closed and reopened: {stats:?}"
    );
    assert!(stats.connected);
    assert_eq!(stats.quarantined_total, future.len() as u64, "{stats:?}");
    assert!(
        stored.iter().all(|t| *t <= corrected + 300),
        "a future packet was stored"
    );
    assert!(
        stored.contains(&implausible),
        "the packet with the implausible value was not stored"
    );

    // Quarantined: kept in the agent's database, out of the queue.
    let db = rusqlite::Connection::open(ems_agent::uplink::queue_path(
        &bench.dir.path().join("data"),
    ))
    .unwrap();
    let kept: Vec<i64> = db
        .prepare("SELECT ts FROM quarantine ORDER BY ts")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kept, future);
    let queued_future: i64 = db
        .query_row(
            "SELECT count(*) FROM telemetry WHERE ts > ?1",
            [corrected + 300],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued_future, 0);

    let client = ems_cloud::db::connect(&db_url).await.unwrap();
    let row = client
        .query_one(
            "SELECT grid_voltage FROM telemetry WHERE device_id = 'bench_1'
             AND time = to_timestamp($1::bigint)",
            &[&implausible],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<f64>>(0), None);
    bench.agent.stop().await;
}
