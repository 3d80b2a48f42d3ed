//! `GET /api/v1/health` and the OpenAPI document `GET /api/v1/openapi.json` (no token needed).

use std::sync::Arc;

use ems_protocol::api::Health;
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::{Route, State, get, routes};

use crate::db::Db;
use crate::hub::Hub;

/// The hand-written OpenAPI 3 description of `/api/v1` and the two sockets.
pub const OPENAPI: &str = include_str!("openapi.json");

#[get("/health")]
async fn health(db: &State<Db>, hub: &State<Arc<Hub>>) -> (Status, Json<Health>) {
    let database = match db.pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    let body = Health {
        status: if database { "ok" } else { "degraded" }.into(),
        database,
        timescale: db.timescale,
        storage: db.storage.clone(),
        instance: hub.instance_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let status = if database {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    (status, Json(body))
}

#[get("/openapi.json")]
fn openapi() -> (ContentType, &'static str) {
    (ContentType::JSON, OPENAPI)
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![health, openapi]
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_is_json_and_describes_every_mounted_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let routes = crate::api::routes();
        assert!(routes.len() >= 17, "{} routes", routes.len());
        for route in routes {
            // `/devices/<device_id>/commands` → `/devices/{device_id}/commands`
            let path = route.uri.path().replace('<', "{").replace('>', "}");
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                paths.get(&path).and_then(|p| p.get(&method)).is_some(),
                "{method} {path} is mounted but not in openapi.json"
            );
        }
    }
}
