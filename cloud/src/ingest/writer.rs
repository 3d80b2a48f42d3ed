//! The writer: stores one batch at a time on its own connection, by binary `COPY` in the steady
//! state and by the `UNNEST` insert (with the batch's events, in one transaction) otherwise.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use serde_json::{Map, Value};
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

use super::Packet;
use super::events::{Derived, LastState, all_newer, any_late, derive, last_state_of, late_spans};
use super::sql::{Columns, INSERT_EVENTS, REDERIVE_EVENTS, copy_rows, copy_statement, fresh_of};
use crate::db::timescale::AggregateRefresher;
use crate::db::{self, DbError};
use crate::hub::Hub;

pub(super) struct Writer {
    /// Where [`Connection`] connects.
    pub(super) url: String,
    /// The writer's own connection, opened on its thread; dropped after a failure and opened
    /// again for the retry.
    pub(super) conn: Option<Connection>,
    pub(super) hub: Arc<Hub>,
    /// Last stored state per device (events of newer packets are derived against it; an older
    /// packet filled in later has its stretch derived again by [`REDERIVE_EVENTS`]).
    pub(super) last: HashMap<String, LastState>,
    /// TimescaleDB: told the times of stored packets, so the aggregate covers late ones at once.
    pub(super) refresher: Option<AggregateRefresher>,
}

/// Stores `batch` with one binary COPY; all or nothing.
pub(super) async fn copy_batch(
    conn: &Connection,
    batch: &[Packet],
) -> Result<(), tokio_postgres::Error> {
    let rows = batch.iter().map(|p| (&p.telemetry, p.extensions.as_ref()));
    copy_rows(&conn.client, &conn.copy, rows).await
}

impl Writer {
    /// Keeps a packet the database refused in `rejected_telemetry` (its JSON as text, and why).
    /// A packet already there stays as it was. When even that fails, the packet is logged whole:
    /// it is not lost either way.
    pub(super) async fn reject(&mut self, packet: &Packet, why: &str) {
        let mut json = serde_json::to_value(&packet.telemetry).unwrap_or_default();
        if let (Some(obj), Some(Value::Object(ext))) = (json.as_object_mut(), &packet.extensions) {
            merge(obj, ext);
        }
        let text = json.to_string();
        let stored = async {
            let conn = match self.conn.take() {
                Some(conn) if !conn.client.is_closed() => conn,
                _ => Connection::open(&self.url).await?,
            };
            let result = conn
                .client
                .execute(
                    "INSERT INTO rejected_telemetry (device_id, time, packet, error) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (device_id, time) DO NOTHING",
                    &[
                        &packet.telemetry.device_id,
                        &packet.telemetry.timestamp.as_datetime(),
                        &text,
                        &why,
                    ],
                )
                .await;
            self.conn = Some(conn);
            result.map_err(WriteError::from)
        }
        .await;
        match stored {
            Ok(_) => tracing::warn!(
                device = %packet.telemetry.device_id,
                timestamp = %packet.telemetry.timestamp,
                "telemetry packet refused by the database, kept in rejected_telemetry: {why}"
            ),
            Err(e) => tracing::error!(
                device = %packet.telemetry.device_id,
                timestamp = %packet.telemetry.timestamp,
                "telemetry packet refused by the database ({why}) and not recorded in \
                 rejected_telemetry ({e}); the packet: {}",
                crate::logsafe::truncate(&text, 4096)
            ),
        }
    }

