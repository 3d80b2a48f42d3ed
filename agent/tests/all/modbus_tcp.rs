//! The agent against ems-sim's Modbus TCP gateway (real MBAP frames on a real socket, the real
//! sunspec and sdm630 plugins): telemetry follows the simulated physics, a MANUAL_DISCHARGE
//! setpoint reaches the inverter, a gateway that goes down or hangs gives COMM_LOSS and the agent
//! reconnects when it is back (RESET_ERROR then clears the latched fault), and a silent unit behind the gateway (exception 0x0B) is a lost
//! device, not a device without registers.

use crate::common;

use common::{Bench, ModbusLink};
use ems_agent::bus::BusStats;
use ems_protocol::{AnswerStatus, ErrorFlag, State};
use ems_sim::tcp::Gateway;

async fn start(initial_soc: f64) -> Bench {
    let mut bench = common::start_with(
        tempfile::tempdir().unwrap(),
        initial_soc,
        ModbusLink::Tcp,
        "",
    )
    .await;
    bench
        .wait_status("running", 15, |s| {
            s.telemetry.system_status.state != State::Starting && s.telemetry.battery.soc.is_some()
        })
        .await;
    bench
}

fn comm_loss(s: &ems_agent::run::Status) -> bool {
    s.telemetry
        .system_status
        .error_flags
        .contains(&ErrorFlag::CommLoss)
}

fn gateway_stats(bench: &Bench) -> BusStats {
    bench.agent.buses["gateway"].stats()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_modbus_tcp_matches_the_simulated_physics() {
    let mut bench = start(60.0).await;
    let status = bench
        .wait_status("a packet with grid values", 10, |s| {
            s.telemetry.grid.power.is_some()
        })
        .await;
    let t = &status.telemetry;
    bench.assert_matches_sim(t);
    let (line, tcp) = {
        let s = bench.sim.state();
        (s.stats.clone(), s.tcp_stats.clone())
    };
    // Everything came over TCP: the RS-485 line saw nothing, one connection served both units.
    assert_eq!(line.requests, 0, "{line:?}");
    assert_eq!(tcp.connections, 1, "{tcp:?}");
    assert!(tcp.responses > 0 && tcp.malformed == 0, "{tcp:?}");
    let stats = gateway_stats(&bench);
    for unit in [1, 2] {
        let c = &stats.by_device[&unit];
        assert!(c.ok > 0 && c.ok == c.requests, "unit {unit}: {c:?}");
    }
    bench.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_discharge_reaches_the_inverter_over_tcp() {
    let mut bench = start(70.0).await;
    bench.discharge_at_500_w("cmd_tcp_1").await;
    let (setpoint, ac) = {
        let s = bench.sim.state();
        (s.site.setpoint_w, s.site.inverter_ac_w)
    };
    assert_eq!(setpoint, -500.0, "the simulated inverter's setpoint");
    assert!((ac + 500.0).abs() < 1.0, "inverter AC {ac} W");
    assert_eq!(bench.sim.state().stats.requests, 0, "nothing on RS-485");
    bench.agent.stop().await;
    assert_eq!(
        bench.sim.state().site.setpoint_w,
        0.0,
        "shutdown commands 0 W first, over TCP too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_down_or_hung_gives_comm_loss_and_the_agent_reconnects() {
    let mut bench = start(60.0).await;
    for (fault, what) in [(Gateway::Down, "down"), (Gateway::Stalled, "hung")] {
        let before = gateway_stats(&bench);
        let connections_before = bench.sim.state().tcp_stats.connections;
        bench.sim.state().gateway.send_replace(fault);
        let s = bench
            .wait_status(&format!("COMM_LOSS with the gateway {what}"), 20, comm_loss)
            .await;
        // Both devices are behind the gateway; COMM_LOSS may show after the first of them.
        let s = if s.lost_devices.len() < 2 {
            bench
                .wait_status("both devices lost", 10, |s| s.lost_devices.len() == 2)
                .await
        } else {
            s
        };
        assert_eq!(s.telemetry.system_status.state, State::Error, "{what}");
        assert_eq!(
            s.lost_devices,
            vec!["grid_meter".to_string(), "inverter".to_string()],
            "{what}"
        );
        assert!(s.telemetry.battery.soc.is_none(), "{what}: SoC is unknown");
        let during = gateway_stats(&bench);
        match fault {
            // Connections closed, then refused: transport errors.
            Gateway::Down => assert!(
                during.total.other_errors > before.total.other_errors,
                "{before:?} -> {during:?}"
            ),
            // Connected but never answered: the agent's own timeout.
            _ => assert!(
                during.total.timeouts > before.total.timeouts,
                "{before:?} -> {during:?}"
            ),
        }

        bench.sim.state().gateway.send_replace(Gateway::Up);
        bench
            .wait_status(&format!("both devices back after {what}"), 20, |s| {
                s.lost_devices.is_empty() && s.telemetry.battery.soc.is_some()
            })
            .await;
        // COMM_LOSS is latched (like every fault) until RESET_ERROR, which is refused while a
        // fault is still active: accepted, it proves the devices really answer again.
        let answer = bench.reset_error(&format!("reset_after_{what}")).await;
        assert_eq!(answer.status, AnswerStatus::Accepted, "{what}: {answer:?}");
        bench
            .wait_status(&format!("out of ERROR after {what}"), 10, |s| {
                s.telemetry.system_status.state != State::Error && !comm_loss(s)
            })
            .await;
        let connections = bench.sim.state().tcp_stats.connections;
        assert!(
            connections > connections_before,
            "{what}: no new connection ({connections_before} -> {connections})"
        );
        let after = gateway_stats(&bench);
        assert!(
            after.total.ok > during.total.ok,
            "{what}: {during:?} -> {after:?}"
        );
    }
    bench.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_unit_behind_the_gateway_is_a_lost_device() {
    let mut bench = start(60.0).await;
    // The gateway answers for the silent meter with exception 0x0B; the agent must read that as
    // the meter's silence, not as "these registers do not exist" (which would give a meter
    // without values and no COMM_LOSS).
    bench.sim.state().silent_units.insert(2);
    let s = bench
        .wait_status("COMM_LOSS for the meter", 15, comm_loss)
        .await;
    assert_eq!(s.lost_devices, vec!["grid_meter".to_string()]);
    assert!(
        s.telemetry.battery.soc.is_some(),
        "the inverter still reads"
    );
    let stats = gateway_stats(&bench);
    let meter = &stats.by_device[&2];
    assert!(meter.timeouts > 0, "{meter:?}");
    assert_eq!(meter.exceptions, 0, "{meter:?}");
    // Same connection throughout: a gateway exception is no reason to reconnect.
    assert_eq!(bench.sim.state().tcp_stats.connections, 1);

    bench.sim.state().silent_units.remove(&2);
    bench
        .wait_status("the meter back", 15, |s| {
            s.lost_devices.is_empty() && s.telemetry.grid.power.is_some()
        })
        .await;
    bench.agent.stop().await;
}
