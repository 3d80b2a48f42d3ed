//! Commands: issued over REST, delivered to the device's socket, tracked to their answer.
//!
//! Lifecycle: `PENDING` (stored) → `SENT` (written to the device's socket) → `ACCEPTED` /
//! `REJECTED` / `COMPLETED` from the device's `COMMAND_ANSWER`, or `EXPIRED` when not delivered or
//! not answered by `expires_at`. A command for an offline device stays `PENDING` and goes out when
//! it connects; on (re)connection unanswered `SENT` commands are sent again (the agent answers a
//! repeated `command_id` with the same answer). Every change is published through the [`Hub`], so
//! whichever instance holds the socket delivers, and every instance's live feeds see it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ems_protocol::api::{CommandRecord, LiveEvent};
use ems_protocol::{Command, CommandAnswer, CommandStatus};
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, get, post, routes};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio_postgres::Row;

use crate::auth::{Operator, Viewer};
use crate::config::CloudConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::{Hub, Outbound};
use crate::server::need;

pub(crate) const COLUMNS: &str = "command_id, device_id, action, payload, issued_by, issued_at, \
     status, status_at, reason, expires_at";

pub(crate) fn record(row: &Row) -> Result<CommandRecord, ApiError> {
    let status: String = row.get(6);
    Ok(CommandRecord {
        command_id: row.get(0),
        device_id: row.get(1),
        action: row.get(2),
        payload: row.get(3),
        issued_by: row.get(4),
        issued_at: row.get(5),
        status: status
            .parse()
            .map_err(|e| ApiError::Internal(format!("stored command status: {e}")))?,
        status_at: row.get(7),
        reason: row.get(8),
        expires_at: row.get(9),
    })
}

/// The spec's command frame for a stored command.
fn wire_text(rec: &CommandRecord) -> Result<String, ApiError> {
    let value = serde_json::json!({
        "command_id": rec.command_id,
        "action": rec.action,
        "payload": rec.payload,
    });
    Command::from_value(value)
        .map(|c| c.to_json())
        .map_err(|e| {
            ApiError::Internal(format!("stored command {} is invalid: {e}", rec.command_id))
        })
}

/// Sends the device's open commands to its socket on this instance, if it has one: `PENDING`
/// ones, and with `include_sent` also unanswered `SENT` ones (after a reconnection).
pub async fn deliver_pending(hub: &Hub, db: &Db, device_id: &str, include_sent: bool) {
    let Some(tx) = hub.sender(device_id) else {
        return;
    };
    let statuses: &[&str] = if include_sent {
        &["PENDING", "SENT"]
    } else {
        &["PENDING"]
    };
    let claimed = async {
        let client = db.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE commands SET status = 'SENT', status_at = now() \
                     WHERE device_id = $1 AND status = ANY($2) AND expires_at > now() \
                     RETURNING {COLUMNS}"
                ),
                &[&device_id, &statuses],
            )
            .await?;
        rows.iter().map(record).collect::<ApiResult<Vec<_>>>()
    }
    .await;
    let mut claimed = match claimed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                device = device_id,
                "delivering commands failed, will retry: {e}"
            );
            return;
        }
    };
    claimed.sort_by_key(|c| c.issued_at);
    for rec in claimed {
        match wire_text(&rec) {
            Ok(text) => {
                tracing::info!(device = device_id, command = %rec.command_id, "command sent");
                let _ = tx.send(Outbound::Command(text));
            }
            Err(e) => tracing::error!("{e}"),
        }
        hub.publish_command(rec).await;
    }
}

