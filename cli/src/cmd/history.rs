//! `history`: stored telemetry over a range, fetched page by page (the API returns at most
//! `limit` rows or buckets per request), with a progress bar on a terminal.
//!
//! Paging is planned by [`next_cursor`]: raw packets continue one second after the last one
//! received (timestamps are whole seconds and unique per device); buckets are requested in
//! chunks of `page_size` whole buckets aligned as the server aligns them, so no bucket is split
//! between two requests.

use std::io::IsTerminal;

use chrono::{DateTime, Duration, Utc};
use ems_protocol::api::History;
use ems_protocol::duration::{self, align_down, align_up};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::Ctx;
use crate::cli;
use crate::exit::{Exit, Failure};
use crate::output::{self, Table, num};
use crate::timespec::{self, rfc3339};

/// The `to` of the request starting at `cursor`: the range end for raw packets, else
/// `page_size` buckets on.
fn chunk_end(
    cursor: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket_s: Option<i64>,
    page_size: i64,
) -> DateTime<Utc> {
    match bucket_s {
        None => to,
        Some(b) => (cursor + Duration::seconds(b * page_size)).min(to),
    }
}

/// Where the next request starts after `page` answered the request `[cursor, end)`, or `None`
/// when the range is done.
fn next_cursor(page: &History, end: DateTime<Utc>, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let next = match (page.bucket_s, page.truncated) {
        (None, true) => page.points.last()?.time + Duration::seconds(1),
        (Some(b), true) => page.buckets.last()?.time + Duration::seconds(b),
        (_, false) => end,
    };
    (next < to).then_some(next)
}

/// `battery.soc` → `battery_soc`, `system_status.state` → `state`: the API's field names.
fn api_field(name: &str) -> String {
    let name = name.trim();
    let name = name.strip_prefix("system_status.").unwrap_or(name);
    name.replace('.', "_")
}

/// Parses a bucket width as the cloud does ([`ems_protocol::duration`]).
fn bucket_seconds(text: &str) -> Result<i64, Failure> {
    match duration::parse_seconds(text) {
        Ok(s) if s > 0 => Ok(s),
        Ok(_) => Err(Failure::usage("--bucket must be at least 1s")),
        Err(e) => {
            Err(Failure::usage(format!("--bucket: {e}")).hint("use e.g. 30s, 1m, 15m, 1h, 1d"))
        }
    }
}

