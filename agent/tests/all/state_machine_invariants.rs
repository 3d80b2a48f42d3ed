//! Property tests over random measurement and command sequences: the safety invariants of the
//! battery state machine hold whatever the site and the operator do.
//!
//! - never charge at or above SoC max, never discharge at or below SoC min;
//! - never exceed the configured power limits, nor the BMS-allowed current × voltage;
//! - 0 W in ERROR, and ERROR in the very step a fault appears;
//! - no way out of ERROR except a successful RESET_ERROR, which needs all faults gone;
//! - a manual mode with a lease is AUTO from the first step at or after its end, ERROR or not.

use ems_agent::control::{Controller, Limits, Measurements};
use ems_protocol::{ErrorFlag, State, TargetMode};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    Measure(Measurements),
    /// Mode, power, lease length in s.
    SetMode(TargetMode, Option<f64>, Option<f64>),
    Reset,
    Link(bool),
}

fn measurements() -> impl Strategy<Value = Measurements> {
    let soc = prop_oneof![10 => (0.0..=100.0f64).prop_map(Some), 1 => Just(None)];
    let flags = proptest::collection::vec(
        prop_oneof![
            Just(ErrorFlag::BmsAlarm),
            Just(ErrorFlag::InverterFault),
            Just(ErrorFlag::CommLoss)
        ],
        0..2,
    );
    (
        (
            soc,
            prop_oneof![10 => (40.0..60.0f64).prop_map(Some), 1 => Just(None)],
        ),
        (-200.0..200.0f64, -30.0..70.0f64),
        (
            proptest::option::of(0.0..120.0f64),
            proptest::option::of(0.0..120.0f64),
        ),
        (
            proptest::option::of(-8000.0..8000.0f64),
            proptest::option::of(46.0..53.0f64),
        ),
        prop_oneof![8 => Just(vec![]), 1 => flags],
    )
        .prop_map(
            |((soc, v), (i, t), (bmc, bmd), (grid, freq), flags)| Measurements {
                battery_voltage_v: v,
                battery_current_a: Some(i),
                battery_power_w: v.map(|v| v * i),
                battery_soc_pct: soc,
                battery_temperature_c: Some(t),
                bms_max_charge_current_a: bmc,
                bms_max_discharge_current_a: bmd,
                grid_voltage_v: Some(230.0),
                grid_power_w: grid,
                grid_frequency_hz: freq,
                device_flags: flags,
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => measurements().prop_map(Event::Measure),
        2 => (
            proptest::sample::select(TargetMode::ALL.to_vec()),
            proptest::option::of(-100.0..10_000.0f64),
            proptest::option::of(0.5..10.0f64),
        )
            .prop_map(|(m, p, lease)| Event::SetMode(m, p, lease)),
        1 => Just(Event::Reset),
        1 => any::<bool>().prop_map(Event::Link),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn safety_invariants_hold(events in proptest::collection::vec(event(), 1..80)) {
        let limits = Limits::default();
        let b = limits.battery.clone();
        let mut c = Controller::new(limits);
        let mut now = 0.0;
        let mut last_m = Measurements::default();
        let mut link = true;
        // When the lease of the mode last accepted ends.
        let mut lease_end: Option<f64> = None;
        for ev in events {
            match ev {
                Event::Measure(m) => last_m = m,
                Event::SetMode(mode, p, lease) => {
                    let until = lease.map(|l| now + l);
                    if c.set_mode_until(mode, p, until).is_ok() {
                        lease_end = until;
                    }
                }
                Event::Reset => {
                    let before = c.state();
                    let result = c.reset_error();
                    if before == State::Error && result.is_ok() {
                        prop_assert_ne!(c.state(), State::Error);
                    }
                    if before == State::Error {
                        // Accepted only if the last step saw no fault.
                        let faults_now = ems_agent::control::faults::detect(&last_m, c.limits());
                        if !faults_now.is_empty() {
                            prop_assert!(result.is_err(), "reset accepted with {:?}", faults_now);
                        }
                    }
                    continue;
                }
                Event::Link(up) => link = up,
            }
            let was_error = c.state() == State::Error;
            now += 1.0;
            let d = c.step(now, &last_m, link);
            let faults = ems_agent::control::faults::detect(&last_m, c.limits());

            // A lease that has ended leaves AUTO behind, whatever else happens.
            if lease_end.is_some_and(|end| now >= end) {
                prop_assert_eq!(d.mode, TargetMode::Auto);
                lease_end = None;
            }

            // ERROR in the same step as the fault, with 0 W.
            if !faults.is_empty() {
                prop_assert_eq!(d.state, State::Error);
            }
            if d.state == State::Error {
                prop_assert_eq!(d.setpoint_w, 0.0);
            }
            // Latched: a step alone never leaves ERROR.
            if was_error {
                prop_assert_eq!(d.state, State::Error);
            }
            // SoC limits.
            if let Some(soc) = last_m.battery_soc_pct {
                if soc >= b.soc_max_pct { prop_assert!(d.setpoint_w <= 0.0, "charging at {soc}%: {}", d.setpoint_w); }
                if soc <= b.soc_min_pct { prop_assert!(d.setpoint_w >= 0.0, "discharging at {soc}%: {}", d.setpoint_w); }
            }
            // Power limits: configured, and BMS current × voltage.
            prop_assert!(d.setpoint_w <= b.max_charge_power_w + 1e-9);
            prop_assert!(-d.setpoint_w <= b.max_discharge_power_w + 1e-9);
            if let (Some(v), Some(i)) = (last_m.battery_voltage_v, last_m.bms_max_charge_current_a) {
                prop_assert!(d.setpoint_w <= v * i + 1e-9);
            }
            if let (Some(v), Some(i)) = (last_m.battery_voltage_v, last_m.bms_max_discharge_current_a) {
                prop_assert!(-d.setpoint_w <= v * i + 1e-9);
            }
            // Temperature and voltage windows.
            if last_m.battery_temperature_c.is_some_and(|t| t < b.charge_temperature_min_c) {
                prop_assert!(d.setpoint_w <= 0.0);
            }
            if last_m.battery_voltage_v.is_some_and(|v| v >= b.charge_voltage_max_v) {
                prop_assert!(d.setpoint_w <= 0.0);
            }
            if last_m.battery_voltage_v.is_some_and(|v| v <= b.discharge_voltage_min_v) {
                prop_assert!(d.setpoint_w >= 0.0);
            }
        }
    }
}
