//! The REST client: one reqwest client with the token, the base URL and the trusted CAs, and
//! the mapping from HTTP failures to [`Failure`]s with exit codes and hints.

use std::time::Duration;

use ems_protocol::api::ApiErrorBody;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exit::{Exit, Failure};
use crate::settings::Settings;
use crate::tls;

/// Talks to `<url>/api/v1`.
pub struct Api {
    http: reqwest::Client,
    /// Server base URL without a trailing slash (`https://ems.example.com`).
    pub base: String,
    token: String,
}

/// How long to wait for a TCP/TLS connection before giving up with exit code 3.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Api {
    pub fn new(settings: &Settings) -> Result<Api, Failure> {
        let base = settings.url()?.to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "server URL {base:?} must start with http:// or https://"
            )));
        }
        let token = settings.token()?.to_string();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("emsctl/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            for cert in tls::reqwest_certificates(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure::connection(format!("HTTP client: {}", chain(&e))))?;
        Ok(Api { http, base, token })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Failure> {
        self.send(self.request(Method::GET, path).query(query))
            .await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &B,
    ) -> Result<T, Failure> {
        self.send(self.request(Method::POST, path).query(query).json(body))
            .await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.send(self.request(Method::DELETE, path)).await
    }

    /// Like [`get`](Self::get), but a 404 is `Ok(None)` (e.g. no telemetry stored yet).
    pub async fn get_optional<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, Failure> {
        self.send_inner(self.request(Method::GET, path), true).await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Failure> {
        let answer = self.send_inner(request, false).await?;
        Ok(answer.expect("only a 404 gives None, and only when asked for"))
    }

    async fn send_inner<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        none_on_404: bool,
    ) -> Result<Option<T>, Failure> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if none_on_404 && status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let url = response.url().path().to_string();
        let text = response.text().await.map_err(|e| self.transport(&e))?;
        if status.is_success() {
            return serde_json::from_str(&text).map(Some).map_err(|e| {
                Failure::connection(format!("unexpected answer to {url}: {e}")).hint(format!(
                    "is {} an ems cloud of a matching version?",
                    self.base
                ))
            });
        }
        Err(http_failure(status, &text, &self.base))
    }

    fn transport(&self, e: &reqwest::Error) -> Failure {
        let what = if e.is_timeout() {
            "timed out talking to"
        } else {
            "cannot reach"
        };
        Failure::connection(format!("{what} {}: {}", self.base, root_cause(e))).hint(
            "check --url / EMS_URL and that the server is running; for a self-signed \
             certificate pass --ca-file",
        )
    }
}

/// An HTTP error answer as a [`Failure`]: the server's own message, the status, and a hint.
pub fn http_failure(status: StatusCode, body: &str, base: &str) -> Failure {
    let (message, field) = match serde_json::from_str::<ApiErrorBody>(body) {
        Ok(b) => (b.error, b.field),
        Err(_) if body.trim().is_empty() => (
            status.canonical_reason().unwrap_or("error").to_string(),
            None,
        ),
        Err(_) => (body.trim().chars().take(200).collect(), None),
    };
    let field = field.map(|f| format!(" [{f}]")).unwrap_or_default();
    let text = format!("{message}{field} ({})", status.as_u16());
    match status {
        StatusCode::UNAUTHORIZED => Failure::connection(format!("authentication failed: {text}"))
            .hint("check --token / EMS_TOKEN; an API token starts with emsa_"),
        StatusCode::FORBIDDEN => Failure::connection(format!("not allowed: {text}"))
            .hint("commands need an operator token; devices add and tokens create need admin"),
        StatusCode::NOT_FOUND => {
            Failure::usage(text).hint("`emsctl devices list` shows the devices this token sees")
        }
        StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
            Failure::usage(format!("the server refused the request: {text}"))
        }
        s if s.is_server_error() => Failure::connection(format!("server error: {text}"))
            .hint(format!("see {base}/api/v1/health and the server's log")),
        _ => Failure::new(Exit::Failed, format!("unexpected answer: {text}")),
    }
}

/// The innermost source of an error: the part that says what actually went wrong
/// ("Connection refused", "invalid peer certificate: UnknownIssuer").
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// An error and its sources, `outer: inner: root`, without repeats.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_exit_codes() {
        let body = r#"{"error":"unknown token"}"#;
        assert_eq!(
            http_failure(StatusCode::UNAUTHORIZED, body, "b").exit,
            Exit::Connection
        );
        assert_eq!(
            http_failure(StatusCode::FORBIDDEN, body, "b").exit,
            Exit::Connection
        );
        assert_eq!(
            http_failure(StatusCode::BAD_REQUEST, body, "b").exit,
            Exit::Usage
        );
        assert_eq!(
            http_failure(StatusCode::NOT_FOUND, body, "b").exit,
            Exit::Usage
        );
        assert_eq!(
            http_failure(StatusCode::SERVICE_UNAVAILABLE, "", "b").exit,
            Exit::Connection
        );
    }

    #[test]
    fn field_is_named() {
        let f = http_failure(
            StatusCode::BAD_REQUEST,
            r#"{"error":"must be 1 to 1000","field":"limit"}"#,
            "b",
        );
        assert!(f.message.contains("[limit]"), "{}", f.message);
    }
}
