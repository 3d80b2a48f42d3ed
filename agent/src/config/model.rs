//! The typed agent configuration. Unknown keys are errors everywhere (a typo must not silently
//! fall back to a default in a system that drives a battery).

use std::collections::BTreeMap;
use std::path::PathBuf;

use ems_driver_sdk::Role;
use serde::{Deserialize, Serialize};

use crate::control::{BatteryLimits, ControlSettings, GridLimits, Limits, Strategy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This site's id; the `device_id` of every telemetry packet and the cloud endpoint's path.
    pub device_id: String,
    /// State: the telemetry queue and the command-answer journal.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where driver plugins (`lib*.so`) are loaded from.
    #[serde(default = "default_driver_dir")]
    pub driver_dir: PathBuf,
    #[serde(default)]
    pub battery: BatteryLimits,
    #[serde(default)]
    pub grid: GridLimits,
    #[serde(default)]
    pub control: ControlSettings,
    /// What AUTO aims at: target grid power, export and import limits, backup reserve.
    #[serde(default)]
    pub strategy: Strategy,
    #[serde(default)]
    pub comm: CommSettings,
    #[serde(default)]
    pub uplink: UplinkSettings,
    /// Prometheus metrics (`GET /metrics`); off unless `listen` is set.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Physical buses by name.
    #[serde(default)]
    pub buses: BTreeMap<String, BusConfig>,
    /// Devices by name.
    #[serde(default)]
    pub devices: BTreeMap<String, DeviceConfig>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/ems")
}

fn default_driver_dir() -> PathBuf {
    PathBuf::from("/usr/lib/ems/drivers")
}

impl AgentConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            battery: self.battery.clone(),
            grid: self.grid.clone(),
            control: self.control.clone(),
            strategy: self.strategy.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommSettings {
    /// A device that has not answered for this long raises COMM_LOSS and its values become
    /// unknown, s.
    pub loss_after_s: f64,
    /// A failing device is polled less and less often, up to this interval, s. A driver instance
    /// that panicked or hung is recreated after 1 s, then 2 s, 4 s, … up to this interval.
    pub backoff_max_s: f64,
    /// Time budget of one driver call (a poll, a setpoint write, an alarm reset), s. A call past
    /// it marks the device lost (COMM_LOSS) at once; its instance is abandoned on its thread and
    /// a fresh one is made, so a hung plugin never holds up the loop or the other devices.
    pub call_budget_s: f64,
}

impl Default for CommSettings {
    fn default() -> Self {
        CommSettings {
            loss_after_s: 5.0,
            backoff_max_s: 60.0,
            call_budget_s: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkSettings {
    /// Cloud base URL, `wss://host[:port]` (`ws://` for local development). The agent connects
    /// to `{url}/ws/device/{device_id}`. Absent: no uplink (telemetry is still queued).
    pub url: Option<String>,
    /// Allows a `ws://` url to a host that is not this machine (loopback). Off by default
    /// because over plain `ws://` the device token and every command cross the network
    /// unencrypted: readable and alterable by anyone on the path.
    pub allow_insecure: bool,
    /// File holding the device token; must be owned by the agent's user with no access for
    /// group or others (mode 600), checked at start.
    pub token_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) trusted besides the system roots, for self-signed servers.
    pub ca_file: Option<PathBuf>,
    /// Queue budget: at most this many packets (oldest evicted first).
    pub queue_max_packets: u64,
    /// Queue budget: packets older than this are evicted, s.
    pub queue_max_age_s: u64,
    /// Reconnect attempts back off exponentially (with jitter) up to this interval, s.
    pub reconnect_max_s: f64,
}

impl Default for UplinkSettings {
    /// No cloud; a queue of 7 days at 1 Hz.
    fn default() -> Self {
        UplinkSettings {
            url: None,
            allow_insecure: false,
            token_file: None,
            ca_file: None,
            queue_max_packets: 7 * 86_400,
            queue_max_age_s: 7 * 86_400,
            reconnect_max_s: 60.0,
        }
    }
}

/// The Prometheus endpoint. Off by default: the Pi's loopback-only by choice of address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Address to serve `GET /metrics` on, `ip:port` (e.g. `127.0.0.1:9101`). Absent: no
    /// metrics endpoint, no socket.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// One physical bus. Transactions on a bus are strictly one at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BusConfig {
    /// Modbus RTU on a serial port (RS-485 adapter).
    Rtu {
        /// e.g. `/dev/ttyUSB0` or a udev alias such as `/dev/rs485`.
        port: PathBuf,
        #[serde(default = "default_baud")]
        baud: u32,
        #[serde(default = "default_parity")]
        parity: Parity,
        #[serde(default = "default_data_bits")]
        data_bits: u8,
        #[serde(default = "default_stop_bits")]
        stop_bits: u8,
        /// How long to wait for a response, ms.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        /// Further attempts after a timeout or CRC error.
        #[serde(default = "default_retries")]
        retries: u32,
        /// Extra silence between frames on top of the 3.5-character minimum, ms (slow devices).
        #[serde(default)]
        extra_delay_ms: u64,
    },
    /// Modbus TCP (inverters with Ethernet, RS-485 gateways).
    Tcp {
        /// `host:port`, port usually 502.
        address: String,
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
        #[serde(default = "default_retries")]
        retries: u32,
    },
    /// Linux i2c-dev, e.g. `/dev/i2c-1` on a Raspberry Pi.
    I2c { device: PathBuf },
    /// A simulated I2C bus served by `ems-sim` over a Unix socket (see `sim/README.md`).
    I2cSocket { path: PathBuf },
}

fn default_baud() -> u32 {
    9600
}
fn default_parity() -> Parity {
    Parity::None
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_retries() -> u32 {
    1
}

impl BusConfig {
    pub fn is_modbus(&self) -> bool {
        matches!(self, BusConfig::Rtu { .. } | BusConfig::Tcp { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Driver plugin name (`sunspec`, `sdm630`, `ina226`, `modbus-map`, …).
    pub driver: String,
    /// Name of a bus in `[buses]`.
    pub bus: String,
    /// Modbus unit id on Modbus buses: 1–247 on a serial line, 1–255 over TCP.
    pub unit: Option<u8>,
    /// 7-bit I2C address on I2C buses (0x03–0x77).
    pub address: Option<u8>,
    /// What this device provides: `inverter`, `battery`, `grid_meter`, `battery_meter`,
    /// `pv_meter`.
    pub roles: Vec<Role>,
    /// Poll interval, ms.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Driver options, passed to the driver as TOML.
    #[serde(default)]
    pub options: toml::Table,
}

fn default_poll_ms() -> u64 {
    1000
}
