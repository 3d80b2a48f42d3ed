//! The server's own health as Prometheus metrics: `GET /metrics` (text exposition format,
//! written by `prometheus-client`), optionally behind a bearer token (`metrics_token`).
//!
//! Each server has its own registry (no process-wide recorder), labelled with its instance id.
//! Counters and histograms are updated where things happen; connected devices, the ingest
//! queue's depth and the database pool are read when scraped.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome};
use rocket::{Request, Route, State, get, routes};
use subtle::ConstantTimeEq;

use crate::config::CloudConfig;
use crate::db::Db;
use crate::hub::Hub;
use crate::ingest::Ingest;

/// What a frame was.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: &'static str,
}

/// How a batch was written.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Path {
    pub path: &'static str,
}

/// An alert notification's channel and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Delivery {
    pub channel: &'static str,
    pub outcome: &'static str,
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    /// Device frames read: `telemetry`, `answer`, `error` (from the device), `refused`.
    pub frames_in: Family<Kind, Counter>,
    /// Frames written to devices: `ack`, `command`, `rejected`.
    pub frames_out: Family<Kind, Counter>,
    /// Packets per written batch.
    pub batch_rows: Histogram,
    /// Seconds to write and commit one batch.
    pub commit_seconds: Histogram,
    /// Batches by how they were written: `copy`, `insert`.
    pub batches: Family<Path, Counter>,
    /// Telemetry rows stored (not counting duplicates).
    pub rows_stored: Counter,
    /// Packets the database refused for good (kept in `rejected_telemetry`).
    pub rejected: Counter,
    /// Commands written to a device's socket.
    pub commands_delivered: Counter,
    /// Seconds from a command's issue to the device's answer.
    pub command_answer_seconds: Histogram,
    /// Refused authentications (API and device tokens).
    pub auth_failures: Counter,
    /// Alerts opened and resolved by this instance.
    pub alerts_opened: Counter,
    pub alerts_resolved: Counter,
    /// Alert notifications by channel (`webhook`, `email`) and outcome: `sent`, `retried` (an
    /// attempt failed), `failed` (given up), `dropped` (the queue was full).
    pub alert_notifications: Family<Delivery, Counter>,
    connected_devices: Gauge,
    ingest_queue_depth: Gauge,
    db_pool_size: Gauge,
    db_pool_available: Gauge,
}

impl Metrics {
    pub fn new(instance: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "ems_cloud",
            [("instance".into(), instance.to_string().into())].into_iter(),
        );
        let m = Metrics {
            frames_in: Family::default(),
            frames_out: Family::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 4.0, 8)),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            batches: Family::default(),
            rows_stored: Counter::default(),
            rejected: Counter::default(),
            commands_delivered: Counter::default(),
            command_answer_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            auth_failures: Counter::default(),
            alerts_opened: Counter::default(),
            alerts_resolved: Counter::default(),
            alert_notifications: Family::default(),
            connected_devices: Gauge::default(),
            ingest_queue_depth: Gauge::default(),
            db_pool_size: Gauge::default(),
            db_pool_available: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "device_frames_in",
            "Device frames read, by kind",
            m.frames_in.clone(),
        );
        registry.register(
            "device_frames_out",
            "Frames written to devices, by kind",
            m.frames_out.clone(),
        );
        registry.register(
            "ingest_batch_rows",
            "Packets per written batch",
            m.batch_rows.clone(),
        );
        registry.register(
            "ingest_commit_seconds",
            "Seconds to write and commit a batch",
            m.commit_seconds.clone(),
        );
        registry.register(
            "ingest_batches",
            "Batches written, by path (copy or insert)",
            m.batches.clone(),
        );
        registry.register(
            "telemetry_rows_stored",
            "Telemetry rows stored",
            m.rows_stored.clone(),
        );
        registry.register(
            "telemetry_rejected",
            "Packets the database refused for good",
            m.rejected.clone(),
        );
        registry.register(
            "commands_delivered",
            "Commands written to device sockets",
            m.commands_delivered.clone(),
        );
        registry.register(
            "command_answer_seconds",
            "Seconds from a command's issue to its answer",
            m.command_answer_seconds.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused authentications",
            m.auth_failures.clone(),
        );
        registry.register(
            "alerts_opened",
            "Alerts opened by this instance",
            m.alerts_opened.clone(),
        );
        registry.register(
            "alerts_resolved",
            "Alerts resolved by this instance",
            m.alerts_resolved.clone(),
        );
        registry.register(
            "alert_notifications",
            "Alert notifications by channel and outcome (sent, retried, failed, dropped)",
            m.alert_notifications.clone(),
        );
        registry.register(
            "connected_devices",
            "Device sockets on this instance",
            m.connected_devices.clone(),
        );
        registry.register(
            "ingest_queue_depth",
            "Packets waiting for the ingest writer",
            m.ingest_queue_depth.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections open",
            m.db_pool_size.clone(),
        );
        registry.register(
            "db_pool_available",
            "Database pool connections idle",
            m.db_pool_available.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn frame_in(&self, kind: &'static str) {
        self.frames_in.get_or_create(&Kind { kind }).inc();
    }

    pub fn frame_out(&self, kind: &'static str) {
        self.frames_out.get_or_create(&Kind { kind }).inc();
    }

    pub fn alert_notification(&self, channel: &'static str, outcome: &'static str) {
        self.alert_notifications
            .get_or_create(&Delivery { channel, outcome })
            .inc();
    }

    pub fn batch(&self, path: &'static str) {
        self.batches.get_or_create(&Path { path }).inc();
    }

    /// The exposition text, with the gauges read now.
    fn render(&self, hub: &Hub, ingest: &Ingest, db: &Db) -> String {
        self.connected_devices.set(hub.connection_count() as i64);
        self.ingest_queue_depth.set(ingest.depth() as i64);
        let pool = db.pool.status();
        self.db_pool_size.set(pool.size as i64);
        self.db_pool_available.set(pool.available as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// The scraper, when `metrics_token` is set: `Authorization: Bearer <metrics_token>`.
pub struct Scraper;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Scraper {
    type Error = ();
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let Some(want) = req
            .rocket()
            .state::<CloudConfig>()
            .and_then(|c| c.metrics_token.clone())
        else {
            return Outcome::Success(Scraper);
        };
        let given = req
            .headers()
            .get_one("Authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(want.as_bytes())) {
            Outcome::Success(Scraper)
        } else {
            Outcome::Error((Status::Unauthorized, ()))
        }
    }
}

/// `GET /metrics`: Prometheus text format.
#[get("/metrics")]
fn metrics(
    _scraper: Scraper,
    hub: &State<Arc<Hub>>,
    ingest: &State<Ingest>,
    db: &State<Db>,
) -> (ContentType, String) {
    let text = hub.metrics.render(hub, ingest, db);
    (
        ContentType::new("text", "plain").with_params([("version", "0.0.4"), ("charset", "utf-8")]),
        text,
    )
}

/// Mounted at `/`.
pub fn routes() -> Vec<Route> {
    routes![metrics]
}
