//! What AUTO aims at: the `[strategy]` table (a grid target, export and import limits, a backup
//! reserve) and the schedule action a time window may put on top of it.
//!
//! The strategy is a *band* of grid power, [`Band`]: while the grid is inside it the battery
//! rests at 0 W; below it the battery charges until the grid is at the lower edge, above it the
//! battery discharges until the grid is at the upper edge. The settings make the band:
//!
//! | settings | band (W, + = import) | AUTO does |
//! |---|---|---|
//! | none (default) | `[target, target]` | self-consumption towards `target_grid_w` (0 W) |
//! | `export_limit_w` | `[−export + deadband, target]` | covers import down to the target; lets PV export up to the cap and charges only what would exceed it, so the battery still has room at noon |
//! | `import_limit_w` | `[recharge_below, import − deadband]` | peak shaving: idle between the edges, discharges to hold import under the cap, recharges only while import is below `recharge_below_w` |
//! | both | `[max(recharge_below, −export + deadband), import − deadband]` | both caps |
//!
//! The limit edges sit one deadband inside the limits, so the deadband (which lets the grid
//! wander that far from an edge) never lets it past a limit.

use serde::{Deserialize, Serialize};

use super::limits::BatteryLimits;

/// The `[strategy]` table: what AUTO does. The defaults are plain self-consumption (grid towards
/// 0 W, no caps, no reserve).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Strategy {
    /// Grid power AUTO steers to, W (+ = import, − = export). Not used with `import_limit_w`
    /// (peak shaving keeps the battery idle between its edges instead).
    pub target_grid_w: f64,
    /// Feed-in cap, W (magnitude): the battery absorbs what would export more. `None`: no cap.
    pub export_limit_w: Option<f64>,
    /// Peak-shaving cap, W: the battery discharges to keep import at or under it. `None`: no cap
    /// (self-consumption).
    pub import_limit_w: Option<f64>,
    /// With `import_limit_w`: the battery recharges only while import is below this, and only
    /// up to it, W. 0 W charges from PV surplus only; above 0 W it may also charge from the grid.
    pub recharge_below_w: f64,
    /// Backup reserve, SoC %, above the hard `battery.soc_min_pct`: AUTO does not discharge at
    /// or below it, and below `backup_reserve_pct − reserve_hysteresis_pct` it charges (from
    /// the grid if needed) at `reserve_charge_power_w` until the reserve is back. `None`: none.
    pub backup_reserve_pct: Option<f64>,
    /// See `backup_reserve_pct`, %.
    pub reserve_hysteresis_pct: f64,
    /// See `backup_reserve_pct`, W.
    pub reserve_charge_power_w: f64,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            target_grid_w: 0.0,
            export_limit_w: None,
            import_limit_w: None,
            recharge_below_w: 0.0,
            backup_reserve_pct: None,
            reserve_hysteresis_pct: 5.0,
            reserve_charge_power_w: 1000.0,
        }
    }
}

/// The grid power AUTO keeps the site within, W (+ = import); `low <= high`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Below this the battery charges (up to this grid power).
    pub low_w: f64,
    /// Above this the battery discharges (down to this grid power).
    pub high_w: f64,
}

impl Strategy {
    /// The band for this strategy (see the module doc); `deadband_w` pulls the limit edges in.
    pub fn band(&self, deadband_w: f64) -> Band {
        let export_edge = self.export_limit_w.map(|e| -e + deadband_w);
        let (mut low, mut high) = match self.import_limit_w {
            Some(import) => {
                let high = import - deadband_w;
                (self.recharge_below_w.min(high), high)
            }
            None => (
                export_edge.unwrap_or(self.target_grid_w),
                self.target_grid_w,
            ),
        };
        if let Some(edge) = export_edge {
            low = low.max(edge);
        }
        high = high.max(low);
        Band {
            low_w: low,
            high_w: high,
        }
    }

    /// The battery setpoint (W, + = charge) that puts the grid into `band` with the least
    /// battery power, given the net load `net_load_w` (load − PV, W) the battery sees.
    pub fn setpoint_for(band: Band, net_load_w: f64) -> f64 {
        // grid = net load + battery: grid >= low ⇔ battery >= low − net load.
        0.0_f64.clamp(band.low_w - net_load_w, band.high_w - net_load_w)
    }
}

/// What an active schedule window asks of AUTO. Precedence: below faults, hard limits and the
/// backup reserve, above the import/export limits and the target (see [`super::machine`]).
/// The loop hands the window of a stored `SET_SCHEDULE` in through
/// [`super::Controller::set_schedule_action`].
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleAction {
    /// Charge at `power_w` until the SoC reaches `to_soc_pct`, then hold. With `from_grid`
    /// false only PV surplus is used (the grid is never made to import for it).
    Charge {
        power_w: f64,
        to_soc_pct: f64,
        from_grid: bool,
    },
    /// No discharge; the strategy may still charge (PV surplus, limits).
    Hold,
    /// Discharge at `power_w` until the SoC falls to `down_to_soc_pct`, then hold.
    Discharge { power_w: f64, down_to_soc_pct: f64 },
    /// Another strategy (target and limits) for the window. Its backup reserve must be unset:
    /// the configured reserve outranks schedules.
    Strategy(Strategy),
}

