//! [`DriverInstance`]: one driver bound to one device, called safely across the ABI.

use std::ffi::c_void;

use super::HostError;
use super::bridge::with_abi_bus;
use super::plugin::Plugin;
use crate::abi::{AbiBuf, status};
use crate::bus::Bus;
use crate::driver::DriverError;
use crate::model::{DriverInfo, Readings};

/// A driver instance living in a plugin. Calls are synchronous (run them on a blocking thread)
/// and take the bus to use for their transactions.
///
/// After a panic inside the driver the instance is poisoned: that call returns
/// [`HostError::Panicked`], every later one [`HostError::Poisoned`] without entering the plugin.
/// Drop it and instantiate a new one to recover.
#[derive(Debug)]
pub struct DriverInstance {
    plugin: Plugin,
    handle: *mut c_void,
    /// The panic message, once poisoned.
    poisoned: Option<String>,
}

// SAFETY: `Driver: Send` is required of every driver, and `&mut self` on every call keeps calls
// on one instance sequential.
unsafe impl Send for DriverInstance {}

impl DriverInstance {
    pub(crate) fn new(plugin: Plugin, handle: *mut c_void) -> DriverInstance {
        DriverInstance {
            plugin,
            handle,
            poisoned: None,
        }
    }

    /// Name, version and roles of the driver.
    pub fn info(&self) -> DriverInfo {
        self.plugin.info()
    }

    /// The plugin this instance lives in.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Whether an earlier call panicked.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Reads the device once.
    pub fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, HostError> {
        let descriptor = self.plugin.descriptor();
        let bytes = self.call(bus, |handle, table, out| {
            // SAFETY: handle from `create`, table and out valid for the call.
            unsafe { (descriptor.poll)(handle, table, out) }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| HostError::Protocol {
            driver: self.driver_name(),
            reason: format!("readings are not valid JSON: {e}"),
        })
    }

    /// Asks the device to charge (`power_w > 0`) or discharge (`power_w < 0`) the battery.
    pub fn set_battery_power(&mut self, bus: &mut dyn Bus, power_w: f64) -> Result<(), HostError> {
        let descriptor = self.plugin.descriptor();
        self.call(bus, |handle, table, out| {
            // SAFETY: as in `poll`.
            unsafe { (descriptor.set_battery_power)(handle, table, power_w, out) }
        })
        .map(drop)
    }

    /// Clears the device's latched alarms.
    pub fn reset_alarms(&mut self, bus: &mut dyn Bus) -> Result<(), HostError> {
        let descriptor = self.plugin.descriptor();
        self.call(bus, |handle, table, out| {
            // SAFETY: as in `poll`.
            unsafe { (descriptor.reset_alarms)(handle, table, out) }
        })
        .map(drop)
    }

    fn driver_name(&self) -> String {
        self.plugin.info().name.to_string()
    }

    /// Runs one plugin function with `bus` lent as an ABI table and decodes its status.
    fn call(
        &mut self,
        bus: &mut dyn Bus,
        f: impl FnOnce(*mut c_void, *const crate::abi::AbiBus, *mut AbiBuf) -> i32,
    ) -> Result<Vec<u8>, HostError> {
        let driver = self.driver_name();
        if let Some(message) = &self.poisoned {
            return Err(HostError::Poisoned {
                driver,
                message: message.clone(),
            });
        }
        let mut out = AbiBuf::EMPTY;
        let code = with_abi_bus(bus, |table| f(self.handle, table, &mut out));
        let bytes = self.plugin.take(out);
        let text = || String::from_utf8_lossy(&bytes).into_owned();
        match code {
            status::OK => Ok(bytes),
            status::DRIVER_ERROR => match serde_json::from_slice::<DriverError>(&bytes) {
                Ok(source) => Err(HostError::Driver { driver, source }),
                Err(e) => Err(HostError::Protocol {
                    driver,
                    reason: format!("driver error is not valid JSON ({e}): {}", text()),
                }),
            },
            status::PANICKED => {
                let message = text();
                self.poisoned = Some(message.clone());
                Err(HostError::Panicked { driver, message })
            }
            status::POISONED => {
                let message = text();
                self.poisoned = Some(message.clone());
                Err(HostError::Poisoned { driver, message })
            }
            other => Err(HostError::Protocol {
                driver,
                reason: format!("status {other}: {}", text()),
            }),
        }
    }
}

impl Drop for DriverInstance {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create` and is destroyed exactly once.
        unsafe { (self.plugin.descriptor().destroy)(self.handle) };
    }
}
