//! Devices: loading each configured device's driver plugin, and one poller task per device that
//! polls it at its interval, backs off while it keeps failing, and carries out setpoint and
//! alarm-reset requests between polls (before the next poll, so a 0 W after a fault is never
//! kept waiting behind routine reads).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ems_driver_sdk::host::{DriverInstance, HostError, PluginDir};
use ems_driver_sdk::{DeviceAddress, Readings, Role};
use tokio::sync::{mpsc, oneshot};

use crate::bus::BusHandle;
use crate::bus::blocking::DriverBus;
use crate::config::{AgentConfig, DeviceConfig};

/// What the loop knows about a device: its latest good readings and its health.
#[derive(Debug, Clone, Default)]
pub struct DeviceSlot {
    pub readings: Option<Readings>,
    /// When the last poll succeeded.
    pub last_ok: Option<Instant>,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub polls: u64,
    pub failures: u64,
}

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

/// A request to a running device failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The device's poller task has ended (the agent is stopping).
    #[error("device {device} poller stopped")]
    Stopped { device: String },
    /// The driver or the device refused or failed the request.
    #[error("device {device}: {source}")]
    Driver { device: String, source: HostError },
}

/// Requests to a device besides polling.
enum Action {
    SetPower(f64, oneshot::Sender<Result<(), HostError>>),
    /// Reset the device's latched alarms, then poll at once.
    ResetAndPoll(oneshot::Sender<()>),
    /// Poll at once (probe, reset).
    PollNow(oneshot::Sender<()>),
}

/// Handle to a running device poller.
#[derive(Clone)]
pub struct DeviceHandle {
    pub name: String,
    pub roles: Vec<Role>,
    pub slot: Arc<Mutex<DeviceSlot>>,
    tx: mpsc::Sender<Action>,
}

impl DeviceHandle {
    pub fn snapshot(&self) -> DeviceSlot {
        self.slot.lock().expect("slot lock").clone()
    }

