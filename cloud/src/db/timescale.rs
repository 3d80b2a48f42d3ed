//! TimescaleDB setup, run after the migrations at every start. Every statement is idempotent.
//!
//! Written against the documented TimescaleDB 2.x API (`create_hypertable`,
//! `add_compression_policy`, `add_continuous_aggregate_policy`, `add_retention_policy`). It is
//! not part of a refinery migration because continuous aggregates cannot be created inside a
//! transaction, and because the same schema must also run on plain PostgreSQL.
//!
//! On plain PostgreSQL nothing happens here; queries read the plain `telemetry` table with
//! `date_bin`, and retention is an hourly DELETE (see `commands::sweeper`).

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use super::columns::NUMERIC_FIELDS;
use super::{DbError, sql};
use crate::config::{CloudConfig, TimescaleMode};

/// What start-up decided about storage, and why (logged once, reported by `/api/v1/health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Telemetry lives in a hypertable with a per-minute continuous aggregate `telemetry_1m`.
    pub timescale: bool,
    /// One line: which path and why, e.g. "plain PostgreSQL tables: TimescaleDB 2.28.3 is
    /// installed but not preloaded (…)".
    pub reason: String,
}

impl Storage {
    fn plain(why: impl std::fmt::Display) -> Storage {
        Storage {
            timescale: false,
            reason: format!("plain PostgreSQL tables: {why}"),
        }
    }
}

/// The advice for a server that has TimescaleDB installed but does not load it.
pub const PRELOAD_HINT: &str = "add timescaledb to shared_preload_libraries in postgresql.conf \
     and restart PostgreSQL";

/// Whether `shared_preload_libraries` (as `SHOW` prints it) loads TimescaleDB: entries may be
/// quoted, carry `$libdir/` and `.so`.
pub fn preloads_timescaledb(setting: &str) -> bool {
    setting.split(',').any(|entry| {
        let entry = entry.trim().trim_matches('"').trim();
        let name = entry.rsplit('/').next().unwrap_or(entry);
        name.strip_suffix(".so").unwrap_or(name) == "timescaledb"
    })
}

/// Whether the server preloads TimescaleDB, and `shared_preload_libraries` when this role may
/// read it. Only superusers and `pg_read_all_settings` may; for other roles the loader's own
/// setting `timescaledb.max_background_workers`, which exists only when the library is
/// preloaded, tells instead. Reads settings only: safe whatever the server.
async fn preload_state(client: &Client) -> Result<(bool, Option<String>), DbError> {
    match client
        .query_one("SELECT current_setting('shared_preload_libraries')", &[])
        .await
    {
        Ok(row) => {
            let setting: String = row.get(0);
            Ok((preloads_timescaledb(&setting), Some(setting)))
        }
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            let loaded: bool = client
                .query_one(
                    "SELECT current_setting('timescaledb.max_background_workers', true) \
                     IS NOT NULL",
                    &[],
                )
                .await
                .map_err(sql("probing for the timescaledb loader"))?
                .get(0);
            Ok((loaded, None))
        }
        Err(e) => Err(DbError::Sql {
            step: "reading shared_preload_libraries",
            error: e,
        }),
    }
}

/// Refuses a database that already holds TimescaleDB objects on a server that does not preload
/// it: every statement touching them (migrations included) would end the session with a FATAL
/// error. Run before anything else; it reads the catalogs and settings only.
pub async fn check_loadable(client: &Client) -> Result<(), DbError> {
    let in_database: Option<String> = client
        .query_one(
            "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')",
            &[],
        )
        .await
        .map_err(sql("reading the timescaledb extension"))?
        .get(0);
    match in_database {
        Some(version) if !preload_state(client).await?.0 => {
            Err(DbError::TimescaleNotPreloaded { version })
        }
        _ => Ok(()),
    }
}

