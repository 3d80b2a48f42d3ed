//! Test plugin `test-panicky`: its `poll` panics, so the loader tests can prove the host survives
//! and the instance is poisoned.
//!
//! # Layout
//! One module: [`Panicky`] and its export.

use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, LogLevel, Readings, Role,
};

/// Writes setpoints to holding register 0 of its unit until `poll` panics.
pub struct Panicky {
    unit: u8,
}

impl Driver for Panicky {
    const INFO: DriverInfo = DriverInfo {
        name: "test-panicky",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[Role::Battery],
    };

    fn new(_options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError> {
        Ok(Panicky {
            unit: ems_driver_sdk::options::require_modbus_unit(address)?,
        })
    }

    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        bus.log(LogLevel::Warn, "test-panicky: about to panic in poll");
        panic!("test-panicky panics in poll on purpose");
    }

    fn set_battery_power(&mut self, bus: &mut dyn Bus, power_w: f64) -> Result<(), DriverError> {
        bus.write_single_register(self.unit, 0, power_w as i16 as u16)
            .map_err(DriverError::bus("write setpoint"))
    }
}

ems_driver_sdk::export_driver!(Panicky);
