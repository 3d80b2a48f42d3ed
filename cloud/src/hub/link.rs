//! This instance's link to the others: listening on [`CHANNEL`], the heartbeat row in
//! `instances`, the cluster secret that signs notices, and the stage that starts them.

use std::time::Duration;

use futures_util::StreamExt;
use rocket::fairing::AdHoc;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::notice::Signer;
use super::{CHANNEL, HEARTBEAT, Hub};
use crate::config::CloudConfig;
use crate::db::Db;
use crate::stage::need;

/// Listens on [`CHANNEL`] for the life of the server, reconnecting after database outages.
async fn listen(hub: std::sync::Arc<Hub>, url: String) {
    let mut backoff = Duration::from_millis(100);
    while !hub.is_stopped() {
        match crate::db::connect_raw(&url).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    while let Some(msg) = messages.next().await {
                        match msg {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_string()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!("notice listener connection: {e}");
                                break;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    tracing::warn!("LISTEN failed: {e}");
                } else {
                    backoff = Duration::from_millis(100);
                    tracing::debug!("listening for notices");
                    // Anything missed while we were away: deliver pending commands now.
                    hub.resync.notify_one();
                    loop {
                        tokio::select! {
                            msg = rx.recv() => match msg {
                                Some(payload) => hub.receive(&payload).await,
                                None => break,
                            },
                            _ = hub.stopped() => break,
                        }
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::warn!("notice listener cannot connect: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = hub.stopped() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Keeps this instance's row in `instances` fresh; devices of an instance without a fresh
/// heartbeat count as offline.
async fn heartbeat(hub: std::sync::Arc<Hub>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.stopped() => break,
        }
        beat(&hub).await;
    }
    // Leaving: our devices are offline now.
    if let Ok(client) = hub.db.pool.get().await {
        let _ = client
            .execute(
                "UPDATE devices SET connected_instance = NULL, last_seen = now() \
                 WHERE connected_instance = $1",
                &[&hub.instance_id],
            )
            .await;
        let _ = client
            .execute("DELETE FROM instances WHERE id = $1", &[&hub.instance_id])
            .await;
    }
}

/// Records that this instance is alive now.
async fn beat(hub: &Hub) {
    let result = async {
        let client = hub.db.pool.get().await.map_err(|e| e.to_string())?;
        client
            .execute(
                "INSERT INTO instances (id) VALUES ($1) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()",
                &[&hub.instance_id],
            )
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!("heartbeat failed: {e}");
    }
}

/// A random name: `/api/v1/health` shows it to anyone, so it carries no host name or PID (the
/// start-up log pairs it with both).
fn default_instance_id() -> String {
    let mut bytes = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ems-cloud-{hex}")
}

/// The key instances sign their notices with: `notice_secret` from the configuration, else the
/// one in the `cluster_secret` table (made by the first instance; only the cloud's own role may
/// read it).
async fn secret(db: &Db, config: &CloudConfig) -> Result<Vec<u8>, String> {
    if let Some(s) = &config.notice_secret {
        if s.len() < 16 {
            return Err("notice_secret must be at least 16 characters".into());
        }
        return Ok(s.as_bytes().to_vec());
    }
    let client = db.pool.get().await.map_err(|e| e.to_string())?;
    let mut fresh = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut fresh);
    client
        .execute(
            "INSERT INTO cluster_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&fresh.as_slice()],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?;
    let row = client
        .query_one("SELECT secret FROM cluster_secret WHERE id = 1", &[])
        .await
        .map_err(|e| crate::db::describe(&e))?;
    Ok(row.get(0))
}

/// Manages `Arc<Hub>`, starts the listener and the heartbeat, and stops them at shutdown.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("hub", |rocket| async move {
        let config: CloudConfig = need!(rocket);
        let db: Db = need!(rocket);
        let instance_id = config
            .instance_id
            .clone()
            .unwrap_or_else(default_instance_id);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        tracing::info!(instance = %instance_id, host = %host, pid = std::process::id(), "instance id");
        let signer = match secret(&db, &config).await {
            Ok(key) => Signer::new(&key),
            Err(e) => {
                tracing::error!("the cluster secret that signs notices between instances: {e}");
                return Err(rocket);
            }
        };
        let hub = std::sync::Arc::new(Hub::new(instance_id, db.clone(), signer));
        // The first beat before any device can connect: a device is online from its first
        // moment, not from this instance's first timer tick.
        beat(&hub).await;
        tokio::spawn(listen(hub.clone(), db.url.clone()));
        tokio::spawn(heartbeat(hub.clone()));
        let on_shutdown = hub.clone();
        Ok(rocket
            .manage(hub)
            .attach(AdHoc::on_shutdown("hub shutdown", move |_| {
                Box::pin(async move { on_shutdown.shut_down() })
            })))
    })
}
