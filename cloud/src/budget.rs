//! Per-device budgets, so that one device cannot take what others need.
//!
//! Telemetry: a token bucket per device (kept across reconnects, so reconnecting does not refill
//! it): `device_packet_rate` packets per second sustained, up to `device_packet_burst` at once
//! (a backlog after an outage). A device over its budget is not refused: its socket is read more
//! slowly (TCP back-pressure), so a backlog drains at the budget's rate and a flood costs the
//! server nothing. Pure state; time is passed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokens refill at `rate` per second up to `burst`; taking may go into debt, and the debt says
/// how long the taker must wait.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: burst,
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            at: now,
        }
    }

    /// Takes `n` tokens. `Ok` while the bucket covers them; otherwise they are taken anyway (as
    /// debt) and the error says how long until the bucket is back at zero.
    pub fn take(&mut self, n: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(-self.tokens / self.rate))
        }
    }
}

impl TokenBucket {
    /// Gives back `n` tokens taken before (a refund), up to the burst.
    pub fn give(&mut self, n: f64) {
        self.tokens = (self.tokens + n).min(self.burst);
    }
}

/// The telemetry buckets of all devices on this instance.
pub struct Budgets {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl Budgets {
    pub fn new(rate: f64, burst: f64) -> Self {
        Budgets {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `device` sends `packets`: `Err(wait)` when it is over its budget and its socket should
    /// not be read for `wait`.
    pub fn take(&self, device: &str, packets: usize, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match buckets.get_mut(device) {
            Some(b) => b,
            None => buckets
                .entry(device.to_string())
                .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now)),
        };
        bucket.take(packets as f64, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 600.0, t0);
        assert!(b.take(600.0, t0).is_ok());
        // One more packet at once: 0.1 s of debt.
        let wait = b.take(1.0, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9);
        // After a second, ten more are covered (the debt of one is paid first).
        assert!(b.take(9.0, t0 + Duration::from_secs(1)).is_ok());
        assert!(b.take(1.0, t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 50.0, t0);
        assert!(b.take(50.0, t0).is_ok());
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(50.0, later).is_ok());
        assert!(b.take(1.0, later).is_err());
    }

    #[test]
    fn budgets_are_per_device() {
        let budgets = Budgets::new(1.0, 2.0);
        let now = Instant::now();
        assert!(budgets.take("a", 2, now).is_ok());
        assert!(budgets.take("a", 1, now).is_err());
        assert!(budgets.take("b", 2, now).is_ok());
    }
}
