//! A device's schedule (the `SET_SCHEDULE` extension): `PUT /devices/<id>/schedule` sends one
//! (as a command, answered by the device), `DELETE` sends the empty schedule that clears it, and
//! `GET` returns the schedule the device last accepted, from the command records. The device
//! keeps and runs its schedule itself; the cloud does not need to be reachable for it.

use std::sync::Arc;

use ems_protocol::CommandStatus;
use ems_protocol::api::{CommandRecord, DeviceSchedule};
use ems_protocol::schedule::SchedulePayload;
use rocket::data::{Data, Limits};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, put, routes};

use super::body::read_json;
use super::commands::{issue, record_issued};
use super::ensure_device;
use crate::audit::Audit;
use crate::auth::{Operator, Viewer};
use crate::commands::{COLUMNS, record};
use crate::config::CloudConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;

/// Sends `payload` as a `SET_SCHEDULE` and audits it like any command.
#[allow(clippy::too_many_arguments)]
async fn send(
    device_id: &str,
    wait: Option<f64>,
    payload: serde_json::Value,
    operator: &Operator,
    db: &Db,
    hub: &Hub,
    config: &CloudConfig,
    audit: &Audit,
) -> ApiResult<(Status, Json<CommandRecord>)> {
    let body = serde_json::json!({"action": "SET_SCHEDULE", "payload": payload}).to_string();
    let result = issue(device_id, wait, None, operator, db, hub, config, body).await;
    record_issued(audit, operator, device_id, &result);
    result
}

/// `PUT /api/v1/devices/<id>/schedule[?wait=<s>]` (operator): the body is a `SET_SCHEDULE`
/// payload; answers 201 with the command's record (after the device's answer with `wait`).
#[put("/devices/<device_id>/schedule?<wait>", data = "<body>")]
#[allow(clippy::too_many_arguments)]
async fn put_schedule(
    device_id: &str,
    wait: Option<&str>,
    operator: Operator,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    config: &State<CloudConfig>,
    audit: &State<Audit>,
    limits: &Limits,
    body: Data<'_>,
) -> ApiResult<(Status, Json<CommandRecord>)> {
    let wait = super::query("wait", wait)?;
    // Named like the command's own checks (`payload.time_zone`): the body is its payload.
    let body: SchedulePayload = read_json(body, limits, "payload.").await?;
    let payload = serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?;
    send(device_id, wait, payload, &operator, db, hub, config, audit).await
}

/// `DELETE /api/v1/devices/<id>/schedule[?wait=<s>]` (operator): sends the empty schedule.
#[delete("/devices/<device_id>/schedule?<wait>")]
#[allow(clippy::too_many_arguments)]
async fn delete_schedule(
    device_id: &str,
    wait: Option<&str>,
    operator: Operator,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    config: &State<CloudConfig>,
    audit: &State<Audit>,
) -> ApiResult<(Status, Json<CommandRecord>)> {
    let wait = super::query("wait", wait)?;
    let payload = serde_json::json!({"windows": []});
    send(device_id, wait, payload, &operator, db, hub, config, audit).await
}

/// `GET /api/v1/devices/<id>/schedule` (viewer): the schedule the device last accepted (404
/// when it never accepted one, or the last one it accepted was a clear).
#[get("/devices/<device_id>/schedule")]
async fn get_schedule(
    device_id: &str,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<DeviceSchedule>> {
    ensure_device(db, &viewer.0, device_id).await?;
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM commands WHERE device_id = $1 AND action = 'SET_SCHEDULE' \
                 AND status = $2 ORDER BY status_at DESC LIMIT 1"
            ),
            &[&device_id, &CommandStatus::Accepted.as_str()],
        )
        .await?;
    let none = || ApiError::NotFound(format!("device {device_id:?} has no schedule"));
    let rec = record(&row.ok_or_else(none)?)?;
    let schedule: SchedulePayload = serde_json::from_value(rec.payload.clone())
        .map_err(|e| ApiError::Internal(format!("stored schedule: {e}")))?;
    if schedule.windows.is_empty() {
        return Err(none());
    }
    Ok(Json(DeviceSchedule {
        device_id: device_id.to_string(),
        command_id: rec.command_id,
        accepted_at: rec.status_at,
        schedule,
    }))
}

pub fn routes() -> Vec<Route> {
    routes![put_schedule, delete_schedule, get_schedule]
}
