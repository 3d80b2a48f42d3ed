//! Tokens and who may do what.
//!
//! Tokens are 32 random bytes, base64url, behind a prefix that says what they are for
//! (`emsd_` device, `emsa_` API). Only their SHA-256 is stored (fine for high-entropy secrets);
//! a device token is compared in constant time with the hash stored for the device in the URL.
//! API tokens are found by their hash through a unique index: the lookup key is a hash of the
//! secret, so its timing tells nothing about the secret.
//!
//! Roles: viewer reads, operator also issues commands, admin also manages devices and tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ems_protocol::api::{NewToken, Role, TokenCreated};
use rand::RngCore;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome};
use rocket::serde::json::Json;
use rocket::{Request, Route, State, post, routes};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::Db;
use crate::error::{ApiError, ApiResult, remember};

pub const DEVICE_TOKEN_PREFIX: &str = "emsd_";
pub const API_TOKEN_PREFIX: &str = "emsa_";

/// A new random token with `prefix`.
pub fn generate_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn bearer<'a>(req: &'a Request<'_>) -> Option<&'a str> {
    let header = req.headers().get_one("Authorization")?;
    let (scheme, token) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The API token a request carries, as authenticated.
#[derive(Debug, Clone)]
pub struct ApiUser {
    /// The token's name; recorded as `issued_by` of commands.
    pub name: String,
    pub role: Role,
}

async fn lookup_api_token(db: &Db, token: &str) -> Result<ApiUser, ApiError> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            "SELECT name, role FROM api_tokens WHERE token_hash = $1",
            &[&hash_token(token)],
        )
        .await?;
    let row = row.ok_or_else(|| ApiError::Unauthorized("unknown API token".into()))?;
    let role: String = row.get(1);
    Ok(ApiUser {
        name: row.get(0),
        role: role
            .parse()
            .map_err(|e: String| ApiError::Internal(format!("stored role: {e}")))?,
    })
}

async fn authenticate(req: &Request<'_>, allow_query: bool) -> Result<ApiUser, ApiError> {
    let from_query = || {
        req.query_value::<&str>("token")
            .and_then(|r| r.ok())
            .filter(|_| allow_query)
    };
    let Some(token) = bearer(req).or_else(from_query) else {
        return Err(ApiError::Unauthorized(if allow_query {
            "missing API token: send `Authorization: Bearer <token>` or `?token=`".into()
        } else {
            "missing API token: send `Authorization: Bearer <token>`".into()
        }));
    };
    let db = req
        .rocket()
        .state::<Db>()
        .ok_or_else(|| ApiError::Internal("database not managed".into()))?;
    lookup_api_token(db, token).await
}

fn outcome<T>(req: &Request<'_>, result: Result<T, ApiError>) -> Outcome<T, ApiError> {
    match result {
        Ok(v) => Outcome::Success(v),
        Err(e) => {
            let status = e.status();
            Outcome::Error((status, remember(req, e)))
        }
    }
}

async fn require(req: &Request<'_>, role: Role, allow_query: bool) -> Result<ApiUser, ApiError> {
    let user = authenticate(req, allow_query).await?;
    if user.role < role {
        return Err(ApiError::Forbidden(format!(
            "token {:?} has role {}, this needs {role}",
            user.name, user.role
        )));
    }
    Ok(user)
}

macro_rules! role_guard {
    ($(#[$m:meta])* $name:ident, $role:expr, $query:expr) => {
        $(#[$m])*
        pub struct $name(pub ApiUser);

        #[rocket::async_trait]
        impl<'r> FromRequest<'r> for $name {
            type Error = ApiError;
            async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
                let result = require(req, $role, $query).await.map($name);
                outcome(req, result)
            }
        }
    };
}

role_guard!(
    /// Any valid API token (header only).
    Viewer, Role::Viewer, false
);
role_guard!(
    /// An operator or admin token.
    Operator, Role::Operator, false
);
role_guard!(
    /// An admin token.
    Admin, Role::Admin, false
);
role_guard!(
    /// Any valid API token from the header or the `?token=` query (browsers cannot set headers on
    /// WebSockets). Used by the live feed only, so tokens do not end up in other URLs.
    LiveViewer, Role::Viewer, true
);

/// A device token valid for the `<device_id>` of `/ws/device/<device_id>` (the third segment).
pub struct DeviceAuth {
    pub device_id: String,
}

async fn authenticate_device(req: &Request<'_>) -> Result<DeviceAuth, ApiError> {
    let device_id = match req.routed_segment(2) {
        Some(id) => id.to_string(),
        None => return Err(ApiError::bad_request("missing device id")),
    };
    let Some(token) = bearer(req) else {
        return Err(ApiError::Unauthorized(
            "missing device token: send `Authorization: Bearer <token>`".into(),
        ));
    };
    let db = req
        .rocket()
        .state::<Db>()
        .ok_or_else(|| ApiError::Internal("database not managed".into()))?;
    let hash = hash_token(token);
    let client = db.pool.get().await?;
    let stored = client
        .query_opt(
            "SELECT token_hash FROM devices WHERE id = $1",
            &[&device_id],
        )
        .await?;
    if let Some(row) = stored {
        let stored: Vec<u8> = row.get(0);
        if bool::from(stored.ct_eq(&hash)) {
            return Ok(DeviceAuth { device_id });
        }
    }
    // Not this device's token: someone else's (403) or nobody's (401)?
    let other = client
        .query_opt("SELECT id FROM devices WHERE token_hash = $1", &[&hash])
        .await?;
    match other {
        Some(_) => Err(ApiError::Forbidden(format!(
            "this token belongs to another device, not {device_id:?}"
        ))),
        None => Err(ApiError::Unauthorized("unknown device token".into())),
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for DeviceAuth {
    type Error = ApiError;
    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let result = authenticate_device(req).await;
        outcome(req, result)
    }
}

/// Stores a new API token; returns it (the only time it is visible).
pub async fn create_api_token(
    db: &Db,
    name: &str,
    role: Role,
    created_by: Option<&str>,
) -> ApiResult<String> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::bad_field("name", "must be 1 to 128 characters"));
    }
    let token = generate_token(API_TOKEN_PREFIX);
    let client = db.pool.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
            &[&name, &role.as_str(), &hash_token(&token), &created_by],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "an API token named {name:?} exists"
        )));
    }
    Ok(token)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hash_to_32_bytes() {
        let a = generate_token(API_TOKEN_PREFIX);
        let b = generate_token(API_TOKEN_PREFIX);
        assert!(a.starts_with("emsa_") && a.len() == 5 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 32);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }
}
