//! Commands: stored, delivered to the device's socket, tracked to their answer.
//!
//! Lifecycle: `PENDING` (stored) → `SENT` (written to the device's socket) → `ACCEPTED` /
//! `REJECTED` / `COMPLETED` from the device's `COMMAND_ANSWER`, or `EXPIRED` when not delivered or
//! not answered by `expires_at`. A command for an offline device stays `PENDING` and goes out when
//! it connects; on (re)connection unanswered `SENT` commands are sent again (the agent answers a
//! repeated `command_id` with the same answer). Every change is published through the [`Hub`], so
//! whichever instance holds the socket delivers, and every instance's live feeds see it.

use std::sync::Arc;

use ems_protocol::api::CommandRecord;
use ems_protocol::{Command, CommandAnswer, CommandStatus};
use rocket::fairing::AdHoc;
use tokio::sync::broadcast::error::RecvError;
use tokio_postgres::Row;

use crate::config::CloudConfig;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::hub::{Hub, Outbound};
use crate::stage::need;

pub(crate) const COLUMNS: &str = "command_id, device_id, action, payload, issued_by, issued_at, \
     status, status_at, reason, expires_at";

pub(crate) fn record(row: &Row) -> Result<CommandRecord, ApiError> {
    let status: String = row.get(6);
    Ok(CommandRecord {
        command_id: row.get(0),
        device_id: row.get(1),
        action: row.get(2),
        payload: row.get(3),
        issued_by: row.get(4),
        issued_at: row.get(5),
        status: status
            .parse()
            .map_err(|e| ApiError::Internal(format!("stored command status: {e}")))?,
        status_at: row.get(7),
        reason: row.get(8),
        expires_at: row.get(9),
    })
}

/// The spec's command frame for a stored command.
fn wire_text(rec: &CommandRecord) -> Result<String, ApiError> {
    let value = serde_json::json!({
        "command_id": rec.command_id,
        "action": rec.action,
        "payload": rec.payload,
    });
    Command::from_value(value)
        .map(|c| c.to_json())
        .map_err(|e| {
            ApiError::Internal(format!("stored command {} is invalid: {e}", rec.command_id))
        })
}

/// Sends the device's open commands to its socket on this instance, if it has one: `PENDING`
/// ones, and with `include_sent` also unanswered `SENT` ones (after a reconnection).
pub async fn deliver_pending(hub: &Hub, db: &Db, device_id: &str, include_sent: bool) {
    let Some(tx) = hub.sender(device_id) else {
        return;
    };
    let statuses: &[&str] = if include_sent {
        &["PENDING", "SENT"]
    } else {
        &["PENDING"]
    };
    let claimed = async {
        let client = db.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE commands SET status = 'SENT', status_at = now() \
                     WHERE device_id = $1 AND status = ANY($2) AND expires_at > now() \
                     RETURNING {COLUMNS}"
                ),
                &[&device_id, &statuses],
            )
            .await?;
        rows.iter().map(record).collect::<ApiResult<Vec<_>>>()
    }
    .await;
    let mut claimed = match claimed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                device = device_id,
                "delivering commands failed, will retry: {e}"
            );
            return;
        }
    };
    claimed.sort_by_key(|c| c.issued_at);
    for rec in claimed {
        match wire_text(&rec) {
            Ok(text) => {
                tracing::info!(device = device_id, command = %rec.command_id, "command sent");
                if tx.send(Outbound::Command(text)).is_ok() {
                    hub.metrics.commands_delivered.inc();
                }
            }
            Err(e) => tracing::error!("{e}"),
        }
        hub.publish_command(rec).await;
    }
}

/// Records a device's answer. `None` when the command is unknown, of another device, or final.
pub async fn record_answer(
    hub: &Hub,
    db: &Db,
    device_id: &str,
    answer: &CommandAnswer,
) -> ApiResult<Option<CommandRecord>> {
    let status = CommandStatus::from(answer.status);
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "UPDATE commands SET status = $3, status_at = now(), reason = $4 \
                 WHERE command_id = $1 AND device_id = $2 AND status IN ('PENDING', 'SENT') \
                 RETURNING {COLUMNS}"
            ),
            &[
                &answer.command_id,
                &device_id,
                &status.as_str(),
                &answer.reason,
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let rec = record(&row)?;
    let latency = (chrono::Utc::now() - rec.issued_at).num_milliseconds() as f64 / 1000.0;
    hub.metrics.command_answer_seconds.observe(latency.max(0.0));
    hub.publish_command(rec.clone()).await;
    Ok(Some(rec))
}

/// The stored command `command_id`.
pub(crate) async fn load(db: &Db, command_id: &str) -> ApiResult<CommandRecord> {
    let client = db.pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM commands WHERE command_id = $1"),
            &[&command_id],
        )
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no command {command_id:?}")))?;
    record(&row)
}

/// One round of the sweeper: expire overdue commands, deliver pending ones to local sockets.
async fn sweep(hub: &Hub, db: &Db) -> ApiResult<()> {
    let client = db.pool.get().await?;
    let expired = client
        .query(
            &format!(
                "UPDATE commands SET status = 'EXPIRED', status_at = now(), \
                   reason = CASE status WHEN 'PENDING' THEN 'not delivered before expiry' \
                                        ELSE 'not answered before expiry' END \
                 WHERE status IN ('PENDING', 'SENT') AND expires_at <= now() RETURNING {COLUMNS}"
            ),
            &[],
        )
        .await?;
    let local = hub.connected_devices();
    let waiting = if local.is_empty() {
        Vec::new()
    } else {
        client
            .query(
                "SELECT DISTINCT device_id FROM commands \
                 WHERE status = 'PENDING' AND expires_at > now() AND device_id = ANY($1)",
                &[&local],
            )
            .await?
    };
    drop(client);
    for row in &expired {
        let rec = record(row)?;
        tracing::info!(device = %rec.device_id, command = %rec.command_id, "command expired");
        hub.publish_command(rec).await;
    }
    for row in waiting {
        let device: String = row.get(0);
        deliver_pending(hub, db, &device, false).await;
    }
    Ok(())
}

/// Sweeps every `command_sweep_interval_ms`, at once after the hub's listener reconnected, and
/// delivers at once what the hub asks for (a command another instance issued for a device
/// connected here).
async fn sweeper(hub: Arc<Hub>, db: Db, config: CloudConfig) {
    let mut tick = tokio::time::interval(config.command_sweep_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = hub.delivery_requests();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.resync.notified() => {}
            request = requests.recv() => match request {
                Ok(device_id) => {
                    deliver_pending(&hub, &db, &device_id, false).await;
                    continue;
                }
                // Missed some: the sweep below delivers to every device connected here.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            _ = hub.stopped() => break,
        }
        if let Err(e) = sweep(&hub, &db).await {
            tracing::warn!("command sweep failed: {e}");
        }
    }
}

/// Starts the sweeper (expiry and delivery).
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("command sweeper", |rocket| async move {
        let config: CloudConfig = need!(rocket);
        let db: Db = need!(rocket);
        let hub: Arc<Hub> = need!(rocket);
        tokio::spawn(sweeper(hub, db, config));
        Ok(rocket)
    })
}
