//! The wall clock that telemetry timestamps come from: the system clock, plus an offset that only
//! tests set (to play a device whose clock is wrong without touching the machine's clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

/// The agent's wall clock; cheap to clone, clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Added to the system clock, ms. Zero except in tests.
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Now, by this clock.
    pub fn now(&self) -> SystemTime {
        let offset = self.offset_ms.load(Ordering::Relaxed);
        let now = SystemTime::now();
        let shift = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 {
            now + shift
        } else {
            now.checked_sub(shift).unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }

    /// Test-only: makes this clock run `offset_s` ahead of the system clock (behind when
    /// negative), as a device with a wrong or corrected clock would. Takes effect at once.
    pub fn set_offset_for_tests(&self, offset_s: f64) {
        self.offset_ms
            .store((offset_s * 1000.0).round() as i64, Ordering::Relaxed);
    }
}
