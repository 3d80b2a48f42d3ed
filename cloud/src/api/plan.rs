//! The cloud planner's endpoints (issue 17): `GET /devices/<id>/plan` computes the cheapest use
//! of the battery over the next slots the device's tariff covers (up to 48 h), from the
//! forecast of its own history, and compares it with no battery and with plain
//! self-consumption on the same forecast; `POST /devices/<id>/plan/apply` sends that plan to
//! the device as a `SET_SCHEDULE`, like `PUT /schedule`. The battery's figures come with the
//! request (the cloud stores no battery configuration); the SoC is the latest packet's.
//! Computed on request here; `planner::replan` plans opted-in devices by itself with the same
//! code ([`plan_device`]).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ems_protocol::api::{CommandRecord, DevicePlan, PlanSlot};
use ems_protocol::duration::align_up;
use ems_protocol::zone::Zone;
use rocket::http::Status;
use rocket::http::uri::Origin;
use rocket::serde::json::Json;
use rocket::{FromForm, Route, State, get, post, routes};

use super::commands::{issue, record_issued};
use super::ensure_device;
use super::tariff::periods;
use crate::audit::Audit;
use crate::auth::{ApiUser, Operator, Viewer};
use crate::config::CloudConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::Hub;
use crate::planner::lp::{self, Limits, MAX_SLOTS, PlanError, PlannedSlot, SlotInput};
use crate::planner::{forecast, schedule, simulate};

/// One slot, s.
const SLOT_S: i64 = 900;

/// The numeric query parameters of a plan request (`wait` with `apply`).
const NUMBERS: [&str; 12] = [
    "capacity_wh",
    "max_charge_w",
    "max_discharge_w",
    "reserve_soc_pct",
    "max_soc_pct",
    "efficiency",
    "import_limit_w",
    "export_limit_w",
    "soc_pct",
    "end_soc_pct",
    "hours",
    "wait",
];

/// Largest magnitude of a plan's figure (W, Wh, %, h): a household battery is far below it, and
/// a figure beyond it is a typo or an attack, not a plan.
const MAX_FIGURE: f64 = 1e9;

/// A figure is a finite number within ±[`MAX_FIGURE`]; the refusal names it (and does not quote
/// a 309-digit number back).
pub(crate) fn check_figure(name: &str, v: f64) -> ApiResult<()> {
    if v.is_finite() && v.abs() <= MAX_FIGURE {
        Ok(())
    } else {
        Err(ApiError::bad_field(
            name,
            format!("{name}: {v:e} is outside ±{MAX_FIGURE:e}"),
        ))
    }
}

/// Rocket reads a number that does not parse as absent (`import_limit_w=5kW` would plan without
/// the limit), and a repeated parameter as absent too: the raw query is checked first, so every
/// figure given is used or refused, naming it.
fn check_query(uri: &Origin<'_>) -> ApiResult<()> {
    let mut seen = std::collections::HashSet::new();
    for (name, value) in uri.query().map(|q| q.segments()).into_iter().flatten() {
        if !seen.insert(name) {
            return Err(ApiError::bad_field(name, format!("{name}: given twice")));
        }
        if NUMBERS.contains(&name) {
            let v: f64 = value.parse().map_err(|_| {
                let shown: String = value.chars().take(40).collect();
                ApiError::bad_field(name, format!("{name}: {shown:?} is not a number"))
            })?;
            check_figure(name, v)?;
        }
    }
    Ok(())
}

/// The battery and grid figures of a plan request (query parameters).
#[derive(Debug, Default, FromForm)]
pub struct PlanParams {
    /// Usable capacity, Wh (required).
    pub(crate) capacity_wh: Option<f64>,
    /// Largest charge and discharge power, W (required).
    pub(crate) max_charge_w: Option<f64>,
    pub(crate) max_discharge_w: Option<f64>,
    /// Backup reserve, % (default 10).
    pub(crate) reserve_soc_pct: Option<f64>,
    /// Top SoC, % (default 100).
    pub(crate) max_soc_pct: Option<f64>,
    /// One-way efficiency for charge and discharge each (default 0.95).
    pub(crate) efficiency: Option<f64>,
    pub(crate) import_limit_w: Option<f64>,
    pub(crate) export_limit_w: Option<f64>,
    /// SoC to start from instead of the latest packet's, %.
    pub(crate) soc_pct: Option<f64>,
    /// Least SoC at the end of the horizon, % (default none: the plan may end at the reserve).
    pub(crate) end_soc_pct: Option<f64>,
    /// Planning horizon, hours (default 24, at most 48; shorter when the tariff ends sooner).
    pub(crate) hours: Option<f64>,
    /// IANA zone of the household's clock, for the forecast's weekdays (default UTC).
    pub(crate) time_zone: Option<String>,
}

