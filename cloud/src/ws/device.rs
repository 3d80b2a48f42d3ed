//! The device socket `/ws/device/<device_id>`, exactly as the spec and `ems_protocol` define it.
//!
//! Up: telemetry (validated, queued for [`ingest`](crate::ingest), acknowledged with
//! `TELEMETRY_ACK` once committed), `COMMAND_ANSWER`s, `ERROR`s. Down: commands, acks, `ERROR`
//! for a frame that was refused (the socket stays open). Too many bad frames in a minute close
//! the socket with 1008, a frame over `max_frame_bytes` with 1009, silence for two ping periods
//! with 1011. A new connection of the same device replaces the old one (closed with 4000).

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ems_protocol::message::ErrorCode;
use ems_protocol::{ErrorMessage, ProtocolError, TelemetryAck, Upstream, telemetry_timestamp_of};
use futures_util::{SinkExt, StreamExt};
use rocket::{Route, State, get, routes};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite_server::tungstenite::Error as WsError;
use tokio_tungstenite_server::tungstenite::Message;
use tokio_tungstenite_server::tungstenite::protocol::CloseFrame;
use tokio_tungstenite_server::tungstenite::protocol::frame::coding::CloseCode;

use super::checks::{Refusal, check_telemetry};
use super::frame::parse;
use super::session::{self, Limits, PingAction, SessionState, Throttle};
use super::upgrade::{self, Socket, SocketHandler, Upgrade, WebSocket};
use crate::auth::DeviceAuth;
use crate::budget::Budgets;
use crate::commands::{deliver_pending, record_answer};
use crate::config::CloudConfig;
use crate::db::Db;
use crate::hub::{Hub, Outbound, OutboundTx};
use crate::ingest::{Ingest, Packet};
use crate::logsafe;

/// Most frames taken from a socket in one go when several arrived together (a backlog).
const READY_FRAMES: usize = 32;

#[get("/ws/device/<device_id>")]
#[allow(clippy::too_many_arguments)] // Rocket's request guards and managed state
fn device_socket(
    device_id: &str,
    auth: DeviceAuth,
    ws: WebSocket,
    hub: &State<Arc<Hub>>,
    budgets: &State<Arc<Budgets>>,
    db: &State<Db>,
    ingest: &State<Ingest>,
    config: &State<CloudConfig>,
) -> Upgrade<Session> {
    debug_assert_eq!(auth.device_id, device_id);
    let session = Session {
        device_id: auth.device_id,
        valid_until: auth.valid_until,
        hub: hub.inner().clone(),
        budgets: budgets.inner().clone(),
        db: db.inner().clone(),
        ingest: ingest.inner().clone(),
        config: config.inner().clone(),
    };
    // A larger message or frame ends the socket with 1009 (see `take`).
    let limits = upgrade::config()
        .max_message_size(Some(config.max_frame_bytes))
        .max_frame_size(Some(config.max_frame_bytes));
    ws.accept(limits, session)
}

/// Mounted at `/`.
pub fn routes() -> Vec<Route> {
    routes![device_socket]
}

/// The socket's writing half.
type Sink = futures_util::stream::SplitSink<Socket, Message>;

/// One device's socket: what it needs from the rest of the server.
struct Session {
    device_id: String,
    /// When the token it connected with stops working (a rotation's grace period).
    valid_until: Option<DateTime<Utc>>,
    hub: Arc<Hub>,
    budgets: Arc<Budgets>,
    db: Db,
    ingest: Ingest,
    config: CloudConfig,
}

/// What a text frame was. Moved straight into the batch, never stored: the size difference
/// between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Handled {
    /// Valid telemetry, for the ingest queue.
    Packet(Packet),
    /// An `ERROR` frame from the device (counted against `device_error_limit`).
    DeviceError,
    /// Anything else that was taken (a command answer).
    Done,
}

fn close(code: u16, reason: impl Into<String>) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into().into(),
    }
}

impl From<session::Close> for CloseFrame {
    fn from(c: session::Close) -> Self {
        close(c.code, c.reason)
    }
}

impl SocketHandler for Session {
    // Not `async fn`: a wrapping future would keep a second copy of its arguments (the session
    // and the socket, ~1 kB) in every idle socket's task.
    fn run(self, socket: Socket) -> impl Future<Output = ()> + Send + 'static {
        self.serve(socket)
    }
}

