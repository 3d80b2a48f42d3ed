//! AUTO (self-consumption) charges from PV surplus until the grid exchange is near zero.

use crate::common;

use ems_protocol::State;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_absorbs_the_export() {
    let mut bench = common::start(50.0, "").await;
    {
        let mut s = bench.sim.state();
        s.site.pv_override_w = Some(2500.0);
        s.site.load_override_w = Some(700.0);
    }
    // Without the battery the site would export 1800 W.
    let status = bench
        .wait_status("grid near zero", 20, |s| {
            s.telemetry.system_status.state == State::Charging
                && s.telemetry.grid.power.is_some_and(|g| g.abs() < 100.0)
        })
        .await;
    assert!(
        status.setpoint_w > 1600.0 && status.setpoint_w < 2000.0,
        "{}",
        status.setpoint_w
    );
    let grid = bench.sim.state().site.grid_w();
    assert!(grid.abs() < 150.0, "simulated grid exchange {grid} W");
    bench.agent.stop().await;
}
