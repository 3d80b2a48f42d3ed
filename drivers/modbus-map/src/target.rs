//! The canonical reading names a map can fill, and where each lands in [`Readings`].

use ems_driver_sdk::Readings;

/// A field of [`Readings`] (phase arrays by index 0..=2, i.e. L1..L3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Number(&'static str),
    InverterState,
}

/// Every name a map may use, as spelled in [`Readings`]' JSON.
pub const NAMES: &[&str] = &[
    "battery_voltage_v",
    "battery_current_a",
    "battery_power_w",
    "battery_soc_pct",
    "battery_soh_pct",
    "battery_temperature_c",
    "battery_temperature_min_c",
    "battery_max_charge_current_a",
    "battery_max_discharge_current_a",
    "battery_max_charge_power_w",
    "battery_max_discharge_power_w",
    "grid_voltage_v",
    "grid_power_w",
    "grid_frequency_hz",
    "grid_import_energy_kwh",
    "grid_export_energy_kwh",
    "grid_phase_voltage_v[0]",
    "grid_phase_voltage_v[1]",
    "grid_phase_voltage_v[2]",
    "grid_phase_current_a[0]",
    "grid_phase_current_a[1]",
    "grid_phase_current_a[2]",
    "grid_phase_power_w[0]",
    "grid_phase_power_w[1]",
    "grid_phase_power_w[2]",
    "pv_power_w",
    "inverter_ac_power_w",
    "inverter_state",
];

impl Target {
    pub fn parse(name: &str) -> Option<Target> {
        if name == "inverter_state" {
            return Some(Target::InverterState);
        }
        NAMES
            .iter()
            .find(|n| **n == name)
            .map(|n| Target::Number(n))
    }

    /// The numeric field this target names.
    pub fn slot(self, r: &mut Readings) -> Option<&mut Option<f64>> {
        let Target::Number(name) = self else {
            return None;
        };
        Some(match name {
            "battery_voltage_v" => &mut r.battery_voltage_v,
            "battery_current_a" => &mut r.battery_current_a,
            "battery_power_w" => &mut r.battery_power_w,
            "battery_soc_pct" => &mut r.battery_soc_pct,
            "battery_soh_pct" => &mut r.battery_soh_pct,
            "battery_temperature_c" => &mut r.battery_temperature_c,
            "battery_temperature_min_c" => &mut r.battery_temperature_min_c,
            "battery_max_charge_current_a" => &mut r.battery_max_charge_current_a,
            "battery_max_discharge_current_a" => &mut r.battery_max_discharge_current_a,
            "battery_max_charge_power_w" => &mut r.battery_max_charge_power_w,
            "battery_max_discharge_power_w" => &mut r.battery_max_discharge_power_w,
            "grid_voltage_v" => &mut r.grid_voltage_v,
            "grid_power_w" => &mut r.grid_power_w,
            "grid_frequency_hz" => &mut r.grid_frequency_hz,
            "grid_import_energy_kwh" => &mut r.grid_import_energy_kwh,
            "grid_export_energy_kwh" => &mut r.grid_export_energy_kwh,
            "grid_phase_voltage_v[0]" => &mut r.grid_phase_voltage_v[0],
            "grid_phase_voltage_v[1]" => &mut r.grid_phase_voltage_v[1],
            "grid_phase_voltage_v[2]" => &mut r.grid_phase_voltage_v[2],
            "grid_phase_current_a[0]" => &mut r.grid_phase_current_a[0],
            "grid_phase_current_a[1]" => &mut r.grid_phase_current_a[1],
            "grid_phase_current_a[2]" => &mut r.grid_phase_current_a[2],
            "grid_phase_power_w[0]" => &mut r.grid_phase_power_w[0],
            "grid_phase_power_w[1]" => &mut r.grid_phase_power_w[1],
            "grid_phase_power_w[2]" => &mut r.grid_phase_power_w[2],
            "pv_power_w" => &mut r.pv_power_w,
            "inverter_ac_power_w" => &mut r.inverter_ac_power_w,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_numeric_name_has_a_slot() {
        let mut r = Readings::default();
        for name in NAMES.iter().filter(|n| **n != "inverter_state") {
            let target = Target::parse(name).unwrap();
            *target.slot(&mut r).unwrap() = Some(1.0);
        }
        assert_eq!(r.grid_phase_power_w, [Some(1.0); 3]);
        assert_eq!(r.battery_temperature_min_c, Some(1.0));
        assert_eq!(Target::parse(""), None);
    }
}
