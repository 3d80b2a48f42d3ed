//! `energy`: kWh charged into and discharged from the battery, imported from and exported to
//! the grid, per day (or `--bucket`), as the cloud integrates them from the stored telemetry.

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

fn table(e: &Energy) -> Table {
    let mut t = Table::new([
        "start",
        "charged_kwh",
        "discharged_kwh",
        "imported_kwh",
        "exported_kwh",
        "covered_h",
    ]);
    let kwh = |v: f64| format!("{v:.3}");
    for b in &e.buckets {
        t.push(vec![
            rfc3339(b.time),
            kwh(b.charged_kwh),
            kwh(b.discharged_kwh),
            kwh(b.imported_kwh),
            kwh(b.exported_kwh),
            format!("{:.2}", b.covered_s / 3600.0),
        ]);
    }
    t
}
