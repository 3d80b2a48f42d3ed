//! `schedule set|show|clear`: the device's `SET_SCHEDULE`. A schedule is checked here with the
//! protocol's own rules before it is sent, then sent as a command whose answer sets the exit code
//! (`set-mode`'s rules); `show` reads what the device last accepted.

use chrono::{DateTime, Utc};
use ems_protocol::api::DeviceSchedule;
use ems_protocol::schedule::{Schedule, SchedulePayload, WindowPayload};
use ems_protocol::{Command, ProtocolError};

use super::Ctx;
use super::command::{placeholder_id, send};
use crate::cli::{self, Format};
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, pairs};
use crate::timespec::{self, rfc3339};

pub async fn run(ctx: &Ctx, sub: cli::Schedule) -> anyhow::Result<Exit> {
    match sub {
        cli::Schedule::Set(args) => {
            let payload = match &args.file {
                Some(path) => from_file(path)?,
                None => from_flags(&args, Utc::now())?,
            };
            let schedule = checked(&payload, Utc::now())?;
            send(
                ctx,
                Command::set_schedule(placeholder_id(&args.wait), schedule),
                &args.wait,
            )
            .await
        }
        cli::Schedule::Clear(wait) => {
            let empty = Schedule::from_payload(&SchedulePayload {
                valid_until: None,
                time_zone: None,
                windows: Vec::new(),
            })
            .map_err(|e| Failure::usage(e.to_string()))?;
            send(
                ctx,
                Command::set_schedule(placeholder_id(&wait), empty),
                &wait,
            )
            .await
        }
        cli::Schedule::Show => {
            let device = ctx.device().await?;
            let path = format!("/devices/{device}/schedule");
            match ctx.api.get_optional::<DeviceSchedule>(&path).await? {
                None => {
                    if ctx.format == Format::Json {
                        output::print_json(&serde_json::Value::Null);
                    } else {
                        output::emit(&format!("{device} has no schedule\n"));
                    }
                }
                Some(s) => show(ctx.format, &s),
            }
            Ok(Exit::Success)
        }
    }
}

/// The protocol's checks, as a usage error naming the field.
fn checked(payload: &SchedulePayload, now: DateTime<Utc>) -> Result<Schedule, Failure> {
    let refuse = |e: ProtocolError| Failure::usage(format!("schedule: {e}"));
    let schedule = Schedule::from_payload(payload).map_err(refuse)?;
    schedule.check_current(now).map_err(refuse)?;
    Ok(schedule)
}

