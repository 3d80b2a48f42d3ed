//! Reading a queue file without changing it (the agent may be running), for `ems-agent status`.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::QueueError;

/// What `ems-agent status` shows of a queue file.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueReport {
    pub queued: u64,
    /// Oldest and newest queued timestamps (unix s).
    pub queued_span: Option<(i64, i64)>,
    pub evicted_total: u64,
    pub quarantined_total: u64,
    /// Quarantined packets kept now.
    pub quarantined_kept: u64,
    /// The latest quarantined packets: timestamp (unix s), code, reason.
    pub latest_quarantined: Vec<(i64, String, String)>,
}

/// Reads a queue file without changing it (the agent may be running).
pub fn report(path: &Path, latest: usize) -> Result<QueueReport, QueueError> {
    let wrap = |source| QueueError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(wrap)?;
    let (queued, first, last): (i64, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT count(*), min(ts), max(ts) FROM telemetry",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(wrap)?;
    let counter = |name: &str| -> Result<u64, QueueError> {
        let v: Option<i64> = conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(wrap)?;
        Ok(v.unwrap_or(0) as u64)
    };
    let has_quarantine: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(wrap)?
        > 0;
    let (kept, latest_quarantined) = if has_quarantine {
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
            .map_err(wrap)?;
        let mut stmt = conn
            .prepare("SELECT ts, code, reason FROM quarantine ORDER BY at DESC, ts DESC LIMIT ?1")
            .map_err(wrap)?;
        let rows = stmt
            .query_map(params![latest as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(wrap)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        (kept as u64, rows)
    } else {
        (0, Vec::new())
    };
    Ok(QueueReport {
        queued: queued as u64,
        queued_span: first.zip(last),
        evicted_total: counter("evicted")?,
        quarantined_total: counter("quarantined")?,
        quarantined_kept: kept,
        latest_quarantined,
    })
}
