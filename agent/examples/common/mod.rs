//! What the examples and the simulated-day tests share: the agent's view of ems-sim's plant.
//! ems-sim is only a dev-dependency of ems-agent, so this lives beside the examples and the tests
//! include it by path.

use ems_agent::control::Measurements;
use ems_sim::day::Readings;

/// What the agent's loop would compose from the devices' readings.
pub fn measurements(r: &Readings) -> Measurements {
    Measurements {
        battery_voltage_v: Some(r.battery_voltage_v),
        battery_current_a: Some(r.battery_current_a),
        battery_power_w: Some(r.battery_w),
        battery_soc_pct: Some(r.soc_pct),
        battery_temperature_c: Some(r.battery_temperature_c),
        bms_max_charge_current_a: Some(r.bms_max_charge_a),
        bms_max_discharge_current_a: Some(r.bms_max_discharge_a),
        grid_voltage_v: Some(r.grid_voltage_v),
        grid_power_w: Some(r.grid_w),
        grid_frequency_hz: Some(r.grid_frequency_hz),
        device_flags: Vec::new(),
    }
}
