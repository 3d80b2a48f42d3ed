//! A device's opt-in to the cloud planner (issue 17): `PUT /devices/<id>/planner` stores
//! `planner` (`"cloud"` or `"off"`) and the battery figures a plan needs, `GET` shows them with
//! the re-planner's last attempt, `DELETE` removes them (the same as `"off"`: nothing is sent).
//! Stored in `planner_settings` (migration V7); the background re-planner is
//! [`crate::planner::replan`].

use chrono::{DateTime, Utc};
use ems_protocol::zone::Zone;
use rocket::data::{Data, Limits as BodyLimits};
use rocket::serde::json::Json;
use rocket::{Route, State, delete, get, put, routes};
use serde::{Deserialize, Serialize};

use super::body::read_json;
use super::ensure_device;
use super::plan::PlanParams;
use crate::audit::{Action, Audit};
use crate::auth::{Operator, Viewer};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::planner::lp::{self, Limits};

/// What an operator sets (the body of `PUT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerSettings {
    /// `"cloud"`: the cloud plans the device and sends it a `SET_SCHEDULE`; `"off"`: never.
    pub planner: String,
    /// Usable capacity, Wh.
    pub capacity_wh: f64,
    pub max_charge_w: f64,
    pub max_discharge_w: f64,
    /// Backup reserve the plan never goes below, %.
    #[serde(default = "default_reserve")]
    pub reserve_soc_pct: f64,
    /// Top SoC the plan never charges above, %.
    #[serde(default = "default_max_soc")]
    pub max_soc_pct: f64,
    /// One-way efficiency, charge and discharge each.
    #[serde(default = "default_efficiency")]
    pub efficiency: f64,
    #[serde(default)]
    pub import_limit_w: Option<f64>,
    #[serde(default)]
    pub export_limit_w: Option<f64>,
    /// Least SoC at the horizon's end, % (none: the plan may end at the reserve).
    #[serde(default)]
    pub end_soc_pct: Option<f64>,
    /// Horizon, hours (0.25 to 48; shorter where the tariff ends sooner).
    #[serde(default = "default_hours")]
    pub hours: f64,
    /// IANA zone of the household's clock (the forecast's weekdays).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_reserve() -> f64 {
    10.0
}
fn default_max_soc() -> f64 {
    100.0
}
fn default_efficiency() -> f64 {
    0.95
}
fn default_hours() -> f64 {
    24.0
}
fn default_time_zone() -> String {
    "UTC".into()
}

/// The answer of `GET` and `PUT`: the settings and the re-planner's last attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePlanner {
    pub device_id: String,
    #[serde(flatten)]
    pub settings: PlannerSettings,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    /// When the re-planner last planned the device (successfully or not).
    pub planned_at: Option<DateTime<Utc>>,
    /// The `SET_SCHEDULE` it sent then.
    pub last_command_id: Option<String>,
    /// Why it sent none then.
    pub last_error: Option<String>,
}

impl PlannerSettings {
    /// The planner's limits from these settings, starting at `soc_pct`.
    pub fn limits(&self, soc_pct: f64) -> Limits {
        Limits {
            capacity_wh: self.capacity_wh,
            soc_pct,
            reserve_soc_pct: self.reserve_soc_pct,
            max_soc_pct: self.max_soc_pct,
            max_charge_w: self.max_charge_w,
            max_discharge_w: self.max_discharge_w,
            charge_efficiency: self.efficiency,
            discharge_efficiency: self.efficiency,
            import_limit_w: self.import_limit_w,
            export_limit_w: self.export_limit_w,
            end_soc_pct: self.end_soc_pct,
        }
    }

    /// The plan request's figures: those given in `over`, the stored ones for the rest.
    pub(crate) fn params(&self, over: &PlanParams) -> PlanParams {
        PlanParams {
            capacity_wh: over.capacity_wh.or(Some(self.capacity_wh)),
            max_charge_w: over.max_charge_w.or(Some(self.max_charge_w)),
            max_discharge_w: over.max_discharge_w.or(Some(self.max_discharge_w)),
            reserve_soc_pct: over.reserve_soc_pct.or(Some(self.reserve_soc_pct)),
            max_soc_pct: over.max_soc_pct.or(Some(self.max_soc_pct)),
            efficiency: over.efficiency.or(Some(self.efficiency)),
            import_limit_w: over.import_limit_w.or(self.import_limit_w),
            export_limit_w: over.export_limit_w.or(self.export_limit_w),
            soc_pct: over.soc_pct,
            end_soc_pct: over.end_soc_pct.or(self.end_soc_pct),
            hours: over.hours.or(Some(self.hours)),
            time_zone: over.time_zone.clone().or(Some(self.time_zone.clone())),
        }
    }

    /// Checked as a plan would check them, so a stored setting never fails every plan.
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.planner != "cloud" && self.planner != "off" {
            return Err(ApiError::bad_field(
                "planner",
                format!("{:?}: \"cloud\" or \"off\"", self.planner),
            ));
        }
        let figures = [
            ("capacity_wh", Some(self.capacity_wh)),
            ("max_charge_w", Some(self.max_charge_w)),
            ("max_discharge_w", Some(self.max_discharge_w)),
            ("reserve_soc_pct", Some(self.reserve_soc_pct)),
            ("max_soc_pct", Some(self.max_soc_pct)),
            ("efficiency", Some(self.efficiency)),
            ("import_limit_w", self.import_limit_w),
            ("export_limit_w", self.export_limit_w),
            ("end_soc_pct", self.end_soc_pct),
            ("hours", Some(self.hours)),
        ];
        for (name, value) in figures {
            if let Some(v) = value {
                super::plan::check_figure(name, v)?;
            }
        }
        lp::validate_limits(&self.limits(self.reserve_soc_pct.clamp(0.0, 100.0)))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !(0.25..=48.0).contains(&self.hours) {
            return Err(ApiError::bad_field("hours", "0.25 to 48"));
        }
        Zone::named(&self.time_zone)
            .map_err(|e| ApiError::bad_field("time_zone", e.to_string()))?;
        Ok(())
    }
}

