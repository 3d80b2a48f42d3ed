//! Who is connected here, and what the instances sharing the database tell each other.
//!
//! The [`Hub`] holds this process's device sockets (one per device: a new connection replaces
//! the old one, here and on other instances) and a local broadcast of [`LiveEvent`]s for live
//! feeds and command waiters. Instances talk through PostgreSQL `LISTEN`/`NOTIFY` on one
//! channel, [`CHANNEL`], with a small JSON [`Notice`]:
//!
//! - `COMMAND`: a command was created or changed status. The instance holding the device's
//!   socket asks its command sweeper to deliver a new one ([`Hub::delivery_requests`]); every
//!   instance forwards it to its live feeds and waiters.
//! - `TELEMETRY`: a stored packet of a device that a live feed on another instance watches.
//! - `INTEREST`: "I have a live feed on this device", repeated while the feed is open, so the
//!   instance holding the device forwards its telemetry for a minute.
//! - `CONNECTED`: a device connected here; other instances close their older socket for it.
//! - `REVOKED`: an API token was revoked or rotated; every instance closes its live feeds.
//!
//! Notifications missed while the listening connection is down are made up for by the command
//! sweeper (pending deliveries) and the next interest announcement (live feeds).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use ems_protocol::api::{CommandRecord, LiveEvent};
use ems_protocol::telemetry::Timestamp;
use tokio::sync::{broadcast, mpsc, watch};

use crate::db::Db;

mod link;
pub mod notice;

pub use link::stage;
use notice::{Notice, NoticeKind, Signer};

/// The `LISTEN`/`NOTIFY` channel shared by all instances.
pub const CHANNEL: &str = "ems_cloud";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_NOTIFY_BYTES: usize = 7900;
/// How long an `INTEREST` announcement keeps telemetry forwarding on.
const INTEREST_TTL: Duration = Duration::from_secs(60);
/// How often a live feed repeats its `INTEREST`.
pub const INTEREST_REPEAT: Duration = Duration::from_secs(20);
/// Heartbeat period of this instance; a device counts as online while its instance's heartbeat
/// is younger than three periods.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Close code sent to a socket that a newer connection of the same device replaced.
pub const CLOSE_REPLACED: u16 = 4000;
/// Close code sent to a socket whose device may no longer connect with the token it used: the
/// token was rotated (after the grace period), or the device was disabled or deleted.
pub const CLOSE_ACCESS_ENDED: u16 = 4001;

/// What a device socket's task is asked to write.
#[derive(Debug)]
pub enum Outbound {
    /// Packets are committed; batched into one `TELEMETRY_ACK` with its neighbours.
    Acks(Vec<Timestamp>),
    /// A command, as JSON text.
    Command(String),
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// Packets the database refused for good: an `ERROR` frame `REJECTED` naming them.
    Rejected(Vec<Timestamp>, String),
}

pub type OutboundTx = mpsc::UnboundedSender<Outbound>;

struct DeviceConn {
    conn_id: u64,
    tx: OutboundTx,
    /// When the connection was recorded in the database (its clock); `None` until then.
    since: Option<DateTime<Utc>>,
}

pub struct Hub {
    pub instance_id: String,
    /// This server's metrics (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    db: Db,
    signer: Signer,
    /// Notices dropped as forged, altered or stale.
    refused_notices: AtomicU64,
    devices: Mutex<HashMap<String, DeviceConn>>,
    next_conn: AtomicU64,
    events: broadcast::Sender<LiveEvent>,
    /// Packets stored by this instance (its own devices' telemetry), for the alert evaluator:
    /// unlike `events` it never carries another instance's packets, and it is filled only while
    /// someone listens.
    stored: broadcast::Sender<Telemetry>,
    /// Devices that live feeds on other instances watch, until when.
    interest: Mutex<HashMap<String, Instant>>,
    stop: watch::Sender<bool>,
    /// Wakes the command sweeper early (e.g. after the listener reconnected).
    pub(crate) resync: tokio::sync::Notify,
    /// Devices connected here that another instance issued a command for: the command sweeper
    /// delivers it (the hub only tells; it knows nothing of the commands table).
    deliveries: broadcast::Sender<String>,
    /// Names of API tokens revoked or rotated, here or on another instance: their live feeds
    /// close.
    revocations: broadcast::Sender<String>,
}

impl Hub {
    pub fn new(instance_id: String, db: Db, signer: Signer) -> Self {
        Hub {
            metrics: Arc::new(crate::metrics::Metrics::new(&instance_id)),
            instance_id,
            db,
            signer,
            refused_notices: AtomicU64::new(0),
            devices: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            events: broadcast::channel(4096).0,
            stored: broadcast::channel(4096).0,
            interest: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
            resync: tokio::sync::Notify::new(),
            deliveries: broadcast::channel(1024).0,
            revocations: broadcast::channel(256).0,
        }
    }

