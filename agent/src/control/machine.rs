//! The battery state machine.
//!
//! Each cycle the loop calls [`Controller::step`] with the latest measurements and the time; it
//! returns the state and the battery setpoint (W, + = charge) to write to the inverter. Commands
//! go through [`Controller::set_mode`] and [`Controller::reset_error`], which either apply or
//! return a [`Rejection`] that says why.
//!
//! A manual mode may hold on a lease (`SET_MODE` with `duration_s`): it ends at a time on the
//! same clock as [`Controller::step`]'s `now_s`, which the loop takes from a monotonic clock, so
//! a wall-clock step neither ends nor extends it. The first step at or after that time returns
//! to AUTO, before anything else, in ERROR too: a reset never brings back a lapsed lease.
//!
//! Order of precedence in a step, highest first:
//! 1. a fault (detected now, or latched earlier) → ERROR, 0 W, in the same step;
//! 2. hard limits: SoC min/max with hysteresis, voltage and temperature windows, configured
//!    and BMS-allowed power; a limit cuts the setpoint at once, without ramping;
//! 3. the mode's wish: the manual target, ramped; or AUTO's strategy stack
//!    ([`super::auto`]), itself in this order, highest first:
//!    1. the backup reserve (no discharge at or below it, charging back below it − hysteresis);
//!    2. the schedule window's action ([`Controller::set_schedule_action`]);
//!    3. the import and export limits;
//!    4. the target grid power.
//!
//! So: faults > hard limits > reserve > schedule > import/export limits > target.

use std::collections::BTreeSet;

use ems_protocol::{ErrorFlag, Mode, State, TargetMode};

use super::auto::{Auto, Inputs};
use super::faults;
use super::limits::Limits;
use super::strategy::ScheduleAction;

/// One cycle's inputs, in SI units; `None` is unknown (a device not answering), never zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurements {
    pub battery_voltage_v: Option<f64>,
    /// + = charging.
    pub battery_current_a: Option<f64>,
    /// + = charging.
    pub battery_power_w: Option<f64>,
    pub battery_soc_pct: Option<f64>,
    /// Hottest sensor.
    pub battery_temperature_c: Option<f64>,
    /// Charge current the BMS allows now, A.
    pub bms_max_charge_current_a: Option<f64>,
    /// Discharge current the BMS allows now, A (magnitude).
    pub bms_max_discharge_current_a: Option<f64>,
    pub grid_voltage_v: Option<f64>,
    /// + = importing, − = exporting.
    pub grid_power_w: Option<f64>,
    pub grid_frequency_hz: Option<f64>,
    /// Flags raised by the devices or by the loop: BMS_ALARM, INVERTER_FAULT, COMM_LOSS, …
    pub device_flags: Vec<ErrorFlag>,
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub state: State,
    /// Battery power to command, W, + = charge.
    pub setpoint_w: f64,
    /// Active and latched faults.
    pub error_flags: Vec<ErrorFlag>,
    pub mode: TargetMode,
    /// The mode changed this step by the link-loss fallback.
    pub fell_back_to_auto: bool,
    /// The manual mode whose lease ended this step (the mode is AUTO now).
    pub lease_ended: Option<TargetMode>,
}

/// Why a command was not applied; sent to the cloud as the REJECTED reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

#[derive(Debug, Clone)]
pub struct Controller {
    limits: Limits,
    state: State,
    mode: TargetMode,
    /// Manual target magnitude, W.
    manual_power_w: f64,
    /// Last commanded setpoint, W, + = charge; the base for ramping.
    setpoint_w: f64,
    /// Flags that caused (or joined) the current ERROR; kept until a successful reset.
    latched: BTreeSet<ErrorFlag>,
    /// Faults present in the latest measurements.
    active: BTreeSet<ErrorFlag>,
    full: bool,
    empty: bool,
    last_step_s: Option<f64>,
    link_down_since_s: Option<f64>,
    /// When the manual mode's lease ends, on the clock of `step`'s `now_s`; `None`: no lease
    /// (AUTO, or a manual mode set without one).
    lease_until_s: Option<f64>,
    /// AUTO's memory: its goal, when the setpoint last changed, the reserve latch, the schedule.
    auto: Auto,
}