impl Session {
    async fn serve(self, socket: Socket) {
        let (mut sink, source) = socket.split();
        let mut source = source.ready_chunks(READY_FRAMES);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let conn_id = self.hub.register(&self.device_id, tx.clone());
        tracing::info!(device = %self.device_id, "device connected");
        // The start-up and tear-down steps are boxed so their futures do not stay inside the
        // state of every idle socket's task.
        Box::pin(async {
            if let Some(until) = self.valid_until {
                self.hub.close_at(
                    &self.device_id,
                    Some(conn_id),
                    Some(until),
                    "the device token was replaced; connect with the new one".into(),
                );
            }
            let at = self.mark_connected().await;
            self.hub.connected_since(&self.device_id, conn_id, at);
            self.hub.announce_connected(&self.device_id, at).await;
            deliver_pending(&self.hub, &self.db, &self.device_id, true).await;
        })
        .await;

        let period = self.config.ping_interval();
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        let mut state = SessionState::new(
            Limits {
                bad_frame_limit: self.config.bad_frame_limit,
                device_error_limit: self.config.device_error_limit,
                ping_period: period,
            },
            Instant::now(),
        );
        // Valid packets read but not yet in the ingest queue (it is full: the database is slow).
        let mut waiting: VecDeque<Packet> = VecDeque::new();

        let closing: Option<CloseFrame> = loop {
            tokio::select! {
                permit = self.ingest.room(), if !waiting.is_empty() => {
                    let sent = permit.map(|permit| {
                        if let Some(p) = waiting.pop_front() {
                            permit.send(p);
                        }
                    });
                    if sent.and_then(|()| self.ingest.try_submit(&mut waiting)).is_err() {
                        let _ = self.send_error(&mut sink, ErrorCode::Internal,
                            "the ingest writer has stopped; resend later".into()).await;
                        break Some(close(1011, "server stopping"));
                    }
                    state.heard(Instant::now());
                }
                _ = tokio::time::sleep_until(state.resume_at().unwrap_or_else(Instant::now)),
                    if state.resume_at().is_some() => state.resumed(Instant::now()),
                frames = source.next(), if !state.intake_paused(!waiting.is_empty()) => {
                    let Some(frames) = frames else { break None };
                    match self.take(frames, &mut sink, &mut state, &mut waiting, &tx, conn_id).await {
                        Ok(()) => {}
                        Err(end) => break end,
                    }
                }
                out = rx.recv() => {
                    let Some(first) = out else { break None };
                    let mut batch = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        batch.push(more);
                    }
                    match write_out(&mut sink, batch, &self.hub.metrics).await {
                        Ok(None) => {}
                        Ok(Some(frame)) => break Some(frame),
                        Err(()) => break None,
                    }
                }
                _ = ping.tick() => match state.ping_due(Instant::now(), !waiting.is_empty()) {
                    PingAction::Ping => {
                        if sink.send(Message::Ping(Default::default())).await.is_err() {
                            break None;
                        }
                    }
                    PingAction::Close(c) => {
                        tracing::info!(device = %self.device_id, "no answer to pings, closing");
                        break Some(c.into());
                    }
                },
            }
        };
        if let Some(frame) = closing {
            let _ = sink.send(Message::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
        if self.hub.unregister(&self.device_id, conn_id) {
            Box::pin(self.mark_disconnected()).await;
        }
        tracing::info!(device = %self.device_id, "device disconnected");
    }

    /// Takes the frames that were ready at once: answers refusals, queues the telemetry for the
    /// writer together (fewer wake-ups; one batch, one ack), applies the session's rules.
    /// `Err(close)` ends the socket (with a close frame, or `None` when it is gone).
    async fn take(
        &self,
        frames: Vec<Result<Message, WsError>>,
        sink: &mut Sink,
        state: &mut SessionState,
        waiting: &mut VecDeque<Packet>,
        tx: &OutboundTx,
        conn_id: u64,
    ) -> Result<(), Option<CloseFrame>> {
        let mut packets = Vec::new();
        let mut end = None;
        let mut device_reported = false;
        for msg in frames {
            let refusal = match msg {
                Ok(Message::Text(text)) => match self.handle_text(&text, tx, conn_id).await {
                    Ok(Handled::Packet(packet)) => {
                        self.hub.metrics.frame_in("telemetry");
                        packets.push(packet);
                        None
                    }
                    Ok(Handled::DeviceError) => {
                        device_reported = true;
                        None
                    }
                    Ok(Handled::Done) => None,
                    Err(refusal) => Some(refusal),
                },
                Ok(Message::Binary(_)) => Some(Refusal::bad(ErrorMessage::bad_frame(
                    &ProtocolError::invalid(".", "binary frames are not accepted; send JSON text"),
                ))),
                Ok(Message::Close(_)) => {
                    end = Some(None);
                    break;
                }
                Ok(_) => None, // ping, pong, raw frame
                Err(WsError::Capacity(e)) => {
                    tracing::warn!(device = %self.device_id, "frame too large: {e}");
                    end = Some(Some(close(
                        1009,
                        format!(
                            "message too large; at most {} bytes",
                            self.config.max_frame_bytes
                        ),
                    )));
                    break;
                }
                Err(e) => {
                    tracing::debug!(device = %self.device_id, "socket error: {e}");
                    end = Some(None);
                    break;
                }
            };
            let Some(refusal) = refusal else { continue };
            self.hub.metrics.frame_in("refused");
            tracing::debug!(device = %self.device_id, "refused frame: {}", refusal.error.message);
            let text = serde_json::to_string(&refusal.error).expect("serialises");
            if sink.send(Message::text(text)).await.is_err() {
                end = Some(None);
                break;
            }
            if refusal.counts
                && let Some(c) = state.bad_frame(Instant::now())
            {
                tracing::warn!(device = %self.device_id, "too many bad frames, closing");
                end = Some(Some(c.into()));
                break;
            }
        }
        if !packets.is_empty() {
            let now = Instant::now();
            let verdict = self
                .budgets
                .take(&self.device_id, packets.len(), now.into_std());
            if state.budget(verdict, now) == (Throttle::Until { first: true }) {
                tracing::info!(device = %self.device_id,
                    "over its telemetry budget ({} packets/s, burst {}); reading it more slowly",
                    self.config.device_packet_rate, self.config.device_packet_burst);
            }
            waiting.extend(packets);
            if self.ingest.try_submit(waiting).is_err() && end.is_none() {
                let _ = self
                    .send_error(
                        sink,
                        ErrorCode::Internal,
                        "the ingest writer has stopped; resend later".into(),
                    )
                    .await;
                end = Some(Some(close(1011, "server stopping")));
            }
        }
        if device_reported
            && end.is_none()
            && let Some(c) = state.device_error(Instant::now())
        {
            tracing::warn!(device = %self.device_id, "too many ERROR frames from the device, closing");
            let _ = self
                .send_error(
                    sink,
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} ERROR frames within a minute",
                        self.config.device_error_limit
                    ),
                )
                .await;
            end = Some(Some(c.into()));
        }
        state.heard(Instant::now());
        end.map_or(Ok(()), Err)
    }

    /// An `ERROR` frame with `code` and `message` to the device.
    async fn send_error(
        &self,
        sink: &mut Sink,
        code: ErrorCode,
        message: String,
    ) -> Result<(), ()> {
        let error = ErrorMessage {
            code,
            message,
            command_id: None,
            timestamps: Vec::new(),
        };
        let text = serde_json::to_string(&error).expect("serialises");
        sink.send(Message::text(text)).await.map_err(|_| ())
    }

    /// Handles one text frame; valid telemetry is returned, to be queued for the writer.
    async fn handle_text(
        &self,
        text: &str,
        tx: &OutboundTx,
        conn_id: u64,
    ) -> Result<Handled, Refusal> {
        let (upstream, raw) = parse(text).map_err(|e| {
            let error = ErrorMessage::bad_frame(&e);
            match telemetry_timestamp_of(text) {
                Some(t) => Refusal::packet(error, t),
                None => Refusal::bad(error),
            }
        })?;
        match upstream {
            Upstream::Telemetry(telemetry) => {
                let extensions = check_telemetry(
                    &telemetry,
                    raw,
                    &self.device_id,
                    &self.config,
                    Utc::now().timestamp(),
                )?;
                Ok(Handled::Packet(Packet {
                    telemetry,
                    extensions,
                    ack: tx.clone(),
                    conn_id,
                }))
            }
            Upstream::CommandAnswer(answer) => {
                self.hub.metrics.frame_in("answer");
                // Boxed: rare, and its database future would otherwise enlarge every idle socket.
                match Box::pin(record_answer(&self.hub, &self.db, &self.device_id, &answer)).await {
                    Ok(Some(rec)) => {
                        tracing::info!(device = %self.device_id, command = %rec.command_id,
                            status = %rec.status, "command answered");
                        Ok(Handled::Done)
                    }
                    Ok(None) => {
                        tracing::info!(device = %self.device_id,
                            command = %logsafe::truncate(&answer.command_id, 80),
                            "answer for an unknown, foreign or already final command ignored");
                        Ok(Handled::Done)
                    }
                    Err(e) => Err(Refusal {
                        error: ErrorMessage {
                            code: ErrorCode::Internal,
                            message: format!("answer not recorded: {e}; resend it"),
                            command_id: Some(answer.command_id),
                            timestamps: Vec::new(),
                        },
                        counts: false,
                    }),
                }
            }
            Upstream::Error(e) => {
                self.hub.metrics.frame_in("error");
                tracing::warn!(device = %self.device_id, code = ?e.code,
                    "device reports: {}", logsafe::truncate(&e.message, 300));
                Ok(Handled::DeviceError)
            }
        }
    }

    /// Records the connection; returns when it happened by the database's clock (the order of
    /// connections across instances), or by ours if the database could not be reached.
    async fn mark_connected(&self) -> DateTime<Utc> {
        let result = async {
            let client = self.db.pool.get().await.map_err(|e| e.to_string())?;
            client
                .query_one(
                    "UPDATE devices SET connected_instance = $2, connected_at = clock_timestamp(), \
                     last_seen = clock_timestamp() WHERE id = $1 RETURNING connected_at",
                    &[&self.device_id, &self.hub.instance_id],
                )
                .await
                .map(|row| row.get(0))
                .map_err(|e| e.to_string())
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!(device = %self.device_id, "recording the connection failed: {e}");
            Utc::now()
        })
    }

    async fn mark_disconnected(&self) {
        if let Ok(client) = self.db.pool.get().await {
            let _ = client
                .execute(
                    "UPDATE devices SET connected_instance = NULL, last_seen = now() \
                     WHERE id = $1 AND connected_instance = $2",
                    &[&self.device_id, &self.hub.instance_id],
                )
                .await;
        }
    }
}

