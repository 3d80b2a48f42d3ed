//! API tokens in the database: creating (with an optional expiry), listing without secrets,
//! revoking and rotating. Verifying a presented token is [`crate::auth`]'s job; closing the live
//! feeds of a revoked token is the hub's ([`crate::hub::Hub::publish_revocation`]).

use chrono::{DateTime, Datelike, Utc};
use ems_protocol::api::{Role, TokenCreated, TokenInfo};
use tokio_postgres::Row;

use crate::auth::{API_TOKEN_PREFIX, generate_token, hash_token};
use crate::db::Db;
use crate::error::{ApiError, ApiResult};

const COLUMNS: &str =
    "name, role, created_at, created_by, expires_at, revoked_at, revoked_by, devices, tags";

fn info(row: &Row) -> ApiResult<TokenInfo> {
    let role: String = row.get(1);
    Ok(TokenInfo {
        name: row.get(0),
        role: role
            .parse()
            .map_err(|e: String| ApiError::Internal(format!("stored role: {e}")))?,
        created_at: row.get(2),
        created_by: row.get(3),
        expires_at: row.get(4),
        revoked_at: row.get(5),
        revoked_by: row.get(6),
        devices: row.get(7),
        tags: row.get(8),
    })
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::bad_field("name", "must be 1 to 128 characters"));
    }
    // A name is shown in lists, logs and the audit trail: no line breaks, escapes or NUL bytes.
    if name.contains(char::is_control) {
        return Err(ApiError::bad_field(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// What a new API token may do, and until when.
#[derive(Debug, Default)]
pub struct Limits {
    pub expires_at: Option<DateTime<Utc>>,
    /// The devices it may see; every device when `None` (and `tags` too).
    pub devices: Option<Vec<String>>,
    /// It also sees the devices with one of these tags.
    pub tags: Option<Vec<String>>,
}

/// Most devices a token's `devices` scope may list: the list is checked on every request the
/// token makes; a larger group is a tag.
pub const MAX_SCOPE_DEVICES: usize = 1000;

/// Stores a new API token; returns its secret (the only time it is visible).
pub async fn create(
    db: &Db,
    name: &str,
    role: Role,
    created_by: Option<&str>,
    limits: Limits,
) -> ApiResult<String> {
    check_name(name)?;
    let Limits {
        expires_at,
        devices,
        tags,
    } = limits;
    for (field, scope) in [("devices", &devices), ("tags", &tags)] {
        let Some(scope) = scope else { continue };
        if role == Role::Admin {
            return Err(ApiError::bad_field(
                field,
                "admin tokens manage every device; scope viewer and operator tokens",
            ));
        }
        if scope.is_empty() {
            return Err(ApiError::bad_field(
                field,
                "name at least one, or leave it out for every device",
            ));
        }
    }
    if let Some(devices) = &devices {
        if devices.len() > MAX_SCOPE_DEVICES {
            return Err(ApiError::bad_field(
                "devices",
                format!(
                    "{} devices, at most {MAX_SCOPE_DEVICES}: scope larger groups by tags",
                    devices.len()
                ),
            ));
        }
        for d in devices {
            ems_protocol::validate_id("devices", d)?;
        }
    }
    let tags = tags
        .map(|t| ems_protocol::validate_tags("tags", &t))
        .transpose()?;
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::bad_field("expires_at", "must be in the future"));
    }
    // RFC 3339 has four-digit years: a later expiry would be listed as `+200000-…`, which
    // strict clients cannot read (and then cannot read the token list at all).
    if expires_at.is_some_and(|at| at.year() > 9999) {
        return Err(ApiError::bad_field(
            "expires_at",
            "must be before the year 10000",
        ));
    }
    let token = generate_token(API_TOKEN_PREFIX);
    let client = db.pool.get().await?;
    let inserted = client
        .execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_by, expires_at, devices, tags) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING",
            &[
                &name,
                &role.as_str(),
                &hash_token(&token),
                &created_by,
                &expires_at,
                &devices,
                &tags,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(ApiError::Conflict(format!(
            "an API token named {name:?} exists; revoke it first or rotate it"
        )));
    }
    Ok(token)
}

/// Live tokens by name; with `revoked`, revoked ones too (newest first after the live ones).
pub async fn list(db: &Db, revoked: bool) -> ApiResult<Vec<TokenInfo>> {
    let client = db.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM api_tokens WHERE $1 OR revoked_at IS NULL \
                 ORDER BY revoked_at DESC NULLS FIRST, name"
            ),
            &[&revoked],
        )
        .await?;
    rows.iter().map(info).collect()
}

/// Revokes the live token `name`; 404 when there is none.
pub async fn revoke(db: &Db, name: &str, by: &str) -> ApiResult<TokenInfo> {
    let client = db.pool.get().await?;
    revoke_on(&client, name, by).await
}

/// Marks the live token `name` revoked by `by`, on `client` (a connection or a transaction).
async fn revoke_on(
    client: &impl deadpool_postgres::GenericClient,
    name: &str,
    by: &str,
) -> ApiResult<TokenInfo> {
    let none = || ApiError::NotFound(format!("no live API token named {name:?}"));
    if check_name(name).is_err() {
        return Err(none());
    }
    let row = client
        .query_opt(
            &format!(
                "UPDATE api_tokens SET revoked_at = now(), revoked_by = $2 \
                 WHERE name = $1 AND revoked_at IS NULL RETURNING {COLUMNS}"
            ),
            &[&name, &by],
        )
        .await?
        .ok_or_else(none)?;
    info(&row)
}

/// Replaces the secret of the live token `name`: the old secret stops working now, the new one
/// keeps the name, role, expiry and scope. One transaction.
pub async fn rotate(db: &Db, name: &str, by: &str) -> ApiResult<TokenCreated> {
    let mut client = db.pool.get().await?;
    let tx = client.transaction().await?;
    let old = revoke_on(&tx, name, by).await?;
    let token = generate_token(API_TOKEN_PREFIX);
    tx.execute(
        "INSERT INTO api_tokens (name, role, token_hash, created_by, expires_at, devices, tags) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &name,
            &old.role.as_str(),
            &hash_token(&token),
            &by,
            &old.expires_at,
            &old.devices,
            &old.tags,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(TokenCreated {
        name: old.name,
        role: old.role,
        token,
        expires_at: old.expires_at,
    })
}
