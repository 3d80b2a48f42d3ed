//! The rules of one device socket, apart from its I/O: when a sender of bad frames or of too
//! many `ERROR` frames is disconnected, when reading pauses for the telemetry budget, and when
//! a silent peer is given up. [`SessionState`] takes the time and answers what to do; the
//! socket's `select!` loop in [`super::device`] only reads, writes and waits.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Window over which bad frames and the device's `ERROR` frames are counted.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Close the socket with this code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Close {
            code,
            reason: reason.into(),
        }
    }
}

/// The limits a session enforces (from the cloud configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Refused frames within [`WINDOW`] that close the socket (`bad_frame_limit`).
    pub bad_frame_limit: usize,
    /// `ERROR` frames from the device within [`WINDOW`] tolerated (`device_error_limit`).
    pub device_error_limit: usize,
    /// Ping period; a peer silent for two periods is given up.
    pub ping_period: Duration,
}

/// What to do when the ping timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum PingAction {
    Ping,
    Close(Close),
}

/// What the budget said of a batch of packets.
#[derive(Debug, PartialEq, Eq)]
pub enum Throttle {
    /// Within budget.
    No,
    /// Over budget: stop reading until [`SessionState::resume_at`]. `first` is true when the
    /// device was within budget before (log it once, not per batch).
    Until { first: bool },
}

/// The state of one device socket's rules.
#[derive(Debug)]
pub struct SessionState {
    limits: Limits,
    last_heard: Instant,
    bad: VecDeque<Instant>,
    device_errors: VecDeque<Instant>,
    resume_at: Option<Instant>,
    throttled: bool,
}

impl SessionState {
    pub fn new(limits: Limits, now: Instant) -> Self {
        SessionState {
            limits,
            last_heard: now,
            bad: VecDeque::new(),
            device_errors: VecDeque::new(),
            resume_at: None,
            throttled: false,
        }
    }

    /// Whether the socket is not read: packets wait for room in the ingest queue
    /// (`packets_waiting`) or the device is over its telemetry budget. TCP then pushes back on
    /// the device; pings, acks and commands keep flowing the other way.
    pub fn intake_paused(&self, packets_waiting: bool) -> bool {
        packets_waiting || self.resume_at.is_some()
    }

    /// When reading resumes after the device went over its budget.
    pub fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Something arrived from the device, or we made progress on its behalf.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// The budget pause is over.
    pub fn resumed(&mut self, now: Instant) {
        self.resume_at = None;
        self.last_heard = now;
    }

    /// The budget's verdict on a batch: `Err(wait)` when the device is over it.
    pub fn budget(&mut self, verdict: Result<(), Duration>, now: Instant) -> Throttle {
        match verdict {
            Ok(()) => {
                self.throttled = false;
                Throttle::No
            }
            Err(wait) => {
                self.resume_at = Some(now + wait);
                let first = !self.throttled;
                self.throttled = true;
                Throttle::Until { first }
            }
        }
    }

    /// A frame was refused and the sender is to blame. `Some` when it was one too many.
    pub fn bad_frame(&mut self, now: Instant) -> Option<Close> {
        let n = count(&mut self.bad, now);
        (n >= self.limits.bad_frame_limit)
            .then(|| Close::new(1008, format!("{n} bad frames within a minute")))
    }

    /// The device sent an `ERROR` frame. `Some` when it sent more than it may.
    pub fn device_error(&mut self, now: Instant) -> Option<Close> {
        let n = count(&mut self.device_errors, now);
        (n > self.limits.device_error_limit).then(|| Close::new(1008, "too many ERROR frames"))
    }

    /// The ping timer fired; `packets_waiting` as for [`intake_paused`](Self::intake_paused).
    pub fn ping_due(&mut self, now: Instant, packets_waiting: bool) -> PingAction {
        if self.intake_paused(packets_waiting) {
            // Not reading is our doing, not a silent peer.
            self.last_heard = now;
        }
        if now.duration_since(self.last_heard) > 2 * self.limits.ping_period {
            PingAction::Close(Close::new(1011, "no answer to pings"))
        } else {
            PingAction::Ping
        }
    }
}

