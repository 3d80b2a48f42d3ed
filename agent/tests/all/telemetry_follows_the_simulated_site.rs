//! The agent against ems-sim over a real pseudo-terminal: the telemetry packet carries the
//! simulated physics with the spec's names and signs, every second.

use crate::common;

use ems_protocol::{Mode, State};

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
    assert_eq!(t.system_status.mode, Mode::Auto);
    assert!(
        t.system_status.error_flags.is_empty(),
        "{:?}",
        t.system_status.error_flags
    );
    let (soc, volts, grid_w, freq) = {
        let s = bench.sim.state();
        (
            s.site.soc_pct(),
            s.site.battery_voltage_v(),
            s.site.grid_w(),
            s.site.grid_frequency_hz,
        )
    };
    assert!(
        (t.battery.soc.unwrap() - soc).abs() < 0.5,
        "soc {:?} vs sim {soc}",
        t.battery.soc
    );
    assert!(
        (t.battery.voltage.unwrap() - volts).abs() < 0.5,
        "voltage {:?} vs sim {volts}",
        t.battery.voltage
    );
    assert!((t.grid.frequency.unwrap() - freq).abs() < 0.01);
    // AUTO covers the 500 W load from the battery, so the grid moves towards zero; the grid
    // reading must be the meter's, in the spec's sign (+ import).
    assert!(t.grid.power.is_some());
    assert!(
        (t.grid.power.unwrap() - grid_w).abs() < 600.0,
        "grid {:?} vs sim {grid_w}",
        t.grid.power
    );

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
