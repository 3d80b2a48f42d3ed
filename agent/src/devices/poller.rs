//! A device's poller: the task that polls at the device's interval, backs off while it keeps
//! failing and carries out requests between polls, and the thread that owns the driver
//! instance, replaced when a call panics or overruns its budget.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ems_driver_sdk::host::{DriverInstance, HostError, Plugin};
use ems_driver_sdk::{DeviceAddress, DriverError};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Action, DeviceError, DeviceHandle, DeviceSlot, LoadedDevice, Outage, WriteFailure};
use crate::bus::BusHandle;
use crate::bus::blocking::DriverBus;

/// Timing of a device's poller.
#[derive(Debug, Clone, Copy)]
pub struct PollerTiming {
    /// A failing device's poll interval grows up to this; so does the wait before a fresh
    /// instance after an outage.
    pub backoff_max: Duration,
    /// The budget of one driver call.
    pub call_budget: Duration,
}

/// Starts the poller of `device` on `bus`.
///
/// The driver instance lives on a thread of its own and the poller waits for each call at most
/// `call_budget`. A call past it, or a panic, costs the instance: it is left behind (a hung call
/// keeps its thread until it returns, then the instance is dropped there) and a fresh one is made
/// on a new thread after 1 s, 2 s, 4 s, … up to `backoff_max`, so a stuck plugin never holds up
/// the loop, the other devices, or the next attempt to write 0 W.
pub fn spawn(device: LoadedDevice, bus: BusHandle, timing: PollerTiming) -> DeviceHandle {
    let (tx, rx) = mpsc::channel::<Action>(16);
    let (setpoint_tx, setpoint_rx) = watch::channel(0.0);
    let slot = Arc::new(Mutex::new(DeviceSlot::default()));
    let handle = DeviceHandle {
        name: device.name.clone(),
        roles: device.config.roles.clone(),
        slot: slot.clone(),
        tx,
        setpoint: Arc::new(setpoint_tx),
    };
    let poller = Poller {
        name: device.name.clone(),
        plugin: device.instance.plugin().clone(),
        options: device.config.options.clone(),
        address: DeviceAddress {
            modbus_unit: device.config.unit,
            i2c_address: device.config.address,
        },
        bus,
        runtime: tokio::runtime::Handle::current(),
        slot,
        timing,
        interval: Duration::from_millis(device.config.poll_ms),
        worker: None,
        first_instance: Some(device.instance),
        restart_at: tokio::time::Instant::now(),
        restart_backoff: RESTART_BACKOFF_MIN,
    };
    tokio::spawn(poller.run(rx, setpoint_rx));
    handle
}

/// The first wait before a fresh instance after an outage; it doubles with each further outage.
const RESTART_BACKOFF_MIN: Duration = Duration::from_secs(1);

/// A driver call run on the instance's thread.
type Job = Box<dyn FnOnce(&mut DriverInstance, &mut DriverBus) + Send>;

/// The thread that owns one driver instance and runs its calls in turn.
struct Worker {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Worker {
    /// Starts the thread; it first makes the instance with `make` and reports on `ready`.
    fn start(
        name: &str,
        make: Box<dyn FnOnce() -> Result<DriverInstance, HostError> + Send>,
        mut bus: DriverBus,
    ) -> std::io::Result<(Worker, oneshot::Receiver<Result<(), HostError>>)> {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready) = oneshot::channel();
        std::thread::Builder::new()
            .name(format!("drv-{name}"))
            .spawn(move || {
                let mut instance = match make() {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    job(&mut instance, &mut bus);
                }
            })?;
        Ok((Worker { jobs }, ready))
    }
}

/// Why a driver call did not give an answer.
enum CallError {
    NoInstance,
    Hung,
    Driver(HostError),
}

/// One device's poller: its instance's thread, the outage and restart bookkeeping, the slot.
struct Poller {
    name: String,
    plugin: Plugin,
    options: toml::Table,
    address: DeviceAddress,
    bus: BusHandle,
    runtime: tokio::runtime::Handle,
    slot: Arc<Mutex<DeviceSlot>>,
    timing: PollerTiming,
    interval: Duration,
    worker: Option<Worker>,
    /// The instance made at load time, until its thread starts.
    first_instance: Option<DriverInstance>,
    /// No fresh instance before this.
    restart_at: tokio::time::Instant,
    restart_backoff: Duration,
}

