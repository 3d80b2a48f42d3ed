//! The failed-authentication throttle: per source address, a bucket of allowed failures and a
//! bound on concurrent token checks, so a token flood costs the database little and never locks
//! out honest devices behind the same address.

use std::net::IpAddr;
use std::sync::Arc;

use rocket::Request;

use crate::audit::{Audit, Entry};
use crate::budget::TokenBucket;
use crate::error::ApiError;

/// Failed authentications per source address: each failure takes a token from the address's
/// bucket (`auth_failure_burst` at once, refilled at `auth_failure_rate` per second); while it is
/// empty, requests from that address that carry a token are refused with 429 before any
/// database query. Addresses come from Rocket's `client_ip` (behind a proxy, set Rocket's
/// `ip_header` to the header the proxy sets, and to `false` when exposed directly).
///
/// Failures are counted once known, so many honest devices behind one address (a site's NAT,
/// a reconnect storm after a restart) are never refused for connecting at once. What bounds a
/// flood's concurrent attempts instead is [`CONCURRENT_CHECKS`] per address: the others wait
/// their turn, and by then the bucket may be empty. So at most `auth_failure_burst +
/// CONCURRENT_CHECKS` failed attempts from one address reach the database at once.
pub struct AuthThrottle {
    rate: f64,
    burst: f64,
    addresses: std::sync::Mutex<std::collections::HashMap<IpAddr, Address>>,
}

/// Token checks from one address that run at the same time, at most.
pub const CONCURRENT_CHECKS: usize = 16;

struct Address {
    failures: TokenBucket,
    checks: Arc<tokio::sync::Semaphore>,
}

/// Addresses remembered at most; beyond, the idle ones with a full bucket are forgotten.
const THROTTLE_ADDRESSES: usize = 100_000;

impl AuthThrottle {
    pub fn new(rate: f64, burst: f64) -> Self {
        AuthThrottle {
            rate,
            burst,
            addresses: Default::default(),
        }
    }

    /// Whether `ip` has failures left (`Err(wait)` when not), and, when `fresh`, its checks'
    /// gate.
    fn state(&self, ip: IpAddr) -> Result<Arc<tokio::sync::Semaphore>, std::time::Duration> {
        let now = std::time::Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if addresses.len() >= THROTTLE_ADDRESSES && !addresses.contains_key(&ip) {
            addresses.retain(|_, a| {
                let mut probe = a.failures.clone();
                probe.take(self.burst, now).is_err() || Arc::strong_count(&a.checks) > 1
            });
            if addresses.len() >= THROTTLE_ADDRESSES {
                addresses.retain(|_, a| Arc::strong_count(&a.checks) > 1);
            }
        }
        let address = addresses.entry(ip).or_insert_with(|| Address {
            failures: TokenBucket::new(self.rate, self.burst, now),
            checks: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CHECKS)),
        });
        let left = address.failures.take(1.0, now);
        address.failures.give(1.0);
        left.map(|()| address.checks.clone())
    }

    /// Waits for `ip`'s turn to check a token: `Err(wait)` when it has no failures left (before
    /// and after waiting); the permit is held while the token is checked.
    async fn begin(
        &self,
        ip: Option<IpAddr>,
    ) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, std::time::Duration> {
        let Some(ip) = ip else { return Ok(None) };
        let gate = self.state(ip)?;
        let permit = gate
            .acquire_owned()
            .await
            .expect("the gate is never closed");
        self.state(ip)?;
        Ok(Some(permit))
    }

    /// An attempt from `ip` failed.
    fn failed(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let now = std::time::Instant::now();
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = addresses.get_mut(&ip) {
            let _ = a.failures.take(1.0, now);
        }
    }
}

/// Runs `check` for a request carrying a token, throttled per source address: refused at once
/// while the address is over its failures, and a failure (401/403) counts against it.
pub(super) async fn throttled<T>(
    req: &Request<'_>,
    check: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let throttle = req.rocket().state::<Arc<AuthThrottle>>();
    let ip = req.client_ip();
    let turn = match throttle {
        Some(throttle) => match throttle.begin(ip).await {
            Ok(turn) => turn,
            Err(wait) => {
                return Err(ApiError::TooManyRequests(format!(
                    "too many failed authentications from this address; retry in {} s",
                    wait.as_secs() + 1
                )));
            }
        },
        None => None,
    };
    let result = check.await;
    drop(turn);
    // Only refusals of the token count; a database outage is nobody's failed attempt.
    if let Err(ApiError::Unauthorized(why) | ApiError::Forbidden(why)) = &result {
        if let Some(throttle) = throttle {
            throttle.failed(ip);
        }
        if let Some(hub) = req.rocket().state::<std::sync::Arc<crate::hub::Hub>>() {
            hub.metrics.auth_failures.inc();
        }
        if let Some(audit) = req.rocket().state::<Audit>() {
            let target = req
                .routed_segment(2)
                .filter(|_| req.uri().path().starts_with("/ws/device/"));
            audit.record(Entry::failed_auth(
                ip,
                target.map(str::to_string),
                why.clone(),
            ));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_is_throttled_after_its_failures_and_others_are_not() {
        let throttle = AuthThrottle::new(1.0, 3.0);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(
                throttle.begin(a).await.is_ok(),
                "three failures are the burst"
            );
            throttle.failed(a);
        }
        assert!(throttle.begin(a).await.is_err());
        assert!(
            throttle.begin(a).await.is_err(),
            "a refused attempt adds no debt"
        );
        for _ in 0..10 {
            assert!(throttle.begin(b).await.is_ok(), "successes are no failures");
        }
    }

    #[tokio::test]
    async fn many_honest_attempts_at_once_from_one_address_all_pass() {
        let throttle = Arc::new(AuthThrottle::new(1.0, 20.0));
        let ip = Some("10.0.0.3".parse().unwrap());
        let attempts = (0..500).map(|_| {
            let throttle = throttle.clone();
            tokio::spawn(async move {
                // Held across a wait, as a real check holds it across its query.
                let turn = throttle.begin(ip).await;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                turn.is_ok()
            })
        });
        for a in futures_util::future::join_all(attempts).await {
            assert!(a.unwrap(), "an honest attempt was throttled");
        }
    }

    #[tokio::test]
    async fn a_concurrent_flood_reaches_the_check_at_most_burst_plus_the_gate_times() {
        let throttle = Arc::new(AuthThrottle::new(0.001, 20.0));
        let ip = Some("10.0.0.4".parse().unwrap());
        let checked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let attempts = (0..2000).map(|_| {
            let (throttle, checked) = (throttle.clone(), checked.clone());
            tokio::spawn(async move {
                if let Ok(turn) = throttle.begin(ip).await {
                    checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    throttle.failed(ip);
                    drop(turn);
                }
            })
        });
        futures_util::future::join_all(attempts).await;
        let n = checked.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n >= 20, "{n}");
        assert!(
            n <= 20 + CONCURRENT_CHECKS,
            "{n} failed checks reached the database"
        );
    }
}
