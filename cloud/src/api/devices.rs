//! Devices: registration (admin), listing with online state, latest telemetry, events.

use chrono::{DateTime, Utc};
use ems_protocol::api::{
    DeviceCreated, DeviceInfo, DeviceTags, EventRecord, LiveTicket, NewDevice,
};
use ems_protocol::{Telemetry, validate_id, validate_tags};
use rocket::data::{Data, Limits};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, get, post, put, routes};
use tokio_postgres::Row;

use super::ensure_device;
use super::history::{parse_time, telemetry_from_row};
use crate::audit::{Action, Audit};
use crate::auth::{Admin, DEVICE_TOKEN_PREFIX, Viewer, generate_token, hash_token, issue_ticket};
use crate::db::{Db, columns};
use crate::error::{ApiError, ApiResult};

/// Online: connected to an instance whose heartbeat is fresh (three periods).
const DEVICE_SELECT: &str = "\
SELECT d.id, d.name, d.created_at, \
  (d.connected_instance IS NOT NULL AND EXISTS (SELECT 1 FROM instances i \
     WHERE i.id = d.connected_instance AND i.heartbeat_at > now() - interval '30 seconds')) AS online, \
  GREATEST(d.last_seen, (SELECT t.time FROM telemetry t WHERE t.device_id = d.id \
     ORDER BY t.time DESC LIMIT 1)) AS last_seen, d.disabled_at, d.tags \
FROM devices d";

fn device_info(row: &Row) -> DeviceInfo {
    DeviceInfo {
        id: row.get(0),
        name: row.get(1),
        created_at: row.get(2),
        online: row.get(3),
        last_seen: row.get(4),
        disabled_at: row.get(5),
        tags: row.get(6),
    }
}

pub async fn get_device_info(db: &Db, id: &str) -> ApiResult<DeviceInfo> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(&format!("{DEVICE_SELECT} WHERE d.id = $1"), &[&id])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no device {id:?}")))?;
    Ok(device_info(&row))
}

/// Registers a device with `tags`; returns it with its token (the only time the token is
/// visible).
pub async fn add_device(
    db: &Db,
    id: &str,
    name: Option<&str>,
    tags: &[String],
) -> ApiResult<DeviceCreated> {
    validate_id("id", id)?;
    let tags = validate_tags("tags", tags)?;
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or(id);
    if name.len() > 128 {
        return Err(ApiError::bad_field("name", "at most 128 characters"));
    }
    // Shown in lists, logs and alert notifications: no line breaks, escapes or NUL bytes.
    if name.contains(char::is_control) {
        return Err(ApiError::bad_field("name", "no control characters"));
    }
    let token = generate_token(DEVICE_TOKEN_PREFIX);
    let inserted = {
        let client = db.pool.get().await?;
        client
            .execute(
                "INSERT INTO devices (id, name, token_hash, tags) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
                &[&id, &name, &hash_token(&token), &tags],
            )
            .await?
    };
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "device {id:?} is already registered"
        )));
    }
    Ok(DeviceCreated {
        device: get_device_info(db, id).await?,
        token,
    })
}

/// `GET /api/v1/devices[?tag=]` (viewer): the devices the token sees, with `tag` only those
/// that carry it.
#[get("/devices?<tag>")]
async fn list_devices(
    tag: Option<&str>,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<Vec<DeviceInfo>>> {
    if let Some(tag) = tag {
        validate_id("tag", tag)?;
    }
    let client = db.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{DEVICE_SELECT} WHERE ($1::text[] IS NULL OR d.id = ANY($1)) \
                 AND ($2::text IS NULL OR $2 = ANY(d.tags)) ORDER BY d.id"
            ),
            &[&viewer.0.devices, &tag],
        )
        .await?;
    Ok(Json(rows.iter().map(device_info).collect()))
}

/// `PUT /api/v1/devices/<id>/tags` (admin): replaces the device's tags. Tokens scoped by tag
/// see it (or stop seeing it) from their next request.
#[put("/devices/<device_id>/tags", data = "<body>")]
async fn put_tags(
    device_id: &str,
    admin: Admin,
    db: &State<Db>,
    audit: &State<Audit>,
    limits: &Limits,
    body: Data<'_>,
) -> ApiResult<Json<DeviceInfo>> {
    let body: DeviceTags = super::body::read_json(body, limits, "").await?;
    let tags = validate_tags("tags", &body.tags)?;
    // An id that could never be registered is not looked up.
    if validate_id("device_id", device_id).is_err() {
        return Err(ApiError::NotFound(format!("no device {device_id:?}")));
    }
    let client = db.pool.get().await?;
    let updated = client
        .execute(
            "UPDATE devices SET tags = $2 WHERE id = $1",
            &[&device_id, &tags],
        )
        .await?;
    if updated == 0 {
        return Err(ApiError::NotFound(format!("no device {device_id:?}")));
    }
    tracing::info!(by = %admin.0.name, device = device_id, ?tags, "device tags set");
    audit.record(admin.0.did(Action::DeviceTagged).device(device_id));
    Ok(Json(get_device_info(db, device_id).await?))
}