fn from_file(path: &std::path::Path) -> Result<SchedulePayload, Failure> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::usage(format!("reading stdin: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?
    };
    let parsed = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// One window from the flags.
fn from_flags(args: &cli::ScheduleSet, now: DateTime<Utc>) -> Result<SchedulePayload, Failure> {
    let action = args
        .action
        .as_deref()
        .ok_or_else(|| {
            Failure::usage("give a FILE, or one window: --daily or --from/--to, and --action")
        })?
        .to_ascii_uppercase();
    let mut w = WindowPayload {
        action: action.clone(),
        power_w: args.power,
        to_soc_pct: args.to_soc,
        down_to_soc_pct: args.down_to_soc,
        from_grid: (action == "CHARGE" && args.no_grid).then_some(false),
        ..WindowPayload::default()
    };
    match (&args.daily, &args.from, &args.to) {
        (Some(daily), None, None) => {
            let (start, end) = daily.split_once('-').ok_or_else(|| {
                Failure::usage(format!("--daily {daily:?}: expected HH:MM-HH:MM"))
            })?;
            w.daily_start = Some(start.trim().to_string());
            w.daily_end = Some(end.trim().to_string());
        }
        (None, Some(from), Some(to)) => {
            let at = |flag: &str, text: &str| {
                timespec::parse(text, now).map_err(|e| Failure::usage(format!("{flag}: {e}")))
            };
            w.start = Some(at("--from", from)?);
            w.end = Some(at("--to", to)?);
        }
        _ => return Err(Failure::usage("give --daily, or --from and --to")),
    }
    let valid_for = ems_protocol::duration::parse_seconds(&args.valid_for)
        .map_err(|e| Failure::usage(format!("--valid-for: {e}")))?;
    Ok(SchedulePayload {
        valid_until: Some(now + chrono::Duration::seconds(valid_for)),
        time_zone: args.time_zone.clone(),
        windows: vec![w],
    })
}

fn show(format: Format, s: &DeviceSchedule) {
    match format {
        Format::Json => output::print_json(s),
        Format::Csv => output::emit(&windows(&s.schedule).to_csv()),
        Format::Table => {
            output::emit(&pairs(&[
                ("device", s.device_id.clone()),
                (
                    "accepted",
                    format!("{} ({})", rfc3339(s.accepted_at), s.command_id),
                ),
                (
                    "valid until",
                    s.schedule.valid_until.map(rfc3339).unwrap_or_default(),
                ),
                (
                    "time zone",
                    s.schedule.time_zone.clone().unwrap_or_else(|| "UTC".into()),
                ),
            ]));
            output::emit(&windows(&s.schedule).render());
        }
    }
}

fn windows(s: &SchedulePayload) -> Table {
    let mut t = Table::new(["window", "when", "action", "details"]);
    let num = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    for (i, w) in s.windows.iter().enumerate() {
        let when = match (&w.daily_start, &w.daily_end, w.start, w.end) {
            (Some(a), Some(b), _, _) => format!("daily {a}-{b}"),
            (_, _, Some(a), Some(b)) => format!("{} - {}", rfc3339(a), rfc3339(b)),
            _ => String::new(),
        };
        let details = match w.action.as_str() {
            "CHARGE" => format!(
                "{} W to {} %{}",
                num(w.power_w),
                num(w.to_soc_pct),
                if w.from_grid == Some(false) {
                    ", PV only"
                } else {
                    ""
                }
            ),
            "DISCHARGE" => format!("{} W down to {} %", num(w.power_w), num(w.down_to_soc_pct)),
            "LIMITS" => [
                ("target", w.target_grid_w),
                ("export limit", w.export_limit_w),
                ("import limit", w.import_limit_w),
            ]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} {v} W")))
            .collect::<Vec<_>>()
            .join(", "),
            _ => String::new(),
        };
        t.push(vec![i.to_string(), when, w.action.clone(), details]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn set_args(args: &[&str]) -> cli::ScheduleSet {
        let mut argv = vec!["emsctl", "schedule", "set"];
        argv.extend_from_slice(args);
        match cli::Cli::parse_from(argv).command {
            cli::Command::Schedule(cli::Schedule::Set(s)) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_daily_window_from_flags_is_a_valid_schedule() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let args = set_args(&[
            "--daily",
            "23:00-06:00",
            "--action",
            "charge",
            "--power",
            "2000",
            "--to-soc",
            "90",
            "--time-zone",
            "Europe/Paris",
            "--no-grid",
        ]);
        let p = from_flags(&args, now).unwrap();
        let s = checked(&p, now).unwrap();
        assert_eq!(s.windows.len(), 1);
        assert_eq!(p.windows[0].from_grid, Some(false));
        assert_eq!(p.valid_until, Some(now + chrono::Duration::days(7)));
    }

    #[test]
    fn flag_mistakes_are_usage_errors_naming_what_is_wrong() {
        let now: DateTime<Utc> = "2026-12-01T12:00:00Z".parse().unwrap();
        let no_power = set_args(&["--daily", "17:00-21:00", "--action", "discharge"]);
        let err = checked(&from_flags(&no_power, now).unwrap(), now).unwrap_err();
        assert!(err.to_string().contains("power_w"), "{err}");
        let bad_daily = set_args(&["--daily", "17:00", "--action", "hold"]);
        assert!(from_flags(&bad_daily, now).is_err());
    }
}
