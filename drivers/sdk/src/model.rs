//! What a driver is and what it reports: [`DriverInfo`], [`Role`], [`DeviceAddress`], [`Readings`],
//! [`Flag`] and [`LogLevel`].
//!
//! Every quantity is in SI units with the unit in the field name, and every sign is the ems
//! convention named on the field, whatever the device uses: converting is the driver's job, so the
//! agent compares numbers from different devices without knowing where they came from.

use serde::{Deserialize, Serialize};

/// What a driver declares about itself. It lives in the plugin as `'static` data and crosses the
/// ABI in the descriptor, so the host can list drivers without instantiating any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverInfo {
    /// The name the agent config uses to pick this driver (`driver = "sdm630"`). Lowercase ASCII
    /// letters, digits and `-`; the plugin file is `libems_driver_<name with - as _>.so`.
    pub name: &'static str,
    /// The driver's own version (usually `env!("CARGO_PKG_VERSION")`), for logs and bug reports.
    pub version: &'static str,
    /// The roles an instance of this driver can fill in a site.
    pub roles: &'static [Role],
}

/// A place a device can take in the site model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A battery or hybrid inverter: AC power, state, maybe battery setpoints.
    Inverter,
    /// A battery or its BMS: state of charge, limits, alarms.
    Battery,
    /// The meter at the grid connection point.
    GridMeter,
    /// A meter on the battery's DC or AC side.
    BatteryMeter,
    /// A meter on the PV system.
    PvMeter,
}

impl Role {
    /// Every role, in the order of their bits in the ABI role mask.
    pub const ALL: [Role; 5] = [
        Role::Inverter,
        Role::Battery,
        Role::GridMeter,
        Role::BatteryMeter,
        Role::PvMeter,
    ];

    /// The config spelling (`"grid_meter"`), the same as serde's.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Inverter => "inverter",
            Role::Battery => "battery",
            Role::GridMeter => "grid_meter",
            Role::BatteryMeter => "battery_meter",
            Role::PvMeter => "pv_meter",
        }
    }

    /// This role's bit in the ABI role mask.
    pub const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the device answers on the bus the host gives the driver. The agent config sets whichever
/// applies; a driver refuses (with a [`ConfigError`](crate::ConfigError)) an address it cannot use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAddress {
    /// Modbus unit (slave) id, 1..=247 on RTU; on TCP often 1 or 255.
    pub modbus_unit: Option<u8>,
    /// 7-bit I2C address (0x08..=0x77).
    pub i2c_address: Option<u8>,
}

/// Severity of a driver's log line, forwarded by the host to its own logger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl LogLevel {
    /// The level for an ABI byte; unknown values become [`LogLevel::Info`] so a newer plugin's log
    /// line is never lost.
    pub fn from_u8(level: u8) -> LogLevel {
        match level {
            1 => LogLevel::Error,
            2 => LogLevel::Warn,
            4 => LogLevel::Debug,
            5 => LogLevel::Trace,
            _ => LogLevel::Info,
        }
    }
}

/// An alarm or fault condition the device itself raised. The agent decides what to do about it;
/// the driver only translates the device's bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    Overheat,
    Undertemperature,
    Overvoltage,
    Undervoltage,
    Overcurrent,
    BmsAlarm,
    InverterFault,
    GridFault,
    /// Anything else, in the device's own words (e.g. `"GROUND_FAULT"`).
    Other(String),
}

/// One poll's worth of measurements from one device.
///
/// Every value is optional: a value the device does not provide, or marks as "not implemented",
/// is `None`, never `0.0`, because zero watts is a measurement and the controller acts on it.
/// Crosses the plugin ABI as JSON; unknown fields are ignored and missing ones default, so host and
/// plugin can add fields independently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Readings {
    /// Battery terminal voltage, V.
    pub battery_voltage_v: Option<f64>,
    /// Battery current, A, + = charging.
    pub battery_current_a: Option<f64>,
    /// Battery power, W, + = charging.
    pub battery_power_w: Option<f64>,
    /// State of charge, % (0..=100).
    pub battery_soc_pct: Option<f64>,
    /// State of health, % (0..=100).
    pub battery_soh_pct: Option<f64>,
    /// Hottest cell or module temperature, °C.
    pub battery_temperature_c: Option<f64>,
    /// Coldest cell or module temperature, °C.
    pub battery_temperature_min_c: Option<f64>,
    /// Charge current the BMS allows right now, A (magnitude).
    pub battery_max_charge_current_a: Option<f64>,
    /// Discharge current the BMS allows right now, A (magnitude).
    pub battery_max_discharge_current_a: Option<f64>,
    /// Charge power the BMS allows right now, W (magnitude).
    pub battery_max_charge_power_w: Option<f64>,
    /// Discharge power the BMS allows right now, W (magnitude).
    pub battery_max_discharge_power_w: Option<f64>,
    /// Grid voltage, V; the average of the phase-to-neutral voltages on a three-phase connection.
    pub grid_voltage_v: Option<f64>,
    /// Grid power, W, + = import from the grid, − = export to the grid.
    pub grid_power_w: Option<f64>,
    /// Grid frequency, Hz.
    pub grid_frequency_hz: Option<f64>,
    /// Energy imported from the grid since the meter was made or reset, kWh.
    pub grid_import_energy_kwh: Option<f64>,
    /// Energy exported to the grid since the meter was made or reset, kWh.
    pub grid_export_energy_kwh: Option<f64>,
    /// Phase-to-neutral voltages L1, L2, L3, V.
    pub grid_phase_voltage_v: [Option<f64>; 3],
    /// Phase currents L1, L2, L3, A (as the meter reports them; most meters report magnitudes).
    pub grid_phase_current_a: [Option<f64>; 3],
    /// Phase powers L1, L2, L3, W, + = import.
    pub grid_phase_power_w: [Option<f64>; 3],
    /// PV generation, W (≥ 0).
    pub pv_power_w: Option<f64>,
    /// Inverter AC power, W, + = from the inverter into the AC side, − = drawn from AC.
    pub inverter_ac_power_w: Option<f64>,
    /// The inverter's operating state in its own vocabulary (e.g. SunSpec `"MPPT"`), for display.
    pub inverter_state: Option<String>,
    /// Alarm and fault flags the device raised in this poll.
    pub flags: Vec<Flag>,
}

impl Readings {
    /// Adds `flag` unless it is already raised.
    pub fn raise(&mut self, flag: Flag) {
        if !self.flags.contains(&flag) {
            self.flags.push(flag);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_use_the_config_spelling() {
        for role in Role::ALL {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
    }

    #[test]
    fn readings_round_trip_and_tolerate_unknown_fields() {
        let mut readings = Readings {
            grid_power_w: Some(-1500.5),
            grid_phase_voltage_v: [Some(230.0), None, Some(231.5)],
            inverter_state: Some("MPPT".into()),
            ..Readings::default()
        };
        readings.raise(Flag::Other("GROUND_FAULT".into()));
        readings.raise(Flag::Overheat);
        readings.raise(Flag::Overheat);
        let json = serde_json::to_string(&readings).unwrap();
        assert_eq!(serde_json::from_str::<Readings>(&json).unwrap(), readings);
        assert_eq!(readings.flags.len(), 2);

        let newer = r#"{"grid_power_w": 5.0, "field_from_the_future": 1}"#;
        let parsed: Readings = serde_json::from_str(newer).unwrap();
        assert_eq!(parsed.grid_power_w, Some(5.0));
        assert_eq!(parsed.battery_soc_pct, None);
    }
}
