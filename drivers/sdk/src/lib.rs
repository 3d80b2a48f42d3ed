//! SDK and C ABI for ems driver plugins.
//!
//! A driver is a plain Rust type implementing [`Driver`]; [`export_driver!`] makes its crate a
//! plugin (`crate-type = ["cdylib", "rlib"]`) that the agent loads at run time. The host owns every
//! bus: a driver receives a [`Bus`] for each call and never opens a port. Readings come back in
//! canonical names and SI units ([`Readings`]). See `drivers/README.md` for a walk-through.
//!
//! # Layout
//! - [`model`]: what a driver is and reports: [`DriverInfo`], [`Role`], [`DeviceAddress`],
//!   [`Readings`], [`Flag`], [`LogLevel`].
//! - [`bus`]: the [`Bus`] trait (Modbus and I2C transactions, logging), [`BusError`], and
//!   [`Request`], one transaction as a value.
//! - [`i2c_socket`]: the frame of the simulated I2C bus, written by the agent, answered by
//!   ems-sim.
//! - [`driver`]: the [`Driver`] trait, [`DriverError`] and [`ConfigError`].
//! - [`options`]: typed access to a device's TOML options with errors that name the key.
//! - [`regs`]: exact-length register reads split at the 125-register limit, word order, float and
//!   string decoding.
//! - [`plan`]: merging the register ranges a driver needs into as few reads as possible (pure).
//! - [`memory`]: [`MemoryBus`], an in-memory register bank and I2C device model for unit tests.
//! - [`abi`]: the `#[repr(C)]` contract between host and plugin, version [`abi::ABI_VERSION`].
//! - [`export`]: the plugin side of the ABI behind [`export_driver!`] (all of a plugin's unsafe code).
//! - `host` (feature `host`): the loader used by the agent: `PluginDir`, `Plugin`,
//!   `DriverInstance`, `HostError`.

pub mod abi;
pub mod bus;
pub mod driver;
#[doc(hidden)]
pub mod export;
#[cfg(feature = "host")]
pub mod host;
pub mod i2c_socket;
pub mod memory;
pub mod model;
pub mod options;
pub mod plan;
pub mod regs;

pub use bus::{Bus, BusError, Request};
pub use driver::{ConfigError, Driver, DriverError};
pub use memory::MemoryBus;
pub use model::{DeviceAddress, DriverInfo, Flag, LogLevel, Readings, Role};
pub use options::Options;

/// Makes the crate a driver plugin for `$driver` (a type implementing [`Driver`]): exports the
/// entry symbol `ems_driver_entry_v1` returning a static descriptor whose functions wrap every
/// call in `catch_unwind`. Use it once per plugin crate, at the crate root:
///
/// ```
/// use ems_driver_sdk::{Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, Readings, Role};
///
/// struct MyDriver;
///
/// impl Driver for MyDriver {
///     const INFO: DriverInfo = DriverInfo { name: "my-meter", version: "0.1.0", roles: &[Role::GridMeter] };
///     fn new(_options: &toml::Table, _address: DeviceAddress) -> Result<Self, ConfigError> {
///         Ok(MyDriver)
///     }
///     fn poll(&mut self, _bus: &mut dyn Bus) -> Result<Readings, DriverError> {
///         Ok(Readings { grid_power_w: Some(-200.0), ..Readings::default() })
///     }
/// }
///
/// ems_driver_sdk::export_driver!(MyDriver);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_driver {
    ($driver:ty) => {
        const _: () = {
            static DESCRIPTOR: $crate::abi::DriverDescriptor =
                $crate::export::descriptor::<$driver>();

            /// The plugin's entry point (see `ems_driver_sdk::abi`).
            #[unsafe(no_mangle)]
            pub extern "C" fn ems_driver_entry_v1() -> *const $crate::abi::DriverDescriptor {
                &DESCRIPTOR
            }
        };
    };
}
