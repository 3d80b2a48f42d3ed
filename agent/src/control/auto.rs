//! AUTO's control law: which battery setpoint the strategy stack wants this step, before the
//! hard limits clamp it (those are the machine's, [`super::machine`]).
//!
//! # The law
//! The grid meter shows `grid = net load + battery` (net load = household load − PV). AUTO is
//! an integral controller in velocity form: the setpoint is the integral state, and each
//! correction moves it by `correction_gain` × the grid's distance from the strategy's band
//! (from the target, for plain self-consumption), i.e. towards
//! [`Strategy::setpoint_for`] the net load `grid − setpoint`. There is no proportional part:
//! the plant has no dynamics of its own beyond its delay, so a P term only slows it (measured:
//! docs/benchmarks.md).
//!
//! What makes it settle instead of ringing against a lagging inverter and a meter that updates
//! once a second:
//! - **measurement hold**: after the setpoint changed, AUTO corrects again only once
//!   `response_time_s` has passed, so it never acts twice on the same error (a grid reading
//!   taken before the battery moved would make it correct the same error again and overshoot;
//!   the old "battery − grid" jump every second did, by pairing a stale grid reading with a
//!   fresh battery reading);
//! - **anti-windup**: the integral state is the clamped setpoint itself, so the hard limits and
//!   the ramp never let a hidden integral run away; and a battery that does not follow its
//!   setpoint (BMS derating, an inverter limit below ours: off by more than the deadband and
//!   10 %) has the next correction start from its measured power instead.
//!
//! The grid reading, not the battery's, drives the corrections: the inverter may report its
//! DC side (SunSpec model 802 does), which differs from the AC power the meter sees by the
//! conversion losses and would bias a law built on `grid − battery` by those 5 %.
//!
//! The deadband: no correction smaller than `deadband_w`. The ramp: increases are limited to
//! `ramp_w_per_s`, moves towards 0 W are immediate (see [`super::ControlSettings::ramp`]).
//!
//! # The stack, lowest first (each layer may override those before it)
//! 1. **target / band** (`[strategy]`): self-consumption towards `target_grid_w`, or the band
//!    of the export and import limits ([`Strategy::band`]), through the law above;
//! 2. **import/export limits**: a measured grid power beyond a limit is corrected at once,
//!    without waiting for the hold and without the ramp, to where the grid would be one
//!    deadband inside the limit: `grid + (setpoint − battery reading)` (the battery reading
//!    tells how much of the last command the grid already shows);
//! 3. **schedule** ([`ScheduleAction`]): a fixed charge or discharge replaces 1 and 2, `Hold`
//!    forbids discharging, `Strategy` replaces the settings of 1 and 2;
//! 4. **backup reserve**: no discharge at or below it; below reserve − hysteresis, charge at
//!    `reserve_charge_power_w` (from the grid too) until the reserve is back.
//!
//! Above them the machine applies the hard limits and then the faults.

use super::limits::Limits;
use super::machine::Measurements;
use super::strategy::{ScheduleAction, Strategy};

/// AUTO's memory between steps.
#[derive(Debug, Clone, Default)]
pub(crate) struct Auto {
    /// Where the feedback is heading (before the ramp and the limits), W; `None` after a mode
    /// change or an ERROR: the next step computes it afresh.
    goal_w: Option<f64>,
    /// When the commanded setpoint last changed, on the clock of `step`.
    changed_at_s: Option<f64>,
    /// Charging back to the backup reserve: set below reserve − hysteresis, cleared at the
    /// reserve.
    reserve_charging: bool,
    /// The active schedule window's action.
    schedule: Option<ScheduleAction>,
}

/// What one AUTO step looks at.
pub(crate) struct Inputs<'a> {
    pub now_s: f64,
    pub dt_s: f64,
    /// Known: the machine is in ERROR (and never asks) when it is not.
    pub soc_pct: f64,
    /// The setpoint commanded last step, W.
    pub last_w: f64,
    pub m: &'a Measurements,
    pub limits: &'a Limits,
}

impl Auto {
    pub fn schedule(&self) -> Option<&ScheduleAction> {
        self.schedule.as_ref()
    }

    pub fn set_schedule(&mut self, action: Option<ScheduleAction>) {
        self.schedule = action;
        self.goal_w = None;
    }

    /// Forget the goal: the mode changed, or the battery went to 0 W for an ERROR.
    pub fn restart(&mut self) {
        self.goal_w = None;
    }

    /// Whether AUTO is charging back to the reserve.
    pub fn reserve_charging(&self) -> bool {
        self.reserve_charging
    }

    /// The machine commanded `new_w` after `old_w` at `now_s`.
    pub fn note_setpoint(&mut self, now_s: f64, old_w: f64, new_w: f64) {
        if (new_w - old_w).abs() > 1e-9 {
            self.changed_at_s = Some(now_s);
        }
    }

