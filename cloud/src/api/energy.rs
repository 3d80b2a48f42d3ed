//! `GET /api/v1/devices/<id>/energy?from=&to=&bucket=`: kWh charged into and discharged from the
//! battery, imported from and exported to the grid, per bucket (default a UTC day), integrated
//! in SQL from the stored packets.
//!
//! Each packet stands for the time until the next one (its power held), as long as that gap is
//! at most `MAX_GAP_S`; before a longer gap (the device was offline) and at the end of the range
//! it stands for its own second only. So a dropped packet is bridged, an outage is not invented.
//! The same query runs on TimescaleDB and plain PostgreSQL.
//!
//! With the agent's `site` extension (PV and house power) it also integrates PV produced and house
//! consumed, and the two ratios owners ask for: self-consumption (PV used on site, 1 − exported /
//! PV) and self-sufficiency (house use not imported, 1 − imported / house), each over the seconds
//! that carry the reading.

use chrono::Utc;
use ems_protocol::api::{Energy, EnergyBucket};
use ems_protocol::duration::{align_down, align_up, bucket_origin};
use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};

use super::ensure_device;
use super::history::parse_time;
use crate::auth::Viewer;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// Longest gap between packets bridged by holding power, s.
const MAX_GAP_S: i64 = 10;
/// Default and largest bucket, s.
const DAY_S: i64 = 86_400;
/// Most buckets one request may ask for.
const MAX_BUCKETS: i64 = 400;

const ENERGY: &str = "\
WITH s AS ( \
    SELECT time, battery_power AS bp, grid_power AS gp, \
        CASE WHEN jsonb_typeof(extensions->'site'->'pv_power') = 'number' \
              AND (extensions->'site'->'pv_power')::numeric BETWEEN 0 AND 1e8 \
             THEN (extensions->'site'->'pv_power')::numeric::float8 END AS pv, \
        CASE WHEN jsonb_typeof(extensions->'site'->'house_power') = 'number' \
              AND (extensions->'site'->'house_power')::numeric BETWEEN 0 AND 1e8 \
             THEN (extensions->'site'->'house_power')::numeric::float8 END AS hp, \
        extract(epoch FROM lead(time) OVER (ORDER BY time) - time)::float8 AS dt \
    FROM telemetry WHERE device_id = $1 AND time >= $2 AND time < $3 \
), w AS ( \
    SELECT time, bp, gp, pv, hp, \
        CASE WHEN dt IS NULL OR dt > $5 THEN 1.0 ELSE dt END AS secs FROM s \
) \
SELECT date_bin(make_interval(secs => $4), time, $6) AS bucket, \
    sum(greatest(bp, 0) * secs) / 3.6e6, sum(greatest(-bp, 0) * secs) / 3.6e6, \
    sum(greatest(gp, 0) * secs) / 3.6e6, sum(greatest(-gp, 0) * secs) / 3.6e6, sum(secs), \
    sum(pv * secs) / 3.6e6, sum(hp * secs) / 3.6e6, \
    sum(greatest(-gp, 0) * secs) FILTER (WHERE pv IS NOT NULL) / 3.6e6, \
    sum(greatest(gp, 0) * secs) FILTER (WHERE hp IS NOT NULL) / 3.6e6 \
FROM w GROUP BY bucket ORDER BY bucket";

/// The share of `total` that is not `away`, 0 to 1; `None` without a total.
fn share(total: Option<f64>, away: Option<f64>) -> Option<f64> {
    let total = total.filter(|t| *t > 0.0)?;
    Some(((total - away.unwrap_or(0.0)) / total).clamp(0.0, 1.0))
}

#[get("/devices/<device_id>/energy?<from>&<to>&<bucket>")]
async fn energy(
    device_id: &str,
    from: Option<&str>,
    to: Option<&str>,
    bucket: Option<&str>,
    viewer: Viewer,
    db: &State<Db>,
) -> ApiResult<Json<Energy>> {
    ensure_device(db, &viewer.0, device_id).await?;
    let bucket_s = match bucket {
        None => DAY_S,
        Some(b) => {
            let s = ems_protocol::duration::parse_seconds(b)
                .map_err(|e| ApiError::bad_field("bucket", e.to_string()))?;
            if !(60..=31 * DAY_S).contains(&s) {
                return Err(ApiError::bad_field("bucket", "must be 1 min to 31 days"));
            }
            s
        }
    };
    let to = match to {
        Some(s) => parse_time("to", s)?,
        None => Utc::now(),
    };
    let from = match from {
        Some(s) => parse_time("from", s)?,
        None => to - chrono::Duration::seconds(DAY_S),
    };
    if from >= to {
        return Err(ApiError::bad_field("from", "must be before `to`"));
    }
    let (from, to) = (align_down(from, bucket_s), align_up(to, bucket_s));
    if (to - from).num_seconds() / bucket_s > MAX_BUCKETS {
        return Err(ApiError::bad_field(
            "bucket",
            format!("more than {MAX_BUCKETS} buckets in this range; choose a larger bucket"),
        ));
    }
    let client = db.read_pool.get().await?;
    let rows = client
        .query(
            ENERGY,
            &[
                &device_id,
                &from,
                &to,
                &(bucket_s as f64),
                &(MAX_GAP_S as f64),
                &bucket_origin(),
            ],
        )
        .await?;
    let buckets = rows
        .iter()
        .map(|r| EnergyBucket {
            time: r.get(0),
            charged_kwh: r.get::<_, Option<f64>>(1).unwrap_or(0.0),
            discharged_kwh: r.get::<_, Option<f64>>(2).unwrap_or(0.0),
            imported_kwh: r.get::<_, Option<f64>>(3).unwrap_or(0.0),
            exported_kwh: r.get::<_, Option<f64>>(4).unwrap_or(0.0),
            covered_s: r.get::<_, Option<f64>>(5).unwrap_or(0.0),
            pv_kwh: r.get(6),
            house_kwh: r.get(7),
            // PV not exported was used on site; house use not imported came from PV or battery.
            self_consumption: share(r.get(6), r.get(8)),
            self_sufficiency: share(r.get(7), r.get(9)),
        })
        .collect();
    Ok(Json(Energy {
        device_id: device_id.to_string(),
        from,
        to,
        bucket_s,
        max_gap_s: MAX_GAP_S,
        buckets,
    }))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![energy]
}
