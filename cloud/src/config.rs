//! The server's own settings, read from the same figment as Rocket's.
//!
//! Sources, later ones winning: Rocket's defaults, `Rocket.toml` and `ROCKET_…` variables (listen
//! address, port, TLS, limits), then `cloud.toml` (path in `EMS_CLOUD_CONFIG`) and `EMS_CLOUD_…`
//! variables. Both files use Rocket's profile sections (`[default]`, `[release]`, …). Every key is
//! documented in `cloud/README.md`.

use std::time::Duration;

use rocket::figment::Figment;
use rocket::figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// Whether to use TimescaleDB when the server offers the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimescaleMode {
    /// Use it when `pg_available_extensions` lists it; plain PostgreSQL otherwise.
    Auto,
    /// Never; plain tables even when the extension is there.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudConfig {
    /// `postgres://user:pass@host:port/db`; TLS as its `sslmode`/`sslrootcert` say (see
    /// `db::tls`).
    pub database_url: String,
    /// A read-only replica (PostgreSQL streaming replication) for the heavy reads: history,
    /// energy, the latest packet, events. Everything else, and all writes, use `database_url`.
    /// `None`: every query goes to `database_url`.
    pub read_database_url: Option<String>,
    /// At start, how long to wait for an unreachable database before giving up, s.
    pub database_wait_s: u64,
    /// Connections in the pool shared by ingest and the API.
    pub database_pool_size: usize,
    /// Flush a telemetry batch when it holds this many packets ...
    pub batch_max_rows: usize,
    /// ... or when its first packet has waited this long, ms. 0: flush when idle (the writer
    /// takes what is queued when it is free and waits for nothing; batches grow only under load).
    pub batch_max_delay_ms: u64,
    /// Packets waiting for the writer, over all connections. When full, device sockets stop being
    /// read (back-pressure) until the database catches up: memory stays bounded.
    pub ingest_queue: usize,
    /// Largest accepted WebSocket message, bytes; a larger one closes the socket with 1009.
    pub max_frame_bytes: usize,
    /// Bad frames per minute a device may send before its socket is closed with 1008.
    pub bad_frame_limit: usize,
    /// Telemetry packets per second a device may send, sustained ...
    pub device_packet_rate: f64,
    /// ... and at once (a backlog); beyond, its socket is read more slowly.
    pub device_packet_burst: f64,
    /// Largest extension fields one packet may carry (their JSON), bytes.
    pub max_extension_bytes: usize,
    /// `ERROR` frames per minute a device may send before `RATE_LIMITED` and a close.
    pub device_error_limit: usize,
    /// Failed authentications one source address may make at once ...
    pub auth_failure_burst: f64,
    /// ... and per second after that; beyond, 429 without a database query.
    pub auth_failure_rate: f64,
    /// Keepalive ping period, s; a socket that answers no ping for two periods is closed.
    pub ping_interval_s: u64,
    /// Telemetry timestamps further than this in the future are refused, s.
    pub max_future_skew_s: i64,
    /// Telemetry older than this is refused, days (also capped by `retention_days`).
    pub max_packet_age_days: i64,
    /// Default lifetime of a command that has not been answered, s.
    pub command_expiry_s: u64,
    /// Largest `expires_in` a client may ask for, s.
    pub command_max_expiry_s: u64,
    /// How often commands are expired and offline deliveries retried, ms.
    pub command_sweep_interval_ms: u64,
    /// Longest `?wait=` on `POST …/commands`, s.
    pub command_max_wait_s: u64,
    pub timescale: TimescaleMode,
    /// TimescaleDB: compress telemetry chunks older than this, days.
    pub compress_after_days: u32,
    /// Drop raw telemetry older than this, days; `None` keeps it forever. TimescaleDB: a retention
    /// policy; plain PostgreSQL: an hourly DELETE.
    pub retention_days: Option<u32>,
    /// TimescaleDB: drop per-minute aggregates older than this, days; `None` keeps them.
    pub aggregate_retention_days: Option<u32>,
    /// Most rows or buckets one history request may return.
    pub history_max_points: usize,
    /// Whether the live feed still takes an API token in its URL (`?token=`). Off: browsers
    /// open it with a single-use ticket, so tokens stay out of URLs, proxy logs and history.
    pub live_query_token: bool,
    /// When set, `GET /metrics` wants `Authorization: Bearer <metrics_token>`; else it is open
    /// (put it behind the firewall).
    pub metrics_token: Option<String>,
    /// Name of this process among the instances sharing the database; generated when absent.
    pub instance_id: Option<String>,
    /// Key that signs the notices between instances (at least 16 characters); when absent the
    /// instances share one kept in the database's `cluster_secret` table.
    pub notice_secret: Option<String>,
    /// Alert evaluation and notifications (`[default.alerts]`); rules are managed over REST.
    /// Checked as it is read, so a bad combination stops the start with the key named.
    #[serde(deserialize_with = "validated_alerts")]
    pub alerts: AlertsConfig,
    /// The background re-planner of devices opted in to the cloud planner (`[default.planner]`).
    pub planner: PlannerConfig,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            database_url: "postgres://ems@localhost/ems".into(),
            read_database_url: None,
            database_wait_s: 30,
            database_pool_size: 16,
            batch_max_rows: 5000,
            batch_max_delay_ms: 0,
            ingest_queue: 20_000,
            max_frame_bytes: 64 * 1024,
            bad_frame_limit: 20,
            device_packet_rate: 10.0,
            device_packet_burst: 3600.0,
            max_extension_bytes: 4096,
            device_error_limit: 30,
            auth_failure_burst: 20.0,
            auth_failure_rate: 1.0,
            ping_interval_s: 20,
            max_future_skew_s: 300,
            max_packet_age_days: 30,
            command_expiry_s: 300,
            command_max_expiry_s: 7 * 24 * 3600,
            command_sweep_interval_ms: 1000,
            command_max_wait_s: 60,
            timescale: TimescaleMode::Auto,
            compress_after_days: 7,
            retention_days: None,
            aggregate_retention_days: None,
            history_max_points: 10_000,
            instance_id: None,
            notice_secret: None,
            live_query_token: false,
            metrics_token: None,
            alerts: AlertsConfig::default(),
            planner: PlannerConfig::default(),
        }
    }
}

