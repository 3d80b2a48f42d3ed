//! `events`: what the cloud derived from the device's telemetry, newest first.

use chrono::Utc;
use ems_protocol::api::EventRecord;

use super::Ctx;
use crate::cli::Events;
use crate::exit::{Exit, Failure};
use crate::output;
use crate::render;
use crate::timespec;

pub async fn run(ctx: &Ctx, args: Events) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let now = Utc::now();
    let mut query = vec![("limit", args.limit.to_string())];
    for (key, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(text) = value {
            let t =
                timespec::parse(text, now).map_err(|e| Failure::usage(format!("--{key}: {e}")))?;
            query.push((key, timespec::rfc3339(t)));
        }
    }
    let events: Vec<EventRecord> = ctx
        .api
        .get(&format!("/devices/{device}/events"), &query)
        .await?;
    output::print(ctx.format, &render::events_table(&events), &events);
    Ok(Exit::Success)
}