    /// Registers a device socket; an older socket of the same device here is told to close.
    /// Returns the connection's id for [`unregister`](Self::unregister).
    pub fn register(&self, device_id: &str, tx: OutboundTx) -> u64 {
        let conn_id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let old = self.devices.lock().expect("not poisoned").insert(
            device_id.to_string(),
            DeviceConn {
                conn_id,
                tx,
                since: None,
            },
        );
        if let Some(old) = old {
            let _ = old.tx.send(Outbound::Close(
                CLOSE_REPLACED,
                "replaced by a newer connection".into(),
            ));
        }
        conn_id
    }

    /// The connection `conn_id` of `device_id` was recorded in the database at `at`.
    pub fn connected_since(&self, device_id: &str, conn_id: u64, at: DateTime<Utc>) {
        if let Some(c) = self
            .devices
            .lock()
            .expect("not poisoned")
            .get_mut(device_id)
            && c.conn_id == conn_id
        {
            c.since = Some(at);
        }
    }

    /// Forgets the socket unless a newer one replaced it already. Returns whether it was current.
    pub fn unregister(&self, device_id: &str, conn_id: u64) -> bool {
        let mut devices = self.devices.lock().expect("not poisoned");
        if devices.get(device_id).is_some_and(|c| c.conn_id == conn_id) {
            devices.remove(device_id);
            true
        } else {
            false
        }
    }

    /// The socket of a device connected to this instance.
    pub fn sender(&self, device_id: &str) -> Option<OutboundTx> {
        self.devices
            .lock()
            .expect("not poisoned")
            .get(device_id)
            .map(|c| c.tx.clone())
    }

    pub fn connected_devices(&self) -> Vec<String> {
        self.devices
            .lock()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect()
    }

    pub fn connection_count(&self) -> usize {
        self.devices.lock().expect("not poisoned").len()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.events.subscribe()
    }

    /// The packets this instance stores, as they are stored (whether or not their device is
    /// still connected by then).
    pub fn subscribe_stored(&self) -> broadcast::Receiver<Telemetry> {
        self.stored.subscribe()
    }

    /// Closes the sockets of `device_id` that exist now, here and on every instance, at `until`
    /// (at once when `None`), with [`CLOSE_ACCESS_ENDED`] and `reason`.
    pub async fn end_device_access(
        self: &Arc<Self>,
        device_id: &str,
        until: Option<DateTime<Utc>>,
        reason: &str,
    ) {
        self.close_at(device_id, None, until, reason.to_string());
        self.notify(NoticeKind::DeviceAccess {
            device_id: device_id.to_string(),
            until,
            reason: reason.to_string(),
        })
        .await;
    }

