//! Telemetry history: raw packets or time buckets (avg, min, max per field).
//!
//! Buckets are aligned to [`ORIGIN`] with `date_bin`, on both storage paths: on plain PostgreSQL
//! they are computed from the raw table; with TimescaleDB, buckets that are whole minutes are
//! recomputed from the per-minute continuous aggregate (`sum(sum) / sum(count)`, `min(min)`,
//! `max(max)`), which gives the same answers. The range is widened to whole buckets so both
//! paths cover the same packets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ems_protocol::api::{BucketPoint, FieldStats, History, RawPoint};
use ems_protocol::duration::{self, align_down, align_up};
use ems_protocol::{Battery, ErrorFlag, Grid, SystemStatus, Telemetry};
use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};
use serde_json::Value;
use tokio_postgres::Row;

use super::ensure_device;
use crate::auth::Viewer;
use crate::config::CloudConfig;
use crate::db::Db;
use crate::db::columns::NUMERIC_FIELDS;
use crate::error::{ApiError, ApiResult};

/// Longest bucket, s (31 days).
const MAX_BUCKET_S: i64 = 31 * 86_400;
/// Default range when `from` is absent: the hour before `to`.
const DEFAULT_RANGE_S: i64 = 3600;

/// Non-numeric fields a raw history may select.
const TEXT_FIELDS: &[&str] = &["state", "mode", "error_flags"];

/// Rebuilds a spec packet from a row that has the [`SPEC`](crate::db::columns::SPEC) columns.
pub fn telemetry_from_row(row: &Row) -> ApiResult<Telemetry> {
    let bad = |e: ems_protocol::ProtocolError| ApiError::Internal(format!("stored telemetry: {e}"));
    let time: DateTime<Utc> = row.get("time");
    let state: String = row.get("state");
    let mode: String = row.get("mode");
    let flags: Vec<String> = row.get("error_flags");
    Ok(Telemetry {
        device_id: row.get("device_id"),
        timestamp: ems_protocol::Timestamp::truncating(time),
        system_status: SystemStatus {
            state: state.parse().map_err(bad)?,
            mode: mode.parse().map_err(bad)?,
            error_flags: flags
                .iter()
                .map(|f| f.parse::<ErrorFlag>())
                .collect::<Result<_, _>>()
                .map_err(bad)?,
            wifi_strength: row.get("wifi_strength"),
            schedule: None,
        },
        battery: Battery {
            voltage: row.get("battery_voltage"),
            current: row.get("battery_current"),
            power: row.get("battery_power"),
            soc: row.get("battery_soc"),
        },
        grid: Grid {
            voltage: row.get("grid_voltage"),
            power: row.get("grid_power"),
            frequency: row.get("grid_frequency"),
        },
        site: None,
    })
}

pub fn parse_time(field: &str, s: &str) -> ApiResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ApiError::bad_field(field, format!("{s:?} is not an RFC 3339 time: {e}")))
}

/// A bucket width in the grammar of [`ems_protocol::duration`], 1 s to 31 days.
pub fn parse_bucket(s: &str) -> ApiResult<i64> {
    let secs =
        duration::parse_seconds(s).map_err(|e| ApiError::bad_field("bucket", e.to_string()))?;
    if !(1..=MAX_BUCKET_S).contains(&secs) {
        return Err(ApiError::bad_field(
            "bucket",
            format!("must be 1 s to {MAX_BUCKET_S} s"),
        ));
    }
    Ok(secs)
}

