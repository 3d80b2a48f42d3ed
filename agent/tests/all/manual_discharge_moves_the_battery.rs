//! SET_MODE MANUAL_DISCHARGE 500 W drives the simulated battery down at 500 W; a power over the
//! local limit is refused with the limit named; a repeated command id is not executed twice.

use crate::common;

use ems_protocol::{AnswerStatus, Command, TargetMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_discharge_at_500_w() {
    let mut bench = common::start(70.0, "").await;
    bench.wait_running().await;

    let status = bench.discharge_at_500_w("cmd_1").await;
    // The simulated inverter really delivers 500 W AC and the battery's energy falls.
    let e0 = bench.sim.state().site.energy_wh;
    bench.wait_status("two more seconds", 5, |_| true).await;
    bench.wait_status("two more seconds", 5, |_| true).await;
    let (ac, e1) = {
        let s = bench.sim.state();
        (s.site.inverter_ac_w, s.site.energy_wh)
    };
    assert!((ac + 500.0).abs() < 1.0, "inverter AC {ac} W");
    assert!(e1 < e0, "energy {e0} -> {e1}");
    // Current is negative (discharging) per the spec.
    assert!(status.telemetry.battery.current.unwrap() < 0.0);

    // Over the configured discharge limit (3000 W by default): refused, nothing changes.
    let answer = bench
        .agent
        .command(Command::set_mode(
            "cmd_2",
            TargetMode::ManualDischarge,
            Some(9000.0),
        ))
        .await
        .unwrap();
    assert_eq!(answer.status, AnswerStatus::Rejected);
    assert!(
        answer.reason.as_deref().unwrap().contains("3000"),
        "{answer:?}"
    );

    // The same id again: the same answer, not executed again.
    let again = bench
        .agent
        .command(Command::set_mode("cmd_1", TargetMode::ManualIdle, None))
        .await
        .unwrap();
    assert_eq!(again.status, AnswerStatus::Accepted);
    bench
        .wait_status("still discharging", 5, |s| s.setpoint_w == -500.0)
        .await;
    bench.agent.stop().await;
    assert_eq!(
        bench.sim.state().site.setpoint_w,
        0.0,
        "shutdown commands 0 W first"
    );
}
