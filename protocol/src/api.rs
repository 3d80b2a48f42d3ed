//! Request and response bodies of the cloud's REST API (`/api/v1`) and its live feed
//! (`/ws/live/<device_id>`).
//!
//! The cloud serves these and `emsctl` (and any dashboard) reads them, so both sides are built
//! from the same structs. Times are RFC 3339 UTC; units are in the field names' documentation
//! and match [`Telemetry`]. The endpoint list with methods and roles is in `cloud/README.md` and
//! `/api/v1/openapi.json`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::enums::CommandStatus;
use crate::telemetry::Telemetry;

mod alerts;
mod planner;

pub use alerts::*;
pub use planner::*;

/// What an API token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads devices, telemetry, commands and events; may open live feeds.
    Viewer,
    /// Also issues commands.
    Operator,
    /// Also registers devices and creates API tokens.
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}, expected viewer, operator or admin"
            )),
        }
    }
}

/// Every error response: `{"error": "...", "field": "..."}` with the HTTP status telling the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub error: String,
    /// The offending request field (dotted path), for validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /api/v1/health`. Served with 200 when the database answers, 503 otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` or `"degraded"`.
    pub status: String,
    pub database: bool,
    /// Whether telemetry lives in a TimescaleDB hypertable (else a plain table).
    pub timescale: bool,
    /// Which storage is in use and why, one line (e.g. "plain PostgreSQL tables: TimescaleDB
    /// 2.28.3 is installed but not preloaded …"). Absent from servers before it was added.
    #[serde(default)]
    pub storage: String,
    /// This server process, as it names itself to the other instances.
    pub instance: String,
    pub version: String,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Connected to some cloud instance right now.
    pub online: bool,
    /// Latest of: last telemetry timestamp, connection and disconnection time.
    pub last_seen: Option<DateTime<Utc>>,
    /// When it was disabled (its token is refused, its data kept); absent while enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Its tags (a site, a customer, a region), sorted; API tokens may be scoped to them.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `PUT /api/v1/devices/<id>/tags` body: the device's tags, replacing the previous ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTags {
    pub tags: Vec<String>,
}

/// `POST /api/v1/devices/<id>/token` answer (201): the device's new token, shown only here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTokenRotated {
    pub device_id: String,
    pub token: String,
    /// Until when the previous token still works (its sockets close then); absent when it
    /// stopped at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// `POST /api/v1/devices/<id>/live-ticket` answer (201): opens `/ws/live/<id>?ticket=…` once,
/// before `expires_at`, as the token that asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveTicket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

/// `DELETE /api/v1/devices/<id>` answer: what was deleted and what was kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDeleted {
    pub device_id: String,
    /// Whether its telemetry was deleted too (`?purge=true`); else it is kept.
    pub purged: bool,
    /// Telemetry rows deleted (0 when kept).
    pub telemetry_rows_deleted: u64,
}

/// `POST /api/v1/devices` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDevice {
    /// The device's `device_id` (see `ems_protocol::validate_id`).
    pub id: String,
    /// Display name; defaults to the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Tags (see [`DeviceInfo::tags`]); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `POST /api/v1/devices` answer (201). The token is shown only here, never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCreated {
    pub device: DeviceInfo,
    /// `Authorization: Bearer <token>` for `/ws/device/<id>`.
    pub token: String,
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewToken {
    /// Unique among live tokens; recorded as `issued_by` on the commands this token issues.
    pub name: String,
    pub role: Role,
    /// When the token stops working; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The devices the token may see and command; every device when absent (and `tags` too).
    /// Other devices do not exist for it (404). Not for admin tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// With or instead of `devices`: the token also sees every device with one of these tags,
    /// tagged now or later. Not for admin tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// `POST /api/v1/tokens` answer (201). The token is shown only here, never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub name: String,
    pub role: Role,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API token as `GET /api/v1/tokens` lists it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The admin token that created it; absent for tokens made by `ems-cloud create-token`.
    pub created_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The devices it is limited to; every device when absent (and `tags` too).
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// The device tags it is limited to (with `devices`: the union).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// When it was revoked (or replaced by rotation), and by whom.
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
}

/// One entry of the audit trail, `GET /api/v1/audit` (admin), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: DateTime<Utc>,
    /// The acting API token's name and role; absent for failed authentications.
    pub actor: Option<String>,
    pub role: Option<Role>,
    /// `COMMAND_ISSUED`, `TOKEN_CREATED`, `TOKEN_REVOKED`, `TOKEN_ROTATED`, `DEVICE_CREATED`,
    /// `DEVICE_TOKEN_ROTATED`, `DEVICE_DISABLED`, `DEVICE_ENABLED`, `DEVICE_DELETED`,
    /// `AUTH_FAILED`.
    pub action: String,
    pub device_id: Option<String>,
    pub command_id: Option<String>,
    /// The token acted on (`TOKEN_*`).
    pub target: Option<String>,
    /// The client's address.
    pub source: Option<String>,
    /// `ok`, or why it was refused.
    pub result: String,
}

