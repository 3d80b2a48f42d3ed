//! `plan [show]` and `plan apply`: the cloud planner's cheapest use of the battery over the
//! next slots of the device's tariff (`GET /devices/<id>/plan`), with its expected cost against
//! plain self-consumption and no battery; `apply` sends it to the device as a `SET_SCHEDULE`
//! and ends with the device's answer (`set-mode`'s exit codes).

use ems_protocol::api::{CommandRecord, DevicePlan};

use super::Ctx;
use super::command::{outcome, show_full};
use crate::cli::{self, Format};
use crate::exit::{Exit, Failure};
use crate::output::{self, Table};
use crate::timespec::rfc3339;

/// The most the server waits for an answer in one request, s.
const SERVER_MAX_WAIT_S: f64 = 60.0;

pub async fn run(ctx: &Ctx, args: cli::PlanArgs) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let mut query = query(&args.battery)?;
    match args.action {
        None | Some(cli::PlanAction::Show) => {
            let plan: DevicePlan = ctx
                .api
                .get(&format!("/devices/{device}/plan"), &query)
                .await?;
            output::print(ctx.format, &table(&plan), &plan);
            if ctx.format != Format::Json {
                eprintln!(
                    "expected cost: plan {:.3}, self-consumption {:.3}, no battery {:.3}",
                    plan.cost, plan.cost_self_consumption, plan.cost_no_battery
                );
            }
            Ok(Exit::Success)
        }
        Some(cli::PlanAction::Apply { no_wait, timeout }) => {
            if !timeout.is_finite() || timeout < 0.0 {
                return Err(
                    Failure::usage("--timeout must be a number of seconds, 0 or more").into(),
                );
            }
            if !no_wait {
                query.push(("wait", timeout.min(SERVER_MAX_WAIT_S).to_string()));
            }
            let record: CommandRecord = ctx
                .api
                .post(
                    &format!("/devices/{device}/plan/apply"),
                    &query,
                    &serde_json::Value::Null,
                )
                .await?;
            show_full(ctx.format, &record);
            Ok(outcome(record.status, no_wait))
        }
    }
}

/// The battery's figures as the endpoint's query parameters.
fn query(b: &cli::PlanBattery) -> Result<Vec<(&'static str, String)>, Failure> {
    let required = |v: Option<f64>, flag: &str| {
        v.map(|v| v.to_string()).ok_or_else(|| {
            Failure::usage(format!("{flag} is required"))
                .hint("give --capacity-wh, --max-charge-w and --max-discharge-w together, or none to use the device's stored planner settings")
        })
    };
    // None of the three: the server takes the device's stored planner settings (or says
    // they are missing); some of them: all three are needed.
    let mut q =
        if b.capacity_wh.is_none() && b.max_charge_w.is_none() && b.max_discharge_w.is_none() {
            Vec::new()
        } else {
            vec![
                ("capacity_wh", required(b.capacity_wh, "--capacity-wh")?),
                ("max_charge_w", required(b.max_charge_w, "--max-charge-w")?),
                (
                    "max_discharge_w",
                    required(b.max_discharge_w, "--max-discharge-w")?,
                ),
            ]
        };
    let optional = [
        ("reserve_soc_pct", b.reserve),
        ("max_soc_pct", b.max_soc),
        ("efficiency", b.efficiency),
        ("import_limit_w", b.import_limit),
        ("export_limit_w", b.export_limit),
        ("soc_pct", b.soc),
        ("end_soc_pct", b.end_soc),
        ("hours", b.hours),
    ];
    q.extend(
        optional
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v.to_string()))),
    );
    if let Some(tz) = &b.time_zone {
        q.push(("time_zone", tz.clone()));
    }
    Ok(q)
}

fn table(plan: &DevicePlan) -> Table {
    let mut t = Table::new([
        "start",
        "import_price",
        "export_price",
        "load_w",
        "pv_w",
        "battery_w",
        "grid_w",
        "soc_pct",
        "forecast",
    ]);
    let w = |v: f64| format!("{:.0}", v + 0.0);
    for s in &plan.slots {
        t.push(vec![
            rfc3339(s.start),
            s.import_price.to_string(),
            s.export_price.to_string(),
            w(s.load_w),
            w(s.pv_w),
            w(s.battery_w),
            w(s.grid_w),
            format!("{:.1}", s.soc_pct),
            s.forecast.clone(),
        ]);
    }
    t
}