/// Sets up TimescaleDB when wanted and usable, and says which storage is in use and why.
///
/// Never risks the session: `CREATE EXTENSION timescaledb` on a server that does not preload
/// the library ends the session with a FATAL error, so the setting is read first. The only
/// refusal is a database that already holds TimescaleDB objects on a server that no longer
/// preloads it: every query on `telemetry` would fail, so the server must not start.
pub async fn setup(client: &Client, config: &CloudConfig) -> Result<Storage, DbError> {
    if config.timescale == TimescaleMode::Off {
        return Ok(Storage::plain(
            "TimescaleDB disabled by configuration (timescale = \"off\")",
        ));
    }
    let row = client
        .query_opt(
            "SELECT default_version, installed_version FROM pg_available_extensions \
             WHERE name = 'timescaledb'",
            &[],
        )
        .await
        .map_err(sql("looking for the timescaledb extension"))?;
    let Some(row) = row else {
        return Ok(Storage::plain(
            "the timescaledb extension is not installed on the database server",
        ));
    };
    let available: String = row.get(0);
    let in_database: Option<String> = row.get(1);
    let (preloaded, setting) = preload_state(client).await?;
    if !preloaded {
        if let Some(version) = in_database {
            return Err(DbError::TimescaleNotPreloaded { version });
        }
        let setting = setting
            .map(|s| format!(" (shared_preload_libraries = '{s}')"))
            .unwrap_or_default();
        return Ok(Storage::plain(format!(
            "TimescaleDB {available} is installed but not preloaded{setting}: {PRELOAD_HINT} \
             to use it"
        )));
    }
    if let Err(e) = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        if client.is_closed() {
            return Err(DbError::Sql {
                step: "CREATE EXTENSION timescaledb",
                error: e,
            });
        }
        return Ok(Storage::plain(format!(
            "TimescaleDB {available} is preloaded but CREATE EXTENSION failed ({})",
            super::describe(&e)
        )));
    }
    let version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await
        .map_err(sql("reading the timescaledb version"))?
        .get(0);
    if version != available {
        tracing::warn!(
            "this database uses TimescaleDB {version} while the server offers {available}: \
             run ALTER EXTENSION timescaledb UPDATE (first statement of a new session) to update"
        );
    }
    create_objects(client, config).await?;
    Ok(Storage {
        timescale: true,
        reason: format!(
            "TimescaleDB {version}: telemetry hypertable (1-day chunks, compressed after {} days) \
             with the per-minute continuous aggregate telemetry_1m",
            config.compress_after_days
        ),
    })
}

/// The hypertable, compression, the continuous aggregate and the policies. Idempotent.
async fn create_objects(client: &Client, config: &CloudConfig) -> Result<(), DbError> {
    client
        .batch_execute(
            "SELECT create_hypertable('telemetry', 'time', \
               chunk_time_interval => INTERVAL '1 day', \
               if_not_exists => TRUE, migrate_data => TRUE)",
        )
        .await
        .map_err(sql("create_hypertable(telemetry)"))?;

    // Compression settings cannot change once chunks are compressed, so set them only once.
    let compressed: bool = client
        .query_one(
            "SELECT coalesce((SELECT compression_enabled FROM timescaledb_information.hypertables \
              WHERE hypertable_name = 'telemetry'), false)",
            &[],
        )
        .await
        .map_err(sql("reading the compression setting"))?
        .get(0);
    if !compressed {
        client
            .batch_execute(
                "ALTER TABLE telemetry SET (timescaledb.compress, \
                   timescaledb.compress_segmentby = 'device_id', \
                   timescaledb.compress_orderby = 'time DESC')",
            )
            .await
            .map_err(sql("enabling compression"))?;
    }
    client
        .batch_execute(&format!(
            "SELECT remove_compression_policy('telemetry', if_exists => TRUE); \
             SELECT add_compression_policy('telemetry', INTERVAL '{} days');",
            config.compress_after_days
        ))
        .await
        .map_err(sql("setting the compression policy"))?;

    client
        .batch_execute(&continuous_aggregate_sql())
        .await
        .map_err(sql("creating the continuous aggregate telemetry_1m"))?;
    // Day chunks for the aggregate too (TimescaleDB's default is ten times the raw interval),
    // so `aggregate_retention_days` drops by the day. Affects chunks created from now on.
    client
        .batch_execute("SELECT set_chunk_time_interval('telemetry_1m', INTERVAL '1 day')")
        .await
        .map_err(sql("setting the aggregate's chunk interval"))?;
    client
        .batch_execute(&format!(
            "SELECT remove_continuous_aggregate_policy('telemetry_1m', if_exists => TRUE); \
             SELECT add_continuous_aggregate_policy('telemetry_1m', \
               start_offset => INTERVAL '{} seconds', end_offset => INTERVAL '1 minute', \
               schedule_interval => INTERVAL '1 minute');",
            policy_start_offset_s(config)
        ))
        .await
        .map_err(sql("setting the continuous aggregate policy"))?;

    set_retention(client, "telemetry", config.retention_days).await?;
    set_retention(client, "telemetry_1m", config.aggregate_retention_days).await?;
    Ok(())
}

/// How far back the aggregate policy looks, s: as far as the oldest packet ingest accepts, so a
/// late backlog is always folded in (a refresh only recomputes invalidated buckets, so the wide
/// window costs nothing when nothing old changed). Never beyond the raw retention, where a
/// refresh would erase aggregates of dropped chunks.
fn policy_start_offset_s(config: &CloudConfig) -> i64 {
    config.max_packet_age_s().max(3 * 3600) + 120
}

/// Packets older than this may lie below the aggregate's watermark (the policy materialises up
/// to one minute ago), s: storing one asks for a refresh of its minutes.
pub const REALTIME_WINDOW_S: i64 = 60;

/// Keeps `telemetry_1m` exact for packets stored below its watermark (a backlog after an outage,
/// a device that was away while others kept the watermark moving): the real-time part of the
/// aggregate covers only what is newer than the watermark, and the policy would fold the late
/// rows in only at its next run. The ingest writer reports the stored time span; a task on the
/// pool refreshes it within about a second, coalescing what arrives meanwhile (during a long
/// backlog, refreshes follow each other no closer than twice the last one's duration).
#[derive(Clone)]
pub struct AggregateRefresher {
    tx: tokio::sync::mpsc::UnboundedSender<(DateTime<Utc>, DateTime<Utc>)>,
}

