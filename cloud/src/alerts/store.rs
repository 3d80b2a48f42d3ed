//! Alert rules and alerts in PostgreSQL. Opening and resolving are single statements that
//! say whether they changed anything, so several instances evaluating the same rule open and
//! notify an alert once: `INSERT … ON CONFLICT DO NOTHING` against the partial unique index
//! `alerts_one_open` (one open alert per rule and device), and `UPDATE … WHERE resolved_at IS
//! NULL RETURNING` (a second instance's update waits for the first and then matches no row).
//! Plain SQL, the same on TimescaleDB and plain PostgreSQL.

use std::collections::HashSet;

use ems_protocol::api::{AlertKind, AlertRecord, AlertRule, NewAlertRule};

use crate::db::Db;
use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{}", crate::db::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Pool(e) => e.into(),
            StoreError::Sql(e) => e.into(),
        }
    }
}

type Result<T> = std::result::Result<T, StoreError>;

const RULE_COLUMNS: &str = "id, name, kind, device_id, threshold, clear_threshold, flag, for_s, \
                            clear_s, created_at, created_by";
const ALERT_COLUMNS: &str =
    "id, rule_id, rule_name, kind, device_id, opened_at, resolved_at, message";

fn rule_from_row(row: &tokio_postgres::Row) -> AlertRule {
    let kind: String = row.get(2);
    let for_s: i32 = row.get(7);
    let clear_s: i32 = row.get(8);
    AlertRule {
        id: row.get(0),
        rule: NewAlertRule {
            name: row.get(1),
            // The table's CHECK allows only the four kinds.
            kind: AlertKind::parse(&kind).unwrap_or(AlertKind::Offline),
            device_id: row.get(3),
            threshold: row.get(4),
            clear_threshold: row.get(5),
            flag: row.get(6),
            for_s: for_s.max(0) as u32,
            clear_s: clear_s.max(0) as u32,
        },
        created_at: row.get(9),
        created_by: row.get(10),
    }
}

fn alert_from_row(row: &tokio_postgres::Row) -> AlertRecord {
    let kind: String = row.get(3);
    AlertRecord {
        id: row.get(0),
        rule_id: row.get(1),
        rule_name: row.get(2),
        kind: AlertKind::parse(&kind).unwrap_or(AlertKind::Offline),
        device_id: row.get(4),
        opened_at: row.get(5),
        resolved_at: row.get(6),
        message: row.get(7),
    }
}

pub async fn list_rules(db: &Db) -> Result<Vec<AlertRule>> {
    let client = db.pool.get().await?;
    let rows = client
        .query(
            &format!("SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(rule_from_row).collect())
}

/// Why a rule could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a rule named {0:?} exists")]
    NameTaken(String),
    #[error("no device {0:?}")]
    NoDevice(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::NameTaken(_) => ApiError::Conflict(e.to_string()),
            CreateError::NoDevice(_) => ApiError::bad_field("device_id", e.to_string()),
            CreateError::Store(e) => e.into(),
        }
    }
}

/// Stores a validated rule.
pub async fn create_rule(
    db: &Db,
    rule: &NewAlertRule,
    by: &str,
) -> std::result::Result<AlertRule, CreateError> {
    let client = db.pool.get().await.map_err(StoreError::from)?;
    let for_s = i32::try_from(rule.for_s).unwrap_or(i32::MAX);
    let clear_s = i32::try_from(rule.clear_s).unwrap_or(i32::MAX);
    let result = client
        .query_one(
            &format!(
                "INSERT INTO alert_rules (name, kind, device_id, threshold, clear_threshold, \
                 flag, for_s, clear_s, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING {RULE_COLUMNS}"
            ),
            &[
                &rule.name,
                &rule.kind.as_str(),
                &rule.device_id,
                &rule.threshold,
                &rule.clear_threshold,
                &rule.flag,
                &for_s,
                &clear_s,
                &by,
            ],
        )
        .await;
    match result {
        Ok(row) => Ok(rule_from_row(&row)),
        Err(e) => match e.code() {
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Err(CreateError::NameTaken(rule.name.clone()))
            }
            Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => Err(
                CreateError::NoDevice(rule.device_id.clone().unwrap_or_default()),
            ),
            _ => Err(StoreError::from(e).into()),
        },
    }
}

/// Deletes the rule `name`; its open alerts are resolved first. The rule as it was and the
/// alerts resolved (to be notified); `None` when there is no such rule.
pub async fn delete_rule(db: &Db, name: &str) -> Result<Option<(AlertRule, Vec<AlertRecord>)>> {
    let mut client = db.pool.get().await?;
    let tx = client.transaction().await?;
    let Some(row) = tx
        .query_opt(
            &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE name = $1 FOR UPDATE"),
            &[&name],
        )
        .await?
    else {
        return Ok(None);
    };
    let rule = rule_from_row(&row);
    let resolved = tx
        .query(
            &format!(
                "UPDATE alerts SET resolved_at = now(), message = message || ' (rule deleted)' \
                 WHERE rule_id = $1 AND resolved_at IS NULL RETURNING {ALERT_COLUMNS}"
            ),
            &[&rule.id],
        )
        .await?;
    tx.execute("DELETE FROM alert_rules WHERE id = $1", &[&rule.id])
        .await?;
    tx.commit().await?;
    Ok(Some((rule, resolved.iter().map(alert_from_row).collect())))
}

