//! The agent's health as Prometheus metrics: `GET /metrics` (text exposition format, written by
//! `prometheus-client`), served when `[metrics] listen` is set.
//!
//! Cycle and poll latencies, and the bus transactions each device poll needed, are observed
//! where they happen (the loop and the pollers hold clones of the histograms). Everything the agent already counts (bus counters, the uplink's
//! stats, the latest cycle's status) is read when scraped, not counted twice.
//!
//! The HTTP side is a minimal HTTP/1.1 responder for one path: a request is read up to
//! [`MAX_REQUEST_BYTES`] within [`REQUEST_TIMEOUT`], answered, and the connection closed, so a
//! slow or hostile client cannot hold the endpoint or the agent's memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::bus::BusHandle;
use crate::devices::DeviceHandle;
use crate::run::Status;
use crate::uplink::UplinkStats;
use crate::uplink::queue::Queue;

/// A request larger than this (request line and headers) is refused with 431.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// A client must have sent its request headers within this time.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeviceLabel {
    pub device: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusLabel {
    pub bus: String,
}

type HistogramFamily = Family<DeviceLabel, Histogram, fn() -> Histogram>;

fn poll_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// Fine steps at the bottom, where one retry turns a SunSpec poll's 2 reads into 3.
fn transactions_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0])
}

/// What the loop observes each cycle; cheap clones sharing the same values.
#[derive(Clone, Debug)]
pub struct CycleMetrics {
    /// Seconds one control cycle took (compose, decide, command, telemetry).
    pub seconds: Histogram,
    pub cycles: Counter,
}

impl Default for CycleMetrics {
    fn default() -> Self {
        CycleMetrics {
            seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            cycles: Counter::default(),
        }
    }
}

/// Where a device's transactions are counted: its bus and its unit id or I2C address.
pub struct DeviceSource {
    pub device: DeviceHandle,
    pub bus: String,
    pub target: Option<u8>,
}

