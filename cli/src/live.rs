//! Opens the live feed `/ws/live/<device>` over WS or WSS (rustls, system roots plus
//! `--ca-file`), with the API token in the `Authorization` header (the single-use `?ticket=` of
//! `POST …/live-ticket` is for browsers, which cannot set headers), and says whether a failed
//! attempt is worth repeating.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{WebSocketStream, client_async, tungstenite};

use crate::client::{CONNECT_TIMEOUT, chain, http_failure};
use crate::exit::{Exit, Failure};
use crate::tls;

/// Why the feed did not open.
#[derive(Debug)]
pub struct OpenError {
    pub failure: Failure,
    /// The HTTP status when the server answered the upgrade with one.
    pub status: Option<u16>,
}

impl OpenError {
    /// Trying again cannot help: the credentials were refused (401, 403), the device is not
    /// visible to the token (404), or the settings themselves are wrong. Anything else (no
    /// answer, TLS, a server error while it starts) may pass.
    pub fn is_final(&self) -> bool {
        matches!(self.status, Some(401 | 403 | 404)) || self.failure.exit == Exit::Usage
    }
}

impl From<Failure> for OpenError {
    fn from(failure: Failure) -> Self {
        OpenError {
            failure,
            status: None,
        }
    }
}

impl From<OpenError> for Failure {
    fn from(e: OpenError) -> Self {
        e.failure
    }
}

/// Any byte stream the socket runs over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Feed = WebSocketStream<Box<dyn Io>>;

/// `http://h` → `ws://h`, `https://h` → `wss://h`.
pub fn ws_base(http_base: &str) -> String {
    if let Some(rest) = http_base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = http_base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        http_base.to_string()
    }
}

pub async fn connect(
    http_base: &str,
    device: &str,
    token: &str,
    ca_file: Option<&Path>,
) -> Result<Feed, OpenError> {
    let url = format!("{}/ws/live/{device}", ws_base(http_base));
    let unreachable = |reason: String| {
        Failure::connection(format!("cannot reach {http_base}: {reason}"))
            .hint("check --url / EMS_URL and that the server is running; for a self-signed certificate pass --ca-file")
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Failure::usage(format!("live feed URL {url:?}: {e}")))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Failure::usage("the API token contains characters a header cannot carry"))?;
    request.headers_mut().insert("Authorization", bearer);
    let uri = request.uri().clone();
    let secure = uri.scheme_str() == Some("wss");
    let host = uri
        .host()
        .ok_or_else(|| Failure::usage(format!("server URL {http_base:?} has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    // A black-holed address would otherwise hold a reconnecting `watch` for minutes.
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| unreachable(e.to_string()))?;
    let stream: Box<dyn Io> = if secure {
        let config = tls::rustls_config(ca_file)?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| Failure::usage(format!("server name {host:?}: {e}")))?;
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(format!("TLS: {}", chain(&e))))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    match client_async(request, stream).await {
        Ok((feed, _)) => Ok(feed),
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err(OpenError {
                failure: http_failure(response.status(), &body, http_base),
                status: Some(response.status().as_u16()),
            })
        }
        Err(e) => Err(unreachable(chain(&e)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_map() {
        assert_eq!(ws_base("http://a:1"), "ws://a:1");
        assert_eq!(ws_base("https://a"), "wss://a");
    }
}
