//! The inverter's driver sleeps 60 s in a poll: the 1 Hz loop goes on (no second without a
//! packet), the inverter counts as lost once the call overruns its 2 s budget, a fresh instance
//! takes over, and while the old call still sleeps a BMS over-temperature leads to ERROR and
//! 0 W at the inverter within 2 s.

use crate::common;

use std::time::Instant;

use ems_protocol::ErrorFlag;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_sleeps_60_s_does_not_stall_the_loop() {
    let (mut bench, trigger) = common::start_with_faulty_inverter(
        "hang-now",
        r#"fault = "sleep", sleep_s = 60, fault_in = "poll""#,
    )
    .await;
    let inv = bench.device("inverter");
    let seconds = common::record_seconds(bench.agent.status.clone());

    std::fs::write(&trigger, b"").unwrap();
    common::wait_for("the poll to start sleeping", 5.0, || !trigger.exists()).await;
    let hung_at = Instant::now();

    // Past its budget the inverter is lost: ERROR, COMM_LOSS, 0 W.
    bench
        .wait_error("ERROR with COMM_LOSS", 5, ErrorFlag::CommLoss)
        .await;

    // A fresh instance reads the inverter again and the reset is accepted.
    common::wait_for("a fresh instance polling", 10.0, || {
        let slot = inv.snapshot();
        slot.restarts == 1 && slot.outage.is_none()
    })
    .await;
    bench
        .wait_status("a cycle with the inverter back", 3, |s| {
            s.lost_devices.is_empty()
        })
        .await;
    bench.reset_back_to_500_w_discharge("r1").await;

    // The abandoned call is still asleep; an over-temperature is acted on all the same.
    assert!(
        hung_at.elapsed().as_secs() < 50,
        "the scenario took too long to prove anything"
    );
    bench.sim.state().site.temperature_c = 62.0;
    let hot_at = Instant::now();
    bench
        .wait_error("ERROR with OVERHEAT", 2, ErrorFlag::Overheat)
        .await;
    println!(
        "ERROR with OVERHEAT {:.2} s after the over-temperature",
        hot_at.elapsed().as_secs_f64()
    );
    let took = common::wait_for("the inverter at 0 W", 2.0, || {
        bench.sim.state().site.setpoint_w == 0.0
    })
    .await;
    println!(
        "inverter at 0 W {:.2} s after OVERHEAT was reported",
        took.as_secs_f64()
    );

    let seen = seconds.lock().unwrap().clone();
    println!("{} cycles recorded while the driver hung", seen.len());
    assert_eq!(
        common::missing_seconds(&seen),
        Vec::<i64>::new(),
        "the loop skipped seconds"
    );
    assert!(
        hung_at.elapsed().as_secs() < 60,
        "the sleeping call should still be asleep"
    );
    bench.agent.stop().await;
}
