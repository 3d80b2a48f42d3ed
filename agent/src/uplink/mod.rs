//! The uplink: the device socket to the cloud, and the store-and-forward queue behind it.
//!
//! Every packet from the loop is first made durable in the [`queue`], then sent. Packets leave
//! the queue only on the cloud's `TELEMETRY_ACK`. After an outage the backlog goes out oldest
//! first, in batches, at a bounded rate, while each new live packet is sent at once.
//! Commands from the cloud are handed to the loop and answered exactly once per `command_id`
//! (answers are kept in the queue's database, so this holds across restarts too).
//!
//! - [`connect`]: TLS, token file, opening the socket.
//! - [`queue`]: the SQLite queue.
//! - [`state`]: the rules (window, resend, backlog cursor, command de-duplication, liveness,
//!   reconnect backoff) as plain state; this module only does the I/O around them.

pub mod connect;
pub mod queue;
pub mod state;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ems_protocol::{CommandAnswer, Downstream, Telemetry, Upstream, parse_downstream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::rustls::ClientConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::run::CommandRequest;
use connect::Socket;
use queue::Queue;
use state::{Backoff, BatchAction, Dispatch, PingAction, Session};

/// Uplink tuning; defaults suit a Raspberry Pi on a home connection.
#[derive(Debug, Clone)]
pub struct UplinkOptions {
    /// Cloud base URL (`wss://host`), or `None` to only queue.
    pub url: Option<String>,
    pub device_id: String,
    pub token: String,
    pub tls: Arc<ClientConfig>,
    /// Backlog packets sent per batch, and batches per second.
    pub batch: usize,
    pub batches_per_s: u32,
    /// Unacknowledged packets allowed in flight.
    pub window: usize,
    /// A packet not acknowledged within this is sent again (the cloud de-duplicates).
    pub resend_after: Duration,
    /// Ping period; a socket silent for four periods is dead (20 s by default, so a black-holed
    /// link is rebuilt within 25 s).
    pub ping_every: Duration,
    pub backoff_max: Duration,
}

impl UplinkOptions {
    pub fn new(
        url: Option<String>,
        device_id: String,
        token: String,
        tls: Arc<ClientConfig>,
    ) -> Self {
        UplinkOptions {
            url,
            device_id,
            token,
            tls,
            batch: 100,
            batches_per_s: 10,
            window: 1000,
            resend_after: Duration::from_secs(30),
            ping_every: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Counters the uplink reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UplinkStats {
    pub connected: bool,
    pub connects: u64,
    pub queued: u64,
    pub sent: u64,
    pub acked: u64,
    pub evicted_total: u64,
    /// Packets the cloud refused for good, set aside in the queue's quarantine table.
    pub quarantined_total: u64,
    /// The queue lives in RAM only (no usable file; see [`Queue::open_or_recover`]).
    pub queue_in_memory: bool,
}

pub struct Uplink {
    opts: UplinkOptions,
    /// Shared with the queue writer task, which makes each packet durable before the socket
    /// sees it; the session only acknowledges, quarantines and reads the backlog.
    queue: Arc<Mutex<Queue>>,
    /// Packets from the loop, until [`Uplink::run`] hands them to the queue writer.
    telemetry: Option<mpsc::Receiver<Telemetry>>,
    /// Packets already queued, for sending live.
    live: mpsc::Receiver<Telemetry>,
    live_tx: Option<mpsc::Sender<Telemetry>>,
    commands: mpsc::Sender<CommandRequest>,
    link_up: watch::Sender<bool>,
    stats: watch::Sender<UplinkStats>,
}

/// What one session ended with.
enum End {
    Shutdown,
    Lost(String),
}

impl Uplink {
    pub fn new(
        opts: UplinkOptions,
        queue: Queue,
        telemetry: mpsc::Receiver<Telemetry>,
        commands: mpsc::Sender<CommandRequest>,
        link_up: watch::Sender<bool>,
    ) -> (Uplink, watch::Receiver<UplinkStats>) {
        let (stats, stats_rx) = watch::channel(UplinkStats::default());
        let (live_tx, live) = mpsc::channel(LIVE_SLOTS);
        (
            Uplink {
                opts,
                queue: Arc::new(Mutex::new(queue)),
                telemetry: Some(telemetry),
                live,
                live_tx: Some(live_tx),
                commands,
                link_up,
                stats,
            },
            stats_rx,
        )
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// The queue, shared (the metrics endpoint reads the oldest packet's age from it).
    pub fn shared_queue(&self) -> Arc<Mutex<Queue>> {
        self.queue.clone()
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if let (Some(telemetry), Some(live)) = (self.telemetry.take(), self.live_tx.take()) {
            tokio::spawn(write_queue(
                self.queue.clone(),
                telemetry,
                live,
                self.stats.clone(),
            ));
        }
        let mut backoff = Backoff::new(self.opts.backoff_max);
        loop {
            let Some(url) = self.opts.url.clone() else {
                // No cloud configured: keep queueing (a later config with a URL sends it all).
                tokio::select! {
                    _ = shutdown.changed() => return,
                    t = self.live.recv() => if t.is_none() { return },
                }
                continue;
            };
            let (device_id, token, tls) = (
                self.opts.device_id.clone(),
                self.opts.token.clone(),
                self.opts.tls.clone(),
            );
            let target = url.clone();
            let connecting = async move {
                connect::connect(&target, &device_id, &token, &tls, Duration::from_secs(10)).await
            };
            tokio::pin!(connecting);
            let socket = loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    t = self.live.recv() => if t.is_none() { return },
                    r = &mut connecting => break r,
                }
            };
            match socket {
                Ok(socket) => {
                    tracing::info!(url = %url, "uplink connected");
                    backoff.reset();
                    let _ = self.link_up.send(true);
                    self.stats.send_modify(|s| {
                        s.connected = true;
                        s.connects += 1;
                    });
                    let end = self.session(socket, &mut shutdown).await;
                    let _ = self.link_up.send(false);
                    self.stats.send_modify(|s| s.connected = false);
                    match end {
                        End::Shutdown => return,
                        End::Lost(why) => tracing::warn!("uplink lost: {why}"),
                    }
                }
                Err(e) => {
                    let _ = self.link_up.send(false);
                    tracing::warn!("uplink: {e}; retrying in {:?}", backoff.current());
                }
            }
            let sleep = tokio::time::sleep(backoff.wait(fastrand::f64()));
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    t = self.live.recv() => if t.is_none() { return },
                    _ = &mut sleep => break,
                }
            }
        }
    }

