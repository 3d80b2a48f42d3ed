//! `audit` (admin): who did what, newest first.

use ems_protocol::api::AuditRecord;

use super::{Ctx, checked_id};
use crate::cli::Audit;
use crate::exit::Exit;
use crate::output::{self, Table};
use crate::timespec::rfc3339;

pub async fn run(ctx: &Ctx, args: Audit) -> anyhow::Result<Exit> {
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(device) = &args.for_device {
        query.push(("device", checked_id("--for-device", device)?));
    }
    if let Some(action) = &args.action {
        query.push(("action", action.to_ascii_uppercase()));
    }
    let records: Vec<AuditRecord> = ctx.api.get("/audit", &query).await?;
    output::print(ctx.format, &table(&records), &records);
    Ok(Exit::Success)
}

fn table(records: &[AuditRecord]) -> Table {
    let mut t = Table::new([
        "time", "actor", "role", "action", "device", "command", "target", "source", "result",
    ]);
    for r in records {
        t.push(vec![
            rfc3339(r.time),
            r.actor.clone().unwrap_or_default(),
            r.role.map(|r| r.to_string()).unwrap_or_default(),
            r.action.clone(),
            r.device_id.clone().unwrap_or_default(),
            r.command_id.clone().unwrap_or_default(),
            r.target.clone().unwrap_or_default(),
            r.source.clone().unwrap_or_default(),
            r.result.clone(),
        ]);
    }
    t
}