fn required(v: Option<f64>, name: &str) -> ApiResult<f64> {
    v.ok_or_else(|| ApiError::BadRequest {
        message: format!(
            "query parameter {name} is required (or store the battery's figures with PUT \
             /devices/<id>/planner, emsctl planner set)"
        ),
        field: Some(name.to_string()),
    })
}

/// A computed plan: the answer, the solver's slots and where they start.
pub(crate) struct Computed {
    pub(crate) answer: DevicePlan,
    pub(crate) planned: Vec<PlannedSlot>,
    pub(crate) start: DateTime<Utc>,
}

/// Without any of the battery's figures in the request, the device's stored planner settings
/// (`PUT /devices/<id>/planner`, whether `cloud` or `off`) supply them.
async fn compute(db: &Db, user: &ApiUser, device_id: &str, p: &PlanParams) -> ApiResult<Computed> {
    ensure_device(db, user, device_id).await?;
    if p.capacity_wh.is_none()
        && p.max_charge_w.is_none()
        && p.max_discharge_w.is_none()
        && let Some(stored) = super::planner::stored(db, device_id).await?
    {
        return plan_device(db, device_id, &stored.settings.params(p)).await;
    }
    plan_device(db, device_id, p).await
}

/// The plan of `device_id` (registered; the caller checked access) for the figures in `p`.
pub(crate) async fn plan_device(db: &Db, device_id: &str, p: &PlanParams) -> ApiResult<Computed> {
    let tz = Zone::named(p.time_zone.as_deref().unwrap_or("UTC"))
        .map_err(|e| ApiError::bad_field("time_zone", e.to_string()))?;
    // The figures first: a request without them is a 400 whatever the device's state.
    let capacity_wh = required(p.capacity_wh, "capacity_wh")?;
    let max_charge_w = required(p.max_charge_w, "max_charge_w")?;
    let max_discharge_w = required(p.max_discharge_w, "max_discharge_w")?;
    let hours = p.hours.unwrap_or(24.0);
    if !(0.25..=48.0).contains(&hours) {
        return Err(ApiError::bad_request("hours: 0.25 to 48"));
    }
    let soc_pct = match p.soc_pct {
        Some(v) => v,
        None => {
            let client = db.pool.get().await?;
            client
                .query_opt(
                    "SELECT battery_soc FROM telemetry WHERE device_id = $1 \
                     AND battery_soc IS NOT NULL ORDER BY time DESC LIMIT 1",
                    &[&device_id],
                )
                .await?
                .map(|r| r.get::<_, f64>(0))
                .ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "device {device_id:?} has reported no SoC yet; pass soc_pct"
                    ))
                })?
        }
    };
    let efficiency = p.efficiency.unwrap_or(0.95);
    let limits = Limits {
        capacity_wh,
        soc_pct,
        reserve_soc_pct: p.reserve_soc_pct.unwrap_or(10.0),
        max_soc_pct: p.max_soc_pct.unwrap_or(100.0),
        max_charge_w,
        max_discharge_w,
        charge_efficiency: efficiency,
        discharge_efficiency: efficiency,
        import_limit_w: p.import_limit_w,
        export_limit_w: p.export_limit_w,
        end_soc_pct: p.end_soc_pct,
    };

    // The slots from the next quarter hour on, as far as the tariff covers them without a gap.
    let now = Utc::now();
    let start = align_up(now, SLOT_S);
    let wanted = ((hours * 4.0).round() as usize).clamp(1, MAX_SLOTS);
    let end = start + Duration::seconds(SLOT_S * wanted as i64);
    let tariff = periods(db, device_id, start, end).await?;
    let mut starts = Vec::new();
    let mut prices = Vec::new();
    let mut t = start;
    let mut covering = tariff.iter().peekable();
    while starts.len() < wanted {
        while covering.next_if(|p| p.end <= t).is_some() {}
        match covering.peek() {
            Some(p) if p.start <= t => prices.push((p.import_price, p.export_price)),
            _ => break,
        }
        starts.push(t);
        t += Duration::seconds(SLOT_S);
    }
    if starts.is_empty() {
        return Err(ApiError::Conflict(format!(
            "the tariff of {device_id:?} does not cover {start}; PUT /devices/{device_id}/tariff"
        )));
    }

    let history = {
        let client = db.pool.get().await?;
        forecast::history(&client, device_id, now, &tz).await?
    };
    let fc = forecast::forecast(&history, &starts, &tz);
    let inputs: Vec<SlotInput> = prices
        .iter()
        .zip(&fc)
        .map(|(&(import_price, export_price), f)| SlotInput {
            import_price,
            export_price,
            load_w: f.load_w,
            pv_w: f.pv_w,
        })
        .collect();
    let solve_inputs = inputs.clone();
    let plan = tokio::task::spawn_blocking(move || lp::optimise(&solve_inputs, &limits))
        .await
        .map_err(|e| ApiError::Internal(format!("planner: {e}")))?
        .map_err(|e| match e {
            PlanError::Invalid(m) => ApiError::bad_request(m),
            PlanError::Infeasible => ApiError::Conflict(e.to_string()),
            PlanError::Solver(m) => ApiError::Internal(m),
        })?;
    let (_, cost_self_consumption) = simulate::self_consumption(&inputs, &limits);
    let slots = starts
        .iter()
        .zip(&inputs)
        .zip(&fc)
        .zip(&plan.slots)
        .map(|(((&start, s), f), p)| PlanSlot {
            start,
            import_price: s.import_price,
            export_price: s.export_price,
            load_w: f.load_w,
            pv_w: f.pv_w,
            forecast: f.method.to_string(),
            battery_w: p.battery_w(),
            grid_w: p.grid_w(),
            soc_pct: p.soc_pct,
        })
        .collect();
    Ok(Computed {
        answer: DevicePlan {
            device_id: device_id.to_string(),
            soc_pct,
            slots,
            cost: plan.cost,
            cost_self_consumption,
            cost_no_battery: simulate::no_battery_cost(&inputs),
        },
        planned: plan.slots,
        start,
    })
}

