//! The inverter's driver panics once while writing a setpoint: its instance is poisoned, the
//! site goes to ERROR with INVERTER_FAULT at once, a fresh instance is made and the battery is
//! commanded again (0 W) within 5 s; after RESET_ERROR the manual setpoint is back.

use crate::common;

use ems_protocol::ErrorFlag;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_set_power_costs_the_instance_not_the_battery() {
    let (mut bench, trigger) =
        common::start_with_faulty_inverter("panic-now", r#"fault_in = "set_power""#).await;
    let inv = bench.device("inverter");
    assert_eq!(inv.snapshot().restarts, 0);
    assert_eq!(bench.sim.state().site.setpoint_w, -500.0);

    std::fs::write(&trigger, b"").unwrap();
    common::wait_for("the driver to panic", 5.0, || !trigger.exists()).await;
    let writes_before = inv.snapshot().writes_ok;

    // ERROR with the flag that says why, in the very next cycle.
    bench
        .wait_error("ERROR with INVERTER_FAULT", 3, ErrorFlag::InverterFault)
        .await;

    // A fresh instance writes 0 W to the inverter.
    let took = common::wait_for("a fresh instance to write 0 W", 5.0, || {
        let slot = inv.snapshot();
        slot.restarts == 1
            && slot.writes_ok > writes_before
            && bench.sim.state().site.setpoint_w == 0.0
    })
    .await;
    println!(
        "battery commanded again {:.2} s after the panic",
        took.as_secs_f64()
    );

    // Latched until reset; the reset is accepted because the driver works again.
    bench.reset_back_to_500_w_discharge("r1").await;
    assert_eq!(inv.snapshot().restarts, 1);
    bench.agent.stop().await;
}
