//! The audit trail: who did what, in the `audit_log` table. Commands, token and device changes
//! and failed authentications are recorded; `GET /api/v1/audit` reads them.
//!
//! Recording never delays or fails the request it describes: an [`Entry`] goes into a bounded
//! queue and a writer task inserts them in batches. A flood of failed attempts therefore costs
//! no query per attempt; when the queue is full (the database is down or far behind) entries
//! are dropped, counted and logged, never waited for.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ems_protocol::api::Role;
use rocket::fairing::AdHoc;
use tokio::sync::mpsc;

use crate::db::Db;
use crate::stage::need;

/// Entries waiting for the writer, at most.
const QUEUE: usize = 4096;
/// Entries per insert, at most.
const BATCH: usize = 256;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    CommandIssued,
    TokenCreated,
    TokenRevoked,
    TokenRotated,
    DeviceCreated,
    DeviceTagged,
    TariffSet,
    PlannerSet,
    DeviceTokenRotated,
    DeviceDisabled,
    DeviceEnabled,
    DeviceDeleted,
    AuthFailed,
    AlertRuleAdded,
    AlertRuleDeleted,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::CommandIssued => "COMMAND_ISSUED",
            Action::TokenCreated => "TOKEN_CREATED",
            Action::TokenRevoked => "TOKEN_REVOKED",
            Action::TokenRotated => "TOKEN_ROTATED",
            Action::DeviceCreated => "DEVICE_CREATED",
            Action::DeviceTagged => "DEVICE_TAGGED",
            Action::TariffSet => "TARIFF_SET",
            Action::PlannerSet => "PLANNER_SET",
            Action::DeviceTokenRotated => "DEVICE_TOKEN_ROTATED",
            Action::DeviceDisabled => "DEVICE_DISABLED",
            Action::DeviceEnabled => "DEVICE_ENABLED",
            Action::DeviceDeleted => "DEVICE_DELETED",
            Action::AuthFailed => "AUTH_FAILED",
            Action::AlertRuleAdded => "ALERT_RULE_ADDED",
            Action::AlertRuleDeleted => "ALERT_RULE_DELETED",
        }
    }
}

/// One line of the trail.
#[derive(Debug, Clone)]
pub struct Entry {
    pub actor: Option<String>,
    pub role: Option<Role>,
    pub action: Action,
    pub device_id: Option<String>,
    pub command_id: Option<String>,
    pub target: Option<String>,
    pub source: Option<IpAddr>,
    pub result: String,
}

impl Entry {
    /// The token `actor` with `role`, from `source`, did `action`, successfully.
    pub fn by(actor: &str, role: Role, source: Option<IpAddr>, action: Action) -> Self {
        Entry {
            actor: Some(actor.to_string()),
            role: Some(role),
            action,
            device_id: None,
            command_id: None,
            target: None,
            source,
            result: "ok".into(),
        }
    }

    /// Somebody from `source` failed to authenticate: `why`.
    pub fn failed_auth(source: Option<IpAddr>, target: Option<String>, why: String) -> Self {
        Entry {
            actor: None,
            role: None,
            action: Action::AuthFailed,
            device_id: None,
            command_id: None,
            target,
            source,
            result: why,
        }
    }

    pub fn device(mut self, device_id: &str) -> Self {
        self.device_id = Some(device_id.to_string());
        self
    }

    pub fn command(mut self, command_id: &str) -> Self {
        self.command_id = Some(command_id.to_string());
        self
    }

    pub fn target(mut self, target: &str) -> Self {
        self.target = Some(target.to_string());
        self
    }
}

/// The handle routes record through (Rocket-managed).
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl Audit {
    /// Queues `entry` for the writer; drops it (counted, logged) when the queue is full.
    pub fn record(&self, entry: Entry) {
        if self.tx.try_send(entry).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "audit queue full (database down or slow): entries dropped"
                );
            }
        }
    }
}

const INSERT: &str = "\
INSERT INTO audit_log (actor, role, action, device_id, command_id, target, source, result) \
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
    $7::text[], $8::text[])";

/// `text` as PostgreSQL can store it: a NUL byte (from a request path or body) becomes U+FFFD.
/// One such entry would otherwise fail its whole batch: every entry written with it was lost.
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

async fn write(db: &Db, batch: &[Entry]) -> Result<(), String> {
    let col = |f: &dyn Fn(&Entry) -> Option<String>| {
        batch.iter().map(|e| f(e).map(storable)).collect::<Vec<_>>()
    };
    let actor = col(&|e| e.actor.clone());
    let role = col(&|e| e.role.map(|r| r.as_str().to_string()));
    let action = col(&|e| Some(e.action.as_str().to_string()));
    let device = col(&|e| e.device_id.clone());
    let command = col(&|e| e.command_id.clone());
    let target = col(&|e| e.target.clone());
    let source = col(&|e| e.source.map(|s| s.to_string()));
    let result = col(&|e| Some(e.result.clone()));
    let client = db.pool.get().await.map_err(|e| e.to_string())?;
    client
        .execute(
            INSERT,
            &[
                &actor, &role, &action, &device, &command, &target, &source, &result,
            ],
        )
        .await
        .map_err(|e| crate::db::describe(&e))?;
    Ok(())
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Entry>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = write(&db, &batch).await {
            tracing::warn!(entries = batch.len(), "audit entries not written: {e}");
        }
        batch.clear();
    }
}

/// Manages [`Audit`] and starts its writer.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("audit", |rocket| async move {
        let db: Db = need!(rocket);
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(db, rx));
        Ok(rocket.manage(Audit {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }))
    })
}
