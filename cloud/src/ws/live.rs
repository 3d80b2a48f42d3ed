//! The live feed `/ws/live/<device_id>`: each stored telemetry packet and each command status
//! change of one device, as [`LiveEvent`] JSON frames, for dashboards.
//!
//! Authenticated with an API token in the `Authorization` header or `?token=` (browsers cannot
//! set headers on WebSockets). Events of a device connected to another instance arrive through
//! the [`Hub`]: the feed repeats an `INTEREST` notice while it is open. The feed closes (1008)
//! when its token expires, or is revoked or rotated on any instance.

use std::sync::Arc;

use ems_protocol::api::LiveEvent;
use futures_util::{SinkExt, StreamExt};
use rocket::{Route, State, get, routes};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite_server::tungstenite::Message;
use tokio_tungstenite_server::tungstenite::protocol::CloseFrame;
use tokio_tungstenite_server::tungstenite::protocol::frame::coding::CloseCode;

use crate::api::ensure_device;
use crate::auth::{ApiUser, LiveViewer};
use crate::db::Db;
use crate::error::ApiResult;
use crate::hub::{Hub, INTEREST_REPEAT};
use crate::ws::upgrade::{self, Socket, SocketHandler, Upgrade, WebSocket};

#[get("/ws/live/<device_id>")]
async fn live_feed(
    device_id: &str,
    viewer: LiveViewer,
    ws: WebSocket,
    hub: &State<Arc<Hub>>,
    db: &State<Db>,
) -> ApiResult<Upgrade<Feed>> {
    ensure_device(db, &viewer.0, device_id).await?;
    let hub = hub.inner().clone();
    // Subscribe before the upgrade completes, so nothing after the 101 is missed.
    let feed = Feed {
        events: hub.subscribe(),
        revocations: hub.revocations(),
        hub,
        device_id: device_id.to_string(),
        viewer: viewer.0,
    };
    Ok(ws.accept(upgrade::config(), feed))
}

/// One dashboard's feed of one device.
struct Feed {
    hub: Arc<Hub>,
    device_id: String,
    events: broadcast::Receiver<LiveEvent>,
    /// Names of API tokens revoked or rotated on any instance.
    revocations: broadcast::Receiver<String>,
    viewer: ApiUser,
}

impl SocketHandler for Feed {
    // Not `async fn`, which would keep its arguments twice (see the device socket's).
    fn run(self, socket: Socket) -> impl Future<Output = ()> + Send + 'static {
        run(socket, self)
    }
}

async fn run(socket: Socket, feed: Feed) {
    let Feed {
        hub,
        device_id,
        mut events,
        mut revocations,
        viewer,
    } = feed;
    let (mut sink, mut source) = socket.split();
    let mut interest = tokio::time::interval(INTEREST_REPEAT);
    // The token's end: the feed closes when it expires.
    let expiry = async {
        match viewer.expires_at {
            Some(at) => {
                let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(left).await;
            }
            None => std::future::pending().await,
        }
    };
    let mut expiry = std::pin::pin!(expiry);
    let closing = loop {
        tokio::select! {
            revoked = revocations.recv() => match revoked {
                Ok(name) if name == viewer.name => break Some("API token revoked"),
                Ok(_) => {}
                // Missed some: the token may be among them; the client reconnects if not.
                Err(RecvError::Lagged(_)) => break Some("API token may have been revoked"),
                Err(RecvError::Closed) => break None,
            },
            _ = &mut expiry => break Some("API token expired"),
            ev = events.recv() => match ev {
                Ok(ev) if ev.device_id() == device_id => {
                    let text = serde_json::to_string(&ev).expect("serialises");
                    if sink.send(Message::text(text)).await.is_err() {
                        break None;
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(device = %device_id, skipped = n, "live feed too slow, events skipped");
                }
                Err(RecvError::Closed) => break None,
            },
            msg = source.next() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => {}
            },
            _ = interest.tick() => hub.announce_interest(&device_id).await,
            _ = hub.stopped() => break None,
        }
    };
    if let Some(reason) = closing {
        tracing::info!(device = %device_id, token = %viewer.name, "live feed closed: {reason}");
        let frame = CloseFrame {
            code: CloseCode::Policy,
            reason: reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
    let _ = sink.close().await;
}

/// Mounted at `/`.
pub fn routes() -> Vec<Route> {
    routes![live_feed]
}
