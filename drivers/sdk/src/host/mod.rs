//! The host side (feature `host`): loads driver plugins and calls them safely.
//!
//! ```no_run
//! # use ems_driver_sdk::{DeviceAddress, MemoryBus};
//! use ems_driver_sdk::host::PluginDir;
//! # fn main() -> Result<(), ems_driver_sdk::host::HostError> {
//! let plugin = PluginDir::new("/usr/lib/ems/drivers").load("sdm630")?;
//! let options: toml::Table = toml::from_str(r#"model = "sdm630""#).unwrap();
//! let address = DeviceAddress { modbus_unit: Some(1), i2c_address: None };
//! let mut meter = plugin.instantiate(&options, address)?;
//! # let mut bus = MemoryBus::new();
//! let readings = meter.poll(&mut bus)?; // `bus`: the agent's `impl Bus`
//! # Ok(()) }
//! ```
//!
//! - `plugin`: [`PluginDir`] (where driver files are) and [`Plugin`] (one opened, checked library).
//! - `instance`: [`DriverInstance`], one driver bound to one device, with poisoning after a panic.
//! - `bridge` (private): lends the host's `&mut dyn Bus` to the plugin as an ABI table.
//! - `error`: [`HostError`].

mod bridge;
mod error;
mod instance;
mod plugin;

pub use error::HostError;
pub use instance::DriverInstance;
pub use plugin::{Plugin, PluginDir};