    /// Closes the socket `conn_id` of `device_id` here (the current one when `None`) at `until`
    /// (at once when `None`), unless it is gone or replaced by then.
    pub fn close_at(
        self: &Arc<Self>,
        device_id: &str,
        conn_id: Option<u64>,
        until: Option<DateTime<Utc>>,
        reason: String,
    ) {
        let Some(conn_id) = conn_id.or_else(|| {
            self.devices
                .lock()
                .expect("not poisoned")
                .get(device_id)
                .map(|c| c.conn_id)
        }) else {
            return;
        };
        let wait = until
            .and_then(|u| (u - Utc::now()).to_std().ok())
            .unwrap_or_default();
        let hub = self.clone();
        let device_id = device_id.to_string();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = hub.stopped() => return,
            }
            let devices = hub.devices.lock().expect("not poisoned");
            if let Some(c) = devices.get(&device_id).filter(|c| c.conn_id == conn_id) {
                tracing::info!(device = %device_id, "closing its socket: {reason}");
                let _ = c.tx.send(Outbound::Close(CLOSE_ACCESS_ENDED, reason));
            }
        });
    }

    /// Names of API tokens that were revoked or rotated (on any instance).
    pub fn revocations(&self) -> broadcast::Receiver<String> {
        self.revocations.subscribe()
    }

    /// The API token `name` was revoked or rotated: its live feeds close, here and elsewhere.
    pub async fn publish_revocation(&self, name: &str) {
        let _ = self.revocations.send(name.to_string());
        self.notify(NoticeKind::Revoked {
            token: name.to_string(),
        })
        .await;
    }

    /// Device ids with a new `PENDING` command from another instance and a socket here.
    pub fn delivery_requests(&self) -> broadcast::Receiver<String> {
        self.deliveries.subscribe()
    }

    /// Resolves once the server shuts down.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn shut_down(&self) {
        self.stop.send_replace(true);
        for conn in self.devices.lock().expect("not poisoned").values() {
            let _ = conn
                .tx
                .send(Outbound::Close(1001, "server shutting down".into()));
        }
    }

    /// A packet was stored: tell local live feeds, and other instances if one of them watches.
    pub async fn publish_telemetry(&self, telemetry: Telemetry) {
        let watched = {
            let mut interest = self.interest.lock().expect("not poisoned");
            match interest.get(&telemetry.device_id) {
                Some(until) if *until > Instant::now() => true,
                Some(_) => {
                    interest.remove(&telemetry.device_id);
                    false
                }
                None => false,
            }
        };
        if watched {
            self.notify(NoticeKind::Telemetry {
                telemetry: telemetry.clone(),
            })
            .await;
        }
        if self.stored.receiver_count() > 0 {
            let _ = self.stored.send(telemetry.clone());
        }
        let _ = self.events.send(LiveEvent::Telemetry { telemetry });
    }

    /// A command was created or changed status: tell local feeds and waiters, and every other
    /// instance (one of them may hold the device's socket).
    pub async fn publish_command(&self, command: CommandRecord) {
        self.notify(NoticeKind::Command {
            command: command.clone(),
        })
        .await;
        let _ = self.events.send(LiveEvent::CommandStatus { command });
    }

    /// A live feed here watches `device_id`.
    pub async fn announce_interest(&self, device_id: &str) {
        self.notify(NoticeKind::Interest {
            device_id: device_id.to_string(),
        })
        .await;
    }

    /// `device_id` connected here at `at` (the database's clock); older sockets elsewhere must
    /// close.
    pub async fn announce_connected(&self, device_id: &str, at: DateTime<Utc>) {
        self.notify(NoticeKind::Connected {
            device_id: device_id.to_string(),
            at,
        })
        .await;
    }

    async fn notify(&self, kind: NoticeKind) {
        let notice = Notice {
            origin: self.instance_id.clone(),
            sent_ms: Utc::now().timestamp_millis(),
            kind,
        };
        let payload = self.signer.seal(&notice);
        if payload.len() > MAX_NOTIFY_BYTES {
            tracing::warn!(
                bytes = payload.len(),
                "notice too large for NOTIFY, not shared"
            );
            return;
        }
        let result = async {
            let client = self.db.pool.get().await.map_err(|e| e.to_string())?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!("NOTIFY failed, other instances miss a notice: {e}");
        }
    }

    /// Handles one notice from another instance; drops what no instance of this cluster sent.
    async fn receive(self: &Arc<Self>, payload: &str) {
        let notice = match self.signer.open(payload, Utc::now().timestamp_millis()) {
            Ok(n) => n,
            Err(e) => {
                let n = self.refused_notices.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(refused = n, "notice on {CHANNEL} dropped: {e}");
                }
                return;
            }
        };
        if notice.origin == self.instance_id {
            return;
        }
        match notice.kind {
            NoticeKind::Command { command } => {
                if command.status == ems_protocol::CommandStatus::Pending
                    && self.sender(&command.device_id).is_some()
                {
                    let _ = self.deliveries.send(command.device_id.clone());
                }
                let _ = self.events.send(LiveEvent::CommandStatus { command });
            }
            NoticeKind::Telemetry { telemetry } => {
                let _ = self.events.send(LiveEvent::Telemetry { telemetry });
            }
            NoticeKind::Interest { device_id } => {
                self.interest
                    .lock()
                    .expect("not poisoned")
                    .insert(device_id, Instant::now() + INTEREST_TTL);
            }
            NoticeKind::Revoked { token } => {
                let _ = self.revocations.send(token);
            }
            NoticeKind::DeviceAccess {
                device_id,
                until,
                reason,
            } => self.close_at(&device_id, None, until, reason),
            NoticeKind::Connected { device_id, at } => {
                // Only a socket that connected before the one announced closes: a late notice
                // (delayed, or replayed within its minute) never closes a newer socket.
                let old = {
                    let mut devices = self.devices.lock().expect("not poisoned");
                    match devices.get(&device_id) {
                        Some(c) if c.since.is_some_and(|since| since < at) => {
                            devices.remove(&device_id)
                        }
                        _ => None,
                    }
                };
                if let Some(old) = old {
                    let _ = old.tx.send(Outbound::Close(
                        CLOSE_REPLACED,
                        "replaced by a newer connection on another instance".into(),
                    ));
                }
            }
        }
    }
}
