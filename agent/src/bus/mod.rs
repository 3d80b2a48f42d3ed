//! Buses: one task owns each physical bus and runs its transactions strictly one at a time,
//! whatever the number of devices on it. Drivers reach it through a [`BusHandle`]; the
//! [`blocking::DriverBus`] adapter gives a driver (running on a blocking thread) the SDK's
//! synchronous [`ems_driver_sdk::Bus`]. A transaction is the SDK's [`Request`], the same value a
//! driver's unit tests see recorded by `MemoryBus`.
//!
//! - [`modbus`]: Modbus RTU (tokio-serial) and Modbus TCP, on tokio-modbus.
//! - [`i2c`]: Linux i2c-dev and the simulated I2C bus of ems-sim.
//! - [`blocking`]: the sync `Bus` adapter for drivers.
//! - [`stats`]: per-bus and per-device counters.

pub mod blocking;
pub mod i2c;
pub mod modbus;
pub mod stats;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ems_driver_sdk::BusError;
pub use ems_driver_sdk::Request;
use tokio::sync::{mpsc, oneshot};

use crate::config::BusConfig;
pub use stats::{BusStats, Counters};

#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    Registers(Vec<u16>),
    Coils(Vec<bool>),
    Bytes(Vec<u8>),
    Done,
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Response, BusError>>,
}

/// A cloneable handle to a bus task.
#[derive(Clone)]
pub struct BusHandle {
    name: Arc<str>,
    tx: mpsc::Sender<Job>,
    stats: Arc<Mutex<BusStats>>,
}

impl BusHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one transaction on the bus, after the ones queued before it.
    pub async fn call(&self, request: Request) -> Result<Response, BusError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { request, reply })
            .await
            .map_err(|_| BusError::Other(format!("bus {} has stopped", self.name)))?;
        rx.await
            .map_err(|_| BusError::Other(format!("bus {} dropped the request", self.name)))?
    }

    pub fn stats(&self) -> BusStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// Transactions with `target` (unit id or I2C address) so far, retries included: a poller
    /// reads it before and after a poll, without copying the whole [`BusStats`].
    pub fn requests_to(&self, target: u8) -> u64 {
        let stats = self.stats.lock().expect("stats lock");
        stats.by_device.get(&target).map_or(0, |c| c.requests)
    }
}

/// Something that executes transactions on one physical bus.
pub(crate) enum Transport {
    Modbus(modbus::ModbusTransport),
    I2c(i2c::I2cTransport),
}

/// Called for every attempt on the line (retries included), so the counters show what the
/// line really did, not only what the driver finally saw.
pub(crate) type AttemptRecorder<'a> = dyn FnMut(&Result<Response, BusError>, Duration) + Send + 'a;

impl Transport {
    async fn execute(
        &mut self,
        req: &Request,
        record: &mut AttemptRecorder<'_>,
    ) -> Result<Response, BusError> {
        match self {
            Transport::Modbus(t) if !req.is_i2c() => t.execute(req, record).await,
            Transport::I2c(t) if req.is_i2c() => {
                let started = Instant::now();
                let result = t.execute(req).await;
                record(&result, started.elapsed());
                result
            }
            _ => {
                let result = Err(BusError::Unsupported);
                record(&result, Duration::ZERO);
                result
            }
        }
    }
}

/// Starts the task that owns bus `name`. Opening the port happens lazily on the first
/// transaction (and again after a failure), so a missing adapter is reported per transaction
/// and the agent keeps running.
pub fn spawn(name: &str, config: &BusConfig) -> BusHandle {
    let transport = match config {
        BusConfig::Rtu { .. } | BusConfig::Tcp { .. } => {
            Transport::Modbus(modbus::ModbusTransport::new(name, config.clone()))
        }
        BusConfig::I2c { device } => Transport::I2c(i2c::I2cTransport::dev(device.clone())),
        BusConfig::I2cSocket { path } => Transport::I2c(i2c::I2cTransport::socket(path.clone())),
    };
    let (tx, mut rx) = mpsc::channel::<Job>(64);
    let stats = Arc::new(Mutex::new(BusStats::default()));
    let handle = BusHandle {
        name: name.into(),
        tx,
        stats: stats.clone(),
    };
    let bus_name = name.to_string();
    tokio::spawn(async move {
        let mut transport = transport;
        while let Some(job) = rx.recv().await {
            if job.reply.is_closed() {
                continue;
            }
            let target = job.request.target();
            let mut record = |attempt: &Result<Response, BusError>, elapsed: Duration| {
                stats
                    .lock()
                    .expect("stats lock")
                    .record(target, attempt, elapsed);
            };
            let result = transport.execute(&job.request, &mut record).await;
            if let Err(e) = &result {
                tracing::debug!(bus = %bus_name, target = job.request.target(), "transaction failed: {e}");
            }
            let _ = job.reply.send(result);
        }
    });
    handle
}