/// `GET /api/v1/devices/<id>/plan?capacity_wh=&max_charge_w=&max_discharge_w=[&…]` (viewer);
/// without the figures, those of the device's planner settings.
#[get("/devices/<device_id>/plan?<params..>")]
async fn get_plan(
    device_id: &str,
    params: PlanParams,
    uri: &Origin<'_>,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<DevicePlan>> {
    check_query(uri)?;
    Ok(Json(
        compute(db, &viewer.0, device_id, &params).await?.answer,
    ))
}

/// `POST /api/v1/devices/<id>/plan/apply?…[&wait=<s>]` (operator): computes the plan as `GET`
/// does and sends it as a `SET_SCHEDULE`; answers 201 with the command's record.
#[post("/devices/<device_id>/plan/apply?<wait>&<params..>")]
#[allow(clippy::too_many_arguments)]
async fn apply_plan(
    device_id: &str,
    wait: Option<f64>,
    params: PlanParams,
    uri: &Origin<'_>,
    operator: Operator,
    db: &State<Db>,
    hub: &State<Arc<Hub>>,
    config: &State<CloudConfig>,
    audit: &State<Audit>,
) -> ApiResult<(Status, Json<CommandRecord>)> {
    check_query(uri)?;
    let computed = compute(db, &operator.0, device_id, &params).await?;
    let payload = schedule::to_schedule(computed.start, &computed.planned);
    let body = serde_json::json!({"action": "SET_SCHEDULE", "payload": payload}).to_string();
    let result = issue(device_id, wait, None, &operator, db, hub, config, body).await;
    record_issued(audit, &operator, device_id, &result);
    result
}

pub fn routes() -> Vec<Route> {
    routes![get_plan, apply_plan]
}