impl AggregateRefresher {
    /// Starts the refresher task on the current runtime.
    pub fn spawn(pool: deadpool_postgres::Pool) -> AggregateRefresher {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(DateTime<Utc>, DateTime<Utc>)>();
        tokio::spawn(async move {
            let least = std::time::Duration::from_millis(300);
            let mut pause = least;
            while let Some((mut from, mut to)) = rx.recv().await {
                // Coalesce what the writer stores meanwhile (a backlog comes in many batches).
                // The pause grows with the last refresh's duration, so that while a fleet
                // sends backlogs refreshing takes at most a third of one connection's time.
                tokio::time::sleep(pause).await;
                while let Ok((f, t)) = rx.try_recv() {
                    from = from.min(f);
                    to = to.max(t);
                }
                let started = tokio::time::Instant::now();
                let result = match pool.get().await {
                    Ok(client) => refresh_aggregate(&client, from, to)
                        .await
                        .map_err(|e| super::describe(&e)),
                    Err(e) => Err(e.to_string()),
                };
                pause = least.max(started.elapsed() * 2);
                match result {
                    Ok(()) => tracing::debug!(%from, %to, "telemetry_1m refreshed"),
                    Err(e) => tracing::warn!(
                        %from, %to,
                        "refreshing telemetry_1m failed; its policy folds these rows in later: {e}"
                    ),
                }
            }
        });
        AggregateRefresher { tx }
    }

    /// Packets stored at `times` (any order): refresh the minutes of those below the real-time
    /// window.
    pub fn stored(&self, times: impl IntoIterator<Item = DateTime<Utc>>) {
        let horizon = Utc::now() - chrono::Duration::seconds(REALTIME_WINDOW_S);
        let span = times.into_iter().filter(|t| *t < horizon).fold(
            None,
            |span: Option<(DateTime<Utc>, DateTime<Utc>)>, t| {
                Some(span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))))
            },
        );
        if let Some(span) = span {
            let _ = self.tx.send(span);
        }
    }
}

/// Recomputes the per-minute aggregate for `[from, to]` (widened to whole minutes), after late
/// packets landed below its watermark; outside any transaction.
pub async fn refresh_aggregate(
    client: &Client,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), tokio_postgres::Error> {
    let start = from.timestamp().div_euclid(60) * 60;
    let end = to.timestamp().div_euclid(60) * 60 + 60;
    client
        .batch_execute(&format!(
            "CALL refresh_continuous_aggregate('telemetry_1m', \
               to_timestamp({start}), to_timestamp({end}))"
        ))
        .await
}

async fn set_retention(client: &Client, table: &str, days: Option<u32>) -> Result<(), DbError> {
    let mut stmt = format!("SELECT remove_retention_policy('{table}', if_exists => TRUE);");
    if let Some(days) = days {
        stmt.push_str(&format!(
            "SELECT add_retention_policy('{table}', INTERVAL '{days} days');"
        ));
    }
    client
        .batch_execute(&stmt)
        .await
        .map_err(sql("setting a retention policy"))
}

/// Per-minute buckets keeping count, sum, min and max of every numeric field, so coarser
/// buckets recompute exact averages (`sum(sum) / sum(count)`). Real-time
/// (`materialized_only = false`), so recent data is included and answers equal the raw table's.
/// Plain aggregates only (no casts around them), the form every 2.x release accepts; readers cast.
pub fn continuous_aggregate_sql() -> String {
    let mut cols = String::new();
    for f in NUMERIC_FIELDS.iter() {
        cols.push_str(&format!(
            ", count({f}) AS {f}_count, sum({f}) AS {f}_sum, \
             min({f}) AS {f}_min, max({f}) AS {f}_max"
        ));
    }
    format!(
        "CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_1m \
         WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS \
         SELECT device_id, time_bucket(INTERVAL '1 minute', time) AS bucket, count(*) AS n{cols} \
         FROM telemetry GROUP BY device_id, bucket WITH NO DATA"
    )
}

#[cfg(test)]
mod tests {
    use super::preloads_timescaledb;
    use crate::db::columns::NUMERIC_FIELDS;

    #[test]
    fn preload_setting_forms() {
        assert!(preloads_timescaledb("timescaledb"));
        assert!(preloads_timescaledb("pg_stat_statements, timescaledb"));
        assert!(preloads_timescaledb("\"$libdir/timescaledb.so\""));
        assert!(!preloads_timescaledb(""));
        assert!(!preloads_timescaledb("pg_stat_statements"));
        assert!(!preloads_timescaledb("timescaledb_toolkit"));
    }

    #[test]
    fn aggregate_has_all_four_statistics_per_field() {
        let sql = super::continuous_aggregate_sql();
        for f in NUMERIC_FIELDS.iter() {
            for s in ["count", "sum", "min", "max"] {
                assert!(sql.contains(&format!("AS {f}_{s}")), "{f}_{s}");
            }
        }
    }
}