    async fn session(&mut self, socket: Socket, shutdown: &mut watch::Receiver<bool>) -> End {
        let (mut sink, mut stream) = socket.split();
        let mut state = Session::new(&self.opts, Instant::now());
        let (answer_tx, mut answer_rx) = mpsc::channel::<CommandAnswer>(64);
        let mut tick =
            tokio::time::interval(Duration::from_secs(1) / self.opts.batches_per_s.max(1));
        let mut ping = tokio::time::interval(self.opts.ping_every);
        ping.tick().await;

        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    let _ = within(sink.send(Message::Close(None))).await;
                    return End::Shutdown;
                }
                t = self.live.recv() => {
                    let Some(t) = t else { return End::Shutdown };
                    if let Err(e) = within(sink.send(Message::Text(t.to_json()))).await {
                        return End::Lost(e);
                    }
                    state.live_sent(t.timestamp.unix(), Instant::now());
                    self.stats.send_modify(|s| s.sent += 1);
                }
                Some(answer) = answer_rx.recv() => {
                    state.answered(&answer.command_id);
                    if let Err(e) = self.queue().store_answer(&answer, now_unix()) {
                        tracing::error!("cannot store answer to {}: {e}", answer.command_id);
                    }
                    if let Err(e) = within(sink.send(Message::Text(Upstream::CommandAnswer(answer).to_json()))).await {
                        return End::Lost(e);
                    }
                }
                msg = stream.next() => {
                    let text = match msg {
                        None => return End::Lost("closed by the cloud".into()),
                        Some(Err(e)) => return End::Lost(e.to_string()),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(frame))) => return End::Lost(format!("closed by the cloud: {frame:?}")),
                        Some(Ok(_)) => { state.heard(Instant::now()); continue; }
                    };
                    state.heard(Instant::now());
                    let reply = match self.handle_frame(&text, &mut state, &answer_tx) {
                        Some(reply) => reply,
                        None => continue,
                    };
                    if let Err(e) = within(sink.send(Message::Text(reply.to_json()))).await {
                        return End::Lost(e);
                    }
                }
                _ = tick.tick() => {
                    let (after, limit) = match state.batch_due(Instant::now()) {
                        BatchAction::Wait => continue,
                        BatchAction::Read { after, limit } => (after, limit),
                    };
                    let rows = self.queue().oldest_after(after, limit);
                    let rows = match rows {
                        Ok(rows) => rows,
                        Err(e) => { tracing::error!("reading the queue: {e}"); continue; }
                    };
                    for (ts, body) in rows {
                        if !state.backlog_packet(ts, Instant::now()) {
                            continue;
                        }
                        if let Err(e) = within(sink.feed(Message::Text(body))).await {
                            return End::Lost(e);
                        }
                        self.stats.send_modify(|s| s.sent += 1);
                    }
                    if let Err(e) = within(sink.flush()).await {
                        return End::Lost(e);
                    }
                }
                _ = ping.tick() => {
                    if let PingAction::Close(why) = state.ping_due(Instant::now()) {
                        return End::Lost(why);
                    }
                    if let Err(e) = within(sink.send(Message::Ping(Vec::new()))).await {
                        return End::Lost(e);
                    }
                }
            }
        }
    }

    /// Carries out a text frame from the cloud; returns the frame to send back, if any.
    fn handle_frame(
        &mut self,
        text: &str,
        state: &mut Session,
        answers: &mpsc::Sender<CommandAnswer>,
    ) -> Option<Upstream> {
        match parse_downstream(text) {
            Ok(Downstream::TelemetryAck(ack)) => {
                state.acked(ack.timestamps.iter().map(|t| t.unix()));
                let mut queue = self.queue();
                match queue.ack(&ack.timestamps) {
                    Ok(n) => {
                        let queued = queue.len();
                        self.stats.send_modify(|s| {
                            s.acked += n;
                            s.queued = queued;
                        });
                    }
                    Err(e) => tracing::error!("cannot delete acknowledged packets: {e}"),
                }
                None
            }
            Ok(Downstream::Command(command)) => {
                let stored = self.queue().answer(&command.command_id).ok().flatten();
                match state.command(&command.command_id, stored) {
                    Dispatch::Repeat(previous) => Some(Upstream::CommandAnswer(previous)),
                    Dispatch::Ignore => None,
                    Dispatch::Execute => {
                        let commands = self.commands.clone();
                        let answers = answers.clone();
                        tokio::spawn(async move {
                            let (reply, rx) = oneshot::channel();
                            if commands
                                .send(CommandRequest { command, reply })
                                .await
                                .is_ok()
                                && let Ok(answer) = rx.await
                            {
                                let _ = answers.send(answer).await;
                            }
                        });
                        None
                    }
                }
            }
            Ok(Downstream::Error(e)) if e.code.is_final_refusal() && !e.timestamps.is_empty() => {
                state.refused(e.timestamps.iter().map(|t| t.unix()));
                let code = serde_json::to_value(e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let mut queue = self.queue();
                match queue.quarantine(&e.timestamps, &code, &e.message, now_unix()) {
                    Ok(moved) => {
                        let total = queue.quarantined_total().unwrap_or(0);
                        let queued = queue.len();
                        tracing::warn!(
                            code = %code,
                            packets = moved,
                            quarantined_total = total,
                            first = %e.timestamps[0],
                            "cloud refused telemetry for good; set aside in the quarantine, not resent: {}",
                            e.message
                        );
                        self.stats.send_modify(|s| {
                            s.quarantined_total = total;
                            s.queued = queued;
                        });
                    }
                    Err(err) => tracing::error!("cannot quarantine refused packets: {err}"),
                }
                None
            }
            Ok(Downstream::Error(e)) => {
                tracing::warn!(code = ?e.code, "cloud refused a frame: {}", e.message);
                None
            }
            Err(e) => {
                tracing::warn!("malformed frame from the cloud: {e}");
                Some(Upstream::Error(state::refusal(text, &e)))
            }
        }
    }
}

