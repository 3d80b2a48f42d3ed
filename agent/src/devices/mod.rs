//! Devices: loading each configured device's driver plugin, and one poller task per device that
//! polls it at its interval, backs off while it keeps failing, and carries out setpoint and
//! alarm-reset requests between polls (before the next poll, so a 0 W after a fault is never
//! kept waiting behind routine reads).
//!
//! # Layout
//! - this file: what the rest of the agent sees of a device: [`DeviceSlot`] (latest readings
//!   and health), [`DeviceHandle`] (requests to its poller) and [`DeviceError`].
//! - `load`: loading the plugins and instantiating the drivers ([`load`], [`LoadError`]).
//! - `poller`: the poller task and the thread that owns the driver instance ([`spawn`]).

mod load;
mod poller;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ems_driver_sdk::host::HostError;
use ems_driver_sdk::{Readings, Role};
use tokio::sync::{mpsc, oneshot, watch};

pub use load::{LoadError, LoadedDevice, load};
pub use poller::{PollerTiming, spawn};

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
    /// Set when a driver call overran its budget or the driver panicked, until a fresh instance
    /// has polled successfully: meanwhile the device counts as lost (COMM_LOSS) at once.
    pub outage: Option<Outage>,
    /// Fresh driver instances made after an outage.
    pub restarts: u64,
    /// Setpoint writes that succeeded and that failed.
    pub writes_ok: u64,
    pub writes_failed: u64,
    /// When the last setpoint write succeeded.
    pub last_write_ok: Option<Instant>,
    /// Since when setpoint writes have been failing (`None` once one succeeds).
    pub write_failing_since: Option<Instant>,
    /// How the last failed write failed.
    pub write_failure: Option<WriteFailure>,
    /// Seconds per poll, observed by the poller when metrics are on (shared with
    /// [`crate::metrics::Metrics`]).
    pub poll_seconds: Option<prometheus_client::metrics::histogram::Histogram>,
    /// Bus transactions per poll (attempts on the line, retries included), observed by the
    /// poller when metrics are on: a driver that starts needing retries shows here.
    pub poll_transactions: Option<prometheus_client::metrics::histogram::Histogram>,
}

/// Why a device has no working driver instance at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// A call overran the call budget; the instance was left on its thread.
    Hung,
    /// The driver panicked; its instance is poisoned.
    Panicked,
}

/// How a setpoint write failed, which decides the flag it raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailure {
    /// The bus failed (timeout, CRC): the line, not the inverter (COMM_LOSS once it lasts).
    Transport,
    /// The driver or the device refused the setpoint (INVERTER_FAULT once it lasts).
    Refused,
    /// No working driver instance (it panicked or hung): INVERTER_FAULT at once.
    NoInstance,
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
    /// The call overran the call budget; the instance is being replaced.
    #[error("device {device}: driver call took longer than {budget_s} s; replacing the instance")]
    Hung { device: String, budget_s: f64 },
    /// The driver instance panicked or hung earlier and no fresh one is ready yet.
    #[error("device {device}: no working driver instance (a fresh one is being made)")]
    NoInstance { device: String },
}

/// Requests to a device besides polling.
enum Action {
    SetPower(f64, oneshot::Sender<Result<(), DeviceError>>),
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
    /// The latest setpoint from the loop (W); every send is written, even an unchanged value,
    /// because each write refreshes the inverter's revert timer.
    setpoint: Arc<watch::Sender<f64>>,
}

impl DeviceHandle {
    pub fn snapshot(&self) -> DeviceSlot {
        self.slot.lock().expect("slot lock").clone()
    }

    pub fn fills(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Hands a battery setpoint (W, + = charge) to the poller without waiting: it is written
    /// before the next poll, and a newer setpoint replaces one not yet written. The outcome
    /// shows in the slot (`writes_ok`, `write_failing_since`).
    pub fn command_power(&self, power_w: f64) {
        self.setpoint.send_replace(power_w);
    }

    /// Writes a battery setpoint (W, + = charge) through the driver and waits for the outcome.
    pub async fn set_power(&self, power_w: f64) -> Result<(), DeviceError> {
        let stopped = || DeviceError::Stopped {
            device: self.name.clone(),
        };
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Action::SetPower(power_w, tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
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