impl Poller {
    async fn run(
        mut self,
        mut actions: mpsc::Receiver<Action>,
        mut setpoint: watch::Receiver<f64>,
    ) {
        let mut next_poll = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                changed = setpoint.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let power_w = *setpoint.borrow_and_update();
                    let _ = self.write(power_w).await;
                }
                action = actions.recv() => match action {
                    None => return,
                    Some(Action::SetPower(power_w, reply)) => {
                        let _ = reply.send(self.write(power_w).await);
                    }
                    Some(Action::PollNow(reply)) => {
                        next_poll = self.poll().await;
                        let _ = reply.send(());
                    }
                    Some(Action::ResetAndPoll(reply)) => {
                        if let Err(CallError::Driver(e)) =
                            self.call("alarm reset", |i, b| i.reset_alarms(b)).await
                        {
                            tracing::debug!(device = %self.name, "alarm reset: {e}");
                        }
                        next_poll = self.poll().await;
                        let _ = reply.send(());
                    }
                },
                _ = tokio::time::sleep_until(next_poll) => next_poll = self.poll().await,
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, DeviceSlot> {
        self.slot.lock().expect("slot lock")
    }

    /// Polls once, records the outcome and returns when to poll next.
    async fn poll(&mut self) -> tokio::time::Instant {
        let started = Instant::now();
        let transactions_before = self.transactions();
        let result = self.call("poll", |i, b| i.poll(b)).await;
        let transactions = self.transactions().saturating_sub(transactions_before);
        let failures = {
            let name = self.name.clone();
            let mut s = self.slot();
            s.polls += 1;
            if let Some(h) = &s.poll_seconds {
                h.observe(started.elapsed().as_secs_f64());
            }
            if let Some(h) = &s.poll_transactions {
                h.observe(transactions as f64);
            }
            match result {
                Ok(readings) => {
                    s.readings = Some(readings);
                    s.last_ok = Some(Instant::now());
                    s.consecutive_failures = 0;
                    s.last_error = None;
                    s.outage = None;
                }
                Err(e) => {
                    s.failures += 1;
                    s.consecutive_failures += 1;
                    let text = match e {
                        CallError::Driver(e) => e.to_string(),
                        CallError::Hung => "poll overran the call budget".into(),
                        CallError::NoInstance => "no working driver instance".into(),
                    };
                    if s.consecutive_failures == 1 {
                        tracing::warn!(device = %name, "poll failed: {text}");
                    }
                    s.last_error = Some(text);
                }
            }
            s.consecutive_failures
        };
        if failures == 0 {
            self.restart_backoff = RESTART_BACKOFF_MIN;
        }
        let now = tokio::time::Instant::now();
        if self.worker.is_none() {
            // Poll again as soon as a fresh instance may be made.
            return self.restart_at.max(now + self.interval);
        }
        // A device that keeps failing is asked less often (doubling up to the cap), so its
        // timeouts do not crowd the bus for the devices that answer.
        let wait = if failures >= 3 {
            let factor = 1u32 << (failures - 2).min(16);
            (self.interval * factor).min(self.timing.backoff_max.max(self.interval))
        } else {
            self.interval
        };
        now + wait
    }

    /// The bus's count of transactions with this device so far (retries included). The
    /// difference around a poll is what the poll needed: this task makes the device's calls one
    /// at a time, so only a hung instance's leftover call can add to it meanwhile.
    fn transactions(&self) -> u64 {
        let target = self.address.modbus_unit.or(self.address.i2c_address);
        target.map_or(0, |t| self.bus.requests_to(t))
    }

