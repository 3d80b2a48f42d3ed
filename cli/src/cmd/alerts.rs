//! `alerts` (open and resolved, newest first) and `alerts rules list|add|delete` (admin).

use ems_protocol::api::{AlertRecord, AlertRule, NewAlertRule};

use super::{Ctx, checked_id};
use crate::cli::{AlertRules, Alerts, AlertsSub};
use crate::exit::{Exit, Failure};
use crate::output::{self, Table};
use crate::timespec::rfc3339;

pub async fn run(ctx: &Ctx, args: Alerts) -> anyhow::Result<Exit> {
    match args.sub {
        Some(AlertsSub::Rules(sub)) => rules(ctx, sub).await,
        None => list(ctx, &args).await,
    }
}

async fn list(ctx: &Ctx, args: &Alerts) -> anyhow::Result<Exit> {
    let mut query = vec![("limit", args.limit.to_string())];
    if args.open {
        query.push(("state", "open".into()));
    } else if args.resolved {
        query.push(("state", "resolved".into()));
    }
    if let Some(device) = &ctx.settings.device {
        query.push(("device", checked_id("device", device)?));
    }
    let alerts: Vec<AlertRecord> = ctx.api.get("/alerts", &query).await?;
    output::print(ctx.format, &alerts_table(&alerts), &alerts);
    Ok(Exit::Success)
}

async fn rules(ctx: &Ctx, sub: AlertRules) -> anyhow::Result<Exit> {
    match sub {
        AlertRules::List => {
            let rules: Vec<AlertRule> = ctx.api.get("/alert-rules", &[]).await?;
            output::print(ctx.format, &rules_table(&rules), &rules);
        }
        AlertRules::Add {
            name,
            kind,
            for_device,
            threshold,
            clear_threshold,
            flag,
            r#for,
            clear_after,
        } => {
            let rule = NewAlertRule {
                name,
                kind,
                device_id: for_device
                    .map(|d| checked_id("--for-device", &d))
                    .transpose()?,
                threshold,
                clear_threshold,
                flag: flag.map(|f| f.to_ascii_uppercase()),
                for_s: seconds("--for", r#for.as_deref())?,
                clear_s: seconds("--clear-after", clear_after.as_deref())?,
            };
            let stored: AlertRule = ctx.api.post("/alert-rules", &[], &rule).await?;
            output::print(
                ctx.format,
                &rules_table(std::slice::from_ref(&stored)),
                &stored,
            );
        }
        AlertRules::Delete { name } => {
            let path = format!("/alert-rules/{}", encode(&name));
            let deleted: AlertRule = ctx.api.delete(&path).await?;
            output::print(
                ctx.format,
                &rules_table(std::slice::from_ref(&deleted)),
                &deleted,
            );
        }
    }
    Ok(Exit::Success)
}

/// A duration flag (`90s`, `5m`, `1h`) in whole seconds; 0 when absent.
fn seconds(flag: &str, text: Option<&str>) -> Result<u32, Failure> {
    let Some(text) = text else { return Ok(0) };
    ems_protocol::duration::parse_seconds(text)
        .ok()
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| {
            Failure::usage(format!("{flag}: {text:?} is not a duration")).hint("e.g. 90s, 5m, 1h")
        })
}

/// A rule name as one URL path segment.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn alerts_table(alerts: &[AlertRecord]) -> Table {
    let mut t = Table::new([
        "id", "device", "rule", "kind", "opened", "resolved", "message",
    ]);
    for a in alerts {
        t.push(vec![
            a.id.to_string(),
            a.device_id.clone(),
            a.rule_name.clone(),
            a.kind.to_string(),
            rfc3339(a.opened_at),
            a.resolved_at.map(rfc3339).unwrap_or_default(),
            a.message.clone(),
        ]);
    }
    t
}

fn rules_table(rules: &[AlertRule]) -> Table {
    let mut t = Table::new([
        "name",
        "kind",
        "device",
        "threshold",
        "clear",
        "flag",
        "for_s",
        "clear_s",
    ]);
    let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in rules {
        let rule = &r.rule;
        t.push(vec![
            rule.name.clone(),
            rule.kind.to_string(),
            rule.device_id.clone().unwrap_or_else(|| "(all)".into()),
            num(rule.threshold),
            num(rule.clear_threshold),
            rule.flag.clone().unwrap_or_default(),
            rule.for_s.to_string(),
            rule.clear_s.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(encode("low soc/site"), "low%20soc%2Fsite");
        assert_eq!(encode("gone-1"), "gone-1");
    }

    #[test]
    fn durations_in_seconds() {
        assert_eq!(seconds("--for", Some("5m")).ok(), Some(300));
        assert_eq!(seconds("--for", None).ok(), Some(0));
        assert!(seconds("--for", Some("soon")).is_err());
    }
}
