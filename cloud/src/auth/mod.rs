//! Tokens and who may do what.
//!
//! Tokens are 32 random bytes, base64url, behind a prefix that says what they are for
//! (`emsd_` device, `emsa_` API). Only their SHA-256 is stored (fine for high-entropy secrets);
//! a device token is compared in constant time with the hash stored for the device in the URL.
//! API tokens are found by their hash through a unique index: the lookup key is a hash of the
//! secret, so its timing tells nothing about the secret.
//!
//! Roles: viewer reads, operator also issues commands, admin also manages devices and tokens.
//! Every check runs behind the per-address failure throttle ([`throttle`]).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ems_protocol::api::Role;
use rand::RngCore;
use rocket::Request;
use rocket::request::{FromRequest, Outcome};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{Action, Entry};
use crate::db::Db;
use crate::error::{ApiError, ApiResult, remember};

mod throttle;

use throttle::throttled;
pub use throttle::{AuthThrottle, CONCURRENT_CHECKS};

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

/// Whether `token` has the shape [`generate_token`] gives with `prefix` (prefix, then 43
/// base64url characters). Anything else is refused without a database query.
pub fn well_formed(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
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
    /// When the token stops working (live feeds close then).
    pub expires_at: Option<DateTime<Utc>>,
    /// The devices it is limited to; `None`: every device. A token scoped by tags has here the
    /// devices it names plus every device with one of its tags, as of this authentication.
    pub devices: Option<Vec<String>>,
    /// The client's address.
    pub source: Option<IpAddr>,
}

impl ApiUser {
    /// Whether the token may see `device_id`.
    pub fn sees(&self, device_id: &str) -> bool {
        self.devices
            .as_ref()
            .is_none_or(|d| d.iter().any(|x| x == device_id))
    }

    /// An audit entry: this token did `action`.
    pub fn did(&self, action: Action) -> Entry {
        Entry::by(&self.name, self.role, self.source, action)
    }
}

/// The columns [`user_from_row`] reads, of `api_tokens t`: the scope resolved to device ids
/// (the named ones and those with one of the token's tags).
const USER_COLUMNS: &str = "t.name, t.role, t.expires_at, \
    CASE WHEN t.devices IS NULL AND t.tags IS NULL THEN NULL ELSE ARRAY( \
        SELECT unnest(coalesce(t.devices, '{}')) \
        UNION SELECT d.id FROM devices d WHERE d.tags && coalesce(t.tags, '{}')) END";

fn user_from_row(row: &tokio_postgres::Row, source: Option<IpAddr>) -> Result<ApiUser, ApiError> {
    let role: String = row.get(1);
    let expires_at: Option<DateTime<Utc>> = row.get(2);
    if let Some(at) = expires_at.filter(|at| *at <= Utc::now()) {
        return Err(ApiError::Unauthorized(format!(
            "API token expired at {}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    Ok(ApiUser {
        name: row.get(0),
        role: role
            .parse()
            .map_err(|e: String| ApiError::Internal(format!("stored role: {e}")))?,
        expires_at,
        devices: row.get(3),
        source,
    })
}

async fn lookup_api_token(
    db: &Db,
    token: &str,
    source: Option<IpAddr>,
) -> Result<ApiUser, ApiError> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {USER_COLUMNS} FROM api_tokens t \
                 WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
            ),
            &[&hash_token(token)],
        )
        .await?;
    let row = row.ok_or_else(|| ApiError::Unauthorized("unknown or revoked API token".into()))?;
    user_from_row(&row, source)
}

/// Prefix of live-feed tickets.
pub const TICKET_PREFIX: &str = "emst_";

/// Takes the single-use ticket for the live feed of `device_id`: the API token it was issued
/// to, if that token still works.
async fn redeem_ticket(
    db: &Db,
    ticket: &str,
    device_id: &str,
    source: Option<IpAddr>,
) -> Result<ApiUser, ApiError> {
    if !well_formed(ticket, TICKET_PREFIX) {
        return Err(ApiError::Unauthorized(format!(
            "malformed ticket: expected {TICKET_PREFIX} and 43 base64url characters"
        )));
    }
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "WITH taken AS (DELETE FROM live_tickets WHERE ticket_hash = $1 \
                   AND expires_at > now() AND device_id = $2 RETURNING token_name) \
                 SELECT {USER_COLUMNS} FROM api_tokens t \
                 WHERE t.name = (SELECT token_name FROM taken) AND t.revoked_at IS NULL"
            ),
            &[&hash_token(ticket), &device_id],
        )
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "unknown, used or expired ticket, or one for another device".into(),
            )
        })?;
    user_from_row(&row, source)
}

/// Issues a single-use ticket for `user` to open the live feed of `device_id` within `ttl`.
pub async fn issue_ticket(
    db: &Db,
    user: &ApiUser,
    device_id: &str,
    ttl: chrono::Duration,
) -> ApiResult<(String, DateTime<Utc>)> {
    let ticket = generate_token(TICKET_PREFIX);
    let expires_at = Utc::now() + ttl;
    let client = db.pool.get().await?;
    // Expired tickets go as new ones come: the table stays as small as the feeds being opened.
    client
        .execute(
            "DELETE FROM live_tickets WHERE expires_at < now() - interval '1 minute'",
            &[],
        )
        .await?;
    client
        .execute(
            "INSERT INTO live_tickets (ticket_hash, token_name, device_id, expires_at) \
             VALUES ($1, $2, $3, $4)",
            &[&hash_token(&ticket), &user.name, &device_id, &expires_at],
        )
        .await?;
    Ok((ticket, expires_at))
}

