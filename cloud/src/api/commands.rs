//! REST commands: `POST /devices/<id>/commands`, `GET /commands/<id>`,
//! `GET /devices/<id>/commands`. Storing, delivery and answers are [`crate::commands`].

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ems_protocol::api::{CommandRecord, LiveEvent};
use ems_protocol::{Command, CommandAction, CommandStatus};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, get, post, routes};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::ensure_device;
use crate::audit::{Action, Audit, Entry};
use crate::auth::{Operator, Viewer};
use crate::commands::{COLUMNS, deliver_pending, load, record};
use crate::config::CloudConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;

fn new_command_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("cmd_{hex}")
}

/// `POST /api/v1/devices/<id>/commands[?wait=<s>][&expires_in=<s>]` (operator).
///
/// Body: the spec's command (`SET_MODE` / `RESET_ERROR`, or the extension `SET_SCHEDULE`);
/// `command_id` is generated when absent.
/// Answers 201 with the [`CommandRecord`]; with `wait`, after the device answered (or the wait
/// ran out: then the status is still `PENDING` or `SENT`).
#[post("/devices/<device_id>/commands?<wait>&<expires_in>", data = "<body>")]
#[allow(clippy::too_many_arguments)]
async fn post_command(
    device_id: &str,
    wait: Option<&str>,
    expires_in: Option<&str>,
    operator: Operator,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    config: &State<CloudConfig>,
    audit: &State<Audit>,
    body: String,
) -> ApiResult<(Status, Json<CommandRecord>)> {
    let wait = super::query("wait", wait)?;
    let expires_in = super::query("expires_in", expires_in)?;
    let result = issue(
        device_id, wait, expires_in, &operator, db, hub, config, body,
    )
    .await;
    record_issued(audit, &operator, device_id, &result);
    result
}

/// Audits a command issue: the command's id, or why it was refused.
pub(crate) fn record_issued(
    audit: &Audit,
    operator: &Operator,
    device_id: &str,
    result: &ApiResult<(Status, Json<CommandRecord>)>,
) {
    let entry = operator.0.did(Action::CommandIssued).device(device_id);
    audit.record(match result {
        Ok((_, rec)) => entry.command(&rec.command_id),
        Err(e) => Entry {
            result: format!("refused: {e}"),
            ..entry
        },
    });
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn issue(
    device_id: &str,
    wait: Option<f64>,
    expires_in: Option<u64>,
    operator: &Operator,
    db: &Db,
    hub: &Hub,
    config: &CloudConfig,
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
    if let CommandAction::SetSchedule(schedule) = &command.action {
        schedule.check_current(Utc::now())?;
    }
    ensure_device(db, &operator.0, device_id).await?;

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
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<CommandRecord>> {
    // An id that could never be issued (a NUL byte, 5000 bytes) is not looked up.
    if ems_protocol::validate_id("command_id", command_id).is_err() {
        return Err(ApiError::NotFound(format!("no command {command_id:?}")));
    }
    let rec = load(db, command_id).await?;
    if !viewer.0.sees(&rec.device_id) {
        return Err(ApiError::NotFound(format!("no command {command_id:?}")));
    }
    Ok(Json(rec))
}

/// `GET /api/v1/devices/<id>/commands[?limit=&status=]` (viewer): newest first.
#[get("/devices/<device_id>/commands?<limit>&<status>")]
async fn list_commands(
    device_id: &str,
    limit: Option<&str>,
    status: Option<&str>,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<Vec<CommandRecord>>> {
    let limit: Option<i64> = super::query("limit", limit)?;
    ensure_device(db, &viewer.0, device_id).await?;
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