/// A command as the cloud records it. `GET /api/v1/commands/<id>`, and the answer to
/// `POST /api/v1/devices/<id>/commands` (201).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command_id: String,
    pub device_id: String,
    /// `SET_MODE`, `RESET_ERROR` or `SET_SCHEDULE`.
    pub action: String,
    /// The spec's `payload` object, as sent to the device.
    pub payload: Value,
    /// Name of the API token that issued it.
    pub issued_by: String,
    pub issued_at: DateTime<Utc>,
    pub status: CommandStatus,
    /// When `status` last changed.
    pub status_at: DateTime<Utc>,
    /// The device's reason (for `REJECTED`, or a note), or why the cloud expired it.
    #[serde(default)]
    pub reason: Option<String>,
    /// After this, an undelivered or unanswered command becomes `EXPIRED`.
    pub expires_at: DateTime<Utc>,
}

/// `GET /api/v1/devices/<id>/schedule`: the schedule the device last accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSchedule {
    pub device_id: String,
    /// The `SET_SCHEDULE` command that carried it.
    pub command_id: String,
    /// When the device's ACCEPTED answer was recorded.
    pub accepted_at: DateTime<Utc>,
    pub schedule: crate::schedule::SchedulePayload,
}

/// What the server derived from consecutive telemetry of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub device_id: String,
    /// Timestamp of the telemetry packet that showed the change.
    pub time: DateTime<Utc>,
    /// `STATE_CHANGED`, `ERROR_RAISED` or `ERROR_CLEARED`.
    pub kind: String,
    #[serde(default)]
    pub from_state: Option<String>,
    #[serde(default)]
    pub to_state: Option<String>,
    /// The error flag raised or cleared.
    #[serde(default)]
    pub flag: Option<String>,
}

/// `GET /api/v1/devices/<id>/energy` answer: energy through the battery and the grid, per bucket,
/// integrated from the stored packets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    pub device_id: String,
    /// The covered range, aligned to whole buckets (UTC).
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket_s: i64,
    /// Longest gap between packets that is bridged by holding the earlier packet's power; a
    /// packet before a longer gap stands for its own second only.
    pub max_gap_s: i64,
    /// Buckets with packets, oldest first.
    pub buckets: Vec<EnergyBucket>,
}

/// Energy in one bucket, kWh, each direction on its own (the spec's signs: battery power + is
/// charging, grid power − is exporting).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnergyBucket {
    pub time: DateTime<Utc>,
    pub charged_kwh: f64,
    pub discharged_kwh: f64,
    pub imported_kwh: f64,
    pub exported_kwh: f64,
    /// Seconds the packets of the bucket stand for (86,400 for a full day at 1 Hz).
    pub covered_s: f64,
    /// PV produced, kWh, from the packets that carry `site.pv_power`; absent without any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv_kwh: Option<f64>,
    /// House consumption, kWh, from the packets that carry `site.house_power`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub house_kwh: Option<f64>,
    /// Share of the PV produced that the site used itself (not exported), 0 to 1, over the
    /// seconds with a PV reading; absent without PV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_consumption: Option<f64>,
    /// Share of the house consumption not imported from the grid, 0 to 1, over the seconds with
    /// a house reading; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_sufficiency: Option<f64>,
}

/// `GET /api/v1/devices/<id>/telemetry` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub device_id: String,
    /// Start of the covered range (inclusive). With a bucket, aligned down to a bucket start.
    pub from: DateTime<Utc>,
    /// End of the covered range (exclusive). With a bucket, aligned up to a bucket end.
    pub to: DateTime<Utc>,
    /// Bucket width in seconds, or `None` for raw packets.
    pub bucket_s: Option<i64>,
    pub fields: Vec<String>,
    /// Raw packets (no bucket), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<RawPoint>,
    /// Buckets (with a bucket), oldest first; empty buckets are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<BucketPoint>,
    /// True when `limit` cut the answer short.
    pub truncated: bool,
}

/// One stored packet, reduced to the requested fields (`battery_soc`, `state`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawPoint {
    pub time: DateTime<Utc>,
    #[serde(flatten)]
    pub values: BTreeMap<String, Value>,
}

/// One bucket: `count` packets from `time` (bucket start) on, and per numeric field its average,
/// minimum and maximum over the packets where it was not null (`null` when it always was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketPoint {
    pub time: DateTime<Utc>,
    pub count: i64,
    #[serde(flatten)]
    pub values: BTreeMap<String, Option<FieldStats>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    pub avg: f64,
    pub min: f64,
    pub max: f64,
}

/// A frame of the live feed `/ws/live/<device_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LiveEvent {
    /// A telemetry packet, pushed once it is stored.
    Telemetry { telemetry: Telemetry },
    /// A command was created or changed status.
    CommandStatus { command: CommandRecord },
}

impl LiveEvent {
    pub fn device_id(&self) -> &str {
        match self {
            LiveEvent::Telemetry { telemetry } => &telemetry.device_id,
            LiveEvent::CommandStatus { command } => &command.device_id,
        }
    }
}
