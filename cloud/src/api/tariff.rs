//! A device's tariff for the cloud planner (issue 17): `PUT /devices/<id>/tariff` replaces it
//! with a list of periods `{start, end, import_price, export_price}`, `GET` returns it. Stored
//! in the `tariffs` table (migration V6); plain SQL, the same on TimescaleDB and PostgreSQL.

use chrono::Datelike;
use ems_protocol::api::{Tariff, TariffPeriod};
use rocket::data::{Data, Limits};
use rocket::serde::json::Json;
use rocket::{Route, State, get, put, routes};

use super::body::read_json;
use super::ensure_device;
use crate::audit::{Action, Audit};
use crate::auth::{Operator, Viewer};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::planner::lp::MAX_PRICE;

/// Most periods in one tariff: a month of 15-minute prices.
pub const MAX_PERIODS: usize = 31 * 96;
/// Longest single period, days.
const MAX_PERIOD_DAYS: i64 = 31;

/// Checks periods before they are stored: each ends after it starts (within
/// [`MAX_PERIOD_DAYS`]), they come in time order without overlap, prices are finite and within
/// ±[`MAX_PRICE`], and there are at most [`MAX_PERIODS`].
pub fn validate(periods: &[TariffPeriod]) -> Result<(), ApiError> {
    if periods.len() > MAX_PERIODS {
        return Err(ApiError::bad_field(
            ".",
            format!(
                "{} tariff periods, at most {MAX_PERIODS} allowed",
                periods.len()
            ),
        ));
    }
    let bad = |i: usize, field: &str, why: String| ApiError::BadRequest {
        message: format!("periods[{i}].{field}: {why}"),
        field: Some(format!("[{i}].{field}")),
    };
    for (i, p) in periods.iter().enumerate() {
        for (field, t) in [("start", p.start), ("end", p.end)] {
            if !(1970..=9999).contains(&t.year()) {
                return Err(bad(i, field, format!("{t} is not between 1970 and 9999")));
            }
        }
        if p.end <= p.start {
            return Err(bad(
                i,
                "end",
                format!("{} is not after start {}", p.end, p.start),
            ));
        }
        if p.end - p.start > chrono::Duration::days(MAX_PERIOD_DAYS) {
            return Err(bad(i, "end", format!("longer than {MAX_PERIOD_DAYS} days")));
        }
        for (field, price) in [
            ("import_price", p.import_price),
            ("export_price", p.export_price),
        ] {
            if !price.is_finite() || price.abs() > MAX_PRICE {
                return Err(bad(i, field, format!("{price} is not within ±{MAX_PRICE}")));
            }
        }
        if let Some(prev) = i.checked_sub(1).map(|j| &periods[j])
            && p.start < prev.end
        {
            return Err(bad(
                i,
                "start",
                format!(
                    "{} is before the end {} of the period before (periods must be in time \
                     order and must not overlap)",
                    p.start, prev.end
                ),
            ));
        }
    }
    Ok(())
}

/// The stored periods of `device_id` that end after `from` and start before `to`, in order.
pub(crate) async fn periods(
    db: &Db,
    device_id: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> ApiResult<Vec<TariffPeriod>> {
    let client = db.pool.get().await?;
    let rows = client
        .query(
            "SELECT start_at, end_at, import_price, export_price FROM tariffs \
             WHERE device_id = $1 AND end_at > $2 AND start_at < $3 ORDER BY start_at",
            &[&device_id, &from, &to],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| TariffPeriod {
            start: r.get(0),
            end: r.get(1),
            import_price: r.get(2),
            export_price: r.get(3),
        })
        .collect())
}

