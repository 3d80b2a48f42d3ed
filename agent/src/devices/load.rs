//! Loading devices: each configured device's driver plugin, checked for the roles the
//! configuration gives the device, and its driver instantiated with the device's options.

use std::collections::BTreeMap;

use ems_driver_sdk::host::{DriverInstance, HostError, PluginDir};
use ems_driver_sdk::{DeviceAddress, Role};

use crate::config::{AgentConfig, DeviceConfig};

/// Loading a device's driver failed; each error names the device.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The plugin file is missing, is not a plugin, or speaks another ABI.
    #[error("device {device:?}: {source}")]
    Plugin { device: String, source: HostError },
    /// The configuration asks the device for a role its driver does not offer.
    #[error(
        "device {device:?}: driver {driver:?} cannot fill role {role:?} (it offers {offered:?})"
    )]
    Role {
        device: String,
        driver: String,
        role: Role,
        offered: Vec<Role>,
    },
    /// The driver refused the device's options.
    #[error("device {device:?} (devices.{device}.options): {source}")]
    Options { device: String, source: HostError },
}

/// A configured device with its driver instantiated, before its poller starts.
pub struct LoadedDevice {
    pub name: String,
    pub config: DeviceConfig,
    pub instance: DriverInstance,
}

/// Loads the plugin of every device and instantiates its driver with the device's options.
/// Errors name the device and say what is wrong (missing file, not a plugin, ABI mismatch,
/// options refused).
pub fn load(config: &AgentConfig) -> Result<Vec<LoadedDevice>, LoadError> {
    let dir = PluginDir::new(&config.driver_dir);
    let mut plugins = BTreeMap::new();
    let mut out = Vec::new();
    for (name, d) in &config.devices {
        if !plugins.contains_key(&d.driver) {
            let plugin = dir.load(&d.driver).map_err(|source| LoadError::Plugin {
                device: name.clone(),
                source,
            })?;
            plugins.insert(d.driver.clone(), plugin);
        }
        let plugin = &plugins[&d.driver];
        let offered = plugin.info().roles;
        if let Some(role) = d.roles.iter().find(|r| !offered.contains(r)) {
            return Err(LoadError::Role {
                device: name.clone(),
                driver: d.driver.clone(),
                role: *role,
                offered: offered.to_vec(),
            });
        }
        let address = DeviceAddress {
            modbus_unit: d.unit,
            i2c_address: d.address,
        };
        let instance =
            plugin
                .instantiate(&d.options, address)
                .map_err(|source| LoadError::Options {
                    device: name.clone(),
                    source,
                })?;
        out.push(LoadedDevice {
            name: name.clone(),
            config: d.clone(),
            instance,
        });
    }
    Ok(out)
}
