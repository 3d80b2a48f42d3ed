//! The [`Driver`] trait a driver author implements, and its errors [`DriverError`] and
//! [`ConfigError`].

use serde::{Deserialize, Serialize};

use crate::bus::{Bus, BusError};
use crate::model::{DeviceAddress, DriverInfo, Readings};

/// A device driver: plain safe Rust. [`export_driver!`](crate::export_driver) turns an
/// implementation into a plugin; [`MemoryBus`](crate::memory::MemoryBus) tests it without a host.
///
/// Calls are synchronous and never concurrent on one instance: the host calls them on a blocking
/// thread, one at a time, and each bus transaction blocks until the host's bus task answers.
pub trait Driver: Send + Sized + 'static {
    /// Name, version and roles; read by the host before any instance exists.
    const INFO: DriverInfo;

    /// Builds an instance from the device's `options` table in the agent config and its bus
    /// address. Must not touch the bus (there is none yet): check and keep the options, and say
    /// precisely which key is wrong and why.
    fn new(options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError>;

    /// Reads the device once. Values the device does not have stay `None`.
    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError>;

    /// Asks the device to charge (`power_w > 0`) or discharge (`power_w < 0`) the battery at
    /// `power_w` watts. Drivers of devices that cannot act keep this default.
    fn set_battery_power(&mut self, bus: &mut dyn Bus, power_w: f64) -> Result<(), DriverError> {
        let _ = (bus, power_w);
        Err(DriverError::Unsupported(format!(
            "driver {} cannot set battery power",
            Self::INFO.name
        )))
    }

    /// Clears the device's latched alarms. Drivers of devices without one keep this default.
    fn reset_alarms(&mut self, bus: &mut dyn Bus) -> Result<(), DriverError> {
        let _ = bus;
        Err(DriverError::Unsupported(format!(
            "driver {} cannot reset alarms",
            Self::INFO.name
        )))
    }
}

/// Why a driver call failed. Crosses the ABI as JSON, so it stays plain data.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverError {
    /// A bus transaction failed; `operation` names it ("read holding 40000+2 on unit 1").
    #[error("{operation}: {source}")]
    Bus { operation: String, source: BusError },
    /// The device answered with fewer values than asked for.
    #[error("{operation}: asked for {expected} values, the answer had {got}")]
    ShortAnswer {
        operation: String,
        expected: usize,
        got: usize,
    },
    /// The device answered, but not what this driver expects (no SunSpec marker, bad ID, ...).
    #[error("{0}")]
    Device(String),
    /// The driver or this particular device cannot do what was asked.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The asked-for setpoint cannot be applied (NaN, or outside what the device accepts).
    #[error("invalid setpoint: {0}")]
    InvalidSetpoint(String),
}

impl DriverError {
    /// For `map_err`: wraps a [`BusError`] with the operation it failed in.
    pub fn bus(operation: impl Into<String>) -> impl FnOnce(BusError) -> DriverError {
        let operation = operation.into();
        move |source| DriverError::Bus { operation, source }
    }

    /// Whether this is the device answering with a Modbus exception, which drivers usually read
    /// as "this block is not implemented here" rather than as a failure.
    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            DriverError::Bus {
                source: BusError::Exception(_),
                ..
            }
        )
    }
}

/// A device's options were refused. Names the key (a dotted path for nested tables, or the
/// address field) and why, so the agent can print "device `meter`: option `model`: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("option `{key}`: {reason}")]
pub struct ConfigError {
    /// The offending key, e.g. `shunt_ohms` or `registers[3].type`.
    pub key: String,
    /// What is wrong with it and what would be right.
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// A required key is absent.
    pub fn missing(key: impl Into<String>) -> ConfigError {
        ConfigError::new(key, "is required but missing")
    }
}
