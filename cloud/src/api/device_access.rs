//! A device's access (admin): `POST /devices/<id>/token` rotates its token (the previous one
//! works for an optional grace period), `POST /devices/<id>/disable` and `/enable` refuse or
//! allow it again (its data kept), `DELETE /devices/<id>` removes it (its telemetry kept unless
//! `purge=true`). Whatever ends a token's validity closes the device's sockets on every
//! instance when it ends (close code 4001).

use std::sync::Arc;

use chrono::Utc;
use ems_protocol::api::{DeviceDeleted, DeviceInfo, DeviceTokenRotated};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, post, routes};

use super::devices::get_device_info;
use crate::audit::{Action, Audit};
use crate::auth::{Admin, DEVICE_TOKEN_PREFIX, generate_token, hash_token};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;

/// Longest grace period for a rotated device token: a week.
const MAX_GRACE_S: u64 = 7 * 86_400;

/// `POST /api/v1/devices/<id>/token[?grace_s=N]` (admin): a new token for the device, shown
/// once. The previous one keeps working for `grace_s` seconds (default 0: it stops at once).
#[post("/devices/<device_id>/token?<grace_s>")]
async fn rotate_device_token(
    device_id: &str,
    grace_s: Option<&str>,
    admin: Admin,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    audit: &State<Audit>,
) -> ApiResult<(Status, Json<DeviceTokenRotated>)> {
    let grace_s: u64 = super::query("grace_s", grace_s)?.unwrap_or(0);
    if grace_s > MAX_GRACE_S {
        return Err(ApiError::bad_field(
            "grace_s",
            format!("at most {MAX_GRACE_S} s (a week)"),
        ));
    }
    let until = (grace_s > 0).then(|| Utc::now() + chrono::Duration::seconds(grace_s as i64));
    let token = generate_token(DEVICE_TOKEN_PREFIX);
    let client = db.pool.get().await?;
    let updated = client
        .execute(
            "UPDATE devices SET previous_token_hash = CASE WHEN $3::timestamptz IS NULL \
                 THEN NULL ELSE token_hash END, \
               previous_valid_until = $3, token_hash = $2 WHERE id = $1",
            &[&device_id, &hash_token(&token), &until],
        )
        .await?;
    if updated == 0 {
        return Err(ApiError::NotFound(format!("no device {device_id:?}")));
    }
    hub.end_device_access(
        device_id,
        until,
        "the device token was replaced; connect with the new one",
    )
    .await;
    tracing::info!(by = %admin.0.name, device = device_id, grace_s, "device token rotated");
    audit.record(admin.0.did(Action::DeviceTokenRotated).device(device_id));
    Ok((
        Status::Created,
        Json(DeviceTokenRotated {
            device_id: device_id.to_string(),
            token,
            previous_valid_until: until,
        }),
    ))
}

/// `POST /api/v1/devices/<id>/disable` (admin): its token is refused (403) and its sockets
/// close; its data stays.
#[post("/devices/<device_id>/disable")]
async fn disable_device(
    device_id: &str,
    admin: Admin,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    audit: &State<Audit>,
) -> ApiResult<Json<DeviceInfo>> {
    set_disabled(db, device_id, true).await?;
    hub.end_device_access(device_id, None, "the device was disabled")
        .await;
    tracing::info!(by = %admin.0.name, device = device_id, "device disabled");
    audit.record(admin.0.did(Action::DeviceDisabled).device(device_id));
    Ok(Json(get_device_info(db, device_id).await?))
}

/// `POST /api/v1/devices/<id>/enable` (admin): its token works again.
#[post("/devices/<device_id>/enable")]
async fn enable_device(
    device_id: &str,
    admin: Admin,
    db: &State<Db>,
    audit: &State<Audit>,
) -> ApiResult<Json<DeviceInfo>> {
    set_disabled(db, device_id, false).await?;
    tracing::info!(by = %admin.0.name, device = device_id, "device enabled");
    audit.record(admin.0.did(Action::DeviceEnabled).device(device_id));
    Ok(Json(get_device_info(db, device_id).await?))
}

async fn set_disabled(db: &Db, device_id: &str, disabled: bool) -> ApiResult<()> {
    let client = db.pool.get().await?;
    let updated = client
        .execute(
            "UPDATE devices SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) \
             END WHERE id = $1",
            &[&device_id, &disabled],
        )
        .await?;
    if updated == 0 {
        return Err(ApiError::NotFound(format!("no device {device_id:?}")));
    }
    Ok(())
}

/// `DELETE /api/v1/devices/<id>[?purge=true]` (admin): the device, its token, commands and
/// events go; its telemetry stays (it shows again if the id is registered anew) unless
/// `purge=true`. Its sockets close.
#[delete("/devices/<device_id>?<purge>")]
async fn delete_device(
    device_id: &str,
    purge: Option<&str>,
    admin: Admin,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    audit: &State<Audit>,
) -> ApiResult<Json<DeviceDeleted>> {
    let purge: bool = super::query("purge", purge)?.unwrap_or(false);
    let mut client = db.pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = tx
        .execute("DELETE FROM devices WHERE id = $1", &[&device_id])
        .await?;
    if deleted == 0 {
        return Err(ApiError::NotFound(format!("no device {device_id:?}")));
    }
    let mut telemetry_rows_deleted = 0;
    if purge {
        telemetry_rows_deleted = tx
            .execute("DELETE FROM telemetry WHERE device_id = $1", &[&device_id])
            .await?;
        tx.execute(
            "DELETE FROM rejected_telemetry WHERE device_id = $1",
            &[&device_id],
        )
        .await?;
    }
    tx.commit().await?;
    hub.end_device_access(device_id, None, "the device was deleted")
        .await;
    tracing::info!(by = %admin.0.name, device = device_id, purge, "device deleted");
    audit.record(admin.0.did(Action::DeviceDeleted).device(device_id));
    Ok(Json(DeviceDeleted {
        device_id: device_id.to_string(),
        purged: purge,
        telemetry_rows_deleted,
    }))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![
        rotate_device_token,
        disable_device,
        enable_device,
        delete_device
    ]
}
