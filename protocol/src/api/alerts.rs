//! Alert rules, alerts and their notifications (`/api/v1/alert-rules`, `/api/v1/alerts`,
//! the webhook body).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertKind {
    /// The device has been disconnected for `for_s` seconds.
    Offline,
    /// An error flag is raised: `flag`, or any when `flag` is absent.
    ErrorFlag,
    /// `battery_soc` below `threshold` % for `for_s` seconds.
    SocBelow,
    /// Grid export (negative `grid_power`) above `threshold` W for `for_s` seconds.
    GridExportAbove,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Offline => "OFFLINE",
            AlertKind::ErrorFlag => "ERROR_FLAG",
            AlertKind::SocBelow => "SOC_BELOW",
            AlertKind::GridExportAbove => "GRID_EXPORT_ABOVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AlertKind::Offline,
            AlertKind::ErrorFlag,
            AlertKind::SocBelow,
            AlertKind::GridExportAbove,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new alert rule, `POST /api/v1/alert-rules` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAlertRule {
    /// Unique name, shown in notifications.
    pub name: String,
    pub kind: AlertKind,
    /// The one device the rule watches; absent: every device.
    #[serde(default)]
    pub device_id: Option<String>,
    /// `SOC_BELOW`: SoC, %; `GRID_EXPORT_ABOVE`: export, W (a positive number).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Hysteresis: the value the alert resolves at (`SOC_BELOW`: at or above it, default
    /// `threshold`; `GRID_EXPORT_ABOVE`: export at or below it, default `threshold`).
    #[serde(default)]
    pub clear_threshold: Option<f64>,
    /// `ERROR_FLAG`: the flag to watch; absent: any flag.
    #[serde(default)]
    pub flag: Option<String>,
    /// How long the condition must hold before the alert opens, s.
    #[serde(default)]
    pub for_s: u32,
    /// How long the condition must stay cleared before the alert resolves, s.
    #[serde(default)]
    pub clear_s: u32,
}

/// An alert rule as stored, `GET /api/v1/alert-rules` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: i64,
    #[serde(flatten)]
    pub rule: NewAlertRule,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
}

/// One alert: a rule's condition held for a device, from `opened_at` until `resolved_at`.
/// `GET /api/v1/alerts`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: i64,
    /// Absent once the rule was deleted (`rule_name` stays).
    pub rule_id: Option<i64>,
    pub rule_name: String,
    pub kind: AlertKind,
    pub device_id: String,
    pub opened_at: DateTime<Utc>,
    /// Absent while the alert is open.
    pub resolved_at: Option<DateTime<Utc>>,
    /// What was seen, for people.
    pub message: String,
}

/// What happened to an alert, in a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertEvent {
    Opened,
    Resolved,
}

impl std::fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AlertEvent::Opened => "opened",
            AlertEvent::Resolved => "resolved",
        })
    }
}

/// The JSON body of an alert webhook (and what an alert email says).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotification {
    pub event: AlertEvent,
    pub alert: AlertRecord,
    /// The ems-cloud instance that sent it.
    pub instance: String,
}
