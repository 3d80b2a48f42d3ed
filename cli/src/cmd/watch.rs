//! `watch`: prints the live feed until Ctrl-C (exit 0). When the feed drops (the cloud restarts,
//! the network goes away) it says so on stderr and opens it again, waiting longer after each
//! failed attempt; it gives up only when the server refuses the token or the device (exit 3 or
//! 2). Packets that arrive while it is away are in `emsctl history`.

use std::time::Duration;

use ems_protocol::api::LiveEvent;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::Ctx;
use crate::cli::Format;
use crate::exit::{Exit, Failure};
use crate::live::{self, Feed, OpenError};
use crate::output::{self, Table};
use crate::render;

/// How often a quiet feed is pinged, and how long without any frame (a pong included) it may
/// stay silent before it counts as lost: a dead network path sends no FIN.
const PING_EVERY: Duration = Duration::from_secs(15);
const SILENCE: Duration = Duration::from_secs(45);

/// The wait before reconnect attempt `attempt` (1, 2, …): 1 s, doubling, at most 30 s, plus up
/// to a quarter more so that many watchers of a restarted cloud do not all come back at once.
pub fn backoff(attempt: u32, jitter_0_to_1: f64) -> Duration {
    let base =
        Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30));
    base.mul_f64(1.0 + 0.25 * jitter_0_to_1.clamp(0.0, 1.0))
}

/// A number in [0, 1) that differs between processes and attempts; good enough to spread
/// reconnects, not for anything secret.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    f64::from(nanos % 1000) / 1000.0
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    // The first attempt fails at once: a wrong URL or token is better reported than retried.
    let mut feed = open(ctx, &device).await.map_err(Failure::from)?;
    eprintln!("watching {device} (Ctrl-C to stop)");
    if ctx.format == Format::Csv {
        let header = Table::new(render::TELEMETRY_COLUMNS).to_csv();
        output::emit(&header);
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let mut lost = tokio::select! {
            _ = &mut ctrl_c => return Ok(Exit::Success),
            why = follow(&mut feed, ctx.format) => why,
        };
        let mut attempt = 0;
        feed = loop {
            attempt += 1;
            let delay = backoff(attempt, jitter());
            eprintln!(
                "live feed lost ({lost}); reconnect attempt {attempt} in {:.1} s",
                delay.as_secs_f64()
            );
            tokio::select! {
                _ = &mut ctrl_c => return Ok(Exit::Success),
                _ = tokio::time::sleep(delay) => {}
            }
            let opened = tokio::select! {
                _ = &mut ctrl_c => return Ok(Exit::Success),
                opened = open(ctx, &device) => opened,
            };
            match opened {
                Ok(feed) => break feed,
                Err(e) if e.is_final() => {
                    eprintln!("giving up after attempt {attempt}");
                    return Err(e.failure.into());
                }
                Err(e) => lost = e.failure.message,
            }
        };
        eprintln!("reconnected after {attempt} attempt(s); watching {device} again");
    }
}

async fn open(ctx: &Ctx, device: &str) -> Result<Feed, OpenError> {
    live::connect(
        &ctx.api.base,
        device,
        ctx.api.token(),
        ctx.settings.ca_file.as_deref(),
    )
    .await
}

/// Prints the feed's events until it ends; returns why it ended.
async fn follow(feed: &mut Feed, format: Format) -> String {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard = Instant::now();
    loop {
        let message = tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() >= SILENCE {
                    return format!("nothing heard for {} s", SILENCE.as_secs());
                }
                if let Err(e) = feed.send(Message::Ping(Vec::new())).await {
                    return e.to_string();
                }
                continue;
            }
            m = feed.next() => m,
        };
        heard = Instant::now();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!(": {} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                return format!("the server closed it{why}").trim().to_string();
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return e.to_string(),
            None => return "the connection ended".into(),
        };
        let event: LiveEvent = match serde_json::from_str(&text) {
            Ok(e) => e,
            // A frame type from a newer server: skip it rather than stop watching.
            Err(_) => continue,
        };
        print(format, &event, &text);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_half_a_minute() {
        let secs: Vec<u64> = (1..=8).map(|a| backoff(a, 0.0).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(1, 1.0), Duration::from_millis(1250));
        assert_eq!(backoff(0, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(u32::MAX, 0.5), Duration::from_millis(33_750));
    }
}
