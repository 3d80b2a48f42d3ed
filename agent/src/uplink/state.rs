//! The uplink's rules as plain state, rumqttc-style: what to send, resend, skip or give up on,
//! decided from the events and the time handed in, without any I/O. The event loop in
//! [`super`] owns the socket and the queue, feeds events in and carries the answers out.
//!
//! - [`Session`]: one connection's in-flight window, resend timer, backlog cursor, command
//!   de-duplication and liveness.
//! - [`Backoff`]: the wait between connection attempts.
//! - [`refusal`]: the error frame that answers a malformed frame from the cloud.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use ems_protocol::{CommandAnswer, ErrorMessage, ProtocolError};
use tokio::time::Instant;

/// The first wait after a failed or lost connection; it doubles up to `backoff_max`.
const BACKOFF_START: Duration = Duration::from_secs(1);

/// A socket silent for this many ping periods is dead.
const SILENT_PINGS: u32 = 4;

/// What to do with a command from the cloud.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatch {
    /// Answered before (maybe before a restart): send this answer again, do not run it again.
    Repeat(CommandAnswer),
    /// Being carried out right now: its answer is on the way.
    Ignore,
    /// New: hand it to the loop; call [`Session::answered`] when the answer comes.
    Execute,
}

/// What the batch timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAction {
    /// The in-flight window is full: send nothing until acknowledgements make room.
    Wait,
    /// Read up to `limit` queued packets newer than `after`, oldest first, and offer each to
    /// [`Session::backlog_packet`].
    Read { after: i64, limit: usize },
}

/// What the ping timer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingAction {
    /// Send a ping (its pong, like any frame, counts as a sign of life).
    Ping,
    /// Nothing heard for too long: the link is dead, close it for this reason.
    Close(String),
}

/// One connection's state. It starts empty with every connection: what was in flight on the last
/// socket is still in the queue and goes again from the start of the backlog.
#[derive(Debug)]
pub struct Session {
    /// Unacknowledged packets allowed in flight; backlog reading stops at this many.
    window: usize,
    /// Backlog packets read per batch.
    batch: usize,
    /// A packet not acknowledged within this is sent again (the cloud stores each once).
    resend_after: Duration,
    /// Silence longer than this means the link is dead.
    dead_after: Duration,
    /// Sent, not yet acknowledged: packet timestamp (unix s) → when sent.
    in_flight: BTreeMap<i64, Instant>,
    /// Backlog cursor: every queued packet up to this timestamp has been sent on this socket.
    cursor: i64,
    /// When the cloud last sent any frame (or the session started).
    last_heard: Instant,
    /// Commands handed to the loop whose answer has not come back yet; a repeat of one of them
    /// is dropped rather than run twice.
    pending_commands: HashSet<String>,
}

impl Session {
    /// A new connection, opened at `now`.
    pub fn new(opts: &super::UplinkOptions, now: Instant) -> Session {
        Session {
            window: opts.window,
            batch: opts.batch,
            resend_after: opts.resend_after,
            dead_after: opts.ping_every * SILENT_PINGS,
            in_flight: BTreeMap::new(),
            cursor: i64::MIN,
            last_heard: now,
            pending_commands: HashSet::new(),
        }
    }

    /// A live packet went out at `now`. Live packets are sent at once, whatever the window:
    /// the window only holds the backlog back.
    pub fn live_sent(&mut self, timestamp: i64, now: Instant) {
        self.in_flight.insert(timestamp, now);
    }

    /// The cloud sent a frame of any kind at `now`: the link is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The cloud acknowledged these packets: they leave the window.
    pub fn acked(&mut self, timestamps: impl IntoIterator<Item = i64>) {
        for t in timestamps {
            self.in_flight.remove(&t);
        }
    }

    /// The cloud refused these packets for good: they leave the window and are not resent
    /// (the caller moves them to the quarantine).
    pub fn refused(&mut self, timestamps: impl IntoIterator<Item = i64>) {
        self.acked(timestamps);
    }

    /// A command arrived; `stored` is the answer the queue's database holds for its id, if any.
    /// Each `command_id` is carried out at most once.
    pub fn command(&mut self, command_id: &str, stored: Option<CommandAnswer>) -> Dispatch {
        match stored {
            Some(previous) => Dispatch::Repeat(previous),
            None if self.pending_commands.contains(command_id) => Dispatch::Ignore,
            None => {
                self.pending_commands.insert(command_id.to_string());
                Dispatch::Execute
            }
        }
    }

    /// The loop answered a command (the caller stores the answer, then sends it).
    pub fn answered(&mut self, command_id: &str) {
        self.pending_commands.remove(command_id);
    }

    /// The batch timer fired at `now`. If any packet has waited longer than `resend_after` for
    /// its acknowledgement, the window is emptied and the backlog starts again from the oldest
    /// queued packet (the cloud de-duplicates); then, if the window has room, asks for a batch.
    pub fn batch_due(&mut self, now: Instant) -> BatchAction {
        let stale = self
            .in_flight
            .values()
            .any(|sent| now.saturating_duration_since(*sent) > self.resend_after);
        if stale {
            self.in_flight.clear();
            self.cursor = i64::MIN;
        }
        if self.in_flight.len() >= self.window {
            return BatchAction::Wait;
        }
        BatchAction::Read {
            after: self.cursor,
            limit: (self.window - self.in_flight.len()).min(self.batch),
        }
    }

    /// A queued packet read for [`BatchAction::Read`], in order. Moves the cursor past it;
    /// returns whether to send it (at `now`): not if it is already in flight (sent live).
    pub fn backlog_packet(&mut self, timestamp: i64, now: Instant) -> bool {
        self.cursor = timestamp;
        if self.in_flight.contains_key(&timestamp) {
            return false;
        }
        self.in_flight.insert(timestamp, now);
        true
    }

    /// The ping timer fired at `now`.
    pub fn ping_due(&self, now: Instant) -> PingAction {
        let silent = now.saturating_duration_since(self.last_heard);
        if silent > self.dead_after {
            PingAction::Close(format!("no sign of life for {silent:?}"))
        } else {
            PingAction::Ping
        }
    }
}

/// The wait between connection attempts: exponential, from one second up to a cap, with jitter
/// so that a fleet does not reconnect in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The next wait before jitter.
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: BACKOFF_START,
            max,
        }
    }

    /// The next wait before jitter (for the log line).
    pub fn current(&self) -> Duration {
        self.next
    }

    /// A connection opened: the next failure waits the shortest time again.
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    /// The wait before the next attempt: the current one ±25 %, with `unit` drawn uniformly from
    /// [0, 1) by the caller. The one after that is twice as long, up to the cap.
    pub fn wait(&mut self, unit: f64) -> Duration {
        let wait = self.next.mul_f64(0.75 + unit * 0.5);
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// The error frame answering a frame from the cloud that could not be parsed; it carries the
/// frame's `command_id` when there is one, so the cloud can fail that command at once.
pub fn refusal(text: &str, err: &ProtocolError) -> ErrorMessage {
    let mut reply = ErrorMessage::bad_frame(err);
    reply.command_id = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("command_id")?.as_str().map(str::to_string));
    reply
}

#[cfg(test)]
mod tests;
