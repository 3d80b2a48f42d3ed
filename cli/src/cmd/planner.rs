//! `planner set|show|off`: the device's opt-in to the cloud planner
//! (`PUT|GET|DELETE /devices/<id>/planner`). With `set` the cloud plans the device by itself and
//! sends it `SET_SCHEDULE`s (issued by `planner`); `off` stops that. `show` prints the settings
//! and the re-planner's last attempt.

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::cli;
use crate::exit::Exit;
use crate::output::{self, Table};

pub async fn run(ctx: &Ctx, sub: cli::Planner) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let path = format!("/devices/{device}/planner");
    let shown: Value = match sub {
        cli::Planner::Set(args) => ctx.api.put(&path, &body(&args)).await?,
        cli::Planner::Show => ctx.api.get(&path, &[]).await?,
        cli::Planner::Off => ctx.api.delete(&path).await?,
    };
    output::print(ctx.format, &table(&shown), &shown);
    Ok(Exit::Success)
}

/// The `PUT` body: `planner = "cloud"` and the figures given (the server fills in defaults).
fn body(a: &cli::PlannerSet) -> Value {
    let mut body = json!({
        "planner": "cloud",
        "capacity_wh": a.capacity_wh,
        "max_charge_w": a.max_charge_w,
        "max_discharge_w": a.max_discharge_w,
    });
    let optional = [
        ("reserve_soc_pct", a.reserve.map(Value::from)),
        ("max_soc_pct", a.max_soc.map(Value::from)),
        ("efficiency", a.efficiency.map(Value::from)),
        ("import_limit_w", a.import_limit.map(Value::from)),
        ("export_limit_w", a.export_limit.map(Value::from)),
        ("end_soc_pct", a.end_soc.map(Value::from)),
        ("hours", a.hours.map(Value::from)),
        ("time_zone", a.time_zone.clone().map(Value::from)),
    ];
    if let Some(map) = body.as_object_mut() {
        for (key, value) in optional {
            if let Some(v) = value {
                map.insert(key.into(), v);
            }
        }
    }
    body
}

/// One `setting value` row per field, by name (absent values as `-`).
fn table(shown: &Value) -> Table {
    let mut table = Table::new(["setting", "value"]);
    let empty = Map::new();
    for (key, value) in shown.as_object().unwrap_or(&empty) {
        let text = match value {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        table.push(vec![key.clone(), text]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_figures_given_are_sent() {
        let args = cli::PlannerSet {
            capacity_wh: 10_000.0,
            max_charge_w: 3000.0,
            max_discharge_w: 2500.0,
            reserve: Some(20.0),
            max_soc: None,
            efficiency: None,
            import_limit: None,
            export_limit: Some(4000.0),
            end_soc: None,
            hours: None,
            time_zone: Some("Europe/Berlin".into()),
        };
        let b = body(&args);
        assert_eq!(b["planner"], "cloud");
        assert_eq!(b["max_discharge_w"], 2500.0);
        assert_eq!(b["reserve_soc_pct"], 20.0);
        assert_eq!(b["export_limit_w"], 4000.0);
        assert_eq!(b["time_zone"], "Europe/Berlin");
        assert!(
            b.get("efficiency").is_none() && b.get("hours").is_none(),
            "{b}"
        );
    }
}