/// Adds `now` to `window` and drops what is older than [`WINDOW`]; the count within it.
fn count(window: &mut VecDeque<Instant>, now: Instant) -> usize {
    window.push_back(now);
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) > WINDOW)
    {
        window.pop_front();
    }
    window.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const S: Duration = Duration::from_secs(1);

    fn state() -> SessionState {
        SessionState::new(
            Limits {
                bad_frame_limit: 3,
                device_error_limit: 2,
                ping_period: Duration::from_secs(30),
            },
            Instant::now(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_bad_frame_that_reaches_the_limit_within_a_minute_closes_with_1008() {
        let mut s = state();
        assert_eq!(s.bad_frame(Instant::now()), None);
        advance(20 * S).await;
        assert_eq!(s.bad_frame(Instant::now()), None);
        advance(20 * S).await;
        let close = s.bad_frame(Instant::now()).expect("third within 40 s");
        assert_eq!(close.code, 1008);
        assert_eq!(close.reason, "3 bad frames within a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn bad_frames_older_than_a_minute_are_forgotten() {
        let mut s = state();
        assert_eq!(s.bad_frame(Instant::now()), None);
        assert_eq!(s.bad_frame(Instant::now()), None);
        advance(61 * S).await;
        assert_eq!(
            s.bad_frame(Instant::now()),
            None,
            "the first two left the window"
        );
        assert_eq!(s.bad_frame(Instant::now()), None);
        assert!(s.bad_frame(Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn device_errors_up_to_the_limit_are_tolerated_one_more_closes() {
        let mut s = state();
        assert_eq!(s.device_error(Instant::now()), None);
        assert_eq!(s.device_error(Instant::now()), None);
        let close = s.device_error(Instant::now()).expect("over the limit of 2");
        assert_eq!(close, Close::new(1008, "too many ERROR frames"));
        advance(61 * S).await;
        assert_eq!(
            s.device_error(Instant::now()),
            None,
            "a minute later: fresh window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bad_frames_and_device_errors_are_counted_apart() {
        let mut s = state();
        for _ in 0..2 {
            assert_eq!(s.bad_frame(Instant::now()), None);
            assert_eq!(s.device_error(Instant::now()), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_silent_for_two_ping_periods_is_given_up() {
        let mut s = state();
        advance(30 * S).await;
        assert_eq!(s.ping_due(Instant::now(), false), PingAction::Ping);
        advance(30 * S).await;
        assert_eq!(
            s.ping_due(Instant::now(), false),
            PingAction::Ping,
            "exactly 2 periods"
        );
        advance(30 * S).await;
        assert_eq!(
            s.ping_due(Instant::now(), false),
            PingAction::Close(Close::new(1011, "no answer to pings"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_is_heard_stays() {
        let mut s = state();
        for _ in 0..10 {
            advance(30 * S).await;
            s.heard(Instant::now());
            assert_eq!(s.ping_due(Instant::now(), false), PingAction::Ping);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn while_we_do_not_read_the_peer_is_not_silent() {
        let mut s = state();
        for _ in 0..10 {
            advance(30 * S).await;
            assert_eq!(
                s.ping_due(Instant::now(), true),
                PingAction::Ping,
                "packets wait for the queue: our doing"
            );
        }
        assert_eq!(
            s.budget(Err(Duration::from_secs(600)), Instant::now()),
            Throttle::Until { first: true }
        );
        for _ in 0..10 {
            advance(30 * S).await;
            assert_eq!(
                s.ping_due(Instant::now(), false),
                PingAction::Ping,
                "throttled"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn over_budget_pauses_intake_until_the_wait_is_over_and_is_reported_once() {
        let mut s = state();
        assert!(!s.intake_paused(false));
        assert!(s.intake_paused(true), "packets waiting pause intake");
        assert_eq!(s.budget(Ok(()), Instant::now()), Throttle::No);
        let t0 = Instant::now();
        assert_eq!(s.budget(Err(2 * S), t0), Throttle::Until { first: true });
        assert!(s.intake_paused(false));
        assert_eq!(s.resume_at(), Some(t0 + 2 * S));
        advance(2 * S).await;
        s.resumed(Instant::now());
        assert!(!s.intake_paused(false));
        assert_eq!(
            s.budget(Err(S), Instant::now()),
            Throttle::Until { first: false },
            "still over: not reported again"
        );
        s.resumed(Instant::now());
        assert_eq!(s.budget(Ok(()), Instant::now()), Throttle::No);
        assert_eq!(
            s.budget(Err(S), Instant::now()),
            Throttle::Until { first: true },
            "over again after being within: reported"
        );
    }
}