pub async fn run(ctx: &Ctx, args: cli::History) -> anyhow::Result<Exit> {
    let device = ctx.device().await?;
    let now = Utc::now();
    let parse = |flag: &str, text: &str| {
        timespec::parse(text, now).map_err(|e| Failure::usage(format!("--{flag}: {e}")))
    };
    let from = parse("from", &args.from)?;
    let to = parse("to", &args.to)?;
    if from >= to {
        return Err(Failure::usage(format!(
            "--from {} is not before --to {}",
            rfc3339(from),
            rfc3339(to)
        ))
        .into());
    }
    let bucket_s = args.bucket.as_deref().map(bucket_seconds).transpose()?;
    let fields: Vec<String> = args.fields.iter().map(|f| api_field(f)).collect();
    let page_size = i64::from(args.page_size.max(1));
    let (from, to) = match bucket_s {
        Some(b) => (align_down(from, b), align_up(to, b)),
        None => (from, to),
    };

    let path = format!("/devices/{device}/telemetry");
    let mut merged: Option<History> = None;
    let mut cursor = from;
    let mut bar: Option<ProgressBar> = None;
    loop {
        let end = chunk_end(cursor, to, bucket_s, page_size);
        let mut query = vec![
            ("from", rfc3339(cursor)),
            ("to", rfc3339(end)),
            ("limit", page_size.to_string()),
        ];
        if let Some(b) = bucket_s {
            query.push(("bucket", b.to_string()));
        }
        if !fields.is_empty() {
            query.push(("fields", fields.join(",")));
        }
        let page: History = ctx.api.get(&path, &query).await?;
        let next = next_cursor(&page, end, to);
        match &mut merged {
            None => merged = Some(page),
            Some(all) => {
                all.to = page.to;
                all.points.extend(page.points);
                all.buckets.extend(page.buckets);
            }
        }
        let Some(next) = next else { break };
        let bar = bar.get_or_insert_with(|| progress((to - from).num_seconds()));
        bar.set_position((next - from).num_seconds().max(0) as u64);
        cursor = next;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut history = merged.expect("at least one page was fetched");
    history.to = history.to.max(to);
    history.truncated = false;
    output::print(ctx.format, &table(&history), &history);
    Ok(Exit::Success)
}

/// A bar on stderr, shown only when stdout is a terminal (a person is waiting, not a pipe).
fn progress(total_s: i64) -> ProgressBar {
    let target = if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total_s.max(1) as u64), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% of the range, {elapsed} elapsed")
            .expect("the template is valid"),
    );
    bar
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Number(n) => n.as_f64().map(num).unwrap_or_else(|| n.to_string()),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| i.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// Raw: `time` plus one column per field. Buckets: `time`, `count`, and `<field>_avg`,
/// `<field>_min`, `<field>_max` per field.
fn table(h: &History) -> Table {
    match h.bucket_s {
        None => {
            let mut t = Table::new(std::iter::once("time".to_string()).chain(h.fields.clone()));
            for p in &h.points {
                let mut row = vec![rfc3339(p.time)];
                row.extend(
                    h.fields
                        .iter()
                        .map(|f| p.values.get(f).map(cell).unwrap_or_default()),
                );
                t.push(row);
            }
            t
        }
        Some(_) => {
            let mut headers = vec!["time".to_string(), "count".to_string()];
            for f in &h.fields {
                headers.extend(["avg", "min", "max"].map(|s| format!("{f}_{s}")));
            }
            let mut t = Table::new(headers);
            for b in &h.buckets {
                let mut row = vec![rfc3339(b.time), b.count.to_string()];
                for f in &h.fields {
                    match b.values.get(f).copied().flatten() {
                        Some(s) => row.extend([num(s.avg), num(s.min), num(s.max)]),
                        None => row.extend([String::new(), String::new(), String::new()]),
                    }
                }
                t.push(row);
            }
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_protocol::api::RawPoint;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn page(bucket_s: Option<i64>, last: Option<&str>, truncated: bool) -> History {
        History {
            device_id: "d".into(),
            from: t("2026-01-31T00:00:00Z"),
            to: t("2026-01-31T01:00:00Z"),
            bucket_s,
            fields: vec![],
            points: last
                .filter(|_| bucket_s.is_none())
                .map(|l| RawPoint {
                    time: t(l),
                    values: Default::default(),
                })
                .into_iter()
                .collect(),
            buckets: last
                .filter(|_| bucket_s.is_some())
                .map(|l| ems_protocol::api::BucketPoint {
                    time: t(l),
                    count: 1,
                    values: Default::default(),
                })
                .into_iter()
                .collect(),
            truncated,
        }
    }

    #[test]
    fn raw_pages_continue_after_the_last_second() {
        let to = t("2026-01-31T01:00:00Z");
        let p = page(None, Some("2026-01-31T00:10:00Z"), true);
        assert_eq!(next_cursor(&p, to, to), Some(t("2026-01-31T00:10:01Z")));
        let done = page(None, Some("2026-01-31T00:59:59Z"), false);
        assert_eq!(next_cursor(&done, to, to), None);
    }

    #[test]
    fn bucket_chunks_are_whole_buckets() {
        let from = align_down(t("2026-01-31T00:00:30Z"), 60);
        assert_eq!(from, t("2026-01-31T00:00:00Z"));
        assert_eq!(
            align_up(t("2026-01-31T00:00:30Z"), 60),
            t("2026-01-31T00:01:00Z")
        );
        let to = t("2026-01-31T10:00:00Z");
        let end = chunk_end(from, to, Some(60), 100);
        assert_eq!(end, t("2026-01-31T01:40:00Z"));
        let p = page(Some(60), Some("2026-01-31T01:39:00Z"), false);
        assert_eq!(next_cursor(&p, end, to), Some(end));
    }

    #[test]
    fn field_names_follow_the_api() {
        assert_eq!(api_field("battery.soc"), "battery_soc");
        assert_eq!(api_field("system_status.state"), "state");
        assert_eq!(api_field("grid_power"), "grid_power");
    }
}
