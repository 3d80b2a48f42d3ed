//! Per-bus and per-device (unit / I2C address) transaction counters.

use std::collections::BTreeMap;
use std::time::Duration;

use ems_driver_sdk::BusError;
use serde::Serialize;

use super::Response;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    pub requests: u64,
    pub ok: u64,
    pub timeouts: u64,
    pub crc_errors: u64,
    pub exceptions: u64,
    pub nacks: u64,
    pub other_errors: u64,
    /// Sum of transaction latencies, µs (mean = total / requests).
    pub latency_total_us: u64,
    pub latency_max_us: u64,
}

impl Counters {
    fn record(&mut self, result: &Result<Response, BusError>, elapsed: Duration) {
        self.requests += 1;
        match result {
            Ok(_) => self.ok += 1,
            Err(BusError::Timeout) => self.timeouts += 1,
            Err(BusError::Crc) => self.crc_errors += 1,
            Err(BusError::Exception(_)) => self.exceptions += 1,
            Err(BusError::Nack) => self.nacks += 1,
            Err(_) => self.other_errors += 1,
        }
        let us = elapsed.as_micros() as u64;
        self.latency_total_us += us;
        self.latency_max_us = self.latency_max_us.max(us);
    }

    pub fn mean_latency_us(&self) -> u64 {
        self.latency_total_us
            .checked_div(self.requests)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BusStats {
    pub total: Counters,
    /// By Modbus unit id or I2C address.
    pub by_device: BTreeMap<u8, Counters>,
}

impl BusStats {
    pub(crate) fn record(
        &mut self,
        target: u8,
        result: &Result<Response, BusError>,
        elapsed: Duration,
    ) {
        self.total.record(result, elapsed);
        self.by_device
            .entry(target)
            .or_default()
            .record(result, elapsed);
    }
}