impl CloudConfig {
    pub fn from_figment(figment: &Figment) -> Result<Self, Box<rocket::figment::Error>> {
        figment.extract().map_err(Box::new)
    }

    pub fn batch_max_delay(&self) -> Duration {
        Duration::from_millis(self.batch_max_delay_ms)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_s.max(1))
    }

    pub fn command_sweep_interval(&self) -> Duration {
        Duration::from_millis(self.command_sweep_interval_ms.max(10))
    }

    /// Oldest accepted telemetry age, s.
    pub fn max_packet_age_s(&self) -> i64 {
        let days = match self.retention_days {
            Some(r) => self.max_packet_age_days.min(i64::from(r)),
            None => self.max_packet_age_days,
        };
        days * 86_400
    }
}

/// `[planner]`: when the background re-planner plans the devices whose planner settings say
/// `"cloud"` (see `planner::replan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PlannerConfig {
    /// How often each instance looks for devices due for a plan, ms.
    pub check_interval_ms: u64,
    /// A device is planned again at least this often, s (the receding horizon).
    pub replan_interval_s: u64,
    /// … or as soon as its measured SoC is this many percentage points away from the plan's.
    pub soc_deviation_pct: f64,
    /// How long an instance holds a device it is planning before another may take it, s.
    pub claim_s: u64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            check_interval_ms: 5000,
            replan_interval_s: 900,
            soc_deviation_pct: 10.0,
            claim_s: 60,
        }
    }
}

/// `[alerts]`: how alerts are evaluated and where their notifications go. Rules themselves
/// live in the database (`/api/v1/alert-rules`), so every instance sharing it uses the same.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertsConfig {
    /// How often rules are re-read and devices checked for being offline, ms.
    pub evaluate_interval_ms: u64,
    /// Notifications waiting per channel; beyond, new ones are dropped (and counted).
    pub queue: usize,
    /// `http(s)://…` that gets each notification as a signed JSON POST.
    pub webhook_url: Option<String>,
    /// Key of the `X-Ems-Signature` HMAC-SHA256 (at least 16 characters; needed with
    /// `webhook_url`).
    pub webhook_secret: Option<String>,
    /// `smtp://host:port` (STARTTLS with `?tls=required`), `smtps://user:pass@host:465`.
    pub smtp_url: Option<String>,
    /// The sender, e.g. `ems <alerts@example.com>` (needed with `smtp_url`).
    pub email_from: Option<String>,
    /// The recipients (at least one with `smtp_url`).
    pub email_to: Vec<String>,
    /// One delivery attempt may take this long, s.
    pub timeout_s: u64,
    /// Attempts per notification and channel before it is given up (and counted as failed).
    pub max_attempts: u32,
    /// The wait before the first retry, ms; it doubles each time, at most a minute.
    pub retry_base_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            evaluate_interval_ms: 5000,
            queue: 1000,
            webhook_url: None,
            webhook_secret: None,
            smtp_url: None,
            email_from: None,
            email_to: Vec::new(),
            timeout_s: 10,
            max_attempts: 8,
            retry_base_ms: 1000,
        }
    }
}

impl AlertsConfig {
    pub fn evaluate_interval(&self) -> Duration {
        Duration::from_millis(self.evaluate_interval_ms.max(10))
    }

