//! A device that stops answering raises COMM_LOSS, its values become unknown, and the other
//! device on the same RS-485 bus keeps being read. CRC-corrupted answers are counted as CRC
//! errors, not timeouts.

use crate::common;

use ems_protocol::{ErrorFlag, State};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_meter_does_not_stall_the_inverter() {
    let mut bench = common::start(60.0, "").await;
    bench.wait_running().await;

    bench.sim.state().silent_units.insert(2);
    let s = bench
        .wait_status("COMM_LOSS", 15, |s| {
            s.telemetry
                .system_status
                .error_flags
                .contains(&ErrorFlag::CommLoss)
        })
        .await;
    assert_eq!(s.telemetry.system_status.state, State::Error);
    assert_eq!(s.lost_devices, vec!["grid_meter".to_string()]);
    // The inverter fills in the grid values as fallback; SoC still comes from the inverter.
    assert!(s.telemetry.battery.soc.is_some());

    // The inverter (unit 1) keeps answering while unit 2 times out.
    let bus = bench.agent.buses["rs485"].clone();
    let before = bus.stats();
    bench.wait_status("a few more cycles", 5, |_| true).await;
    bench.wait_status("a few more cycles", 5, |_| true).await;
    let after = bus.stats();
    let ok =
        |st: &ems_agent::bus::BusStats, unit| st.by_device.get(&unit).map(|c| c.ok).unwrap_or(0);
    assert!(
        ok(&after, 1) > ok(&before, 1) + 4,
        "inverter polls: {before:?} -> {after:?}"
    );
    assert!(after.by_device[&2].timeouts > 0);
    // Backoff: the silent meter is asked far less than every 250 ms.
    let meter_requests = after.by_device[&2].requests - before.by_device[&2].requests;
    assert!(
        meter_requests < 8,
        "meter asked {meter_requests} times in ~2 s"
    );
    bench.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_answers_are_counted_as_crc_errors() {
    let mut bench = common::start(60.0, "").await;
    bench.wait_running().await;
    bench.sim.state().line_faults.corrupt_rate = 0.3;
    // Every attempt on the line is counted, retries included.
    let bus = bench.agent.buses["rs485"].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while bus.stats().total.crc_errors < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "no CRC errors counted: {:?}",
            bus.stats()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stats = bus.stats();
    let corrupted = bench.sim.state().stats.corrupted;
    assert!(
        stats.total.crc_errors <= corrupted,
        "{stats:?} vs {corrupted} corrupted by the sim"
    );
    // One retry absorbs most corruption: the site keeps running without COMM_LOSS.
    let s = bench.wait_status("a cycle", 5, |_| true).await;
    assert!(
        !s.telemetry
            .system_status
            .error_flags
            .contains(&ErrorFlag::CommLoss),
        "{:?}",
        s.telemetry.system_status.error_flags
    );
    bench.agent.stop().await;
}