/// Packets queued but not yet taken by the session; beyond this the live send of a packet is
/// skipped (it is in the queue, and the backlog sends it).
const LIVE_SLOTS: usize = 64;

/// Longest a socket write may take; a write that stalls longer (a peer that stopped reading)
/// ends the session, so the connection is rebuilt instead of hanging.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// A socket write within [`WRITE_DEADLINE`].
async fn within<E: std::fmt::Display>(
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(WRITE_DEADLINE, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "a socket write stalled for {} s",
            WRITE_DEADLINE.as_secs()
        )),
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves SQLite consistent (its own transactions); go on.
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The queue writer: makes every packet from the loop durable, then offers it to the session
/// for sending live. It runs apart from the socket, so a stalled connection never holds up
/// queueing; a failed write moves the queue to RAM rather than drop a packet.
async fn write_queue(
    queue: Arc<Mutex<Queue>>,
    mut telemetry: mpsc::Receiver<Telemetry>,
    live: mpsc::Sender<Telemetry>,
    stats: watch::Sender<UplinkStats>,
) {
    while let Some(t) = telemetry.recv().await {
        let counts = {
            let mut q = lock(&queue);
            match q.push(&t) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    evicted = n,
                    "telemetry queue over budget: oldest packets evicted"
                ),
                Err(e) => {
                    // The file failed (full disk, I/O error): keep going in RAM.
                    q.degrade_to_memory(&e);
                    if let Err(e) = q.push(&t) {
                        tracing::error!("cannot queue telemetry {}: {e}", t.timestamp);
                    }
                }
            }
            (
                q.len(),
                q.evicted_total().unwrap_or(0),
                q.quarantined_total().unwrap_or(0),
                q.is_in_memory(),
            )
        };
        stats.send_modify(|s| {
            (
                s.queued,
                s.evicted_total,
                s.quarantined_total,
                s.queue_in_memory,
            ) = counts;
        });
        // Full: the session is behind (or down); the packet goes out with the backlog.
        let _ = live.try_send(t);
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where the queue lives in the data directory.
pub fn queue_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("uplink-queue.sqlite")
}
