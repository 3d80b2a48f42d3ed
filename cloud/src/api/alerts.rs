//! Alerts: `GET /alerts` lists them (any token, limited to the devices it sees), and alert
//! rules (admin): `POST /alert-rules` adds one, `GET /alert-rules` lists them,
//! `DELETE /alert-rules/<name>` removes one (its open alerts are resolved). Rule changes are
//! audited. Evaluation and notifications are [`crate::alerts`]'s.

use ems_protocol::api::{AlertEvent, AlertRecord, AlertRule, NewAlertRule};
use rocket::data::{Data, Limits};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, post, routes};

use crate::alerts::{Alerts, rules, store};
use crate::audit::{Action, Audit};
use crate::auth::{Admin, Viewer};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// Most alerts one request returns.
const MAX_LIMIT: i64 = 1000;

/// `GET /api/v1/alerts[?state=open|resolved][&device=<id>][&limit=N]`: newest first. A device
/// outside the token's scope is 404, as elsewhere.
#[get("/alerts?<state>&<device>&<limit>")]
async fn list_alerts(
    state: Option<&str>,
    device: Option<&str>,
    limit: Option<&str>,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<Vec<AlertRecord>>> {
    let limit: Option<i64> = super::query("limit", limit)?;
    let open = match state {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_field(
                "state",
                format!("open, resolved or all, not {other:?}"),
            ));
        }
    };
    if let Some(device) = device {
        super::ensure_device(db, &viewer.0, device).await?;
    }
    let limit = limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("1 to {MAX_LIMIT}")));
    }
    let filter = store::Filter {
        open,
        device_id: device,
        scope: viewer.0.devices.as_deref(),
        limit,
    };
    Ok(Json(store::list(db, &filter).await?))
}

/// `GET /api/v1/alert-rules` (admin).
#[get("/alert-rules")]
async fn list_rules(_admin: Admin, db: &State<Db>) -> ApiResult<Json<Vec<AlertRule>>> {
    Ok(Json(store::list_rules(db).await?))
}

/// `POST /api/v1/alert-rules` (admin): 201 with the stored rule.
#[post("/alert-rules", data = "<body>")]
async fn add_rule(
    admin: Admin,
    db: &State<Db>,
    alerts: &State<Alerts>,
    audit: &State<Audit>,
    limits: &Limits,
    body: Data<'_>,
) -> ApiResult<(Status, Json<AlertRule>)> {
    let body: NewAlertRule = super::body::read_json(body, limits, "").await?;
    let rule = rules::validate(body).map_err(|e| ApiError::bad_field(e.field, e.to_string()))?;
    let stored = store::create_rule(db, &rule, &admin.0.name).await?;
    alerts.rules_changed().await;
    tracing::info!(by = %admin.0.name, rule = %rule.name, kind = %rule.kind, "alert rule added");
    let mut entry = admin.0.did(Action::AlertRuleAdded).target(&rule.name);
    if let Some(device) = &rule.device_id {
        entry = entry.device(device);
    }
    audit.record(entry);
    Ok((Status::Created, Json(stored)))
}

/// `DELETE /api/v1/alert-rules/<name>` (admin): the rule goes (and is returned); its open
/// alerts are resolved (and notified) and kept.
#[delete("/alert-rules/<name>")]
async fn delete_rule(
    name: &str,
    admin: Admin,
    db: &State<Db>,
    alerts: &State<Alerts>,
    audit: &State<Audit>,
) -> ApiResult<Json<AlertRule>> {
    let none = || ApiError::NotFound(format!("no alert rule {name:?}"));
    // A name with control characters (a NUL byte) was never stored.
    if name.contains(char::is_control) {
        return Err(none());
    }
    let Some((rule, resolved)) = store::delete_rule(db, name).await? else {
        return Err(none());
    };
    for alert in resolved {
        alerts.notify(AlertEvent::Resolved, alert);
    }
    alerts.rules_changed().await;
    tracing::info!(by = %admin.0.name, rule = name, "alert rule deleted");
    audit.record(admin.0.did(Action::AlertRuleDeleted).target(name));
    Ok(Json(rule))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![list_alerts, list_rules, add_rule, delete_rule]
}
