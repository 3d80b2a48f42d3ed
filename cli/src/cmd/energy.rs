//! `energy`: kWh charged into and discharged from the battery, imported from and exported to
//! the grid, per day (or `--bucket`), as the cloud integrates them from the stored telemetry;
//! with PV and house kWh and self-consumption/self-sufficiency when the agent reports them.

use chrono::Utc;
use ems_protocol::api::Energy;

use super::Ctx;
use crate::cli::EnergyArgs;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table};
use crate::timespec::{self, rfc3339};

pub async fn run(ctx: &Ctx, args: EnergyArgs) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let now = Utc::now();
    let mut query = Vec::new();
    for (key, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(text) = value {
            let t =
                timespec::parse(text, now).map_err(|e| Failure::usage(format!("--{key}: {e}")))?;
            query.push((key, rfc3339(t)));
        }
    }
    if let Some(bucket) = &args.bucket {
        let s = ems_protocol::duration::parse_seconds(bucket)
            .map_err(|e| Failure::usage(format!("--bucket: {e}")))?;
        query.push(("bucket", s.to_string()));
    }
    let energy: Energy = ctx
        .api
        .get(&format!("/devices/{device}/energy"), &query)
        .await?;
    output::print(ctx.format, &table(&energy), &energy);
    Ok(Exit::Success)
}

/// One row per bucket; PV, house and the two ratios (as %) only when some bucket has them (the
/// agent reports `site`), empty in the buckets without.
fn table(e: &Energy) -> Table {
    let mut headers = vec![
        "start",
        "charged_kwh",
        "discharged_kwh",
        "imported_kwh",
        "exported_kwh",
        "covered_h",
    ];
    let flows = e
        .buckets
        .iter()
        .any(|b| b.pv_kwh.is_some() || b.house_kwh.is_some());
    if flows {
        headers.extend([
            "pv_kwh",
            "house_kwh",
            "self_consumption_pct",
            "self_sufficiency_pct",
        ]);
    }
    let mut t = Table::new(headers);
    // `+ 0.0` turns a -0.0 (from `greatest(-0, 0)`) into 0.0, so no "-0.000".
    let kwh = |v: f64| format!("{:.3}", v + 0.0);
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_default();
    for b in &e.buckets {
        let mut row = vec![
            rfc3339(b.time),
            kwh(b.charged_kwh),
            kwh(b.discharged_kwh),
            kwh(b.imported_kwh),
            kwh(b.exported_kwh),
            format!("{:.2}", b.covered_s / 3600.0),
        ];
        if flows {
            let pct = |v: f64| format!("{:.1}", v * 100.0);
            row.extend([
                opt(b.pv_kwh, &kwh),
                opt(b.house_kwh, &kwh),
                opt(b.self_consumption, &pct),
                opt(b.self_sufficiency, &pct),
            ]);
        }
        t.push(row);
    }
    t
}