    /// The setpoint the stack wants this step, W (+ = charge), before the hard limits.
    pub fn wish(&mut self, i: &Inputs<'_>) -> f64 {
        let c = &i.limits.control;
        let strategy = match &self.schedule {
            Some(ScheduleAction::Strategy(s)) => s.clone(),
            _ => i.limits.strategy.clone(),
        };
        let strategy = &strategy;
        // Net load (load − PV) as the latest readings show it, for the fast paths (PV-only
        // charging, limits being exceeded).
        let battery_w = i.m.battery_power_w.unwrap_or(i.last_w);
        let net_load_w = i.m.grid_power_w.map(|g| g - battery_w);

        // 3. A schedule's fixed power, or the feedback of 1.
        let fixed = match &self.schedule {
            Some(ScheduleAction::Charge {
                power_w,
                to_soc_pct,
                from_grid,
            }) if i.soc_pct < *to_soc_pct => Some(if *from_grid {
                *power_w
            } else {
                // PV surplus only: never more than makes the grid import.
                net_load_w.map_or(0.0, |n| power_w.min((-n).max(0.0)))
            }),
            Some(ScheduleAction::Discharge {
                power_w,
                down_to_soc_pct,
            }) if i.soc_pct > *down_to_soc_pct => Some(-power_w),
            _ => None,
        };
        let mut goal = match fixed {
            Some(w) => w,
            None => self.feedback_goal(i, strategy),
        };
        // A reached CHARGE or DISCHARGE holds, like HOLD.
        let holds = matches!(
            self.schedule,
            Some(
                ScheduleAction::Hold
                    | ScheduleAction::Charge { .. }
                    | ScheduleAction::Discharge { .. }
            )
        ) && fixed.is_none();
        if holds {
            goal = goal.max(0.0);
        }
        // The feedback's goal only: after a fixed power the feedback starts afresh.
        self.goal_w = fixed.is_none().then_some(goal);

        // 4. The reserve, on the goal (so the ramp heads there) and again after the limits.
        // The configured reserve: it outranks schedules, so a schedule's strategy has none.
        let floor = self.reserve_floor(i, &i.limits.strategy);
        let mut w = c.ramp(i.last_w, goal.max(floor.unwrap_or(f64::MIN)), i.dt_s);

        // 2. Limits being exceeded now are corrected at once (not under a fixed schedule).
        if fixed.is_none()
            && let (Some(grid), Some(net)) = (i.m.grid_power_w, net_load_w)
        {
            let ramped = w;
            // To the band's edge, one deadband inside the limit: correcting to the limit
            // itself would leave the grid sitting on it, and meter noise over it half the time.
            let db = c.deadband_w;
            if let Some(e) = strategy.export_limit_w
                && grid < -e
            {
                w = w.max(-e + db - net);
            }
            if let Some(limit) = strategy.import_limit_w
                && grid > limit
            {
                w = w.min(limit - db - net);
            }
            // The correction is the feedback's new goal: the hold it starts must not bring back
            // the goal from before the limit was crossed (that was a limit cycle).
            if w != ramped {
                self.goal_w = Some(w);
            }
        }
        if holds {
            w = w.max(0.0);
        }
        if let Some(floor) = floor {
            // The forced charge ramps up like any increase.
            w = w.max(c.ramp(i.last_w, floor, i.dt_s).min(floor));
        }
        w
    }

    /// Layer 1: the goal of the feedback law (see the module doc).
    fn feedback_goal(&self, i: &Inputs<'_>, strategy: &Strategy) -> f64 {
        let c = &i.limits.control;
        // Without a grid reading there is nothing to follow: 0 W.
        let Some(grid) = i.m.grid_power_w else {
            return 0.0;
        };
        let settled = self
            .changed_at_s
            .is_none_or(|t| i.now_s - t >= c.response_time_s);
        if let Some(goal) = self.goal_w
            && !settled
        {
            return goal;
        }
        // Anti-windup: a battery that does not do what it was told is the base instead.
        let base = match i.m.battery_power_w {
            Some(b) if (i.last_w - b).abs() > c.deadband_w.max(0.1 * i.last_w.abs()) => b,
            _ => i.last_w,
        };
        let ideal = Strategy::setpoint_for(strategy.band(c.deadband_w), grid - base);
        if (ideal - i.last_w).abs() <= c.deadband_w {
            return i.last_w;
        }
        base + c.correction_gain * (ideal - base)
    }

    /// Layer 4: the lowest setpoint the reserve allows (0 W at or below it, the reserve charge
    /// below reserve − hysteresis), or `None` above it.
    fn reserve_floor(&mut self, i: &Inputs<'_>, strategy: &Strategy) -> Option<f64> {
        let Some(reserve) = strategy.backup_reserve_pct else {
            self.reserve_charging = false;
            return None;
        };
        if i.soc_pct < reserve - strategy.reserve_hysteresis_pct {
            self.reserve_charging = true;
        } else if i.soc_pct >= reserve {
            self.reserve_charging = false;
        }
        if self.reserve_charging {
            Some(strategy.reserve_charge_power_w)
        } else if i.soc_pct <= reserve {
            Some(0.0)
        } else {
            None
        }
    }
}