    pub fn fills(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Writes a battery setpoint (W, + = charge) through the driver.
    pub async fn set_power(&self, power_w: f64) -> Result<(), DeviceError> {
        let stopped = || DeviceError::Stopped {
            device: self.name.clone(),
        };
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Action::SetPower(power_w, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(|source| DeviceError::Driver {
                device: self.name.clone(),
                source,
            })
    }

    pub async fn reset_and_poll(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Action::ResetAndPoll(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn poll_now(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Action::PollNow(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
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

/// Starts the poller of `device` on `bus`.
pub fn spawn(device: LoadedDevice, bus: BusHandle, backoff_max: Duration) -> DeviceHandle {
    let (tx, mut rx) = mpsc::channel::<Action>(16);
    let slot = Arc::new(Mutex::new(DeviceSlot::default()));
    let handle = DeviceHandle {
        name: device.name.clone(),
        roles: device.config.roles.clone(),
        slot: slot.clone(),
        tx,
    };
    let interval = Duration::from_millis(device.config.poll_ms);
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let name = device.name.clone();
        // The instance moves into each blocking call and back out again.
        let mut instance = Some(device.instance);
        let mut driver_bus = Some(DriverBus {
            bus,
            runtime,
            device: name.clone(),
        });
        let mut next_poll = tokio::time::Instant::now();
        loop {
            let action = tokio::select! {
                biased;
                a = rx.recv() => match a { Some(a) => Some(a), None => return },
                _ = tokio::time::sleep_until(next_poll) => None,
            };
            let (mut inst, mut dbus) = (
                instance.take().expect("instance"),
                driver_bus.take().expect("bus"),
            );
            let (do_poll, reply_unit, reply_power, power) = match action {
                None => (true, None, None, None),
                Some(Action::PollNow(r)) => (true, Some(r), None, None),
                Some(Action::ResetAndPoll(r)) => {
                    let result = tokio::task::spawn_blocking(move || {
                        let r = inst.reset_alarms(&mut dbus);
                        (inst, dbus, r)
                    })
                    .await
                    .expect("driver call task");
                    (inst, dbus) = (result.0, result.1);
                    if let Err(e) = result.2 {
                        tracing::debug!(device = %name, "alarm reset: {e}");
                    }
                    (true, Some(r), None, None)
                }
                Some(Action::SetPower(w, r)) => (false, None, Some(r), Some(w)),
            };
            if let (Some(w), Some(reply)) = (power, reply_power) {
                let result = tokio::task::spawn_blocking(move || {
                    let r = inst.set_battery_power(&mut dbus, w);
                    (inst, dbus, r)
                })
                .await
                .expect("driver call task");
                (inst, dbus) = (result.0, result.1);
                let _ = reply.send(result.2);
            }
            if do_poll {
                let result = tokio::task::spawn_blocking(move || {
                    let r = inst.poll(&mut dbus);
                    (inst, dbus, r)
                })
                .await
                .expect("driver call task");
                (inst, dbus) = (result.0, result.1);
                let failures = {
                    let mut s = slot.lock().expect("slot lock");
                    s.polls += 1;
                    match result.2 {
                        Ok(readings) => {
                            s.readings = Some(readings);
                            s.last_ok = Some(Instant::now());
                            s.consecutive_failures = 0;
                            s.last_error = None;
                        }
                        Err(e) => {
                            s.failures += 1;
                            s.consecutive_failures += 1;
                            if s.consecutive_failures == 1 {
                                tracing::warn!(device = %name, "poll failed: {e}");
                            }
                            s.last_error = Some(e.to_string());
                        }
                    }
                    s.consecutive_failures
                };
                // A device that keeps failing is asked less often (doubling up to the cap), so
                // its timeouts do not crowd the bus for the devices that answer.
                let wait = if failures >= 3 {
                    let factor = 1u32 << (failures - 2).min(16);
                    (interval * factor).min(backoff_max.max(interval))
                } else {
                    interval
                };
                next_poll = tokio::time::Instant::now() + wait;
                if let Some(r) = reply_unit {
                    let _ = r.send(());
                }
            }
            instance = Some(inst);
            driver_bus = Some(dbus);
        }
    });
    handle
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// `target/<profile>`, where `cargo build --workspace` puts the driver plugins.
    fn built_drivers() -> PathBuf {
        let exe = std::env::current_exe().expect("test executable path");
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        assert!(
            dir.join("libems_driver_ina226.so").is_file(),
            "build the workspace first (`cargo build --workspace`)"
        );
        dir.to_path_buf()
    }

    fn config(driver_dir: &Path, meter: &str) -> AgentConfig {
        let text = format!(
            r#"
device_id = "site_1"
driver_dir = "{}"
[buses.rs485]
kind = "rtu"
port = "/dev/ttyUSB0"
[buses.i2c]
kind = "i2c"
device = "/dev/i2c-1"
[devices.inv]
driver = "sunspec"
bus = "rs485"
unit = 1
roles = ["inverter", "battery"]
[devices.meter]
driver = "ina226"
bus = "i2c"
address = 0x40
{meter}
"#,
            driver_dir.display()
        );
        AgentConfig::from_toml_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    fn load_err(config: &AgentConfig) -> LoadError {
        match load(config) {
            Ok(_) => panic!("loading should fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_missing_plugin_names_the_device_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_err(&config(dir.path(), r#"roles = ["battery_meter"]"#));
        assert!(
            matches!(&e, LoadError::Plugin { device, source: HostError::FileMissing { .. } } if device == "inv"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(r#"device "inv": driver plugin "#),
            "{text}"
        );
        assert!(text.contains("libems_driver_sunspec.so"), "{text}");
    }

    #[test]
    fn a_role_the_driver_does_not_offer_names_the_device_the_driver_and_the_role() {
        let e = load_err(&config(
            &built_drivers(),
            r#"roles = ["battery_meter", "pv_meter"]"#,
        ));
        assert!(
            matches!(&e, LoadError::Role { device, role: Role::PvMeter, .. } if device == "meter"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            r#"device "meter": driver "ina226" cannot fill role PvMeter (it offers [BatteryMeter])"#
        );
    }

    #[test]
    fn options_the_driver_refuses_name_the_device_and_its_options_table() {
        let e = load_err(&config(&built_drivers(), r#"roles = ["battery_meter"]"#));
        assert!(
            matches!(&e, LoadError::Options { device, source: HostError::Config { .. } } if device == "meter"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(r#"device "meter" (devices.meter.options): driver `ina226`"#),
            "{text}"
        );
        assert!(text.contains("shunt_ohms"), "{text}");
    }

    #[tokio::test]
    async fn a_setpoint_for_a_stopped_poller_names_the_device() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let handle = DeviceHandle {
            name: "inv".into(),
            roles: vec![Role::Inverter],
            slot: Arc::default(),
            tx,
        };
        let e = handle.set_power(500.0).await.unwrap_err();
        assert!(
            matches!(&e, DeviceError::Stopped { device } if device == "inv"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "device inv poller stopped");
    }
}