/// Opens an alert of `rule` for `device_id` unless one is open; the new alert, or `None`.
pub async fn open(
    db: &Db,
    rule: &AlertRule,
    device_id: &str,
    message: &str,
) -> Result<Option<AlertRecord>> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO alerts (rule_id, rule_name, kind, device_id, message) \
                 SELECT $1, $2, $3, d.id, $5 FROM devices d WHERE d.id = $4 \
                 ON CONFLICT (rule_id, device_id) WHERE resolved_at IS NULL DO NOTHING \
                 RETURNING {ALERT_COLUMNS}"
            ),
            &[
                &rule.id,
                &rule.rule.name,
                &rule.rule.kind.as_str(),
                &device_id,
                &message,
            ],
        )
        .await?;
    Ok(row.as_ref().map(alert_from_row))
}

/// Resolves the open alert of `rule_id` for `device_id`; the alert, or `None` when none was
/// open (or another instance resolved it first).
pub async fn resolve(db: &Db, rule_id: i64, device_id: &str) -> Result<Option<AlertRecord>> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE alerts SET resolved_at = now() WHERE rule_id = $1 AND device_id = $2 \
                 AND resolved_at IS NULL RETURNING {ALERT_COLUMNS}"
            ),
            &[&rule_id, &device_id],
        )
        .await?;
    Ok(row.as_ref().map(alert_from_row))
}

/// When a device counts as disconnected: no socket recorded, or its instance stopped
/// heartbeating (three periods, as the device list says). `$1` is the rule's device or NULL.
const OFFLINE_DEVICES: &str = "\
SELECT d.id, CASE WHEN d.connected_instance IS NULL THEN d.last_seen \
                  ELSE coalesce(i.heartbeat_at, d.last_seen) END AS offline_since \
FROM devices d LEFT JOIN instances i ON i.id = d.connected_instance \
WHERE ($1::text IS NULL OR d.id = $1) AND d.disabled_at IS NULL AND d.last_seen IS NOT NULL \
  AND (d.connected_instance IS NULL OR i.heartbeat_at IS NULL \
       OR i.heartbeat_at <= now() - interval '30 seconds')";

/// Opens an `OFFLINE` alert for each device of `rule` disconnected for `for_s` seconds.
pub async fn open_offline(db: &Db, rule: &AlertRule) -> Result<Vec<AlertRecord>> {
    let client = db.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "INSERT INTO alerts (rule_id, rule_name, kind, device_id, message) \
                 SELECT $2, $3, 'OFFLINE', o.id, \
                   'offline since ' || to_char(o.offline_since AT TIME ZONE 'UTC', \
                   'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                 FROM ({OFFLINE_DEVICES}) o \
                 WHERE o.offline_since <= now() - make_interval(secs => $4) \
                 ON CONFLICT (rule_id, device_id) WHERE resolved_at IS NULL DO NOTHING \
                 RETURNING {ALERT_COLUMNS}"
            ),
            &[
                &rule.rule.device_id,
                &rule.id,
                &rule.rule.name,
                &f64::from(rule.rule.for_s),
            ],
        )
        .await?;
    Ok(rows.iter().map(alert_from_row).collect())
}

/// Resolves the `OFFLINE` alerts of `rule` whose device has been connected (to a live
/// instance) for `clear_s` seconds.
pub async fn resolve_offline(db: &Db, rule: &AlertRule) -> Result<Vec<AlertRecord>> {
    let client = db.pool.get().await?;
    let rows = client
        .query(
            "UPDATE alerts a SET resolved_at = now() FROM devices d \
             JOIN instances i ON i.id = d.connected_instance \
             WHERE a.rule_id = $1 AND a.resolved_at IS NULL AND d.id = a.device_id \
               AND i.heartbeat_at > now() - interval '30 seconds' \
               AND d.connected_at <= now() - make_interval(secs => $2) \
             RETURNING a.id, a.rule_id, a.rule_name, a.kind, a.device_id, a.opened_at, \
               a.resolved_at, a.message",
            &[&rule.id, &f64::from(rule.rule.clear_s)],
        )
        .await?;
    Ok(rows.iter().map(alert_from_row).collect())
}

/// (rule, device) of every open alert.
pub async fn open_keys(db: &Db) -> Result<HashSet<(i64, String)>> {
    let client = db.pool.get().await?;
    let rows = client
        .query(
            "SELECT rule_id, device_id FROM alerts WHERE resolved_at IS NULL \
             AND rule_id IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Which alerts [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// `Some(true)`: open only; `Some(false)`: resolved only.
    pub open: Option<bool>,
    pub device_id: Option<&'a str>,
    /// The devices the caller may see; `None`: all.
    pub scope: Option<&'a [String]>,
    pub limit: i64,
}

/// Alerts, newest first.
pub async fn list(db: &Db, filter: &Filter<'_>) -> Result<Vec<AlertRecord>> {
    let client = db.pool.get().await?;
    let scope: Option<Vec<String>> = filter.scope.map(<[String]>::to_vec);
    let rows = client
        .query(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts \
                 WHERE ($1::boolean IS NULL OR (resolved_at IS NULL) = $1) \
                   AND ($2::text IS NULL OR device_id = $2) \
                   AND ($3::text[] IS NULL OR device_id = ANY($3)) \
                 ORDER BY opened_at DESC, id DESC LIMIT $4"
            ),
            &[&filter.open, &filter.device_id, &scope, &filter.limit],
        )
        .await?;
    Ok(rows.iter().map(alert_from_row).collect())
}
