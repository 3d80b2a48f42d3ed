//! The one error type of the REST API, and the catchers that give every failure a JSON body.

use ems_protocol::ProtocolError;
use ems_protocol::api::ApiErrorBody;
use rocket::http::Status;
use rocket::response::{self, Responder};
use rocket::serde::json::Json;
use rocket::{Catcher, Request, catch, catchers};
use tokio_postgres::error::SqlState;

pub type ApiResult<T> = Result<T, ApiError>;

/// Longest error message a response carries, characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// Why a request failed; becomes `{"error": "...", "field": ...}` with the matching status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached; the request may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// Too many failed authentications from this address; retry later.
    #[error("{0}")]
    TooManyRequests(String),
    /// The request body is over its limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn status(&self) -> Status {
        match self {
            ApiError::BadRequest { .. } => Status::BadRequest,
            ApiError::Unauthorized(_) => Status::Unauthorized,
            ApiError::Forbidden(_) => Status::Forbidden,
            ApiError::NotFound(_) => Status::NotFound,
            ApiError::Conflict(_) => Status::Conflict,
            ApiError::Unavailable(_) => Status::ServiceUnavailable,
            ApiError::TooManyRequests(_) => Status::TooManyRequests,
            ApiError::TooLarge(_) => Status::PayloadTooLarge,
            ApiError::Internal(_) => Status::InternalServerError,
        }
    }

    /// The JSON body; its message is cut to [`MAX_MESSAGE_CHARS`] (a refusal may quote the
    /// value it refuses, and that value may be a megabyte long).
    fn body(&self) -> ApiErrorBody {
        let mut error = self.to_string();
        if let Some((cut, _)) = error.char_indices().nth(MAX_MESSAGE_CHARS) {
            error.truncate(cut);
            error.push('…');
        }
        ApiErrorBody {
            error,
            field: match self {
                ApiError::BadRequest { field, .. } => field.clone(),
                _ => None,
            },
        }
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        ApiError::bad_field(e.field().to_string(), e.to_string())
    }
}

/// The log gets all of what PostgreSQL said (message, detail, hint, SQLSTATE); the response
/// only that the database failed, never its text (it may name tables, constraints, values).
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let described = crate::db::describe(&e);
        // Text PostgreSQL cannot store (a NUL byte): the request's fault, not the server's.
        // The routes check their values first and name the field; this catches what they miss.
        if e.code().is_some_and(|c| {
            *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER
        }) {
            tracing::warn!("database refused a value of the request: {described}");
            return ApiError::bad_request(
                "a value of the request contains a character that cannot be stored (a NUL byte)",
            );
        }
        if e.is_closed() || e.as_db_error().is_none() {
            tracing::warn!("database unavailable: {described}");
            ApiError::Unavailable("database unavailable; retry later".into())
        } else {
            tracing::error!("database error: {described}");
            ApiError::Internal("database error (see the server log)".into())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!("database pool: {e}");
        ApiError::Unavailable("database unavailable; retry later".into())
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let status = self.status();
        response::Response::build_from(Json(self.body()).respond_to(req)?)
            .status(status)
            .ok()
    }
}

/// Request guards store their refusal here so the catcher can show it.
pub(crate) fn remember(req: &Request<'_>, err: ApiError) -> ApiError {
    let stored = req.local_cache(|| Some(err.clone()));
    stored.clone().unwrap_or(err)
}

fn from_catcher(status: Status, req: &Request<'_>) -> ApiError {
    if let Some(err) = req.local_cache(|| None::<ApiError>) {
        return err.clone();
    }
    let reason = status.reason_lossy().to_string();
    match status.code {
        400 | 422 => ApiError::bad_request(format!("{reason}: the request could not be read")),
        401 => ApiError::Unauthorized("missing or unknown bearer token".into()),
        413 => ApiError::TooLarge(format!("{reason}: the body is over its limit")),
        403 => ApiError::Forbidden("forbidden".into()),
        404 => ApiError::NotFound(format!(
            "no route for {} {}",
            req.method(),
            req.uri().path()
        )),
        503 => ApiError::Unavailable(reason),
        _ => ApiError::Internal(reason),
    }
}

#[catch(default)]
fn default_catcher(status: Status, req: &Request<'_>) -> (Status, Json<ApiErrorBody>) {
    let err = from_catcher(status, req);
    (status, Json(err.body()))
}

pub fn catchers() -> Vec<Catcher> {
    catchers![default_catcher]
}
