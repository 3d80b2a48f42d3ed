//! Limits the controller enforces whatever a command says, and how AUTO moves. Loaded from the
//! `[battery]`, `[grid]`, `[control]` and `[strategy]` tables of the agent config.

use serde::{Deserialize, Serialize};

use super::strategy::Strategy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatteryLimits {
    /// Never discharge at or below this SoC (%); the machine shows EMPTY there.
    pub soc_min_pct: f64,
    /// Never charge at or above this SoC (%); the machine shows FULL there.
    pub soc_max_pct: f64,
    /// FULL lasts until SoC falls this far below `soc_max_pct` (EMPTY likewise above
    /// `soc_min_pct`), so the battery does not toggle at the threshold.
    pub soc_hysteresis_pct: f64,
    /// Largest charge power ever commanded, W.
    pub max_charge_power_w: f64,
    /// Largest discharge power ever commanded, W (magnitude).
    pub max_discharge_power_w: f64,
    /// |current| above this raises OVERCURRENT, A.
    pub max_current_a: f64,
    /// Voltage above this raises OVERVOLTAGE, V.
    pub overvoltage_v: f64,
    /// Voltage below this raises UNDERVOLTAGE, V.
    pub undervoltage_v: f64,
    /// No charging at or above this voltage (not a fault: the normal end of charge), V.
    pub charge_voltage_max_v: f64,
    /// No discharging at or below this voltage, V.
    pub discharge_voltage_min_v: f64,
    /// Temperature above this raises OVERHEAT, °C.
    pub temperature_max_c: f64,
    /// Temperature below this raises UNDERTEMPERATURE, °C.
    pub temperature_min_c: f64,
    /// No charging below this temperature (lithium plating), °C.
    pub charge_temperature_min_c: f64,
}

impl Default for BatteryLimits {
    /// A 48 V (16s LiFePO4) 5 kW home battery.
    fn default() -> Self {
        BatteryLimits {
            soc_min_pct: 10.0,
            soc_max_pct: 95.0,
            soc_hysteresis_pct: 3.0,
            max_charge_power_w: 3000.0,
            max_discharge_power_w: 3000.0,
            max_current_a: 100.0,
            overvoltage_v: 58.4,
            undervoltage_v: 42.0,
            charge_voltage_max_v: 57.6,
            discharge_voltage_min_v: 44.8,
            temperature_max_c: 55.0,
            temperature_min_c: -20.0,
            charge_temperature_min_c: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GridLimits {
    /// Grid frequency outside [min, max] raises GRID_FAULT, Hz.
    pub frequency_min_hz: f64,
    pub frequency_max_hz: f64,
    /// Grid voltage outside [min, max] raises GRID_FAULT, V.
    pub voltage_min_v: f64,
    pub voltage_max_v: f64,
}

impl Default for GridLimits {
    /// EN 50549-1 style bands for a 230 V / 50 Hz grid.
    fn default() -> Self {
        GridLimits {
            frequency_min_hz: 47.5,
            frequency_max_hz: 51.5,
            voltage_min_v: 195.5,
            voltage_max_v: 253.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSettings {
    /// AUTO leaves the setpoint alone while the change it would make is at most this, W: with
    /// an inverter that follows its setpoint, while the grid is within this of AUTO's target.
    pub deadband_w: f64,
    /// Largest setpoint change per second when increasing power, W/s. Moves towards 0 W (also
    /// the part of a change of sign down to 0 W), cuts demanded by a limit or a fault, and
    /// corrections of an export or import limit being exceeded are applied at once.
    pub ramp_w_per_s: f64,
    /// How long after a setpoint change the grid meter surely shows it (inverter response plus
    /// meter update interval), s. AUTO corrects again only after this: a reading taken before
    /// the battery moved would make it correct twice and overshoot. 0: every step.
    pub response_time_s: f64,
    /// Share of the remaining error AUTO corrects at each correction (its integral gain times
    /// the correction interval), 0 < gain <= 1. 1 corrects all of it at once: with
    /// `response_time_s` this settles without overshoot (docs/benchmarks.md).
    pub correction_gain: f64,
    /// |setpoint| below this counts as IDLE, W.
    pub idle_threshold_w: f64,
    /// A manual mode falls back to AUTO after the cloud link has been down this long, s.
    pub manual_fallback_after_s: f64,
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings {
            deadband_w: 50.0,
            ramp_w_per_s: 1000.0,
            response_time_s: 1.5,
            correction_gain: 1.0,
            idle_threshold_w: 20.0,
            manual_fallback_after_s: 600.0,
        }
    }
}

impl ControlSettings {
    /// `target` reached from `last` within the ramp over `dt_s` (W, + = charge). The ramp limits
    /// how fast the battery's power grows; reducing it is always safe and immediate, also across
    /// a change of sign: from −3000 W towards +1000 W the setpoint is at 0 W at once and ramps up
    /// from there.
    pub fn ramp(&self, last_w: f64, target_w: f64, dt_s: f64) -> f64 {
        let from = if target_w * last_w < 0.0 { 0.0 } else { last_w };
        if target_w.abs() <= from.abs() {
            return target_w;
        }
        let max_step = self.ramp_w_per_s * dt_s;
        from + (target_w - from).clamp(-max_step, max_step)
    }
}

/// Everything the controller enforces, and what AUTO aims at.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    pub battery: BatteryLimits,
    pub grid: GridLimits,
    pub control: ControlSettings,
    pub strategy: Strategy,
}