    /// Writes a setpoint and records the outcome in the slot.
    async fn write(&mut self, power_w: f64) -> Result<(), DeviceError> {
        let result = self
            .call("setpoint write", move |i, b| {
                i.set_battery_power(b, power_w)
            })
            .await;
        let device = self.name.clone();
        let mut s = self.slot();
        let failure = match &result {
            Ok(()) => {
                s.writes_ok += 1;
                s.last_write_ok = Some(Instant::now());
                s.write_failing_since = None;
                s.write_failure = None;
                return Ok(());
            }
            Err(CallError::Driver(HostError::Driver {
                source: DriverError::Bus { .. },
                ..
            }))
            | Err(CallError::Hung) => WriteFailure::Transport,
            Err(CallError::Driver(HostError::Panicked { .. } | HostError::Poisoned { .. }))
            | Err(CallError::NoInstance) => WriteFailure::NoInstance,
            Err(CallError::Driver(_)) => WriteFailure::Refused,
        };
        s.writes_failed += 1;
        let first = s.write_failing_since.is_none();
        s.write_failing_since.get_or_insert_with(Instant::now);
        s.write_failure = Some(failure);
        let error = match result {
            Err(CallError::Driver(source)) => DeviceError::Driver { device, source },
            Err(CallError::Hung) => DeviceError::Hung {
                device,
                budget_s: self.timing.call_budget.as_secs_f64(),
            },
            Err(CallError::NoInstance) | Ok(()) => DeviceError::NoInstance { device },
        };
        if first {
            tracing::warn!("setpoint {power_w} W not written: {error}");
        }
        Err(error)
    }

    /// Runs one driver call on the instance's thread within the call budget. A panic or an
    /// overrun costs the instance (see [`spawn`]).
    async fn call<T: Send + 'static>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut DriverInstance, &mut DriverBus) -> Result<T, HostError> + Send + 'static,
    ) -> Result<T, CallError> {
        self.ensure_worker().await;
        let Some(worker) = &self.worker else {
            return Err(CallError::NoInstance);
        };
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |instance, bus| {
            let _ = tx.send(f(instance, bus));
        });
        if worker.jobs.send(job).is_err() {
            self.lose(Outage::Panicked, "the driver's thread has ended".into());
            return Err(CallError::NoInstance);
        }
        match tokio::time::timeout(self.timing.call_budget, rx).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => {
                if matches!(e, HostError::Panicked { .. } | HostError::Poisoned { .. }) {
                    self.lose(Outage::Panicked, e.to_string());
                }
                Err(CallError::Driver(e))
            }
            Ok(Err(_)) => {
                self.lose(Outage::Panicked, "the driver's thread has ended".into());
                Err(CallError::NoInstance)
            }
            Err(_) => {
                let budget = self.timing.call_budget.as_secs_f64();
                self.lose(
                    Outage::Hung,
                    format!("{what} took longer than the call budget of {budget} s"),
                );
                Err(CallError::Hung)
            }
        }
    }

    /// Gives up the current instance and schedules a fresh one.
    fn lose(&mut self, outage: Outage, reason: String) {
        self.worker = None;
        let wait = self.restart_backoff;
        self.restart_at = tokio::time::Instant::now() + wait;
        self.restart_backoff = (wait * 2).min(self.timing.backoff_max.max(RESTART_BACKOFF_MIN));
        tracing::error!(
            device = %self.name,
            "{reason}; the device counts as lost and a fresh driver instance is made in {} s",
            wait.as_secs_f64()
        );
        let mut s = self.slot();
        s.outage = Some(outage);
        s.last_error = Some(reason);
    }

    /// Starts the instance's thread when there is none and the restart wait has passed: the
    /// instance made at load time first, later a fresh one from the plugin.
    async fn ensure_worker(&mut self) {
        if self.worker.is_some() || tokio::time::Instant::now() < self.restart_at {
            return;
        }
        let fresh = self.first_instance.is_none();
        let make: Box<dyn FnOnce() -> Result<DriverInstance, HostError> + Send> =
            match self.first_instance.take() {
                Some(instance) => Box::new(move || Ok(instance)),
                None => {
                    let (plugin, options, address) =
                        (self.plugin.clone(), self.options.clone(), self.address);
                    Box::new(move || plugin.instantiate(&options, address))
                }
            };
        let bus = DriverBus {
            bus: self.bus.clone(),
            runtime: self.runtime.clone(),
            device: self.name.clone(),
        };
        let failed = match Worker::start(&self.name, make, bus) {
            Ok((worker, ready)) => match tokio::time::timeout(self.timing.call_budget, ready).await
            {
                Ok(Ok(Ok(()))) => {
                    self.worker = Some(worker);
                    if fresh {
                        self.slot().restarts += 1;
                        tracing::info!(device = %self.name, "fresh driver instance made");
                    }
                    return;
                }
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(_)) => "the driver's thread ended while making the instance".into(),
                Err(_) => "making the instance overran the call budget".into(),
            },
            Err(e) => format!("cannot start the driver's thread: {e}"),
        };
        self.lose(Outage::Panicked, failed);
    }
}
