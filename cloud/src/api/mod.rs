//! The REST API under `/api/v1`: routes only. Each module answers one group of endpoints and
//! leaves storing and delivery to the modules that own them ([`crate::commands`],
//! [`crate::db`], [`crate::auth`]).

pub mod commands;
pub mod dashboard;
pub mod devices;
pub mod health;
pub mod history;
pub mod tokens;

use rocket::Route;

use crate::db::Db;
use crate::error::{ApiError, ApiResult};

/// Every route of the REST API, mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    [
        health::routes(),
        tokens::routes(),
        devices::routes(),
        history::routes(),
        commands::routes(),
        dashboard::routes(),
    ]
    .concat()
}

/// `Ok` when `device_id` is registered, 404 otherwise.
pub(crate) async fn ensure_device(db: &Db, device_id: &str) -> ApiResult<()> {
    let client = db.pool.get().await?;
    client
        .query_opt("SELECT 1 FROM devices WHERE id = $1", &[&device_id])
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("no device {device_id:?}")))
}
