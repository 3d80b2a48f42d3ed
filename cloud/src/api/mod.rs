//! The REST API under `/api/v1`: routes only. Each module answers one group of endpoints and
//! leaves storing and delivery to the modules that own them ([`crate::commands`],
//! [`crate::db`], [`crate::auth`]).

pub mod alerts;
pub mod body;
pub mod commands;
pub mod dashboard;
pub mod device_access;
pub mod devices;
pub mod energy;
pub mod health;
pub mod history;
pub mod plan;
pub mod planner;
pub mod schedule;
pub mod tariff;
pub mod tokens;

use rocket::Route;

use crate::auth::ApiUser;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// Every route of the REST API, mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    [
        health::routes(),
        tokens::routes(),
        devices::routes(),
        device_access::routes(),
        history::routes(),
        energy::routes(),
        commands::routes(),
        schedule::routes(),
        tariff::routes(),
        plan::routes(),
        planner::routes(),
        dashboard::routes(),
        alerts::routes(),
    ]
    .concat()
}

/// A query parameter read strictly: absent is `None`, a value that does not parse is a 400
/// naming it. (Rocket reads an `Option<i64>` that does not parse as absent, so `limit=abc` or
/// `grace_s=1h` would silently become the default.)
pub(crate) fn query<T: std::str::FromStr>(
    field: &str,
    value: Option<&str>,
) -> ApiResult<Option<T>> {
    value
        .map(|v| {
            v.parse::<T>().map_err(|_| {
                ApiError::bad_field(field, format!("{field}: {v:?} is not a valid value"))
            })
        })
        .transpose()
}

/// `Ok` when `device_id` is registered and `user` may see it, 404 otherwise (the same answer
/// for both, so a scoped token learns nothing of the devices outside its scope).
pub(crate) async fn ensure_device(db: &Db, user: &ApiUser, device_id: &str) -> ApiResult<()> {
    // An id that could never be registered (a NUL byte, 5000 bytes) is not looked up.
    if !user.sees(device_id) || ems_protocol::validate_id("device_id", device_id).is_err() {
        return Err(ApiError::NotFound(format!("no device {device_id:?}")));
    }
    let client = db.pool.get().await?;
    client
        .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&device_id])
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("no device {device_id:?}")))
}