/// A strategy setting that cannot work: the key inside `[strategy]` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyProblem {
    pub key: &'static str,
    pub reason: String,
}

impl Strategy {
    /// Checks the settings against each other and against the battery's hard limits; the
    /// config validation and a schedule's [`ScheduleAction::Strategy`] both use it.
    pub fn check(&self, battery: &BatteryLimits) -> Result<(), StrategyProblem> {
        let problem = |key, reason: String| Err(StrategyProblem { key, reason });
        let values = [
            ("target_grid_w", Some(self.target_grid_w)),
            ("export_limit_w", self.export_limit_w),
            ("import_limit_w", self.import_limit_w),
            ("recharge_below_w", Some(self.recharge_below_w)),
            ("backup_reserve_pct", self.backup_reserve_pct),
            ("reserve_hysteresis_pct", Some(self.reserve_hysteresis_pct)),
            ("reserve_charge_power_w", Some(self.reserve_charge_power_w)),
        ];
        for (key, v) in values {
            if let Some(v) = v
                && !v.is_finite()
            {
                return problem(key, format!("{v} must be a finite number"));
            }
        }
        if let Some(e) = self.export_limit_w {
            if e < 0.0 {
                return problem(
                    "export_limit_w",
                    format!("{e} W must be >= 0 (a magnitude)"),
                );
            }
            if self.target_grid_w < -e {
                return problem(
                    "target_grid_w",
                    format!(
                        "{} W exports more than export_limit_w ({e} W) allows",
                        self.target_grid_w
                    ),
                );
            }
        }
        if let Some(i) = self.import_limit_w {
            if i < 0.0 {
                return problem("import_limit_w", format!("{i} W must be >= 0"));
            }
            if self.recharge_below_w >= i {
                return problem(
                    "recharge_below_w",
                    format!(
                        "{} W must be below import_limit_w ({i} W): recharging would make the \
                         peak it shaves",
                        self.recharge_below_w
                    ),
                );
            }
            if self.target_grid_w != 0.0 {
                return problem(
                    "target_grid_w",
                    "is not used with import_limit_w (peak shaving keeps the battery idle \
                     between recharge_below_w and import_limit_w); leave it out"
                        .into(),
                );
            }
        }
        if let Some(r) = self.backup_reserve_pct {
            if !(r > battery.soc_min_pct && r < battery.soc_max_pct) {
                return problem(
                    "backup_reserve_pct",
                    format!(
                        "{r} % must lie between battery.soc_min_pct ({} %) and \
                         battery.soc_max_pct ({} %)",
                        battery.soc_min_pct, battery.soc_max_pct
                    ),
                );
            }
            let h = self.reserve_hysteresis_pct;
            if h <= 0.0 || r - h <= battery.soc_min_pct {
                return problem(
                    "reserve_hysteresis_pct",
                    format!(
                        "{h} % must be above 0 and keep the recharge threshold \
                         (backup_reserve_pct − hysteresis = {} %) above battery.soc_min_pct \
                         ({} %)",
                        r - h,
                        battery.soc_min_pct
                    ),
                );
            }
            let p = self.reserve_charge_power_w;
            if p <= 0.0 || p > battery.max_charge_power_w {
                return problem(
                    "reserve_charge_power_w",
                    format!(
                        "{p} W must be above 0 and at most battery.max_charge_power_w ({} W)",
                        battery.max_charge_power_w
                    ),
                );
            }
        }
        Ok(())
    }
}

impl ScheduleAction {
    /// Checks the action against the battery's hard limits; the reason is a sentence for a
    /// REJECTED answer.
    pub fn check(&self, battery: &BatteryLimits) -> Result<(), String> {
        let soc = |name: &str, v: f64| {
            if (0.0..=100.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} {v} % must be within 0 to 100 %"))
            }
        };
        let power = |v: f64, max: f64, what: &str| {
            if v.is_finite() && v > 0.0 && v <= max {
                Ok(())
            } else {
                Err(format!(
                    "power {v} W must be above 0 and at most the {what} limit of {max} W"
                ))
            }
        };
        match self {
            ScheduleAction::Charge {
                power_w,
                to_soc_pct,
                ..
            } => {
                power(*power_w, battery.max_charge_power_w, "charge")?;
                soc("to_soc", *to_soc_pct)
            }
            ScheduleAction::Discharge {
                power_w,
                down_to_soc_pct,
            } => {
                power(*power_w, battery.max_discharge_power_w, "discharge")?;
                soc("down_to_soc", *down_to_soc_pct)
            }
            ScheduleAction::Hold => Ok(()),
            ScheduleAction::Strategy(s) if s.backup_reserve_pct.is_some() => Err(
                "backup_reserve_pct: the backup reserve outranks schedules; it is set in the \
                 agent's config only"
                    .into(),
            ),
            ScheduleAction::Strategy(s) => s
                .check(battery)
                .map_err(|p| format!("{}: {}", p.key, p.reason)),
        }
    }
}
