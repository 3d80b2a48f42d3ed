//! `watch`: prints the live feed until Ctrl-C (exit 0) or until the server closes it (exit 3).

use ems_protocol::api::LiveEvent;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use super::Ctx;
use crate::cli::Format;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table};
use crate::{live, render};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let mut feed = live::connect(
        &ctx.api.base,
        &device,
        ctx.api.token(),
        ctx.settings.ca_file.as_deref(),
    )
    .await?;
    eprintln!("watching {device} (Ctrl-C to stop)");
    if ctx.format == Format::Csv {
        let header = Table::new(render::TELEMETRY_COLUMNS).to_csv();
        output::emit(&header);
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let message = tokio::select! {
            _ = &mut ctrl_c => return Ok(Exit::Success),
            m = feed.next() => m,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                return Err(Failure::connection(
                    format!("the server closed the live feed {why}")
                        .trim()
                        .to_string(),
                )
                .hint("run `emsctl watch` again; the server may be restarting")
                .into());
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(Failure::connection(format!("live feed: {e}"))
                    .hint("run `emsctl watch` again")
                    .into());
            }
            None => {
                return Err(Failure::connection("the live feed ended")
                    .hint("run `emsctl watch` again")
                    .into());
            }
        };
        let event: LiveEvent = match serde_json::from_str(&text) {
            Ok(e) => e,
            // A frame type from a newer server: skip it rather than stop watching.
            Err(_) => continue,
        };
        print(ctx.format, &event, &text);
    }
}

fn print(format: Format, event: &LiveEvent, raw: &str) {
    match (format, event) {
        (Format::Json, _) => {
            let line = serde_json::to_string(event).unwrap_or_else(|_| raw.to_string());
            output::emit(&(line + "\n"));
        }
        (Format::Table, LiveEvent::Telemetry { telemetry }) => {
            output::emit(&(render::watch_line(telemetry) + "\n"));
        }
        (Format::Table, LiveEvent::CommandStatus { command }) => {
            let mut line = format!(
                "command {} {} {} {}",
                command.command_id,
                command.status,
                command.action,
                render::command_target(command)
            )
            .trim_end()
            .to_string();
            if let Some(reason) = &command.reason {
                line.push_str(&format!(": {reason}"));
            }
            output::emit(&(line + "\n"));
        }
        (Format::Csv, LiveEvent::Telemetry { telemetry }) => {
            let mut t = Table::new(render::TELEMETRY_COLUMNS);
            t.push(render::telemetry_row(telemetry));
            let csv = t.to_csv();
            // Only the row; the header went out once at the start.
            output::emit(csv.split_once('\n').map(|(_, row)| row).unwrap_or(""));
        }
        (Format::Csv, LiveEvent::CommandStatus { .. }) => {}
    }
}