/// The columns [`from_row`] reads.
pub(crate) const COLUMNS: &str = "device_id, mode, capacity_wh, max_charge_w, max_discharge_w, \
    reserve_soc_pct, max_soc_pct, efficiency, import_limit_w, export_limit_w, end_soc_pct, hours, \
    time_zone, updated_at, updated_by, planned_at, last_command_id, last_error";

pub(crate) fn from_row(r: &tokio_postgres::Row) -> DevicePlanner {
    DevicePlanner {
        device_id: r.get(0),
        settings: PlannerSettings {
            planner: r.get(1),
            capacity_wh: r.get(2),
            max_charge_w: r.get(3),
            max_discharge_w: r.get(4),
            reserve_soc_pct: r.get(5),
            max_soc_pct: r.get(6),
            efficiency: r.get(7),
            import_limit_w: r.get(8),
            export_limit_w: r.get(9),
            end_soc_pct: r.get(10),
            hours: r.get(11),
            time_zone: r.get(12),
        },
        updated_at: r.get(13),
        updated_by: r.get(14),
        planned_at: r.get(15),
        last_command_id: r.get(16),
        last_error: r.get(17),
    }
}

/// `PUT /api/v1/devices/<id>/planner` (operator): stores the settings (replacing any) and, with
/// `"cloud"`, makes the device due for a plan at once. Audited `PLANNER_SET`.
#[put("/devices/<device_id>/planner", data = "<body>")]
async fn put_planner(
    device_id: &str,
    operator: Operator,
    db: &State<Db>,
    audit: &State<Audit>,
    limits: &BodyLimits,
    body: Data<'_>,
) -> ApiResult<Json<DevicePlanner>> {
    ensure_device(db, &operator.0, device_id).await?;
    let s: PlannerSettings = read_json(body, limits, "").await?;
    s.validate()?;
    let client = db.pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO planner_settings (device_id, mode, capacity_wh, max_charge_w, \
                   max_discharge_w, reserve_soc_pct, max_soc_pct, efficiency, import_limit_w, \
                   export_limit_w, end_soc_pct, hours, time_zone, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT (device_id) DO UPDATE SET mode = EXCLUDED.mode, \
                   capacity_wh = EXCLUDED.capacity_wh, max_charge_w = EXCLUDED.max_charge_w, \
                   max_discharge_w = EXCLUDED.max_discharge_w, \
                   reserve_soc_pct = EXCLUDED.reserve_soc_pct, \
                   max_soc_pct = EXCLUDED.max_soc_pct, efficiency = EXCLUDED.efficiency, \
                   import_limit_w = EXCLUDED.import_limit_w, \
                   export_limit_w = EXCLUDED.export_limit_w, \
                   end_soc_pct = EXCLUDED.end_soc_pct, hours = EXCLUDED.hours, \
                   time_zone = EXCLUDED.time_zone, updated_by = EXCLUDED.updated_by, \
                   updated_at = now(), change_seq = planner_settings.change_seq + 1 \
                 RETURNING {COLUMNS}"
            ),
            &[
                &device_id,
                &s.planner,
                &s.capacity_wh,
                &s.max_charge_w,
                &s.max_discharge_w,
                &s.reserve_soc_pct,
                &s.max_soc_pct,
                &s.efficiency,
                &s.import_limit_w,
                &s.export_limit_w,
                &s.end_soc_pct,
                &s.hours,
                &s.time_zone,
                &operator.0.name,
            ],
        )
        .await?;
    tracing::info!(by = %operator.0.name, device = device_id, planner = %s.planner,
        "planner settings stored");
    audit.record(operator.0.did(Action::PlannerSet).device(device_id));
    Ok(Json(from_row(&row)))
}

/// The stored settings of `device_id`, if any.
pub(crate) async fn stored(db: &Db, device_id: &str) -> ApiResult<Option<DevicePlanner>> {
    let client = db.pool.get().await?;
    Ok(client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM planner_settings WHERE device_id = $1"),
            &[&device_id],
        )
        .await?
        .map(|r| from_row(&r)))
}

/// `GET /api/v1/devices/<id>/planner` (viewer): 404 when the device has no settings.
#[get("/devices/<device_id>/planner")]
async fn get_planner(
    device_id: &str,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<DevicePlanner>> {
    ensure_device(db, &viewer.0, device_id).await?;
    stored(db, device_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no planner settings for {device_id:?}")))
}

/// `DELETE /api/v1/devices/<id>/planner` (operator): opts out and forgets the settings; the
/// schedule the device holds runs out at its `valid_until`. Audited `PLANNER_SET`.
#[delete("/devices/<device_id>/planner")]
async fn delete_planner(
    device_id: &str,
    operator: Operator,
    db: &State<Db>,
    audit: &State<Audit>,
) -> ApiResult<Json<DevicePlanner>> {
    ensure_device(db, &operator.0, device_id).await?;
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!("DELETE FROM planner_settings WHERE device_id = $1 RETURNING {COLUMNS}"),
            &[&device_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no planner settings for {device_id:?}")))?;
    let mut gone = from_row(&row);
    gone.settings.planner = "off".into();
    tracing::info!(by = %operator.0.name, device = device_id, "planner settings deleted");
    audit.record(operator.0.did(Action::PlannerSet).device(device_id));
    Ok(Json(gone))
}

pub fn routes() -> Vec<Route> {
    routes![put_planner, get_planner, delete_planner]
}