/// Records a device's answer. `None` when the command is unknown, of another device, or final.
pub async fn record_answer(
    hub: &Hub,
    db: &Db,
    device_id: &str,
    answer: &CommandAnswer,
) -> ApiResult<Option<CommandRecord>> {
    let status = CommandStatus::from(answer.status);
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE commands SET status = $3, status_at = now(), reason = $4 \
                 WHERE command_id = $1 AND device_id = $2 AND status IN ('PENDING', 'SENT') \
                 RETURNING {COLUMNS}"
            ),
            &[
                &answer.command_id,
                &device_id,
                &status.as_str(),
                &answer.reason,
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let rec = record(&row)?;
    hub.publish_command(rec.clone()).await;
    Ok(Some(rec))
}

async fn load(db: &Db, command_id: &str) -> ApiResult<CommandRecord> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM commands WHERE command_id = $1"),
            &[&command_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no command {command_id:?}")))?;
    record(&row)
}

pub(crate) async fn ensure_device(db: &Db, device_id: &str) -> ApiResult<()> {
    let client = db.pool.get().await?;
    client
        .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&device_id])
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("no device {device_id:?}")))
}

fn new_command_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("cmd_{hex}")
}

/// `POST /api/v1/devices/<id>/commands[?wait=<s>][&expires_in=<s>]` (operator).
///
/// Body: the spec's command (`SET_MODE` / `RESET_ERROR`); `command_id` is generated when absent.
/// Answers 201 with the [`CommandRecord`]; with `wait`, after the device answered (or the wait
/// ran out: then the status is still `PENDING` or `SENT`).
#[post("/devices/<device_id>/commands?<wait>&<expires_in>", data = "<body>")]
#[allow(clippy::too_many_arguments)]
async fn post_command(
    device_id: &str,
    wait: Option<f64>,
    expires_in: Option<u64>,
    operator: Operator,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    config: &State<CloudConfig>,
    body: String,
) -> ApiResult<(Status, Json<CommandRecord>)> {
    let mut value: Value = serde_json::from_str(&body)
        .map_err(|e| ApiError::bad_field(".", format!("body is not JSON: {e}")))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(ApiError::bad_field(".", "body must be a JSON object"));
    };
    if obj.get("command_id").is_none_or(Value::is_null) {
        obj.insert("command_id".into(), Value::String(new_command_id()));
    }
    let command = Command::from_value(value)?;
    ensure_device(db, device_id).await?;

    let expires_s = expires_in.unwrap_or(config.command_expiry_s);
    if expires_s == 0 || expires_s > config.command_max_expiry_s {
        return Err(ApiError::bad_field(
            "expires_in",
            format!("must be 1 to {} s", config.command_max_expiry_s),
        ));
    }
    let wait = match wait {
        None => None,
        Some(w) if w.is_finite() && w >= 0.0 && w <= config.command_max_wait_s as f64 => {
            Some(Duration::from_secs_f64(w))
        }
        Some(_) => {
            return Err(ApiError::bad_field(
                "wait",
                format!("must be 0 to {} s", config.command_max_wait_s),
            ));
        }
    };
    let wire: Value =
        serde_json::from_str(&command.to_json()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let payload = wire
        .get("payload")
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    let expires_at = Utc::now() + chrono::Duration::seconds(expires_s as i64);

    let mut events = hub.subscribe();
    let row = {
        let client = db.pool.get().await?;
        client
            .query_opt(
                &format!(
                    "INSERT INTO commands (command_id, device_id, action, payload, issued_by, status, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, 'PENDING', $6) \
                     ON CONFLICT (command_id) DO NOTHING RETURNING {COLUMNS}"
                ),
                &[
                    &command.command_id,
                    &device_id,
                    &command.action.name(),
                    &payload,
                    &operator.0.name,
                    &expires_at,
                ],
            )
            .await?
    };
    let Some(row) = row else {
        return Err(ApiError::Conflict(format!(
            "command_id {:?} is already used",
            command.command_id
        )));
    };
    let rec = record(&row)?;
    tracing::info!(device = device_id, command = %rec.command_id, action = %rec.action,
        by = %operator.0.name, "command issued");
    hub.publish_command(rec.clone()).await;
    deliver_pending(hub, db, device_id, false).await;

    let Some(wait) = wait else {
        return Ok((Status::Created, Json(rec)));
    };
    let id = rec.command_id.clone();
    let _ = tokio::time::timeout(wait, async {
        loop {
            match events.recv().await {
                Ok(LiveEvent::CommandStatus { command })
                    if command.command_id == id && command.status.is_final() =>
                {
                    return;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    if load(db, &id).await.is_ok_and(|r| r.status.is_final()) {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
    .await;
    Ok((Status::Created, Json(load(db, &id).await?)))
}

/// `GET /api/v1/commands/<command_id>` (viewer).
#[get("/commands/<command_id>")]
async fn get_command(
    command_id: &str,
    _v: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<CommandRecord>> {
    Ok(Json(load(db, command_id).await?))
}

/// `GET /api/v1/devices/<id>/commands[?limit=&status=]` (viewer): newest first.
#[get("/devices/<device_id>/commands?<limit>&<status>")]
async fn list_commands(
    device_id: &str,
    limit: Option<i64>,
    status: Option<&str>,
    _v: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<Vec<CommandRecord>>> {
    ensure_device(db, device_id).await?;
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_field("limit", "must be 1 to 1000"));
    }
    if let Some(s) = status {
        s.parse::<CommandStatus>()?;
    }
    let client = db.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM commands WHERE device_id = $1 \
                 AND ($2::text IS NULL OR status = $2) ORDER BY issued_at DESC LIMIT $3"
            ),
            &[&device_id, &status, &limit],
        )
        .await?;
    Ok(Json(rows.iter().map(record).collect::<ApiResult<_>>()?))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![post_command, get_command, list_commands]
}

/// One round of the sweeper: expire overdue commands, deliver pending ones to local sockets.
async fn sweep(hub: &Hub, db: &Db) -> ApiResult<()> {
    let client = db.pool.get().await?;
    let expired = client
        .query(
            &format!(
                "UPDATE commands SET status = 'EXPIRED', status_at = now(), \
                   reason = CASE status WHEN 'PENDING' THEN 'not delivered before expiry' \
                                        ELSE 'not answered before expiry' END \
                 WHERE status IN ('PENDING', 'SENT') AND expires_at <= now() RETURNING {COLUMNS}"
            ),
            &[],
        )
        .await?;
    let local = hub.connected_devices();
    let waiting = if local.is_empty() {
        Vec::new()
    } else {
        client
            .query(
                "SELECT DISTINCT device_id FROM commands \
                 WHERE status = 'PENDING' AND expires_at > now() AND device_id = ANY($1)",
                &[&local],
            )
            .await?
    };
    drop(client);
    for row in &expired {
        let rec = record(row)?;
        tracing::info!(device = %rec.device_id, command = %rec.command_id, "command expired");
        hub.publish_command(rec).await;
    }
    for row in waiting {
        let device: String = row.get(0);
        deliver_pending(hub, db, &device, false).await;
    }
    Ok(())
}

async fn sweeper(hub: Arc<Hub>, db: Db, config: CloudConfig) {
    let mut tick = tokio::time::interval(config.command_sweep_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.resync.notified() => {}
            _ = hub.stopped() => break,
        }
        if let Err(e) = sweep(&hub, &db).await {
            tracing::warn!("command sweep failed: {e}");
        }
    }
}

/// Starts the sweeper.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("command sweeper", |rocket| async move {
        let config: CloudConfig = need!(rocket);
        let db: Db = need!(rocket);
        let hub: Arc<Hub> = need!(rocket);
        if let Some(days) = config.retention_days {
            let hub = hub.clone();
            let stopped = async move { hub.stopped().await };
            tokio::spawn(crate::db::retention::run(db.clone(), days, stopped));
        }
        tokio::spawn(sweeper(hub, db, config));
        Ok(rocket)
    })
}
