//! Retention by deletion, hourly: raw telemetry on plain PostgreSQL (TimescaleDB drops whole
//! chunks by its own policy), events, and commands that are final, older than `retention_days`.

use std::future::Future;
use std::time::Duration;

use super::Db;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("{}", super::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// Runs [`run`] from lift-off until Rocket shuts down.
pub(super) fn stage(db: Db, days: u32) -> rocket::fairing::AdHoc {
    rocket::fairing::AdHoc::on_liftoff("retention", move |rocket| {
        let shutdown = rocket.shutdown();
        Box::pin(async move {
            tokio::spawn(run(db, days, shutdown));
        })
    })
}

/// Deletes old rows at start and then every hour until `stopped` completes.
pub async fn run(db: Db, days: u32, stopped: impl Future<Output = ()>) {
    let mut stopped = std::pin::pin!(stopped);
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => break,
        }
        match prune(&db, days).await {
            Ok([telemetry, events, commands]) => tracing::info!(
                telemetry,
                events,
                commands,
                "rows older than retention_days = {days} deleted"
            ),
            Err(e) => tracing::warn!("retention delete failed (next try in an hour): {e}"),
        }
    }
}

/// Rows deleted per statement by [`prune`]: short transactions, no long lock.
const PRUNE_CHUNK: i64 = 10_000;

/// Retention: deletes what is older than `days` device by device through the tables'
/// `(device_id, time)` indexes, at most [`PRUNE_CHUNK`] rows per statement, so neither a full
/// scan nor one huge transaction: raw telemetry on plain PostgreSQL (TimescaleDB drops whole
/// chunks by its policy instead), events, and commands that are final. Returns the rows
/// deleted per table.
async fn prune(db: &Db, days: u32) -> Result<[u64; 3], RetentionError> {
    let client = db.pool.get().await?;
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
    let tables: [(&str, &str, &str, bool); 3] = [
        ("telemetry", "time", "", !db.timescale),
        ("events", "time", "", true),
        (
            "commands",
            "issued_at",
            " AND status NOT IN ('PENDING', 'SENT')",
            true,
        ),
    ];
    let mut deleted = [0u64; 3];
    for (i, (table, time, extra, wanted)) in tables.into_iter().enumerate() {
        if !wanted {
            continue;
        }
        let stmt = client
            .prepare(&format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
                 WHERE device_id = $1 AND {time} < $2{extra} LIMIT {PRUNE_CHUNK}))"
            ))
            .await?;
        // The devices that have rows here (deleted devices' rows too), by a loose index scan:
        // one probe of the index per device instead of reading the table.
        let devices: Vec<String> = client
            .query(
                &format!(
                    "WITH RECURSIVE ids AS ( \
                       (SELECT device_id FROM {table} ORDER BY device_id LIMIT 1) \
                       UNION ALL \
                       SELECT (SELECT t.device_id FROM {table} t WHERE t.device_id > ids.device_id \
                               ORDER BY t.device_id LIMIT 1) \
                       FROM ids WHERE ids.device_id IS NOT NULL) \
                     SELECT device_id FROM ids WHERE device_id IS NOT NULL"
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for device in &devices {
            loop {
                let n = client.execute(&stmt, &[device, &cutoff]).await?;
                deleted[i] += n;
                if n < PRUNE_CHUNK as u64 {
                    break;
                }
            }
        }
    }
    Ok(deleted)
}