    /// Checks that the keys go together; the error names the key and what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.webhook_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("alerts.webhook_url is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "alerts.webhook_url {url:?}: only http:// or https://"
                ));
            }
            match &self.webhook_secret {
                Some(s) if s.len() >= 16 => {}
                Some(_) => return Err("alerts.webhook_secret: at least 16 characters".into()),
                None => {
                    return Err(
                        "alerts.webhook_url is set but alerts.webhook_secret is not: every \
                         webhook is signed"
                            .into(),
                    );
                }
            }
        }
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                return Err(format!(
                    "alerts.smtp_url: smtp://host:port or smtps://host:port, not {:?}",
                    url.split('@').next_back().unwrap_or_default()
                ));
            }
            let Some(from) = &self.email_from else {
                return Err("alerts.smtp_url is set but alerts.email_from is not".into());
            };
            if from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(format!(
                    "alerts.email_from {from:?} is not an email address"
                ));
            }
            if self.email_to.is_empty() {
                return Err("alerts.smtp_url is set but alerts.email_to lists nobody".into());
            }
            for to in &self.email_to {
                if to.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(format!("alerts.email_to: {to:?} is not an email address"));
                }
            }
        }
        if self.max_attempts == 0 {
            return Err("alerts.max_attempts: at least 1".into());
        }
        if self.queue == 0 {
            return Err("alerts.queue: at least 1".into());
        }
        Ok(())
    }
}

fn validated_alerts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AlertsConfig, D::Error> {
    let alerts = AlertsConfig::deserialize(d)?;
    alerts.validate().map_err(serde::de::Error::custom)?;
    Ok(alerts)
}

/// Rocket's figment plus `cloud.toml` and `EMS_CLOUD_…` variables.
pub fn figment() -> Figment {
    let file = std::env::var("EMS_CLOUD_CONFIG").unwrap_or_else(|_| "cloud.toml".into());
    rocket::Config::figment()
        .merge(Toml::file(file).nested())
        .merge(Env::prefixed("EMS_CLOUD_").ignore(&["CONFIG"]).global())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_extract_from_an_empty_figment() {
        let c = CloudConfig::from_figment(&Figment::new()).unwrap();
        assert_eq!(c.max_frame_bytes, 65536);
        assert_eq!(c.timescale, TimescaleMode::Auto);
    }

    #[test]
    fn alert_keys_are_checked_together() {
        let mut a = AlertsConfig {
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            ..AlertsConfig::default()
        };
        assert!(a.validate().unwrap_err().contains("webhook_secret"));
        a.webhook_secret = Some("0123456789abcdef".into());
        assert_eq!(a.validate(), Ok(()));
        a.smtp_url = Some("smtp://127.0.0.1:25".into());
        assert!(a.validate().unwrap_err().contains("email_from"));
        a.email_from = Some("ems <alerts@example.com>".into());
        assert!(a.validate().unwrap_err().contains("email_to"));
        a.email_to = vec!["ops@example.com".into()];
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn the_packaged_alerts_section_parses_and_validates_once_uncommented() {
        let packaged = include_str!("../../packaging/config/cloud.toml");
        let section: Vec<&str> = packaged
            .lines()
            .skip_while(|l| !l.starts_with("# [default.alerts]"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .collect();
        assert!(section.len() > 5, "{section:?}");
        let figment = Figment::new().merge(Toml::string(&section.join("\n")).nested());
        let c = CloudConfig::from_figment(&figment).unwrap();
        assert_eq!(c.alerts.email_to, ["ops@example.com"]);
        assert!(c.alerts.webhook_url.is_some() && c.alerts.smtp_url.is_some());
        assert_eq!(c.alerts.validate(), Ok(()));
    }

    #[test]
    fn the_packaged_planner_section_parses_once_uncommented_and_shows_the_defaults() {
        let packaged = include_str!("../../packaging/config/cloud.toml");
        let section: Vec<&str> = packaged
            .lines()
            .skip_while(|l| !l.starts_with("# [default.planner]"))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .collect();
        assert_eq!(section.len(), 5, "{section:?}");
        let figment = Figment::new().merge(Toml::string(&section.join("\n")).nested());
        let p = CloudConfig::from_figment(&figment).unwrap().planner;
        let d = PlannerConfig::default();
        assert_eq!(
            (
                p.check_interval_ms,
                p.replan_interval_s,
                p.soc_deviation_pct,
                p.claim_s
            ),
            (
                d.check_interval_ms,
                d.replan_interval_s,
                d.soc_deviation_pct,
                d.claim_s
            )
        );
        let figment = Figment::new().merge(("planner.replan_interval_s", 60));
        assert_eq!(
            CloudConfig::from_figment(&figment)
                .unwrap()
                .planner
                .replan_interval_s,
            60
        );
    }

    #[test]
    fn a_bad_alerts_section_fails_the_extraction_naming_the_key() {
        let figment = Figment::new().merge(("alerts.webhook_url", "http://127.0.0.1:9/hook"));
        let err = CloudConfig::from_figment(&figment).unwrap_err().to_string();
        assert!(err.contains("alerts.webhook_secret"), "{err}");
    }

    #[test]
    fn retention_caps_the_accepted_age() {
        let c = CloudConfig {
            retention_days: Some(2),
            ..CloudConfig::default()
        };
        assert_eq!(c.max_packet_age_s(), 2 * 86_400);
    }
}
