//! Each injected fault raises its flag, ERROR and 0 W; RESET_ERROR is refused while the fault
//! lasts and accepted after.

use crate::common;

use ems_protocol::{AnswerStatus, Command, ErrorFlag, State, TargetMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overheat_then_reset() {
    let mut bench = common::start(60.0, "").await;
    bench.wait_running().await;
    bench
        .agent
        .command(Command::set_mode(
            "c1",
            TargetMode::ManualDischarge,
            Some(800.0),
        ))
        .await
        .unwrap();
    bench
        .wait_status("discharging", 10, |s| s.setpoint_w == -800.0)
        .await;

    bench.sim.state().site.temperature_c = 62.0;
    bench
        .wait_error("ERROR with OVERHEAT", 10, ErrorFlag::Overheat)
        .await;
    // The inverter got 0 W.
    bench.wait_status("inverter at 0 W", 5, |_| true).await;
    assert_eq!(bench.sim.state().site.setpoint_w, 0.0);

    let refused = bench.reset_error("r1").await;
    assert_eq!(refused.status, AnswerStatus::Rejected);
    assert!(refused.reason.unwrap().contains("OVERHEAT"));

    bench.sim.state().site.temperature_c = 30.0;
    // Cooled down but still latched until the reset.
    let s = bench
        .wait_status("a cycle after cooling", 5, |_| true)
        .await;
    assert_eq!(s.telemetry.system_status.state, State::Error);
    let accepted = bench.reset_error("r2").await;
    assert_eq!(accepted.status, AnswerStatus::Accepted, "{accepted:?}");
    let s = bench
        .wait_status("back to discharging", 10, |s| {
            s.telemetry.system_status.state == State::Discharging
        })
        .await;
    assert!(s.telemetry.system_status.error_flags.is_empty());
    bench.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bms_alarm_and_grid_frequency() {
    let mut bench = common::start(60.0, "").await;
    bench.wait_running().await;

    bench.sim.state().site.bms_alarm = true;
    bench.wait_error("BMS_ALARM", 10, ErrorFlag::BmsAlarm).await;
    // The alarm is gone in the BMS once AlmRst is written; the reset clears it and is accepted.
    bench.sim.state().site.bms_alarm = false;
    let ok = bench.reset_error("r1").await;
    assert_eq!(ok.status, AnswerStatus::Accepted, "{ok:?}");

    bench.sim.state().site.grid_frequency_hz = 52.3;
    bench
        .wait_error("GRID_FAULT", 10, ErrorFlag::GridFault)
        .await;
    let refused = bench.reset_error("r2").await;
    assert_eq!(refused.status, AnswerStatus::Rejected);
    bench.sim.state().site.grid_frequency_hz = 50.0;
    let ok = bench.reset_error("r3").await;
    assert_eq!(ok.status, AnswerStatus::Accepted, "{ok:?}");
    bench.agent.stop().await;
}