/// Writes what the rest of the server queued for this socket: all acks as one `TELEMETRY_ACK`,
/// then commands. `Ok(Some(frame))` asks to close with `frame`; `Err` means the socket is gone.
async fn write_out<S>(
    sink: &mut S,
    batch: Vec<Outbound>,
    metrics: &crate::metrics::Metrics,
) -> Result<Option<CloseFrame>, ()>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut timestamps = Vec::new();
    let mut others = Vec::new();
    for out in batch {
        match out {
            Outbound::Acks(ts) => timestamps.extend(ts),
            other => others.push(other),
        }
    }
    if !timestamps.is_empty() {
        let ack = serde_json::to_string(&TelemetryAck { timestamps }).expect("serialises");
        sink.feed(Message::text(ack)).await.map_err(|_| ())?;
        metrics.frame_out("ack");
    }
    for out in others {
        match out {
            Outbound::Command(text) => {
                sink.feed(Message::text(text)).await.map_err(|_| ())?;
                metrics.frame_out("command");
            }
            Outbound::Close(code, reason) => {
                sink.flush().await.map_err(|_| ())?;
                return Ok(Some(close(code, reason)));
            }
            Outbound::Rejected(timestamps, message) => {
                let error = ErrorMessage {
                    code: ErrorCode::Rejected,
                    message,
                    command_id: None,
                    timestamps,
                };
                let text = serde_json::to_string(&error).expect("serialises");
                sink.feed(Message::text(text)).await.map_err(|_| ())?;
                metrics.frame_out("rejected");
            }
            Outbound::Acks(_) => unreachable!("acks were taken out above"),
        }
    }
    sink.flush().await.map_err(|_| ())?;
    Ok(None)
}
