//! Wiring: buses, devices and the loop from a config, as the binary and the tests start them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ems_protocol::{Command, CommandAnswer};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::bus::{self, BusHandle};
use crate::clock::Clock;
use crate::config::AgentConfig;
use crate::devices::{self, DeviceHandle, LoadError};
use crate::metrics::{DeviceSource, Metrics};
use crate::run::{Agent, Channels, CommandRequest, Status};
use crate::uplink::connect::ConnectError;
use crate::uplink::queue::{Budget, Queue};
use crate::uplink::{Uplink, UplinkOptions, UplinkStats, connect};

/// Why the agent could not start; each names the file, the device or the key at fault. (The
/// telemetry queue is not among them: see [`Queue::open_or_recover`].)
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The uplink's token file or CA file.
    #[error(transparent)]
    Uplink(#[from] ConnectError),
    /// A device's driver plugin or options.
    #[error(transparent)]
    Device(#[from] LoadError),
    /// The metrics endpoint's address (`metrics.listen`) could not be bound.
    #[error("metrics.listen {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
}

/// A running agent and the ends of its channels.
pub struct RunningAgent {
    pub buses: BTreeMap<String, BusHandle>,
    pub devices: Vec<DeviceHandle>,
    pub commands: mpsc::Sender<CommandRequest>,
    pub status: watch::Receiver<Option<Status>>,
    pub uplink: watch::Receiver<UplinkStats>,
    /// The wall clock of the telemetry timestamps (tests shift it).
    pub clock: Clock,
    /// Where `GET /metrics` is served, when `metrics.listen` is set (the bound address, so a
    /// config with port 0 learns its port).
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// Sends a command and waits for its answer.
    pub async fn command(&self, command: Command) -> Option<CommandAnswer> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(CommandRequest { command, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Stops the loop after commanding 0 W, and the uplink.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Spawns the buses, loads the drivers, starts one poller per device, the loop and the uplink
/// (its queue always; its socket when `uplink.url` is set).
pub fn start(config: AgentConfig) -> Result<RunningAgent, StartError> {
    // Bound first, so a taken port fails the start before any device is touched.
    let metrics_listener = match &config.metrics.listen {
        Some(addr) => Some(bind_metrics(addr)?),
        None => None,
    };
    let up = &config.uplink;
    let token = match &up.token_file {
        Some(path) if up.url.is_some() => connect::read_token(path)?,
        _ => String::new(),
    };
    // The system's root store is only worth its memory when there is a wss:// cloud to trust.
    let tls = match &up.url {
        Some(url) if url.starts_with("wss://") => connect::tls_config(up.ca_file.as_deref())?,
        _ => connect::empty_tls_config(),
    };
    let queue_path = crate::uplink::queue_path(&config.data_dir);
    // Never fatal: a broken queue file is moved aside, no usable file means RAM (logged loudly).
    let (queue, _) = Queue::open_or_recover(
        &queue_path,
        Budget {
            max_packets: up.queue_max_packets,
            max_age_s: up.queue_max_age_s as i64,
        },
    );
    let mut uplink_opts = UplinkOptions::new(up.url.clone(), config.device_id.clone(), token, tls);
    uplink_opts.backoff_max = Duration::from_secs_f64(up.reconnect_max_s);
    let loaded = devices::load(&config)?;
    let buses: BTreeMap<String, BusHandle> = config
        .buses
        .iter()
        .map(|(name, cfg)| (name.clone(), bus::spawn(name, cfg)))
        .collect();
    let timing = devices::PollerTiming {
        backoff_max: Duration::from_secs_f64(config.comm.backoff_max_s),
        call_budget: Duration::from_secs_f64(config.comm.call_budget_s),
    };
    let devices: Vec<DeviceHandle> = loaded
        .into_iter()
        .map(|d| {
            let bus = buses[&d.config.bus].clone();
            devices::spawn(d, bus, timing)
        })
        .collect();
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (tel_tx, tel_rx) = mpsc::channel(600);
    let (status_tx, status_rx) = watch::channel(None);
    let (link_tx, link_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (uplink, uplink_rx) = Uplink::new(uplink_opts, queue, tel_rx, cmd_tx.clone(), link_tx);
    let shared_queue = uplink.shared_queue();
    let uplink_task = tokio::spawn(uplink.run(stop_rx.clone()));
    let clock = Clock::default();
    let agent = Agent::new(config.clone(), devices.clone(), clock.clone());
    let mut tasks = vec![uplink_task];
    let mut metrics_addr = None;
    if let Some(listener) = metrics_listener {
        let mut metrics = Metrics::new(
            &agent.cycle_metrics(),
            buses.clone(),
            status_rx.clone(),
            uplink_rx.clone(),
        );
        metrics.set_queue(shared_queue);
        for d in &devices {
            let cfg = &config.devices[&d.name];
            metrics.add_device(DeviceSource {
                device: d.clone(),
                bus: cfg.bus.clone(),
                target: cfg.unit.or(cfg.address),
            });
        }
        metrics_addr = listener.local_addr().ok();
        tracing::info!(
            "metrics on http://{}/metrics",
            metrics_addr.map_or_else(String::new, |a| a.to_string())
        );
        tasks.push(tokio::spawn(crate::metrics::serve(
            listener,
            Arc::new(metrics),
            stop_rx.clone(),
        )));
    }
    let task = tokio::spawn(agent.run(Channels {
        telemetry: tel_tx,
        commands: cmd_rx,
        link_up: link_rx,
        status: status_tx,
        shutdown: stop_rx,
    }));
    tasks.insert(0, task);
    Ok(RunningAgent {
        buses,
        devices,
        commands: cmd_tx,
        status: status_rx,
        uplink: uplink_rx,
        clock,
        metrics_addr,
        shutdown: stop_tx,
        tasks,
    })
}

/// Binds the metrics endpoint (must run inside the tokio runtime).
fn bind_metrics(addr: &str) -> Result<tokio::net::TcpListener, StartError> {
    let fail = |source| StartError::Metrics {
        addr: addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    tokio::net::TcpListener::from_std(listener).map_err(fail)
}
