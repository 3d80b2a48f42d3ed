//! `POST /api/v1/tokens` (admin): a new API token with a role.

use ems_protocol::api::{NewToken, TokenCreated};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::{Route, State, post, routes};

use crate::auth::{Admin, create_api_token};
use crate::db::Db;
use crate::error::ApiResult;

/// `POST /api/v1/tokens` (admin): create an API token with a role.
#[post("/tokens", data = "<body>")]
async fn post_token(
    admin: Admin,
    db: &State<Db>,
    body: Json<NewToken>,
) -> ApiResult<(Status, Json<TokenCreated>)> {
    let token = create_api_token(db, &body.name, body.role, Some(&admin.0.name)).await?;
    tracing::info!(by = %admin.0.name, name = %body.name, role = %body.role, "API token created");
    Ok((
        Status::Created,
        Json(TokenCreated {
            name: body.name.clone(),
            role: body.role,
            token,
        }),
    ))
}

/// Mounted under `/api/v1`.
pub fn routes() -> Vec<Route> {
    routes![post_token]
}
