//! API tokens (admin): `POST /tokens` creates one (optionally expiring, optionally limited to some devices), `GET /tokens` lists
//! them without secrets, `DELETE /tokens/<name>` revokes one, `POST /tokens/<name>/rotate`
//! replaces its secret. Revoking or rotating closes the token's live feeds on every instance.
//! `GET /audit` reads the audit trail.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ems_protocol::api::{AuditRecord, NewToken, TokenCreated, TokenInfo};
use rocket::data::{Data, Limits};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, post, routes};

use crate::audit::{Action, Audit};
use crate::auth::Admin;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::tokens;

/// `POST /api/v1/tokens` (admin): a new API token with a role and an optional `expires_at`.
#[post("/tokens", data = "<body>")]
async fn post_token(
    admin: Admin,
    db: &State<Db>,
    audit: &State<Audit>,
    limits: &Limits,
    body: Data<'_>,
) -> ApiResult<(Status, Json<TokenCreated>)> {
    let body: NewToken = super::body::read_json(body, limits, "").await?;
    let limits = tokens::Limits {
        expires_at: body.expires_at,
        devices: body.devices.clone(),
        tags: body.tags.clone(),
    };
    let token = tokens::create(db, &body.name, body.role, Some(&admin.0.name), limits).await?;
    tracing::info!(by = %admin.0.name, name = %body.name, role = %body.role, "API token created");
    audit.record(admin.0.did(Action::TokenCreated).target(&body.name));
    Ok((
        Status::Created,
        Json(TokenCreated {
            name: body.name.clone(),
            role: body.role,
            token,
            expires_at: body.expires_at,
        }),
    ))
}

/// `GET /api/v1/tokens[?revoked=true]` (admin): live tokens, with `revoked` also revoked ones.
#[get("/tokens?<revoked>")]
async fn list_tokens(
    revoked: Option<&str>,
    _admin: Admin,
    db: &State<Db>,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    let revoked: Option<bool> = super::query("revoked", revoked)?;
    Ok(Json(tokens::list(db, revoked.unwrap_or(false)).await?))
}

/// `DELETE /api/v1/tokens/<name>` (admin): the token stops working now, everywhere.
#[delete("/tokens/<name>")]
async fn revoke_token(
    name: &str,
    admin: Admin,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    audit: &State<Audit>,
) -> ApiResult<Json<TokenInfo>> {
    let info = tokens::revoke(db, name, &admin.0.name).await?;
    hub.publish_revocation(name).await;
    tracing::info!(by = %admin.0.name, name, "API token revoked");
    audit.record(admin.0.did(Action::TokenRevoked).target(name));
    Ok(Json(info))
}

/// `POST /api/v1/tokens/<name>/rotate` (admin): a new secret for the token; the old one stops
/// working now.
#[post("/tokens/<name>/rotate")]
async fn rotate_token(
    name: &str,
    admin: Admin,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    audit: &State<Audit>,
) -> ApiResult<(Status, Json<TokenCreated>)> {
    let created = tokens::rotate(db, name, &admin.0.name).await?;
    hub.publish_revocation(name).await;
    tracing::info!(by = %admin.0.name, name, "API token rotated");
    audit.record(admin.0.did(Action::TokenRotated).target(name));
    Ok((Status::Created, Json(created)))
}

/// `GET /api/v1/audit[?device=&action=&before=&limit=]` (admin): newest first.
#[get("/audit?<device>&<action>&<before>&<limit>")]
async fn audit_log(
    device: Option<&str>,
    action: Option<&str>,
    before: Option<&str>,
    limit: Option<&str>,
    _admin: Admin,
    db: &State<Db>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    let limit: i64 = super::query("limit", limit)?.unwrap_or(100);
    if let Some(device) = device {
        ems_protocol::validate_id("device", device)?;
    }
    if let Some(action) = action
        && !action.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        return Err(ApiError::bad_field(
            "action",
            "an action name such as COMMAND_ISSUED",
        ));
    }
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_field("limit", "must be 1 to 1000"));
    }
    let before: Option<DateTime<Utc>> = before
        .map(|b| super::history::parse_time("before", b))
        .transpose()?;
    let client = db.pool.get().await?;
    let rows = client
        .query(
            "SELECT time, actor, role, action, device_id, command_id, target, source, result \
             FROM audit_log WHERE ($1::text IS NULL OR device_id = $1) \
             AND ($2::text IS NULL OR action = $2) AND ($3::timestamptz IS NULL OR time < $3) \
             ORDER BY time DESC, id DESC LIMIT $4",
            &[&device, &action, &before, &limit],
        )
        .await?;
    let records = rows
        .iter()
        .map(|r| {
            let role: Option<String> = r.get(2);
            Ok(AuditRecord {
                time: r.get(0),
                actor: r.get(1),
                role: role
                    .map(|s| s.parse())
                    .transpose()
                    .map_err(|e: String| ApiError::Internal(format!("stored role: {e}")))?,
                action: r.get(3),
                device_id: r.get(4),
                command_id: r.get(5),
                target: r.get(6),
                source: r.get(7),
                result: r.get(8),
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(records))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![
        post_token,
        list_tokens,
        revoke_token,
        rotate_token,
        audit_log
    ]
}