impl Controller {
    /// A controller after start-up: STARTING, AUTO, 0 W.
    pub fn new(limits: Limits) -> Self {
        Controller {
            limits,
            state: State::Starting,
            mode: TargetMode::Auto,
            manual_power_w: 0.0,
            setpoint_w: 0.0,
            latched: BTreeSet::new(),
            active: BTreeSet::new(),
            full: false,
            empty: false,
            last_step_s: None,
            link_down_since_s: None,
            lease_until_s: None,
            auto: Auto::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn mode(&self) -> TargetMode {
        self.mode
    }

    pub fn telemetry_mode(&self) -> Mode {
        self.mode.telemetry_mode()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The setpoint commanded by the last step, W (+ = charge).
    pub fn setpoint_w(&self) -> f64 {
        self.setpoint_w
    }

    /// Active and latched faults, sorted.
    pub fn error_flags(&self) -> Vec<ErrorFlag> {
        self.latched.union(&self.active).cloned().collect()
    }

    /// When the current manual mode's lease ends (on the clock of `step`), if it has one.
    pub fn lease_until_s(&self) -> Option<f64> {
        self.lease_until_s
    }

    /// `SET_MODE` without a lease: the mode holds until the next `SET_MODE` (and any lease the
    /// previous mode had is gone). See [`Controller::set_mode_until`].
    pub fn set_mode(&mut self, mode: TargetMode, power_w: Option<f64>) -> Result<(), Rejection> {
        self.set_mode_until(mode, power_w, None)
    }

    /// `SET_MODE`: validated against the local limits; the mode applies from the next step.
    /// Accepted in ERROR too (it takes effect after a reset), the battery stays at 0 W.
    /// `lease_until_s` (on the clock of `step`'s `now_s`) ends a manual mode: from then on the
    /// mode is AUTO. It replaces the previous mode's lease, or clears it when `None`.
    pub fn set_mode_until(
        &mut self,
        mode: TargetMode,
        power_w: Option<f64>,
        lease_until_s: Option<f64>,
    ) -> Result<(), Rejection> {
        if mode == TargetMode::Auto && lease_until_s.is_some() {
            return Err(Rejection(
                "duration_s is not used by AUTO; a lease returns a manual mode to AUTO".into(),
            ));
        }
        if lease_until_s.is_some_and(|t| !t.is_finite()) {
            return Err(Rejection("the lease must end at a finite time".into()));
        }
        let b = &self.limits.battery;
        let power = match (mode.needs_power(), power_w) {
            (true, None) => return Err(Rejection(format!("target_power is required for {mode}"))),
            (false, Some(_)) => {
                return Err(Rejection(format!("target_power is not used by {mode}")));
            }
            (false, None) => 0.0,
            (true, Some(p)) if !p.is_finite() || p < 0.0 => {
                return Err(Rejection(format!(
                    "target_power {p} W must be a finite magnitude >= 0"
                )));
            }
            (true, Some(p)) => p,
        };
        match mode {
            TargetMode::ManualCharge if power > b.max_charge_power_w => {
                return Err(Rejection(format!(
                    "target_power {power} W is above the charge limit of {} W",
                    b.max_charge_power_w
                )));
            }
            TargetMode::ManualDischarge if power > b.max_discharge_power_w => {
                return Err(Rejection(format!(
                    "target_power {power} W is above the discharge limit of {} W",
                    b.max_discharge_power_w
                )));
            }
            _ => {}
        }
        if mode != self.mode {
            self.auto.restart();
        }
        self.mode = mode;
        self.manual_power_w = power;
        self.lease_until_s = lease_until_s;
        Ok(())
    }

    /// The action of the schedule window in force (`None`: no window), for AUTO from the next
    /// step on; validated against the hard limits. It ranks below the backup reserve and above
    /// the import/export limits (see the module doc). Manual modes ignore it.
    ///
    /// The agent's loop calls it when a stored `SET_SCHEDULE` window opens or closes
    /// (`crate::run`); the day runner (`examples/day.rs`) calls it directly.
    pub fn set_schedule_action(&mut self, action: Option<ScheduleAction>) -> Result<(), Rejection> {
        if let Some(a) = &action {
            a.check(&self.limits.battery).map_err(Rejection)?;
        }
        self.auto.set_schedule(action);
        Ok(())
    }

    /// The schedule action in force, if any.
    pub fn schedule_action(&self) -> Option<&ScheduleAction> {
        self.auto.schedule()
    }

    /// Whether AUTO is charging the battery back up to the backup reserve.
    pub fn reserve_charging(&self) -> bool {
        self.auto.reserve_charging()
    }

    /// `RESET_ERROR`: leaves ERROR only when no fault remains in the latest measurements;
    /// otherwise refused, naming the active flags. Outside ERROR it is a no-op that succeeds.
    pub fn reset_error(&mut self) -> Result<(), Rejection> {
        if self.state != State::Error {
            return Ok(());
        }
        if !self.active.is_empty() {
            let names: Vec<&str> = self.active.iter().map(ErrorFlag::as_str).collect();
            return Err(Rejection(format!(
                "fault still active: {}",
                names.join(", ")
            )));
        }
        self.latched.clear();
        self.state = State::Idle;
        self.setpoint_w = 0.0;
        Ok(())
    }

    /// One control cycle at time `now_s` (monotonic seconds). `link_up` is the cloud link.
    pub fn step(&mut self, now_s: f64, m: &Measurements, link_up: bool) -> Decision {
        let dt = match self.last_step_s {
            Some(last) if now_s > last => now_s - last,
            _ => 0.0,
        };
        self.last_step_s = Some(now_s);
        let lease_ended = self.expire_lease(now_s);
        let fell_back = self.apply_link_fallback(now_s, link_up);

        self.active = faults::detect(m, &self.limits);
        if !self.active.is_empty() || self.state == State::Error {
            self.latched.extend(self.active.iter().cloned());
            self.state = State::Error;
            self.auto.note_setpoint(now_s, self.setpoint_w, 0.0);
            self.setpoint_w = 0.0;
            self.auto.restart();
            return self.decision(fell_back, lease_ended);
        }

        // No fault: SoC and voltage are known (faults::detect flags them otherwise).
        let soc = m.battery_soc_pct.unwrap_or(0.0);
        self.update_soc_latches(soc);
        let last = self.setpoint_w;
        let c = &self.limits.control;
        let wish = match self.mode {
            TargetMode::Auto => self.auto.wish(&Inputs {
                now_s,
                dt_s: dt,
                soc_pct: soc,
                last_w: last,
                m,
                limits: &self.limits,
            }),
            TargetMode::ManualCharge => c.ramp(last, self.manual_power_w, dt),
            TargetMode::ManualDischarge => c.ramp(last, -self.manual_power_w, dt),
            TargetMode::ManualIdle => 0.0,
        };
        let (max_charge, max_discharge) = self.power_window(m);
        self.setpoint_w = wish.clamp(-max_discharge, max_charge);
        self.auto.note_setpoint(now_s, last, self.setpoint_w);

        let idle = self.limits.control.idle_threshold_w;
        self.state = if self.full && self.setpoint_w >= -idle {
            State::Full
        } else if self.empty && self.setpoint_w <= idle {
            State::Empty
        } else if self.setpoint_w > idle {
            State::Charging
        } else if self.setpoint_w < -idle {
            State::Discharging
        } else {
            State::Idle
        };
        self.decision(fell_back, lease_ended)
    }

    /// Ends the manual mode whose lease has run out by `now_s`: the mode becomes AUTO. Returns
    /// the mode that lapsed. [`Controller::step`] calls it first; the loop also calls it in the
    /// cycles where it does not step (devices still starting).
    pub fn expire_lease(&mut self, now_s: f64) -> Option<TargetMode> {
        let until = self.lease_until_s?;
        if now_s < until {
            return None;
        }
        self.lease_until_s = None;
        let lapsed = self.mode;
        self.mode = TargetMode::Auto;
        self.manual_power_w = 0.0;
        self.auto.restart();
        Some(lapsed)
    }

    fn decision(&self, fell_back_to_auto: bool, lease_ended: Option<TargetMode>) -> Decision {
        Decision {
            state: self.state,
            setpoint_w: self.setpoint_w,
            error_flags: self.error_flags(),
            mode: self.mode,
            fell_back_to_auto,
            lease_ended,
        }
    }

    fn apply_link_fallback(&mut self, now_s: f64, link_up: bool) -> bool {
        if link_up {
            self.link_down_since_s = None;
            return false;
        }
        let since = *self.link_down_since_s.get_or_insert(now_s);
        if self.mode != TargetMode::Auto
            && now_s - since >= self.limits.control.manual_fallback_after_s
        {
            self.mode = TargetMode::Auto;
            self.manual_power_w = 0.0;
            self.lease_until_s = None;
            self.auto.restart();
            return true;
        }
        false
    }

    fn update_soc_latches(&mut self, soc: f64) {
        let b = &self.limits.battery;
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

    /// Allowed (charge, discharge) magnitudes in W from config, BMS, SoC, voltage, temperature.
    fn power_window(&self, m: &Measurements) -> (f64, f64) {
        let b = &self.limits.battery;
        let mut charge = b.max_charge_power_w;
        let mut discharge = b.max_discharge_power_w;
        if let Some(v) = m.battery_voltage_v {
            if let Some(i) = m.bms_max_charge_current_a {
                charge = charge.min((i * v).max(0.0));
            }
            if let Some(i) = m.bms_max_discharge_current_a {
                discharge = discharge.min((i * v).max(0.0));
            }
            if v >= b.charge_voltage_max_v {
                charge = 0.0;
            }
            if v <= b.discharge_voltage_min_v {
                discharge = 0.0;
            }
        }
        if m.battery_temperature_c
            .is_some_and(|t| t < b.charge_temperature_min_c)
        {
            charge = 0.0;
        }
        if self.full {
            charge = 0.0;
        }
        if self.empty {
            discharge = 0.0;
        }
        (charge, discharge)
    }
}