/// Every metric of one agent and the state read at scrape time.
pub struct Metrics {
    registry: Registry,
    /// Seconds per device poll (driver call including its bus transactions); the pollers
    /// observe it.
    pub poll_seconds: HistogramFamily,
    /// Bus transactions per device poll, retries included; the pollers observe it.
    pub poll_transactions: HistogramFamily,
    devices: Vec<DeviceSource>,
    buses: BTreeMap<String, BusHandle>,
    status: watch::Receiver<Option<Status>>,
    uplink: watch::Receiver<UplinkStats>,
    /// The uplink's queue, for the oldest packet's age.
    queue: Option<Arc<Mutex<Queue>>>,
    device_transactions: Family<DeviceLabel, Counter>,
    device_errors: Family<DeviceLabel, Counter>,
    device_timeouts: Family<DeviceLabel, Counter>,
    device_crc_errors: Family<DeviceLabel, Counter>,
    device_poll_failures: Family<DeviceLabel, Counter>,
    bus_transactions: Family<BusLabel, Counter>,
    link_up: Gauge,
    queue_depth: Gauge,
    queue_oldest_age_s: Gauge,
    quarantined: Counter,
    evicted: Counter,
    setpoint_w: Gauge<f64, AtomicU64>,
    battery_power_w: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new(
        cycles: &CycleMetrics,
        buses: BTreeMap<String, BusHandle>,
        status: watch::Receiver<Option<Status>>,
        uplink: watch::Receiver<UplinkStats>,
    ) -> Self {
        let mut registry = Registry::with_prefix("ems_agent");
        let m = Metrics {
            poll_seconds: Family::new_with_constructor(poll_histogram),
            poll_transactions: Family::new_with_constructor(transactions_histogram),
            devices: Vec::new(),
            buses,
            status,
            uplink,
            device_transactions: Family::default(),
            device_errors: Family::default(),
            device_timeouts: Family::default(),
            device_crc_errors: Family::default(),
            device_poll_failures: Family::default(),
            bus_transactions: Family::default(),
            link_up: Gauge::default(),
            queue: None,
            queue_depth: Gauge::default(),
            queue_oldest_age_s: Gauge::default(),
            quarantined: Counter::default(),
            evicted: Counter::default(),
            setpoint_w: Gauge::default(),
            battery_power_w: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "cycle_seconds",
            "Seconds one control cycle took",
            cycles.seconds.clone(),
        );
        registry.register("cycles", "Control cycles run", cycles.cycles.clone());
        registry.register(
            "device_poll_seconds",
            "Seconds per device poll (driver call with its bus transactions)",
            m.poll_seconds.clone(),
        );
        registry.register(
            "device_poll_transactions",
            "Bus transactions one poll of the device needed (attempts on the line, retries \
             included; setpoint writes are not polls)",
            m.poll_transactions.clone(),
        );
        registry.register(
            "device_poll_failures",
            "Device polls that failed (bus, driver, hung or panicked)",
            m.device_poll_failures.clone(),
        );
        registry.register(
            "device_bus_transactions",
            "Bus transactions with the device",
            m.device_transactions.clone(),
        );
        registry.register(
            "device_bus_errors",
            "Bus transactions with the device that failed, any reason",
            m.device_errors.clone(),
        );
        registry.register(
            "device_bus_timeouts",
            "Bus transactions with the device that timed out",
            m.device_timeouts.clone(),
        );
        registry.register(
            "device_bus_crc_errors",
            "Bus transactions with the device that failed their CRC",
            m.device_crc_errors.clone(),
        );
        registry.register(
            "bus_transactions",
            "Transactions per bus (per cycle: rate of this over rate of cycles)",
            m.bus_transactions.clone(),
        );
        registry.register(
            "uplink_link_up",
            "1 while the cloud link is up",
            m.link_up.clone(),
        );
        registry.register(
            "uplink_queue_depth",
            "Telemetry packets queued, not yet acknowledged by the cloud",
            m.queue_depth.clone(),
        );
        registry.register(
            "uplink_queue_oldest_age_seconds",
            "How long the oldest queued packet has waited, s (0 when empty)",
            m.queue_oldest_age_s.clone(),
        );
        registry.register(
            "uplink_quarantined",
            "Packets the cloud refused for good (quarantined, never resent)",
            m.quarantined.clone(),
        );
        registry.register(
            "uplink_evicted",
            "Packets evicted from the queue over its budget",
            m.evicted.clone(),
        );
        registry.register(
            "battery_setpoint_watts",
            "Battery setpoint written to the inverter, W (+ = charge)",
            m.setpoint_w.clone(),
        );
        registry.register(
            "battery_power_watts",
            "Battery power measured, W (+ = charge)",
            m.battery_power_w.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Adds a device: its poll histograms go into its poller's slot.
    pub fn add_device(&mut self, source: DeviceSource) {
        let label = DeviceLabel {
            device: source.device.name.clone(),
        };
        let seconds = self.poll_seconds.get_or_create(&label).clone();
        let transactions = self.poll_transactions.get_or_create(&label).clone();
        let mut slot = source.device.slot.lock().expect("slot lock");
        slot.poll_seconds = Some(seconds);
        slot.poll_transactions = Some(transactions);
        drop(slot);
        self.devices.push(source);
    }

    /// Reads the oldest queued packet's age from `queue` at each scrape.
    pub fn set_queue(&mut self, queue: Arc<Mutex<Queue>>) {
        self.queue = Some(queue);
    }

    /// Reads the agent's state into the gauges and counters, then writes the text format.
    pub fn encode(&self) -> String {
        for d in &self.devices {
            let label = DeviceLabel {
                device: d.device.name.clone(),
            };
            let slot = d.device.snapshot();
            set(&self.device_poll_failures, &label, slot.failures);
            let counters = d
                .target
                .zip(self.buses.get(&d.bus))
                .and_then(|(t, b)| b.stats().by_device.get(&t).cloned())
                .unwrap_or_default();
            set(&self.device_transactions, &label, counters.requests);
            set(
                &self.device_errors,
                &label,
                counters.requests.saturating_sub(counters.ok),
            );
            set(&self.device_timeouts, &label, counters.timeouts);
            set(&self.device_crc_errors, &label, counters.crc_errors);
        }
        for (name, bus) in &self.buses {
            let label = BusLabel { bus: name.clone() };
            set(&self.bus_transactions, &label, bus.stats().total.requests);
        }
        let up = self.uplink.borrow().clone();
        self.link_up.set(i64::from(up.connected));
        self.queue_depth.set(up.queued as i64);
        if let Some(queue) = &self.queue {
            let age = queue
                .lock()
                .map_or(Ok(None), |q| q.oldest_age_s())
                .unwrap_or(None);
            self.queue_oldest_age_s.set(age.unwrap_or(0));
        }
        self.quarantined
            .inner()
            .store(up.quarantined_total, Ordering::Relaxed);
        self.evicted
            .inner()
            .store(up.evicted_total, Ordering::Relaxed);
        if let Some(s) = self.status.borrow().as_ref() {
            self.setpoint_w.set(s.setpoint_w);
            self.battery_power_w
                .set(s.telemetry.battery.power.unwrap_or(f64::NAN));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

fn set<L>(family: &Family<L, Counter>, label: &L, value: u64)
where
    L: Clone + std::hash::Hash + Eq,
{
    family
        .get_or_create(label)
        .inner()
        .store(value, Ordering::Relaxed);
}

/// Serves `GET /metrics` on `listener` until `shutdown` becomes true.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        let _ = respond(stream, || metrics.encode()).await;
                    });
                }
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Reads one request (bounded in size and time), writes one response, closes.
async fn respond(mut stream: TcpStream, body: impl FnOnce() -> String) -> std::io::Result<()> {
    let request = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await;
    let (status, content_type, body) = match request {
        Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(None)) => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::new(),
        ),
        Ok(Ok(Some(head))) => {
            let line = head.lines().next().unwrap_or("");
            let mut parts = line.split(' ');
            match (parts.next(), parts.next()) {
                (Some("GET"), Some("/metrics")) => {
                    ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body())
                }
                (Some("GET"), Some(_)) => ("404 Not Found", "text/plain", "not found\n".into()),
                _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
            }
        }
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The request line and headers, or `None` when they exceed [`MAX_REQUEST_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || n == 0 {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exchange(request: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            respond(stream, || "m 1\n".to_string()).await
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        // The server may answer and close before the whole request is written.
        let _ = client.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        let _ = server.await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn metrics_path_is_served() {
        let a = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("Content-Type: text/plain; version=0.0.4"), "{a}");
        assert!(a.ends_with("\r\n\r\nm 1\n"), "{a}");
    }

    #[tokio::test]
    async fn another_path_is_not_found() {
        let a = exchange(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(a.starts_with("HTTP/1.1 404 Not Found\r\n"), "{a}");
    }

    #[tokio::test]
    async fn an_oversized_request_is_refused() {
        // One byte over the cap, so the server has read it all when it answers (unread bytes
        // would make the close a reset, and the client could lose the answer).
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
        request.resize(MAX_REQUEST_BYTES + 1, b'a');
        let a = exchange(request).await;
        assert!(
            a.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{a}"
        );
    }
}
