//! Test plugin `test-panicky`: a driver that panics or hangs on purpose, so the loader's and the
//! agent's tests can prove the host survives it.
//!
//! Without options its `poll` panics every time and `set_battery_power` writes the setpoint to
//! holding register 0 of its unit (the loader tests). With options it stands in front of a real
//! driver plugin and injects one fault on demand (the agent's end-to-end tests):
//! - `delegate` (path of a driver `.so`) and `delegate_options` (table): every call goes to an
//!   instance of that plugin, made with these options and this device's address, over the same
//!   bus; without a delegate, `poll` returns empty readings when no fault fires.
//! - `fault`: `"panic"` (default) or `"sleep"` (the call blocks for `sleep_s`, default 60).
//! - `fault_in`: `"poll"` (default) or `"set_power"`.
//! - `trigger_file` (path): the fault fires only when this file exists, and the file is removed
//!   first, so each time a test creates it exactly one call fails, in whichever instance of the
//!   driver makes it. Without it the fault fires on every call.
//!
//! # Layout
//! One module: [`Panicky`], its options and its export.

use std::path::PathBuf;
use std::time::Duration;

use ems_driver_sdk::host::{DriverInstance, HostError, Plugin};
use ems_driver_sdk::options::Options;
use ems_driver_sdk::{
    Bus, ConfigError, DeviceAddress, Driver, DriverError, DriverInfo, LogLevel, Readings, Role,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Panic,
    Sleep(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Poll,
    SetPower,
}

/// Fails `fault_in` with `fault`; otherwise does what its delegate (or register 0) does.
pub struct Panicky {
    unit: u8,
    fault: Fault,
    fault_in: Call,
    trigger_file: Option<PathBuf>,
    delegate: Option<DriverInstance>,
}

impl Panicky {
    /// Injects the fault if `call` is the faulty one and the trigger (if any) is armed.
    fn maybe_fail(&self, bus: &mut dyn Bus, call: Call) {
        if call != self.fault_in {
            return;
        }
        if let Some(file) = &self.trigger_file
            && std::fs::remove_file(file).is_err()
        {
            return;
        }
        let what = match call {
            Call::Poll => "poll",
            Call::SetPower => "set_power",
        };
        match self.fault {
            Fault::Panic => {
                bus.log(
                    LogLevel::Warn,
                    &format!("test-panicky: about to panic in {what}"),
                );
                panic!("test-panicky panics in {what} on purpose");
            }
            Fault::Sleep(d) => {
                bus.log(
                    LogLevel::Warn,
                    &format!("test-panicky: sleeping {} s in {what}", d.as_secs_f64()),
                );
                std::thread::sleep(d);
            }
        }
    }
}

fn delegate_error(e: HostError) -> DriverError {
    match e {
        HostError::Driver { source, .. } => source,
        other => DriverError::Device(format!("delegate: {other}")),
    }
}

impl Driver for Panicky {
    const INFO: DriverInfo = DriverInfo {
        name: "test-panicky",
        version: env!("CARGO_PKG_VERSION"),
        roles: &[Role::Inverter, Role::Battery],
    };

    fn new(options: &toml::Table, address: DeviceAddress) -> Result<Self, ConfigError> {
        let mut o = Options::new(options);
        let fault = match o.str("fault")?.unwrap_or("panic") {
            "panic" => Fault::Panic,
            "sleep" => Fault::Sleep(Duration::from_secs_f64(o.f64("sleep_s")?.unwrap_or(60.0))),
            other => {
                return Err(ConfigError::new(
                    "fault",
                    format!("{other:?}: panic or sleep"),
                ));
            }
        };
        let fault_in = match o.str("fault_in")?.unwrap_or("poll") {
            "poll" => Call::Poll,
            "set_power" => Call::SetPower,
            other => {
                return Err(ConfigError::new(
                    "fault_in",
                    format!("{other:?}: poll or set_power"),
                ));
            }
        };
        let trigger_file = o.str("trigger_file")?.map(PathBuf::from);
        let delegate = match o.str("delegate")? {
            None => None,
            Some(path) => {
                let empty = toml::Table::new();
                let delegate_options = match o.value("delegate_options") {
                    None => &empty,
                    Some(toml::Value::Table(t)) => t,
                    Some(_) => return Err(ConfigError::new("delegate_options", "must be a table")),
                };
                let plugin =
                    Plugin::open(path).map_err(|e| ConfigError::new("delegate", e.to_string()))?;
                Some(
                    plugin
                        .instantiate(delegate_options, address)
                        .map_err(|e| ConfigError::new("delegate_options", e.to_string()))?,
                )
            }
        };
        o.finish()?;
        Ok(Panicky {
            unit: ems_driver_sdk::options::require_modbus_unit(address)?,
            fault,
            fault_in,
            trigger_file,
            delegate,
        })
    }

    fn poll(&mut self, bus: &mut dyn Bus) -> Result<Readings, DriverError> {
        self.maybe_fail(bus, Call::Poll);
        match &mut self.delegate {
            Some(d) => d.poll(bus).map_err(delegate_error),
            None => Ok(Readings::default()),
        }
    }

    fn set_battery_power(&mut self, bus: &mut dyn Bus, power_w: f64) -> Result<(), DriverError> {
        self.maybe_fail(bus, Call::SetPower);
        match &mut self.delegate {
            Some(d) => d.set_battery_power(bus, power_w).map_err(delegate_error),
            None => bus
                .write_single_register(self.unit, 0, power_w as i16 as u16)
                .map_err(DriverError::bus("write setpoint")),
        }
    }

    fn reset_alarms(&mut self, bus: &mut dyn Bus) -> Result<(), DriverError> {
        match &mut self.delegate {
            Some(d) => d.reset_alarms(bus).map_err(delegate_error),
            None => Ok(()),
        }
    }
}

ems_driver_sdk::export_driver!(Panicky);