/// The API user of a request: from `Authorization: Bearer`, or for the live feed
/// (`allow_query`) from a `?ticket=` (or `?token=` when `live_query_token` allows it).
async fn authenticate(req: &Request<'_>, allow_query: bool) -> Result<ApiUser, ApiError> {
    let db = || {
        req.rocket()
            .state::<Db>()
            .ok_or_else(|| ApiError::Internal("database not managed".into()))
    };
    let query = |name: &str| {
        req.query_value::<&str>(name)
            .and_then(|r| r.ok())
            .filter(|_| allow_query)
    };
    if bearer(req).is_none()
        && let Some(ticket) = query("ticket")
    {
        let device_id = req.routed_segment(2).unwrap_or_default();
        return throttled(req, async {
            redeem_ticket(db()?, ticket, device_id, req.client_ip()).await
        })
        .await;
    }
    let query_token = query("token").filter(|_| {
        req.rocket()
            .state::<crate::config::CloudConfig>()
            .is_some_and(|c| c.live_query_token)
    });
    if bearer(req).is_none() && query_token.is_none() && query("token").is_some() {
        return Err(ApiError::Unauthorized(
            "`?token=` is off (live_query_token = false): API tokens stay out of URLs; get a \
             single-use ticket with POST /api/v1/devices/<id>/live-ticket and open the feed \
             with `?ticket=`"
                .into(),
        ));
    }
    let Some(token) = bearer(req).or(query_token) else {
        return Err(ApiError::Unauthorized(if allow_query {
            "missing API token: send `Authorization: Bearer <token>` or `?ticket=`".into()
        } else {
            "missing API token: send `Authorization: Bearer <token>`".into()
        }));
    };
    throttled(req, async {
        if !well_formed(token, API_TOKEN_PREFIX) {
            return Err(ApiError::Unauthorized(format!(
                "malformed API token: expected {API_TOKEN_PREFIX} and 43 base64url characters"
            )));
        }
        lookup_api_token(db()?, token, req.client_ip()).await
    })
    .await
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
    /// Any valid API token from the header, or a single-use `?ticket=` (browsers cannot set
    /// headers on WebSockets), or `?token=` where `live_query_token` allows it. Used by the
    /// live feed only.
    LiveViewer, Role::Viewer, true
);

/// A device token valid for the `<device_id>` of `/ws/device/<device_id>` (the third segment).
pub struct DeviceAuth {
    pub device_id: String,
    /// Set when the device used its previous token, which works until then (a rotation's grace
    /// period): the socket closes at that time.
    pub valid_until: Option<DateTime<Utc>>,
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
    throttled(req, check_device_token(req, device_id, token)).await
}

async fn check_device_token(
    req: &Request<'_>,
    device_id: String,
    token: &str,
) -> Result<DeviceAuth, ApiError> {
    if !well_formed(token, DEVICE_TOKEN_PREFIX) {
        return Err(ApiError::Unauthorized(format!(
            "malformed device token: expected {DEVICE_TOKEN_PREFIX} and 43 base64url characters"
        )));
    }
    let db = req
        .rocket()
        .state::<Db>()
        .ok_or_else(|| ApiError::Internal("database not managed".into()))?;
    let hash = hash_token(token);
    let client = db.pool.get().await?;
    let stored = client
        .query_opt(
            "SELECT token_hash, previous_token_hash, previous_valid_until, disabled_at \
             FROM devices WHERE id = $1",
            &[&device_id],
        )
        .await?;
    if let Some(row) = stored {
        let current: Vec<u8> = row.get(0);
        let previous: Option<Vec<u8>> = row.get(1);
        let previous_until: Option<DateTime<Utc>> = row.get(2);
        let disabled: Option<DateTime<Utc>> = row.get(3);
        let valid_until = if bool::from(current.ct_eq(&hash)) {
            Some(None)
        } else {
            match (previous, previous_until) {
                (Some(p), Some(until)) if bool::from(p.ct_eq(&hash)) && until > Utc::now() => {
                    Some(Some(until))
                }
                _ => None,
            }
        };
        if let Some(valid_until) = valid_until {
            if disabled.is_some() {
                return Err(ApiError::Forbidden(format!(
                    "device {device_id:?} is disabled"
                )));
            }
            return Ok(DeviceAuth {
                device_id,
                valid_until,
            });
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

/// Stores a new API token that never expires; returns it (the only time it is visible).
pub async fn create_api_token(
    db: &Db,
    name: &str,
    role: Role,
    created_by: Option<&str>,
) -> ApiResult<String> {
    crate::tokens::create(db, name, role, created_by, Default::default()).await
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
        assert!(well_formed(&a, API_TOKEN_PREFIX));
        assert!(!well_formed(&a, DEVICE_TOKEN_PREFIX));
        assert!(!well_formed(&a[..a.len() - 1], API_TOKEN_PREFIX));
        assert!(!well_formed(
            &format!("{}!", &a[..a.len() - 1]),
            API_TOKEN_PREFIX
        ));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }
}