fn parse_fields(fields: Option<&str>, bucketed: bool) -> ApiResult<Vec<String>> {
    let Some(list) = fields.filter(|f| !f.trim().is_empty()) else {
        let mut all: Vec<String> = NUMERIC_FIELDS.iter().map(|f| f.to_string()).collect();
        if !bucketed {
            all.extend(TEXT_FIELDS.iter().map(|f| f.to_string()));
        }
        return Ok(all);
    };
    let mut out = Vec::new();
    for f in list.split(',').map(str::trim) {
        let numeric = NUMERIC_FIELDS.contains(&f);
        let text = TEXT_FIELDS.contains(&f);
        if !numeric && !text {
            return Err(ApiError::bad_field(
                "fields",
                format!(
                    "unknown field {f:?}; choose from {}, {}",
                    NUMERIC_FIELDS.join(", "),
                    TEXT_FIELDS.join(", ")
                ),
            ));
        }
        if text && bucketed {
            return Err(ApiError::bad_field(
                "fields",
                format!("{f:?} cannot be averaged; buckets take numeric fields only"),
            ));
        }
        if !out.iter().any(|o| o == f) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// The query parameters, checked.
pub struct HistoryQuery {
    pub device_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket_s: Option<i64>,
    pub fields: Vec<String>,
    pub limit: i64,
}

pub async fn query(db: &Db, q: &HistoryQuery) -> ApiResult<History> {
    match q.bucket_s {
        None => raw(db, q).await,
        Some(b) => bucketed(db, q, b).await,
    }
}

async fn raw(db: &Db, q: &HistoryQuery) -> ApiResult<History> {
    let sql = format!(
        "SELECT time, {} FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3 \
         ORDER BY time LIMIT $4",
        q.fields.join(", ")
    );
    let client = db.read_pool.get().await?;
    let rows = client
        .query(&sql, &[&q.device_id, &q.from, &q.to, &(q.limit + 1)])
        .await?;
    let truncated = rows.len() as i64 > q.limit;
    let points = rows
        .iter()
        .take(q.limit as usize)
        .map(|r| {
            let mut values = BTreeMap::new();
            for (i, f) in q.fields.iter().enumerate() {
                let idx = i + 1;
                let v = match f.as_str() {
                    "state" | "mode" => Value::String(r.get(idx)),
                    "error_flags" => Value::from(r.get::<_, Vec<String>>(idx)),
                    "wifi_strength" => r
                        .get::<_, Option<i32>>(idx)
                        .map_or(Value::Null, Value::from),
                    _ => r
                        .get::<_, Option<f64>>(idx)
                        .map_or(Value::Null, Value::from),
                };
                values.insert(f.clone(), v);
            }
            RawPoint {
                time: r.get(0),
                values,
            }
        })
        .collect();
    Ok(History {
        device_id: q.device_id.clone(),
        from: q.from,
        to: q.to,
        bucket_s: None,
        fields: q.fields.clone(),
        points,
        buckets: Vec::new(),
        truncated,
    })
}

async fn bucketed(db: &Db, q: &HistoryQuery, bucket_s: i64) -> ApiResult<History> {
    let from = align_down(q.from, bucket_s);
    let to = align_up(q.to, bucket_s);
    let from_aggregate = db.timescale && bucket_s % 60 == 0;
    let mut cols = String::new();
    for f in &q.fields {
        if from_aggregate {
            cols.push_str(&format!(
                ", (sum({f}_sum)::float8 / nullif(sum({f}_count), 0))::float8, \
                 min({f}_min)::float8, max({f}_max)::float8"
            ));
        } else {
            cols.push_str(&format!(
                ", avg({f})::float8, min({f})::float8, max({f})::float8"
            ));
        }
    }
    let sql = if from_aggregate {
        format!(
            "SELECT date_bin(make_interval(secs => $2), bucket, $5) AS b, sum(n)::int8{cols} \
             FROM telemetry_1m WHERE device_id = $1 AND bucket >= $3 AND bucket < $4 \
             GROUP BY b ORDER BY b LIMIT $6"
        )
    } else {
        format!(
            "SELECT date_bin(make_interval(secs => $2), time, $5) AS b, count(*){cols} \
             FROM telemetry WHERE device_id = $1 AND time >= $3 AND time < $4 \
             GROUP BY b ORDER BY b LIMIT $6"
        )
    };
    let client = db.read_pool.get().await?;
    let rows = client
        .query(
            &sql,
            &[
                &q.device_id,
                &(bucket_s as f64),
                &from,
                &to,
                &duration::bucket_origin(),
                &(q.limit + 1),
            ],
        )
        .await?;
    let truncated = rows.len() as i64 > q.limit;
    let buckets = rows
        .iter()
        .take(q.limit as usize)
        .map(|r| {
            let mut values = BTreeMap::new();
            for (i, f) in q.fields.iter().enumerate() {
                let base = 2 + 3 * i;
                let avg: Option<f64> = r.get(base);
                let stats = avg.map(|avg| FieldStats {
                    avg,
                    min: r.get::<_, Option<f64>>(base + 1).unwrap_or(avg),
                    max: r.get::<_, Option<f64>>(base + 2).unwrap_or(avg),
                });
                values.insert(f.clone(), stats);
            }
            BucketPoint {
                time: r.get(0),
                count: r.get(1),
                values,
            }
        })
        .collect();
    Ok(History {
        device_id: q.device_id.clone(),
        from,
        to,
        bucket_s: Some(bucket_s),
        fields: q.fields.clone(),
        points: Vec::new(),
        buckets,
        truncated,
    })
}

/// `GET /api/v1/devices/<id>/telemetry?from=&to=&bucket=&fields=&limit=` (viewer).
#[get("/devices/<device_id>/telemetry?<from>&<to>&<bucket>&<fields>&<limit>")]
#[allow(clippy::too_many_arguments)]
async fn history(
    device_id: &str,
    from: Option<&str>,
    to: Option<&str>,
    bucket: Option<&str>,
    fields: Option<&str>,
    limit: Option<&str>,
    viewer: Viewer,
    db: &State<Db>,
    config: &State<CloudConfig>,
) -> ApiResult<Json<History>> {
    let limit: Option<i64> = super::query("limit", limit)?;
    ensure_device(db, &viewer.0, device_id).await?;
    let to = match to {
        Some(s) => parse_time("to", s)?,
        None => Utc::now(),
    };
    let from = match from {
        Some(s) => parse_time("from", s)?,
        None => to - chrono::Duration::seconds(DEFAULT_RANGE_S),
    };
    if from >= to {
        return Err(ApiError::bad_field("from", "must be before `to`"));
    }
    let bucket_s = bucket.map(parse_bucket).transpose()?;
    let max = config.history_max_points as i64;
    let limit = limit.unwrap_or(max.min(1000));
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_field("limit", format!("must be 1 to {max}")));
    }
    if let Some(b) = bucket_s {
        let n = (align_up(to, b) - align_down(from, b)).num_seconds() / b;
        if n > max {
            return Err(ApiError::bad_field(
                "bucket",
                format!("{n} buckets in this range, at most {max}; choose a larger bucket"),
            ));
        }
    }
    let q = HistoryQuery {
        device_id: device_id.to_string(),
        from,
        to,
        bucket_s,
        fields: parse_fields(fields, bucket_s.is_some())?,
        limit,
    };
    Ok(Json(query(db, &q).await?))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![history]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_parse_with_units() {
        assert_eq!(parse_bucket("90").unwrap(), 90);
        assert_eq!(parse_bucket("15m").unwrap(), 900);
        assert_eq!(parse_bucket("1h").unwrap(), 3600);
        assert_eq!(parse_bucket("1d").unwrap(), 86_400);
        assert!(parse_bucket("0s").is_err());
        assert!(parse_bucket("5y").is_err());
        assert_eq!(parse_bucket("31d").unwrap(), 31 * 86_400);
        assert!(parse_bucket("32d").is_err());
    }

    #[test]
    fn text_fields_cannot_be_bucketed() {
        assert!(parse_fields(Some("state"), true).is_err());
        assert_eq!(
            parse_fields(Some("state,battery_soc"), false)
                .unwrap()
                .len(),
            2
        );
        assert!(parse_fields(Some("battery_temp"), false).is_err());
    }
}