/// `POST /api/v1/devices` (admin): register a device, answer 201 with its token.
#[post("/devices", data = "<body>")]
async fn post_device(
    admin: Admin,
    db: &State<Db>,
    audit: &State<Audit>,
    limits: &Limits,
    body: Data<'_>,
) -> ApiResult<(Status, Json<DeviceCreated>)> {
    let body: NewDevice = super::body::read_json(body, limits, "").await?;
    let tags = body.tags.as_deref().unwrap_or_default();
    let created = add_device(db, &body.id, body.name.as_deref(), tags).await?;
    tracing::info!(by = %admin.0.name, device = %body.id, "device registered");
    audit.record(admin.0.did(Action::DeviceCreated).device(&body.id));
    Ok((Status::Created, Json(created)))
}

/// `GET /api/v1/devices/<id>` (viewer).
#[get("/devices/<device_id>")]
async fn get_device(
    device_id: &str,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<DeviceInfo>> {
    ensure_device(db, &viewer.0, device_id).await?;
    Ok(Json(get_device_info(db, device_id).await?))
}

/// `GET /api/v1/devices/<id>/telemetry/latest` (viewer): the newest stored packet, spec shape,
/// with the ems extension `system_status.schedule` when the device reported one.
#[get("/devices/<device_id>/telemetry/latest")]
async fn latest(device_id: &str, viewer: Viewer, db: &State<Db>) -> ApiResult<Json<Telemetry>> {
    ensure_device(db, &viewer.0, device_id).await?;
    let client = db.read_pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {}, extensions FROM telemetry WHERE device_id = $1 \
                 ORDER BY time DESC LIMIT 1",
                *columns::SPEC
            ),
            &[&device_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no telemetry from {device_id:?} yet")))?;
    let mut telemetry = telemetry_from_row(&row)?;
    let extensions: Option<serde_json::Value> = row.get("extensions");
    telemetry.system_status.schedule = extensions
        .as_ref()
        .and_then(|e| e.pointer("/system_status/schedule"))
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    Ok(Json(telemetry))
}

/// `GET /api/v1/devices/<id>/events[?from=&to=&limit=]` (viewer): newest first.
#[get("/devices/<device_id>/events?<from>&<to>&<limit>")]
async fn events(
    device_id: &str,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<&str>,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<Vec<EventRecord>>> {
    let limit: Option<i64> = super::query("limit", limit)?;
    ensure_device(db, &viewer.0, device_id).await?;
    let from: Option<DateTime<Utc>> = from.map(|s| parse_time("from", s)).transpose()?;
    let to: Option<DateTime<Utc>> = to.map(|s| parse_time("to", s)).transpose()?;
    let limit = limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_field("limit", "must be 1 to 10000"));
    }
    let client = db.read_pool.get().await?;
    let rows = client
        .query(
            "SELECT device_id, time, kind, from_state, to_state, flag FROM events \
             WHERE device_id = $1 AND ($2::timestamptz IS NULL OR time >= $2) \
               AND ($3::timestamptz IS NULL OR time < $3) \
             ORDER BY time DESC, id DESC LIMIT $4",
            &[&device_id, &from, &to, &limit],
        )
        .await?;
    Ok(Json(
        rows.iter()
            .map(|r| EventRecord {
                device_id: r.get(0),
                time: r.get(1),
                kind: r.get(2),
                from_state: r.get(3),
                to_state: r.get(4),
                flag: r.get(5),
            })
            .collect(),
    ))
}

/// How long a live-feed ticket may wait to be used.
const TICKET_TTL_S: i64 = 30;

/// `POST /api/v1/devices/<id>/live-ticket` (viewer): a single-use ticket to open the device's
/// live feed within 30 s (`/ws/live/<id>?ticket=…`), so the API token stays out of the URL.
#[post("/devices/<device_id>/live-ticket")]
async fn live_ticket(
    device_id: &str,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<(Status, Json<LiveTicket>)> {
    ensure_device(db, &viewer.0, device_id).await?;
    let (ticket, expires_at) = issue_ticket(
        db,
        &viewer.0,
        device_id,
        chrono::Duration::seconds(TICKET_TTL_S),
    )
    .await?;
    Ok((Status::Created, Json(LiveTicket { ticket, expires_at })))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![
        list_devices,
        post_device,
        get_device,
        latest,
        events,
        live_ticket,
        put_tags
    ]
}
