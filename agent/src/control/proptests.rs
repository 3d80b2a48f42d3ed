//! Property tests of AUTO's strategy stack over random sequences of measurements, commands,
//! strategies, schedule actions and step lengths: the machine's safety invariants still hold
//! with every strategy, and each layer of the precedence does its job.
//!
//! "Headroom", precisely: the battery power the hard limits and the layers above the one being
//! checked still allow this step, i.e.
//! - to charge: `battery.max_charge_power_w`, the BMS's charge current × voltage, 0 at or above
//!   `charge_voltage_max_v`, below `charge_temperature_min_c` or while FULL (mirrored here from
//!   the SoC with its hysteresis);
//! - to discharge: the same on the discharge side (EMPTY, `discharge_voltage_min_v`), and 0 when
//!   a layer above the limits forbids discharging: SoC at or below the backup reserve, charging
//!   back to it, or a schedule that holds.
//!
//! "Predicted grid": the grid power once the battery has gone from its measured power to the new
//! setpoint with load and PV as measured, `grid + (setpoint − battery reading)`. The export
//! (import) limit property: whenever the measured grid is beyond the limit and no fixed-power
//! schedule outranks the limit, the new setpoint's predicted grid is within the limit, or the
//! setpoint uses all the headroom.

use ems_protocol::{ErrorFlag, State, TargetMode};
use proptest::prelude::*;

use super::Strategy as AutoStrategy;
use super::{BatteryLimits, Controller, Limits, Measurements, ScheduleAction, faults};

#[derive(Debug, Clone)]
enum Event {
    Measure(Measurements),
    SetMode(TargetMode, Option<f64>),
    Schedule(Option<ScheduleAction>),
    Reset,
    /// Seconds to the next step.
    Wait(f64),
}

fn measurements() -> impl Strategy<Value = Measurements> {
    let soc = prop_oneof![10 => (0.0..=100.0f64).prop_map(Some), 1 => Just(None)];
    (
        (
            soc,
            prop_oneof![12 => (44.0..58.0f64).prop_map(Some), 1 => Just(None)],
        ),
        (
            -80.0..80.0f64,
            prop_oneof![12 => Just(25.0), 1 => -30.0..70.0f64],
        ),
        (
            prop_oneof![3 => Just(None), 1 => (0.0..120.0f64).prop_map(Some)],
            prop_oneof![3 => Just(None), 1 => (0.0..120.0f64).prop_map(Some)],
        ),
        prop_oneof![10 => (-9000.0..9000.0f64).prop_map(Some), 1 => Just(None)],
        prop_oneof![20 => Just(vec![]), 1 => Just(vec![ErrorFlag::InverterFault])],
    )
        .prop_map(|((soc, v), (i, t), (bmc, bmd), grid, flags)| Measurements {
            battery_voltage_v: v,
            battery_current_a: Some(i),
            battery_power_w: v.map(|v| v * i),
            battery_soc_pct: soc,
            battery_temperature_c: Some(t),
            bms_max_charge_current_a: bmc,
            bms_max_discharge_current_a: bmd,
            grid_voltage_v: Some(230.0),
            grid_power_w: grid,
            grid_frequency_hz: Some(50.0),
            device_flags: flags,
        })
}

fn strategy() -> impl Strategy<Value = AutoStrategy> {
    (
        proptest::option::of(0.0..5000.0f64),
        proptest::option::of((500.0..8000.0f64, -1000.0..400.0f64)),
        proptest::option::of((15.0..80.0f64, 1.0..4.0f64)),
        -300.0..300.0f64,
    )
        .prop_map(|(export, import, reserve, target)| {
            let mut s = AutoStrategy {
                export_limit_w: export,
                ..AutoStrategy::default()
            };
            match import {
                Some((limit, recharge)) => {
                    s.import_limit_w = Some(limit);
                    s.recharge_below_w = recharge;
                }
                None => s.target_grid_w = target.max(-export.unwrap_or(f64::MAX)),
            }
            if let Some((r, h)) = reserve {
                s.backup_reserve_pct = Some(r);
                s.reserve_hysteresis_pct = h;
            }
            s
        })
}

fn schedule() -> impl Strategy<Value = Option<ScheduleAction>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(ScheduleAction::Hold)),
        1 => (100.0..3000.0f64, 0.0..100.0f64, any::<bool>()).prop_map(|(p, soc, g)| Some(
            ScheduleAction::Charge { power_w: p, to_soc_pct: soc, from_grid: g }
        )),
        1 => (100.0..3000.0f64, 0.0..100.0f64).prop_map(|(p, soc)| Some(
            ScheduleAction::Discharge { power_w: p, down_to_soc_pct: soc }
        )),
        1 => strategy().prop_map(|s| Some(ScheduleAction::Strategy(s))),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => measurements().prop_map(Event::Measure),
        1 => (
            proptest::sample::select(TargetMode::ALL.to_vec()),
            proptest::option::of(0.0..3000.0f64),
        )
            .prop_map(|(m, p)| Event::SetMode(m, p)),
        2 => schedule().prop_map(Event::Schedule),
        1 => Just(Event::Reset),
        3 => proptest::sample::select(vec![0.3, 1.0, 1.7, 3.0]).prop_map(Event::Wait),
    ]
}

