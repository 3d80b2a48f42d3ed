//! `commands list|show`.

use ems_protocol::CommandStatus;
use ems_protocol::api::CommandRecord;

use super::command::show_full;
use super::{Ctx, checked_id};
use crate::cli::Commands;
use crate::exit::{Exit, Failure};
use crate::output;
use crate::render;

pub async fn run(ctx: &Ctx, sub: Commands) -> anyhow::Result<Exit> {
    match sub {
        Commands::List { status, limit } => {
            let device = ctx.device().await?;
            let mut query = vec![("limit", limit.to_string())];
            if let Some(s) = status {
                let s = s.to_ascii_uppercase();
                s.parse::<CommandStatus>()
                    .map_err(|e| Failure::usage(format!("--status: {e}")))?;
                query.push(("status", s));
            }
            let commands: Vec<CommandRecord> = ctx
                .api
                .get(&format!("/devices/{device}/commands"), &query)
                .await?;
            output::print(ctx.format, &render::commands_table(&commands), &commands);
        }
        Commands::Show { command_id } => {
            let id = checked_id("command_id", &command_id)?;
            let record: CommandRecord = ctx.api.get(&format!("/commands/{id}"), &[]).await?;
            show_full(ctx.format, &record);
        }
    }
    Ok(Exit::Success)
}
