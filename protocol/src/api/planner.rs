//! The cloud planner's tariffs and plans (`/api/v1/devices/<id>/tariff`, `…/plan`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One period of a device's tariff (cloud planner, issue 17): from `start` (inclusive) to `end`
/// (exclusive), one kWh imported costs `import_price` and one exported earns `export_price`,
/// in the currency the owner uses (the planner only compares prices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffPeriod {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub import_price: f64,
    pub export_price: f64,
}

/// `GET /devices/<id>/tariff`: the device's stored tariff, periods in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tariff {
    pub device_id: String,
    pub periods: Vec<TariffPeriod>,
}

/// One 15-minute slot of `GET /devices/<id>/plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSlot {
    pub start: DateTime<Utc>,
    pub import_price: f64,
    pub export_price: f64,
    /// Forecast house load and PV, W.
    pub load_w: f64,
    pub pv_w: f64,
    /// How the forecast was made: `weekday`, `all_days`, `net` or `none` (cloud/README.md).
    pub forecast: String,
    /// Planned battery power, positive charging, W.
    pub battery_w: f64,
    /// Planned grid power, positive importing, W.
    pub grid_w: f64,
    /// Planned SoC at the slot's end, %.
    pub soc_pct: f64,
}

/// `GET /devices/<id>/plan`: the cheapest use of the battery over the tariff's next slots, and
/// what the same forecast would cost without a battery and with plain self-consumption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicePlan {
    pub device_id: String,
    /// The SoC the plan starts from (the latest packet's, or the request's), %.
    pub soc_pct: f64,
    pub slots: Vec<PlanSlot>,
    /// Expected cost of the plan over its slots (tariff currency).
    pub cost: f64,
    pub cost_self_consumption: f64,
    pub cost_no_battery: f64,
}
