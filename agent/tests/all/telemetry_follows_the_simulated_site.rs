//! The agent against ems-sim over a real pseudo-terminal: the telemetry packet carries the
//! simulated physics with the spec's names and signs, every second.

use crate::common;

use ems_protocol::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_matches_the_simulated_physics() {
    let mut bench = common::start(60.0, "").await;
    let status = bench
        .wait_status("a complete packet", 15, |s| {
            s.telemetry.system_status.state != State::Starting && s.telemetry.battery.soc.is_some()
        })
        .await;
    let t = &status.telemetry;
    assert_eq!(t.device_id, "bench_1");
    // AUTO covers the 500 W load from the battery, so the grid moves towards zero; the grid
    // reading must be the meter's, in the spec's sign (+ import).
    bench.assert_matches_sim(t);

    // A packet each wall-clock second, whole-second timestamps in order.
    let mut stamps = vec![];
    for _ in 0..3 {
        let s = bench
            .wait_status("next packet", 5, |s| {
                Some(s.telemetry.timestamp) != stamps.last().copied()
            })
            .await;
        stamps.push(s.telemetry.timestamp);
    }
    assert_eq!(stamps[1].unix() - stamps[0].unix(), 1, "{stamps:?}");
    assert_eq!(stamps[2].unix() - stamps[1].unix(), 1, "{stamps:?}");
    bench.agent.stop().await;
}
