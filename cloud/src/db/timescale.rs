//! TimescaleDB setup, run after the migrations at every start. Every statement is idempotent.
//!
//! Written against the documented TimescaleDB 2.x API (`create_hypertable`,
//! `add_compression_policy`, `add_continuous_aggregate_policy`, `add_retention_policy`). It is
//! not part of a refinery migration because continuous aggregates cannot be created inside a
//! transaction, and because the same schema must also run on plain PostgreSQL.
//!
//! On plain PostgreSQL nothing happens here; queries read the plain `telemetry` table with
//! `date_bin`, and retention is an hourly DELETE (see `commands::sweeper`).

use tokio_postgres::Client;

use super::{DbError, sql};
use crate::config::{CloudConfig, TimescaleMode};

/// Numeric telemetry columns that history buckets aggregate (avg, min, max).
pub const NUMERIC_FIELDS: &[&str] = &[
    "wifi_strength",
    "battery_voltage",
    "battery_current",
    "battery_power",
    "battery_soc",
    "grid_voltage",
    "grid_power",
    "grid_frequency",
];

/// Sets up TimescaleDB when wanted and available; returns whether it is in use.
pub async fn setup(client: &Client, config: &CloudConfig) -> Result<bool, DbError> {
    if config.timescale == TimescaleMode::Off {
        tracing::info!("TimescaleDB disabled by configuration (timescale = \"off\")");
        return Ok(false);
    }
    let available = client
        .query_opt(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'",
            &[],
        )
        .await
        .map_err(sql("looking for the timescaledb extension"))?
        .is_some();
    if !available {
        tracing::info!("TimescaleDB extension not available on this server");
        return Ok(false);
    }
    // Available is not loadable: without `shared_preload_libraries = 'timescaledb'` this fails,
    // and the server is better off on plain tables than not starting.
    if let Err(e) = client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        .await
    {
        tracing::warn!("TimescaleDB is available but cannot be loaded ({e}); using plain tables");
        return Ok(false);
    }
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
    client
        .batch_execute(
            "SELECT add_continuous_aggregate_policy('telemetry_1m', \
               start_offset => INTERVAL '3 hours', end_offset => INTERVAL '1 minute', \
               schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE)",
        )
        .await
        .map_err(sql("setting the continuous aggregate policy"))?;

    set_retention(client, "telemetry", config.retention_days).await?;
    set_retention(client, "telemetry_1m", config.aggregate_retention_days).await?;
    Ok(true)
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
    for f in NUMERIC_FIELDS {
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
    #[test]
    fn aggregate_has_all_four_statistics_per_field() {
        let sql = super::continuous_aggregate_sql();
        for f in super::NUMERIC_FIELDS {
            for s in ["count", "sum", "min", "max"] {
                assert!(sql.contains(&format!("AS {f}_{s}")), "{f}_{s}");
            }
        }
    }
}