/// The FULL and EMPTY latches as the machine keeps them.
#[derive(Default)]
struct Latches {
    full: bool,
    empty: bool,
}

impl Latches {
    fn update(&mut self, soc: f64, b: &BatteryLimits) {
        if soc >= b.soc_max_pct {
            self.full = true;
        } else if soc <= b.soc_max_pct - b.soc_hysteresis_pct {
            self.full = false;
        }
        if soc <= b.soc_min_pct {
            self.empty = true;
        } else if soc >= b.soc_min_pct + b.soc_hysteresis_pct {
            self.empty = false;
        }
    }
}

/// The hard limits' (charge, discharge) headroom, W.
fn hard_headroom(m: &Measurements, b: &BatteryLimits, latches: &Latches) -> (f64, f64) {
    let v = m.battery_voltage_v.expect("no fault: voltage known");
    let mut charge = b.max_charge_power_w;
    let mut discharge = b.max_discharge_power_w;
    if let Some(i) = m.bms_max_charge_current_a {
        charge = charge.min(i * v);
    }
    if let Some(i) = m.bms_max_discharge_current_a {
        discharge = discharge.min(i * v);
    }
    if v >= b.charge_voltage_max_v
        || latches.full
        || m.battery_temperature_c
            .is_some_and(|t| t < b.charge_temperature_min_c)
    {
        charge = 0.0;
    }
    if v <= b.discharge_voltage_min_v || latches.empty {
        discharge = 0.0;
    }
    (charge, discharge)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 768, ..ProptestConfig::default() })]

    #[test]
    fn the_stack_keeps_its_order_of_precedence(
        configured in strategy(),
        events in proptest::collection::vec(event(), 1..120),
    ) {
        let limits = Limits { strategy: configured, ..Limits::default() };
        let b = limits.battery.clone();
        prop_assume!(limits.strategy.check(&b).is_ok());
        let mut c = Controller::new(limits.clone());
        let mut latches = Latches::default();
        let mut now = 0.0;
        let mut m = Measurements::default();
        let mut last_step: Option<f64> = None;
        for ev in events {
            match ev {
                Event::Measure(next) => m = next,
                Event::SetMode(mode, p) => { let _ = c.set_mode(mode, p); }
                Event::Schedule(a) => {
                    let valid = a.as_ref().is_none_or(|a| a.check(&b).is_ok());
                    prop_assert_eq!(c.set_schedule_action(a).is_ok(), valid);
                }
                Event::Reset => { let _ = c.reset_error(); continue; }
                Event::Wait(dt) => { now += dt; continue; }
            }
            now += 1.0;
            let last_setpoint = c.setpoint_w();
            let previous_step = last_step.replace(now);
            let d = c.step(now, &m, true);
            let fault = !faults::detect(&m, c.limits()).is_empty();

            // The machine's invariants, with any strategy and schedule.
            if fault { prop_assert_eq!(d.state, State::Error); }
            if d.state == State::Error { prop_assert_eq!(d.setpoint_w, 0.0); continue; }
            let soc = m.battery_soc_pct.expect("no fault: SoC known");
            latches.update(soc, &b);
            let (charge_room, discharge_room) = hard_headroom(&m, &b, &latches);
            prop_assert!(d.setpoint_w <= charge_room + 1e-6, "{} > {charge_room}", d.setpoint_w);
            prop_assert!(-d.setpoint_w <= discharge_room + 1e-6, "{} < -{discharge_room}", d.setpoint_w);
            if d.mode != TargetMode::Auto { continue; }

            // Which layers are in force this step.
            let action = c.schedule_action().cloned();
            let strategy = match &action {
                Some(ScheduleAction::Strategy(s)) => s.clone(),
                _ => limits.strategy.clone(),
            };
            let fixed = match &action {
                Some(ScheduleAction::Charge { to_soc_pct, .. }) => soc < *to_soc_pct,
                Some(ScheduleAction::Discharge { down_to_soc_pct, .. }) => soc > *down_to_soc_pct,
                _ => false,
            };
            let holds = !fixed && matches!(
                action,
                Some(ScheduleAction::Hold | ScheduleAction::Charge { .. } | ScheduleAction::Discharge { .. })
            );
            let reserve = limits.strategy.backup_reserve_pct;
            let at_reserve = reserve.is_some_and(|r| soc <= r);

            // Reserve (outranks schedule and limits): no discharge at or below it; charging
            // back below it − hysteresis, at the configured power (ramped, within headroom).
            if at_reserve || c.reserve_charging() {
                prop_assert!(d.setpoint_w >= -1e-9, "discharging at the reserve: {}", d.setpoint_w);
            }
            if c.reserve_charging() {
                let p = limits.strategy.reserve_charge_power_w;
                let dt = previous_step.map_or(0.0, |t| now - t);
                let floor = last_setpoint + (p - last_setpoint).min(limits.control.ramp_w_per_s * dt);
                prop_assert!(
                    d.setpoint_w >= floor.min(p).min(charge_room) - 1e-6,
                    "reserve charge {} below {}", d.setpoint_w, floor.min(p).min(charge_room)
                );
            }
            // Schedule: a hold never discharges; a fixed charge never discharges; a fixed
            // discharge never charges unless the reserve makes it.
            if holds || (fixed && matches!(action, Some(ScheduleAction::Charge { .. }))) {
                prop_assert!(d.setpoint_w >= -1e-9, "discharging under {action:?}: {}", d.setpoint_w);
            }
            if fixed && matches!(action, Some(ScheduleAction::Discharge { .. })) && !c.reserve_charging() {
                prop_assert!(d.setpoint_w <= 1e-9, "charging under {action:?}: {}", d.setpoint_w);
            }
            // Limits: beyond a limit, the new setpoint brings the predicted grid back within it
            // or uses all the headroom (unless a fixed schedule outranks the limit).
            if fixed { continue; }
            let (Some(grid), Some(battery)) = (m.grid_power_w, m.battery_power_w) else { continue };
            let predicted = grid + d.setpoint_w - battery;
            if let Some(e) = strategy.export_limit_w && grid < -e {
                prop_assert!(
                    predicted >= -e - 1e-6 || d.setpoint_w >= charge_room - 1e-6,
                    "export {predicted} past -{e} with {} W of {charge_room} W", d.setpoint_w
                );
            }
            // Charging back to the reserve outranks the import limit (checked above).
            if let Some(i) = strategy.import_limit_w && grid > i && !c.reserve_charging() {
                let room = if at_reserve || holds { 0.0 } else { discharge_room };
                prop_assert!(
                    predicted <= i + 1e-6 || d.setpoint_w <= -room + 1e-6,
                    "import {predicted} past {i} with {} W of -{room} W", d.setpoint_w
                );
            }
        }
    }

    /// The law alone: with the battery following its setpoint and a net load that steps twice,
    /// a second apart (the second inside the measurement hold of the first), AUTO ends within
    /// the deadband of its band and stays there (no limit cycle), whatever the strategy's band,
    /// the steps and the starting point.
    #[test]
    fn auto_settles_into_its_band_and_stays(
        configured in strategy(),
        net_loads in (-6000.0..6000.0f64, -6000.0..6000.0f64, -6000.0..6000.0f64),
        start in -3000.0..3000.0f64,
    ) {
        let mut configured = configured;
        configured.backup_reserve_pct = None;
        let limits = Limits { strategy: configured, ..Limits::default() };
        prop_assume!(limits.strategy.check(&limits.battery).is_ok());
        let band = limits.strategy.band(limits.control.deadband_w);
        let db = limits.control.deadband_w;
        let mut c = Controller::new(limits.clone());
        let mut battery = start.clamp(-3000.0, 3000.0);
        let mut setpoints = Vec::new();
        let (before, between, after) = net_loads;
        for t in 0..90 {
            let net_load = match t {
                ..30 => before,
                30 => between,
                _ => after,
            };
            let grid = net_load + battery;
            let m = Measurements {
                battery_voltage_v: Some(52.0),
                battery_current_a: Some(battery / 52.0),
                battery_power_w: Some(battery),
                battery_soc_pct: Some(50.0),
                battery_temperature_c: Some(25.0),
                grid_voltage_v: Some(230.0),
                grid_power_w: Some(grid),
                grid_frequency_hz: Some(50.0),
                ..Measurements::default()
            };
            let d = c.step(t as f64, &m, true);
            // The battery follows within the step (the meter sees it at the next).
            battery = d.setpoint_w;
            setpoints.push(d.setpoint_w);
        }
        let grid = after + battery;
        let at_limit = battery.abs() >= 3000.0 - 1e-6;
        prop_assert!(
            at_limit || (grid >= band.low_w - db - 1e-6 && grid <= band.high_w + db + 1e-6),
            "grid {grid} outside {band:?} ± {db} with the battery at {battery}"
        );
        // At rest for the last 20 steps: no oscillation.
        let tail = &setpoints[70..];
        prop_assert!(tail.iter().all(|s| (s - tail[0]).abs() < 1e-9), "{tail:?}");
    }
}