/// `PUT /api/v1/devices/<id>/tariff` (operator): the body is a list of periods; it replaces the
/// device's tariff as a whole (an empty list clears it). Answers the stored tariff.
#[put("/devices/<device_id>/tariff", data = "<body>")]
async fn put_tariff(
    device_id: &str,
    operator: Operator,
    db: &State<Db>,
    audit: &State<Audit>,
    limits: &Limits,
    body: Data<'_>,
) -> ApiResult<Json<Tariff>> {
    ensure_device(db, &operator.0, device_id).await?;
    let periods: Vec<TariffPeriod> = read_json(body, limits, "").await?;
    validate(&periods)?;
    let mut client = db.pool.get().await?;
    let tx = client.transaction().await?;
    // One replacement per device at a time. Without it two simultaneous PUTs each delete the
    // old periods and insert their own: the second's inserts then collide with the first's
    // (a 500), or, with other start times, both tariffs stay, overlapping.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('ems tariff ' || $1, 0))",
        &[&device_id],
    )
    .await?;
    tx.execute("DELETE FROM tariffs WHERE device_id = $1", &[&device_id])
        .await?;
    if !periods.is_empty() {
        let starts: Vec<_> = periods.iter().map(|p| p.start).collect();
        let ends: Vec<_> = periods.iter().map(|p| p.end).collect();
        let imports: Vec<f64> = periods.iter().map(|p| p.import_price).collect();
        let exports: Vec<f64> = periods.iter().map(|p| p.export_price).collect();
        tx.execute(
            "INSERT INTO tariffs (device_id, start_at, end_at, import_price, export_price) \
             SELECT $1, * FROM unnest($2::timestamptz[], $3::timestamptz[], \
                 $4::float8[], $5::float8[])",
            &[&device_id, &starts, &ends, &imports, &exports],
        )
        .await?;
    }
    // A new tariff calls for a new plan where the device opted in (planner::replan).
    tx.execute(
        "UPDATE planner_settings SET change_seq = change_seq + 1 WHERE device_id = $1",
        &[&device_id],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        by = %operator.0.name,
        device = device_id,
        periods = periods.len(),
        "tariff replaced"
    );
    audit.record(operator.0.did(Action::TariffSet).device(device_id));
    Ok(Json(Tariff {
        device_id: device_id.to_string(),
        periods,
    }))
}

/// `GET /api/v1/devices/<id>/tariff` (viewer): every stored period, in time order (an empty
/// list when the device has no tariff).
#[get("/devices/<device_id>/tariff")]
async fn get_tariff(device_id: &str, viewer: Viewer, db: &State<Db>) -> ApiResult<Json<Tariff>> {
    ensure_device(db, &viewer.0, device_id).await?;
    let periods = periods(db, device_id, epoch(), far_future()).await?;
    Ok(Json(Tariff {
        device_id: device_id.to_string(),
        periods,
    }))
}

fn epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::UNIX_EPOCH
}

/// After any period [`validate`] lets in.
fn far_future() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(366 * 8100)
}

pub fn routes() -> Vec<Route> {
    routes![put_tariff, get_tariff]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::UNIX_EPOCH + chrono::Duration::days(20_000) + chrono::Duration::hours(h)
    }

    fn period(from_h: i64, to_h: i64, import_price: f64) -> TariffPeriod {
        TariffPeriod {
            start: at(from_h),
            end: at(to_h),
            import_price,
            export_price: 0.05,
        }
    }

    fn message(periods: &[TariffPeriod]) -> String {
        validate(periods).unwrap_err().to_string()
    }

    #[test]
    fn ordered_adjacent_periods_pass_and_the_rest_is_named() {
        validate(&[]).unwrap();
        validate(&[period(0, 6, 0.1), period(6, 17, 0.25), period(18, 21, 0.4)]).unwrap();
        assert!(message(&[period(0, 6, 0.1), period(5, 8, 0.2)]).contains("periods[1].start"));
        assert!(message(&[period(6, 8, 0.1), period(0, 6, 0.2)]).contains("periods[1].start"));
        assert!(message(&[period(6, 6, 0.1)]).contains("periods[0].end"));
        assert!(message(&[period(0, 24 * 40, 0.1)]).contains("31 days"));
        assert!(message(&[period(0, 1, f64::NAN)]).contains("periods[0].import_price"));
        let mut p = period(0, 1, 0.1);
        p.export_price = f64::INFINITY;
        assert!(message(&[p]).contains("periods[0].export_price"));
        assert!(message(&[period(0, 1, 1e5)]).contains("import_price"));
        let many: Vec<_> = (0..=MAX_PERIODS as i64)
            .map(|i| period(i, i + 1, 0.1))
            .collect();
        assert!(message(&many).contains("at most"));
    }
}
