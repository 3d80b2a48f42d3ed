//! The WebSocket handshake (RFC 6455 §4.2) on Rocket's connection upgrade: [`WebSocket`] is the
//! request guard, [`WebSocket::accept`] the responder, and a [`SocketHandler`] gets the socket
//! in a task of its own.
//!
//! Ours rather than `rocket_ws`, which pins tokio-tungstenite 0.21: there every socket keeps a
//! 4 KiB read chunk plus a read storage `Vec` that grows past 4 KiB, neither configurable, and
//! that was half of what an idle device socket cost. The current tokio-tungstenite reads
//! straight into one buffer of the size given in [`config`].

use std::future::Future;
use std::io;
use std::pin::Pin;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ems_protocol::api::ApiErrorBody;
use rocket::data::{IoHandler, IoStream};
use rocket::http::uncased::eq;
use rocket::http::{Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::serde::json::Json;
use tokio_tungstenite_server::WebSocketStream;
use tokio_tungstenite_server::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite_server::tungstenite::protocol::{Role, WebSocketConfig};

/// An accepted WebSocket over Rocket's upgraded connection (plain TCP or TLS).
pub type Socket = WebSocketStream<IoStream>;

/// Bytes read from the connection at once, and the read buffer every socket keeps while idle.
/// Device frames are a few hundred bytes, so 1 KiB takes one whole at each read; a larger frame
/// (a backlog's burst, a long command answer) still arrives whole: tungstenite grows the buffer
/// to the frame's length, up to `max_frame_size`, and only needs more reads to fill it (that
/// socket may keep the larger buffer afterwards).
const READ_BUFFER_BYTES: usize = 1024;

/// Frames written are gathered up to this many bytes before they go to the connection (each
/// flush writes the rest). Acks, commands and live events are a few hundred bytes, and the
/// buffer keeps the largest size it reached, so small keeps idle sockets cheap.
const WRITE_BUFFER_BYTES: usize = 1024;

/// A socket's configuration: the small buffers above, tungstenite's limits (messages up to
/// 64 MiB, frames up to 16 MiB; the device socket sets its own).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
}

/// What runs a socket once it is accepted, in a task of its own.
pub trait SocketHandler: Send + Unpin + 'static {
    fn run(self, socket: Socket) -> impl Future<Output = ()> + Send + 'static;
}

/// Request guard: whether the request is a WebSocket handshake. It never fails, so the other
/// guards (authentication first) decide as usual; a request that is no handshake gets its
/// refusal from [`WebSocket::accept`].
pub struct WebSocket {
    /// The `Sec-WebSocket-Accept` value of the answer, or why there is none.
    accept_key: Result<String, NotWebSocket>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for WebSocket {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(WebSocket {
            accept_key: check(req),
        })
    }
}

/// Checks the handshake's headers (RFC 6455 §4.2.1); the method is the route's (`GET`).
fn check(req: &Request<'_>) -> Result<String, NotWebSocket> {
    let headers = req.headers();
    let has_token = |name: &str, token: &str| {
        headers
            .get(name)
            .any(|v| v.split(',').any(|t| eq(t.trim(), token)))
    };
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Err(NotWebSocket::upgrade_required(format!(
            "{} is a WebSocket endpoint: connect with a WebSocket client (GET with \
             Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Version: 13 and \
             Sec-WebSocket-Key)",
            req.uri().path()
        )));
    }
    match headers.get_one("Sec-WebSocket-Version") {
        Some("13") => {}
        Some(v) => {
            return Err(NotWebSocket::upgrade_required(format!(
                "Sec-WebSocket-Version {:?} is not supported; this server speaks 13",
                crate::logsafe::truncate(v, 40)
            )));
        }
        None => {
            return Err(NotWebSocket::upgrade_required(
                "Sec-WebSocket-Version is missing; this server speaks 13".into(),
            ));
        }
    }
    let key = headers.get_one("Sec-WebSocket-Key").unwrap_or_default();
    // A random 16-byte nonce in base64 (§4.1).
    if !STANDARD.decode(key).is_ok_and(|nonce| nonce.len() == 16) {
        return Err(NotWebSocket {
            status: Status::BadRequest,
            message: "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)".into(),
        });
    }
    Ok(derive_accept_key(key.as_bytes()))
}

impl WebSocket {
    /// Answers the handshake with `101 Switching Protocols` and hands the socket, configured
    /// with `config`, to `handler`; or refuses a request that is no handshake (`426 Upgrade
    /// Required`, or `400` for a bad key) with a JSON error that says what is missing.
    pub fn accept<H: SocketHandler>(self, config: WebSocketConfig, handler: H) -> Upgrade<H> {
        Upgrade {
            accept_key: self.accept_key,
            accepted: Accepted { config, handler },
        }
    }
}

/// The answer to a handshake: the upgrade, or the refusal.
pub struct Upgrade<H> {
    accept_key: Result<String, NotWebSocket>,
    accepted: Accepted<H>,
}

impl<'r, H: SocketHandler> Responder<'r, 'static> for Upgrade<H> {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match self.accept_key {
            // Rocket sets the status (101), `Connection` and `Upgrade`.
            Ok(key) => Response::build()
                .raw_header("Sec-WebSocket-Accept", key)
                .upgrade("websocket", self.accepted)
                .ok(),
            Err(refusal) => refusal.respond_to(req),
        }
    }
}

/// The socket's configuration and handler, until the connection is upgraded.
struct Accepted<H> {
    config: WebSocketConfig,
    handler: H,
}

#[rocket::async_trait]
impl<H: SocketHandler> IoHandler for Accepted<H> {
    async fn io(self: Pin<Box<Self>>, io: IoStream) -> io::Result<()> {
        let Accepted { config, handler } = *Pin::into_inner(self);
        let socket = Socket::from_raw_socket(io, Role::Server, Some(config)).await;
        // Detached: Rocket keeps the request, its dispatch task and hyper's 8 KiB read buffer
        // (which the header values point into) alive until this returns. The socket lives on in
        // its own task, which halves the memory of an idle connection.
        tokio::spawn(handler.run(socket));
        Ok(())
    }
}

/// Why a request is not a WebSocket handshake; answered with its status, a JSON error and the
/// headers RFC 6455 §4.4 asks for (`Upgrade`, `Sec-WebSocket-Version`).
#[derive(Debug)]
struct NotWebSocket {
    status: Status,
    message: String,
}

impl NotWebSocket {
    fn upgrade_required(message: String) -> Self {
        NotWebSocket {
            status: Status::UpgradeRequired,
            message,
        }
    }
}

impl<'r> Responder<'r, 'static> for NotWebSocket {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let body = ApiErrorBody {
            error: self.message,
            field: None,
        };
        let mut response = Response::build_from(Json(body).respond_to(req)?);
        response.status(self.status);
        if self.status == Status::UpgradeRequired {
            response
                .header(Header::new("Upgrade", "websocket"))
                .header(Header::new("Sec-WebSocket-Version", "13"));
        }
        response.ok()
    }
}
