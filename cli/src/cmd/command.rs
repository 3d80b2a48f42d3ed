//! `set-mode` and `reset-error`: validate locally with ems-protocol, send, wait for the
//! device's answer, and turn the final status into an exit code.

use std::time::Duration;

use ems_protocol::api::CommandRecord;
use ems_protocol::command::MAX_LEASE_S;
use ems_protocol::{Command, CommandStatus, ProtocolError};
use serde_json::Value;
use tokio::time::Instant;

use super::{Ctx, checked_id};
use crate::cli::{self, Format};
use crate::exit::{Exit, Failure};
use crate::output::{self, pairs};
use crate::render;

/// Longest `?wait=` the cloud allows by default (`command_max_wait_s`); longer `--timeout`s
/// continue by polling the command.
const SERVER_MAX_WAIT_S: f64 = 60.0;
/// Between polls once the server-side wait is used up.
const POLL: Duration = Duration::from_millis(500);

pub async fn set_mode(ctx: &Ctx, args: cli::SetMode) -> anyhow::Result<Exit> {
    let id = placeholder_id(&args.wait);
    let command = match args.lease.as_deref() {
        None => Command::set_mode(id, args.mode, args.power),
        Some(text) => Command::set_mode_with_lease(id, args.mode, args.power, lease_seconds(text)?),
    };
    command.validate().map_err(local_refusal)?;
    send(ctx, command, &args.wait).await
}

pub async fn reset_error(ctx: &Ctx, wait: cli::Wait) -> anyhow::Result<Exit> {
    let command = Command::reset_error(placeholder_id(&wait));
    command.validate().map_err(local_refusal)?;
    send(ctx, command, &wait).await
}

/// `--for`'s length in seconds, in the grammar of [`ems_protocol::duration`]; the range is the
/// protocol's to check (and name).
fn lease_seconds(text: &str) -> Result<u32, Failure> {
    let s = ems_protocol::duration::parse_seconds(text)
        .map_err(|e| Failure::usage(format!("--for: {e}")))?;
    u32::try_from(s).map_err(|_| {
        Failure::usage(format!(
            "--for: {text:?} is longer than the longest lease, {MAX_LEASE_S} s (1d)"
        ))
    })
}

/// The user's `--id`, or a stand-in used only for local validation (the cloud generates ids).
pub(super) fn placeholder_id(wait: &cli::Wait) -> String {
    wait.id.clone().unwrap_or_else(|| "local_check".into())
}

const POWER_HINT: &str = "MANUAL_CHARGE and MANUAL_DISCHARGE need --power <W> (a magnitude); \
                          AUTO and MANUAL_IDLE take no --power";

/// A command the protocol refuses, in terms of the command line's flags.
fn local_refusal(e: ProtocolError) -> Failure {
    let (field, reason) = match &e {
        ProtocolError::Invalid { field, reason } => (field.as_str(), reason.clone()),
        ProtocolError::Malformed { path, message } => (path.as_str(), message.clone()),
    };
    let (flag, hint) = match field {
        "payload.duration_s" => (
            "--for",
            "--for holds a manual mode for 1s to 1d (24h), then the device returns to AUTO",
        ),
        "payload.target_power" => ("--power", POWER_HINT),
        "command_id" => ("--id", POWER_HINT),
        other => (other, POWER_HINT),
    };
    Failure::usage(format!("{flag} {reason}")).hint(hint)
}

/// Sends `command`, waits as `wait` says, prints the record and turns its status into the exit
/// code.
pub(super) async fn send(ctx: &Ctx, command: Command, wait: &cli::Wait) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    if !wait.timeout.is_finite() || wait.timeout < 0.0 {
        return Err(Failure::usage("--timeout must be a number of seconds, 0 or more").into());
    }
    let mut body: Value = serde_json::to_value(&command)?;
    if wait.id.is_none()
        && let Some(obj) = body.as_object_mut()
    {
        obj.remove("command_id");
    }
    let mut query = Vec::new();
    let deadline = Instant::now() + Duration::from_secs_f64(wait.timeout);
    if !wait.no_wait {
        query.push(("wait", wait.timeout.min(SERVER_MAX_WAIT_S).to_string()));
    }
    if let Some(s) = wait.expires_in {
        query.push(("expires_in", s.to_string()));
    }
    let path = format!("/devices/{device}/commands");
    let mut record: CommandRecord = ctx.api.post(&path, &query, &body).await?;
    if !wait.no_wait {
        let get = format!(
            "/commands/{}",
            checked_id("command_id", &record.command_id)?
        );
        while !record.status.is_final() && Instant::now() < deadline {
            tokio::time::sleep(POLL.min(deadline - Instant::now())).await;
            record = ctx.api.get(&get, &[]).await?;
        }
    }
    show(ctx.format, &record);
    let exit = outcome(record.status, wait.no_wait);
    if exit == Exit::Timeout {
        let hint = if record.status == CommandStatus::Pending {
            "the device is offline; the cloud delivers the command when it reconnects, until it expires"
        } else {
            "the device got the command but has not answered"
        };
        return Err(Failure::new(
            Exit::Timeout,
            format!(
                "no answer from {device} within {} s; command {} is {}",
                wait.timeout, record.command_id, record.status
            ),
        )
        .hint(format!(
            "{hint}; check later with `emsctl commands show {}`",
            record.command_id
        ))
        .into());
    }
    Ok(exit)
}

/// The exit code a command's status ends with.
pub fn outcome(status: CommandStatus, no_wait: bool) -> Exit {
    match status {
        CommandStatus::Accepted | CommandStatus::Completed => Exit::Success,
        CommandStatus::Rejected | CommandStatus::Expired => Exit::Failed,
        CommandStatus::Pending | CommandStatus::Sent if no_wait => Exit::Success,
        CommandStatus::Pending | CommandStatus::Sent => Exit::Timeout,
    }
}

fn show(format: Format, record: &CommandRecord) {
    match format {
        Format::Table => {
            let what = format!("{} {}", record.action, render::command_target(record));
            let mut line = format!("{}  {}  {}", record.status, record.command_id, what.trim());
            if let Some(reason) = &record.reason {
                line.push_str(&format!(": {reason}"));
            }
            output::emit(&(line + "\n"));
        }
        Format::Csv => output::emit(&render::commands_table(std::slice::from_ref(record)).to_csv()),
        Format::Json => output::print_json(record),
    }
}

/// For `commands show`.
pub fn show_full(format: Format, record: &CommandRecord) {
    match format {
        Format::Table => output::emit(&pairs(&render::command_lines(record))),
        other => show(other, record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_exit_codes() {
        assert_eq!(outcome(CommandStatus::Accepted, false), Exit::Success);
        assert_eq!(outcome(CommandStatus::Rejected, false), Exit::Failed);
        assert_eq!(outcome(CommandStatus::Expired, false), Exit::Failed);
        assert_eq!(outcome(CommandStatus::Sent, false), Exit::Timeout);
        assert_eq!(outcome(CommandStatus::Pending, true), Exit::Success);
    }

    #[test]
    fn power_refusals_name_the_flag() {
        let err = Command::set_mode("x", ems_protocol::TargetMode::ManualDischarge, None)
            .validate()
            .unwrap_err();
        let f = local_refusal(err);
        assert_eq!(f.exit, Exit::Usage);
        assert!(
            f.message.starts_with("--power is required"),
            "{}",
            f.message
        );
    }
}
