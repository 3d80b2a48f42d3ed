//! Which fault flags a set of measurements raises. A fault puts the machine in ERROR; the same
//! function decides whether a RESET_ERROR may clear it.

use std::collections::BTreeSet;

use ems_protocol::ErrorFlag;

use super::limits::Limits;
use super::machine::Measurements;

/// The faults present in `m` under `limits`, including the flags the devices raised themselves
/// (BMS alarm, inverter fault, communication loss).
pub fn detect(m: &Measurements, limits: &Limits) -> BTreeSet<ErrorFlag> {
    let b = &limits.battery;
    let g = &limits.grid;
    let mut flags: BTreeSet<ErrorFlag> = m.device_flags.iter().cloned().collect();
    if let Some(t) = m.battery_temperature_c {
        if t > b.temperature_max_c {
            flags.insert(ErrorFlag::Overheat);
        }
        if t < b.temperature_min_c {
            flags.insert(ErrorFlag::Undertemperature);
        }
    }
    if let Some(v) = m.battery_voltage_v {
        if v > b.overvoltage_v {
            flags.insert(ErrorFlag::Overvoltage);
        }
        if v < b.undervoltage_v {
            flags.insert(ErrorFlag::Undervoltage);
        }
    }
    if let Some(i) = m.battery_current_a
        && i.abs() > b.max_current_a
    {
        flags.insert(ErrorFlag::Overcurrent);
    }
    if let Some(f) = m.grid_frequency_hz
        && !(g.frequency_min_hz..=g.frequency_max_hz).contains(&f)
    {
        flags.insert(ErrorFlag::GridFault);
    }
    if let Some(v) = m.grid_voltage_v
        && !(g.voltage_min_v..=g.voltage_max_v).contains(&v)
    {
        flags.insert(ErrorFlag::GridFault);
    }
    // Without SoC or voltage no limit can be enforced: treat it as lost communication.
    if m.battery_soc_pct.is_none() || m.battery_voltage_v.is_none() {
        flags.insert(ErrorFlag::CommLoss);
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Measurements {
        Measurements {
            battery_voltage_v: Some(52.0),
            battery_current_a: Some(0.0),
            battery_power_w: Some(0.0),
            battery_soc_pct: Some(50.0),
            battery_temperature_c: Some(25.0),
            grid_voltage_v: Some(230.0),
            grid_power_w: Some(0.0),
            grid_frequency_hz: Some(50.0),
            ..Measurements::default()
        }
    }

    #[test]
    fn healthy_measurements_raise_nothing() {
        assert!(detect(&healthy(), &Limits::default()).is_empty());
    }

    #[test]
    fn each_limit_raises_its_flag() {
        let l = Limits::default();
        type Change = fn(&mut Measurements);
        let cases: [(Change, ErrorFlag); 6] = [
            (
                |m| m.battery_temperature_c = Some(60.0),
                ErrorFlag::Overheat,
            ),
            (
                |m| m.battery_temperature_c = Some(-25.0),
                ErrorFlag::Undertemperature,
            ),
            (|m| m.battery_voltage_v = Some(60.0), ErrorFlag::Overvoltage),
            (
                |m| m.battery_voltage_v = Some(40.0),
                ErrorFlag::Undervoltage,
            ),
            (
                |m| m.battery_current_a = Some(-150.0),
                ErrorFlag::Overcurrent,
            ),
            (|m| m.grid_frequency_hz = Some(52.0), ErrorFlag::GridFault),
        ];
        for (change, flag) in cases {
            let mut m = healthy();
            change(&mut m);
            assert_eq!(detect(&m, &l), BTreeSet::from([flag.clone()]), "{flag}");
        }
    }

    #[test]
    fn unknown_soc_is_comm_loss() {
        let mut m = healthy();
        m.battery_soc_pct = None;
        assert!(detect(&m, &Limits::default()).contains(&ErrorFlag::CommLoss));
    }
}
