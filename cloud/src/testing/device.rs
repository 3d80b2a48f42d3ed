//! A scripted device: speaks the spec over a real WebSocket as a test tells it to, and reports
//! what the cloud sent back.

use std::time::Duration;

use ems_protocol::telemetry::Timestamp;
use ems_protocol::{AnswerStatus, Command, CommandAnswer, Downstream, Telemetry, parse_downstream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::DEADLINE;

/// What a device saw from the cloud.
#[derive(Debug)]
pub enum Seen {
    Frame(Downstream),
    Closed(Option<CloseFrame<'static>>),
}

/// A scripted device over a real WebSocket.
pub struct Device<S> {
    pub ws: WebSocketStream<S>,
}

impl Device<MaybeTlsStream<tokio::net::TcpStream>> {
    /// Connects to `url` with `token` as bearer (none when empty).
    pub async fn connect(url: &str, token: &str) -> Result<Self, WsError> {
        let mut req = url.into_client_request()?;
        if !token.is_empty() {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| WsError::HttpFormat(e.into()))?;
            req.headers_mut().insert("Authorization", value);
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Device { ws })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Device<S> {
    pub async fn send(&mut self, t: &Telemetry) {
        self.send_text(t.to_json()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text)).await.expect("send");
    }

    /// The next frame or close, within `within`. Pings are answered by tungstenite.
    pub async fn next_within(&mut self, within: Duration) -> Option<Seen> {
        let next = tokio::time::timeout(within, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => {
                        return Seen::Frame(parse_downstream(&t).expect("valid downstream"));
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Seen::Closed(frame.map(|f| f.into_owned()));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Seen::Closed(None),
                }
            }
        })
        .await;
        next.ok()
    }

    /// The next frame or close within [`DEADLINE`].
    pub async fn next(&mut self) -> Seen {
        self.next_within(DEADLINE)
            .await
            .expect("a frame from the cloud within the deadline")
    }

    /// Waits until every timestamp in `want` has been acknowledged; panics on anything else
    /// than acks and commands (commands are returned).
    pub async fn await_acks(&mut self, want: &[Timestamp]) -> Vec<Command> {
        let mut missing: std::collections::HashSet<Timestamp> = want.iter().copied().collect();
        let mut commands = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Some(Seen::Frame(Downstream::TelemetryAck(ack))) => {
                    for t in ack.timestamps {
                        missing.remove(&t);
                    }
                }
                Some(Seen::Frame(Downstream::Command(c))) => commands.push(c),
                Some(other) => panic!("expected acks, got {other:?}"),
                None => panic!("{} acks missing after {DEADLINE:?}", missing.len()),
            }
        }
        commands
    }

    /// Sends `packets` and waits until all are acknowledged (stored); commands that arrive in
    /// between are returned.
    pub async fn send_stored(&mut self, packets: &[Telemetry]) -> Vec<Command> {
        for p in packets {
            self.send(p).await;
        }
        let stamps: Vec<Timestamp> = packets.iter().map(|p| p.timestamp).collect();
        self.await_acks(&stamps).await
    }

    /// The next command (acks in between are skipped).
    pub async fn next_command(&mut self) -> Command {
        loop {
            match self.next().await {
                Seen::Frame(Downstream::Command(c)) => return c,
                Seen::Frame(Downstream::TelemetryAck(_)) => continue,
                other => panic!("expected a command, got {other:?}"),
            }
        }
    }

    /// Answers a command.
    pub async fn answer(&mut self, command_id: &str, status: AnswerStatus, reason: Option<&str>) {
        let answer = CommandAnswer {
            command_id: command_id.into(),
            status,
            reason: reason.map(Into::into),
        };
        let text = serde_json::to_string(&answer).expect("answer JSON");
        self.send_text(text).await;
    }
}
