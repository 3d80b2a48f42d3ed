//! Opening the device socket: `wss://` through rustls (system roots plus an optional CA file)
//! or `ws://` for development, with the bearer token from a file that only the agent's user owns
//! and can read.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// Any byte stream the socket can run over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

/// Largest frame accepted from the cloud (commands and acks are small).
const MAX_FRAME: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("token file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("uplink url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("connecting to {endpoint}: {reason}")]
    Io { endpoint: String, reason: String },
}

/// Reads the device token; refuses a file that another user owns or that group or others may
/// access at all (mode & 0o077), since whoever can read it can speak for the site, and whoever
/// owns it can change which token the agent presents. The checks look at the opened file, so
/// they are about the very file that is read.
pub fn read_token(path: &Path) -> Result<String, ConnectError> {
    let err = |reason: String| ConnectError::Token {
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let meta = file.metadata().map_err(|e| err(e.to_string()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(err(format!(
            "is owned by uid {}, but the agent runs as uid {euid}: only the agent's user may own \
             it; run `chown {euid} {p}` and `chmod 600 {p}` as root (config key uplink.token_file)",
            meta.uid(),
            p = path.display()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {:03o} gives group or others access: only its owner may read it; run \
             `chmod 600 {}` (config key uplink.token_file)",
            mode & 0o777,
            path.display()
        )));
    }
    let mut token = String::new();
    file.read_to_string(&mut token)
        .map_err(|e| err(e.to_string()))?;
    let token = token.trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(err("must hold exactly one token".into()));
    }
    Ok(token)
}

/// rustls client config: the system's roots plus `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ConnectError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let err = |reason: String| ConnectError::Ca {
            path: path.display().to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("holds no PEM certificate".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Ca {
            path: "-".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS config trusting nothing, for an uplink that is plain `ws://` or absent.
pub fn empty_tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Arc::new(config)
}

/// Kernel-level dead-link detection, beside the session's own liveness check (pings): data the
/// peer has not acknowledged for [`USER_TIMEOUT_MS`] ends the connection (`TCP_USER_TIMEOUT`),
/// and an idle connection is probed after 10 s, every 5 s, dead after 3 unanswered probes.
fn detect_dead_links(tcp: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = tcp.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `fd` is the open socket borrowed from `tcp` for this call; the option value is
        // a c_int that lives across the call, its size passed with it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 10)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 5)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)?;
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, USER_TIMEOUT_MS)
}

/// Unacknowledged data older than this ends the connection, ms.
const USER_TIMEOUT_MS: libc::c_int = 20_000;

/// Opens `{base}/ws/device/{device_id}` with the bearer token.
pub async fn connect(
    base: &str,
    device_id: &str,
    token: &str,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Socket, ConnectError> {
    let url = format!("{}/ws/device/{device_id}", base.trim_end_matches('/'));
    let url_err = |reason: String| ConnectError::Url {
        url: url.clone(),
        reason,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| url_err(e.to_string()))?;
    let auth =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| url_err(e.to_string()))?;
    request.headers_mut().insert("authorization", auth);
    let uri = request.uri().clone();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        other => return Err(url_err(format!("scheme {other:?} is not ws or wss"))),
    };
    let host = uri
        .host()
        .ok_or_else(|| url_err("no host".into()))?
        .to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let endpoint = format!("{host}:{port}");
    let io_err = |reason: String| ConnectError::Io {
        endpoint: endpoint.clone(),
        reason,
    };
    let attempt = async {
        let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| io_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if let Err(e) = detect_dead_links(&tcp) {
            tracing::warn!("uplink: TCP keepalive / TCP_USER_TIMEOUT not set: {e}");
        }
        let stream: Box<dyn Io> = if secure {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| io_err(e.to_string()))?;
            let tls_stream = TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| io_err(format!("TLS: {e}")))?;
            Box::new(tls_stream)
        } else {
            Box::new(tcp)
        };
        let config = WebSocketConfig {
            max_message_size: Some(MAX_FRAME),
            max_frame_size: Some(MAX_FRAME),
            ..WebSocketConfig::default()
        };
        let (socket, _response) = client_async_with_config(request, stream, Some(config))
            .await
            .map_err(|e| io_err(e.to_string()))?;
        Ok(socket)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| io_err(format!("no connection within {timeout:?}")))?
}