    /// Stores one batch. Returns which packets were new (not duplicates).
    ///
    /// A batch that cannot produce events (every packet carries its device's last state; the
    /// usual case) is one prepared statement on its own, committed by itself: one round trip.
    /// Otherwise the insert and the events derived from the rows it really inserted share a
    /// transaction.
    pub(super) async fn write(&mut self, batch: &[Packet]) -> Result<Vec<bool>, WriteError> {
        let mut conn = match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => Connection::open(&self.url).await?,
        };
        let written = self.write_on(&mut conn, batch).await;
        // After a refused statement the connection is still good (its transaction is rolled
        // back), and bisecting a batch writes many times: keep it.
        if !conn.client.is_closed() {
            self.conn = Some(conn);
        }
        let fresh = written?;
        if let Some(refresher) = &self.refresher {
            refresher.stored(
                batch
                    .iter()
                    .zip(&fresh)
                    .filter(|(_, is_new)| **is_new)
                    .map(|(p, _)| p.telemetry.timestamp.as_datetime()),
            );
        }
        Ok(fresh)
    }

    pub(super) async fn write_on(
        &mut self,
        conn: &mut Connection,
        batch: &[Packet],
    ) -> Result<Vec<bool>, WriteError> {
        self.load_last_states(&conn.client, batch).await?;

        // If every packet were new and still no event arose, then no subset of them can raise
        // one either: all carry the state and flags their device already had. Late packets
        // (older than their device's newest row) need the transaction to derive their stretch.
        let all = derive(&self.last, batch, None);
        if all.events.is_empty() && all_newer(&self.last, batch) {
            match copy_batch(conn, batch).await {
                Ok(()) => {
                    self.hub.metrics.batch("copy");
                    self.remember(all.updates);
                    return Ok(vec![true; batch.len()]);
                }
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    tracing::debug!("a packet of the batch is stored already; inserting instead");
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.hub.metrics.batch("insert");
        let columns = Columns::of(batch);
        let insert = &conn.insert;
        let client = &mut conn.client;
        let (fresh, updates) = if all.events.is_empty() && !any_late(&self.last, batch) {
            let rows = client.query(insert, &columns.params()).await?;
            let fresh = fresh_of(batch, &rows);
            if fresh.iter().all(|f| *f) {
                (fresh, all.updates)
            } else {
                let derived = derive(&self.last, batch, Some(&fresh));
                debug_assert!(derived.events.is_empty());
                (fresh, derived.updates)
            }
        } else {
            let tx = client.transaction().await?;
            let rows = tx.query(insert, &columns.params()).await?;
            let fresh = fresh_of(batch, &rows);
            let Derived { events, updates } = derive(&self.last, batch, Some(&fresh));
            if !events.is_empty() {
                let d: Vec<&str> = events.iter().map(|e| e.device_id.as_str()).collect();
                let t: Vec<DateTime<Utc>> = events.iter().map(|e| e.time).collect();
                let k: Vec<&str> = events.iter().map(|e| e.kind).collect();
                let f: Vec<Option<&str>> = events.iter().map(|e| e.from_state.as_deref()).collect();
                let to: Vec<Option<&str>> = events.iter().map(|e| e.to_state.as_deref()).collect();
                let fl: Vec<Option<&str>> = events.iter().map(|e| e.flag.as_deref()).collect();
                tx.execute(&conn.insert_events, &[&d, &t, &k, &f, &to, &fl])
                    .await?;
            }
            for (device, (from, to)) in late_spans(&self.last, batch, &fresh) {
                tx.execute(&conn.rederive_events, &[&device, &from, &to])
                    .await?;
            }
            tx.commit().await?;
            (fresh, updates)
        };
        self.remember(updates);
        Ok(fresh)
    }

    /// Takes the newest stored packet of each device as its last state.
    pub(super) fn remember(&mut self, updates: HashMap<&str, &Telemetry>) {
        for (device, t) in updates {
            match self.last.get_mut(device) {
                Some(state) => state.set_to(t),
                None => {
                    self.last.insert(device.to_string(), last_state_of(t));
                }
            }
        }
    }

    /// Loads the last stored state of the devices of `batch` seen for the first time since
    /// start or coming on another socket than their cached state: while away, a device may have
    /// sent to another instance, so the database, not the cache, knows its newest row.
    pub(super) async fn load_last_states(
        &mut self,
        client: &tokio_postgres::Client,
        batch: &[Packet],
    ) -> Result<(), WriteError> {
        let mut reload: HashMap<&str, u64> = HashMap::new();
        for p in batch {
            let device = p.telemetry.device_id.as_str();
            let current = self
                .last
                .get(device)
                .is_some_and(|s| s.conn_id == p.conn_id);
            if !current || reload.contains_key(device) {
                reload.insert(device, p.conn_id);
            }
        }
        if reload.is_empty() {
            return Ok(());
        }
        let devices: Vec<&str> = reload.keys().copied().collect();
        let rows = client.query(super::sql::LAST_STATES, &[&devices]).await?;
        for device in &devices {
            self.last.remove(*device);
        }
        for r in rows {
            let device: String = r.get(0);
            let conn_id = reload.get(device.as_str()).copied().unwrap_or_default();
            self.last.insert(
                device,
                LastState {
                    time: r.get(1),
                    state: r.get(2),
                    flags: r.get(3),
                    conn_id,
                },
            );
        }
        Ok(())
    }
}

/// The writer's database connection with its statements prepared.
pub(super) struct Connection {
    client: tokio_postgres::Client,
    insert: Statement,
    insert_events: Statement,
    rederive_events: Statement,
    copy: Statement,
}

impl Connection {
    pub(super) async fn open(url: &str) -> Result<Connection, WriteError> {
        let client = db::connect(url).await?;
        let insert = client.prepare(&crate::db::columns::INSERT).await?;
        let insert_events = client.prepare(INSERT_EVENTS).await?;
        let rederive_events = client.prepare(REDERIVE_EVENTS).await?;
        let copy = client.prepare(&copy_statement("telemetry")).await?;
        Ok(Connection {
            client,
            insert,
            insert_events,
            rederive_events,
            copy,
        })
    }
}

/// Why a batch could not be stored this time: the database refused something in it
/// ([`WriteError::is_refusal`]; the batch is bisected to find the packet), or it could not be
/// reached or is out of resources (the writer retries the same packets).
#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    #[error("{0}")]
    Connect(#[from] DbError),
    #[error("{}", db::describe(.0))]
    Sql(#[from] tokio_postgres::Error),
}

impl WriteError {
    /// Whether PostgreSQL refused the data itself, so that some packet of the batch would be
    /// refused again however often it is retried: data exceptions (class 22: a value out of
    /// range, a character it cannot store), integrity constraints (23, but for unique
    /// violations, which ingest absorbs), program limits (54: a row too large) and errors
    /// raised by triggers (P0). Everything else (a lost connection, no disk space, a lock, a
    /// missing table or permission) is about the server, not the packet: retried, never
    /// blamed on a device.
    pub(super) fn is_refusal(&self) -> bool {
        let WriteError::Sql(e) = self else {
            return false;
        };
        let Some(db) = e.as_db_error() else {
            return false;
        };
        let code = db.code().code();
        code != "23505" && ["22", "23", "54", "P0"].iter().any(|c| code.starts_with(c))
    }
}

/// Puts the extension fields back into the packet's JSON object (nested objects merge).
fn merge(into: &mut Map<String, Value>, ext: &Map<String, Value>) {
    for (k, v) in ext {
        match (into.get_mut(k), v) {
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}
