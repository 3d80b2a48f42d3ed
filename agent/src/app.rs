//! Wiring: buses, devices and the loop from a config, as the binary and the tests start them.

use std::collections::BTreeMap;
use std::time::Duration;

use ems_protocol::{Command, CommandAnswer, Telemetry};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::bus::{self, BusHandle};
use crate::config::AgentConfig;
use crate::devices::{self, DeviceHandle};
use crate::run::{Agent, Channels, CommandRequest, Status};

/// A running agent and the ends of its channels.
pub struct RunningAgent {
    pub buses: BTreeMap<String, BusHandle>,
    pub devices: Vec<DeviceHandle>,
    pub commands: mpsc::Sender<CommandRequest>,
    pub telemetry: mpsc::Receiver<Telemetry>,
    pub status: watch::Receiver<Option<Status>>,
    pub link_up: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
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

    /// Stops the loop after commanding 0 W.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Spawns the buses, loads the drivers, starts one poller per device and the loop.
pub fn start(config: AgentConfig) -> Result<RunningAgent, String> {
    let loaded = devices::load(&config)?;
    let buses: BTreeMap<String, BusHandle> = config
        .buses
        .iter()
        .map(|(name, cfg)| (name.clone(), bus::spawn(name, cfg)))
        .collect();
    let backoff = Duration::from_secs_f64(config.comm.backoff_max_s);
    let devices: Vec<DeviceHandle> = loaded
        .into_iter()
        .map(|d| {
            let bus = buses[&d.config.bus].clone();
            devices::spawn(d, bus, backoff)
        })
        .collect();
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (tel_tx, tel_rx) = mpsc::channel(600);
    let (status_tx, status_rx) = watch::channel(None);
    let (link_tx, link_rx) = watch::channel(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = Agent::new(config, devices.clone());
    let task = tokio::spawn(agent.run(Channels {
        telemetry: tel_tx,
        commands: cmd_rx,
        link_up: link_rx,
        status: status_tx,
        shutdown: stop_rx,
    }));
    Ok(RunningAgent {
        buses,
        devices,
        commands: cmd_tx,
        telemetry: tel_rx,
        status: status_rx,
        link_up: link_tx,
        shutdown: stop_tx,
        task,
    })
}
