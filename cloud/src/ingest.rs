//! Telemetry ingest: batches packets from all device sockets into one multi-row insert.
//!
//! A socket task [`submit`](Ingest::submit)s the valid packets of the frames it read together
//! (a device's backlog stays together in the queue) with the sender of its socket. The writer
//! collects packets until it has `batch_max_rows` or the first has waited `batch_max_delay_ms`,
//! inserts them with one prepared `INSERT … SELECT FROM UNNEST(…) ON CONFLICT (device_id, time)
//! DO NOTHING RETURNING device_id, time`, and only after COMMIT sends each packet's timestamp
//! back to its socket for the `TELEMETRY_ACK` (one message per socket and batch). A resent
//! packet conflicts, inserts nothing, and is acknowledged again.
//!
//! Events are derived before the insert as if every packet were new: when that gives none (the
//! usual case: no state change, no flag raised or cleared) no subset of the packets can give
//! one. Such a batch whose packets are all newer than their devices' stored rows (the usual case
//! again) goes in by one binary `COPY` ([`copy_statement`], PostgreSQL's bulk path); if a packet
//! turns out stored already (by another instance), the COPY fails as a whole and the batch takes
//! the `UNNEST` insert, a single statement committed on its own. A batch with events shares a
//! transaction with the events derived from the rows it really inserted.
//! Acknowledging and publishing a committed batch runs beside the writer, which meanwhile
//! stores the next one.
//!
//! A packet older than its device's newest stored row (a backlog after an outage arrives after
//! the live packets) lands between two stored rows: the events of that stretch are derived again
//! in SQL ([`REDERIVE_EVENTS`]) from the stored rows, from the row before the earliest late packet
//! to the row after the latest, in the same transaction as the insert.
//!
//! With TimescaleDB, the times of packets stored below the per-minute aggregate's watermark go
//! to an [`AggregateRefresher`], so bucketed history includes them within about a second.
//!
//! When the database is slow or down the writer retries the same batch with backoff; the queue
//! ([`CloudConfig::ingest_queue`]) fills, [`submit`](Ingest::submit) waits, sockets stop being
//! read: memory stays bounded, nothing is acknowledged that is not stored, nothing is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use rocket::fairing::AdHoc;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Statement};

use crate::config::CloudConfig;
use crate::db::timescale::AggregateRefresher;
use crate::db::{self, Db, DbError};
use crate::hub::{Hub, Outbound, OutboundTx};
use crate::server::need;

/// One validated packet waiting to be stored.
pub struct Packet {
    pub telemetry: Telemetry,
    /// Fields beyond the spec's, stored in the `extensions` column.
    pub extensions: Option<Value>,
    /// Where the acknowledgement goes once the packet is committed.
    pub ack: OutboundTx,
    /// The socket it came on ([`Hub::register`]): a device's cached last state is read again
    /// from the database when its packets come on another socket, since while it was away it
    /// may have sent to another instance.
    pub conn_id: u64,
}

/// Handle to the writer, managed by Rocket.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Packet>,
}

#[derive(Debug, thiserror::Error)]
#[error("the ingest writer has stopped")]
pub struct WriterStopped;

impl Ingest {
    /// Queues packets, in order and next to each other (so a device's backlog lands in one
    /// batch and is acknowledged together); waits while the queue is full (back-pressure).
    pub async fn submit(&self, packets: Vec<Packet>) -> Result<(), WriterStopped> {
        let most = self.tx.max_capacity();
        let mut packets = packets.into_iter();
        while packets.len() > 0 {
            let permits = self
                .tx
                .reserve_many(packets.len().min(most))
                .await
                .map_err(|_| WriterStopped)?;
            for (permit, packet) in permits.zip(&mut packets) {
                permit.send(packet);
            }
        }
        Ok(())
    }
}

const INSERT_TELEMETRY: &str = "\
INSERT INTO telemetry (time, device_id, state, mode, error_flags, wifi_strength, \
    battery_voltage, battery_current, battery_power, battery_soc, \
    grid_voltage, grid_power, grid_frequency, extensions) \
SELECT t, d, s, m, CASE WHEN f = '' THEN '{}'::text[] ELSE string_to_array(f, ',') END, \
    w, bv, bc, bp, bs, gv, gp, gf, e \
FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
    $7::float8[], $8::float8[], $9::float8[], $10::float8[], \
    $11::float8[], $12::float8[], $13::float8[], $14::jsonb[]) \
    AS u(t, d, s, m, f, w, bv, bc, bp, bs, gv, gp, gf, e) \
ON CONFLICT (device_id, time) DO NOTHING \
RETURNING device_id, time";

/// The fast way in for a batch of packets all newer than their devices' stored rows: binary
/// COPY, PostgreSQL's bulk path (about twice the rows per second of the `UNNEST` insert on the
/// development machine). It has no `ON CONFLICT`: a packet stored meanwhile by another instance
/// fails the whole COPY with a unique violation, and the batch goes the `UNNEST` way instead.
/// `table` is `telemetry` or a table like it (the load bench's baseline).
pub fn copy_statement(table: &str) -> String {
    format!(
        "COPY {table} (time, device_id, state, mode, error_flags, wifi_strength, \
         battery_voltage, battery_current, battery_power, battery_soc, \
         grid_voltage, grid_power, grid_frequency, extensions) FROM STDIN BINARY"
    )
}

/// The column types of [`copy_statement`], in its order.
const COPY_TYPES: &[Type] = &[
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT_ARRAY,
    Type::INT4,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::FLOAT8,
    Type::JSONB,
];

const INSERT_EVENTS: &str = "\
INSERT INTO events (device_id, time, kind, from_state, to_state, flag) \
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])";

/// Derives the events of one device again for the stretch that late packets fell into: from the
/// stored row before `$2` (the earliest late packet) to the stored row after `$3` (the latest),
/// replacing the events recorded there. Rows of the current transaction are visible to it.
const REDERIVE_EVENTS: &str = "\
WITH bounds AS ( \
    SELECT coalesce((SELECT max(time) FROM telemetry WHERE device_id = $1::text AND time < $2), $2) AS lo, \
           coalesce((SELECT min(time) FROM telemetry WHERE device_id = $1::text AND time > $3), $3) AS hi \
), span AS ( \
    SELECT t.time, t.state, t.error_flags, \
           lag(t.state) OVER w AS prev_state, lag(t.error_flags) OVER w AS prev_flags \
    FROM telemetry t, bounds b \
    WHERE t.device_id = $1::text AND t.time >= b.lo AND t.time <= b.hi \
    WINDOW w AS (ORDER BY t.time) \
), replaced AS ( \
    DELETE FROM events e USING bounds b \
    WHERE e.device_id = $1::text AND e.time > b.lo AND e.time <= b.hi \
) \
INSERT INTO events (device_id, time, kind, from_state, to_state, flag) \
SELECT $1::text, s.time, 'STATE_CHANGED', s.prev_state, s.state, NULL::text FROM span s \
    WHERE s.prev_state IS NOT NULL AND s.prev_state <> s.state \
UNION ALL \
SELECT $1::text, s.time, 'ERROR_RAISED', NULL, NULL, f FROM span s, unnest(s.error_flags) AS f \
    WHERE s.prev_state IS NOT NULL AND NOT (f = ANY (s.prev_flags)) \
UNION ALL \
SELECT $1::text, s.time, 'ERROR_CLEARED', NULL, NULL, f FROM span s, unnest(s.prev_flags) AS f \
    WHERE s.prev_state IS NOT NULL AND NOT (f = ANY (s.error_flags))";

/// The last stored state of a device, to derive events from the next packet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastState {
    pub time: DateTime<Utc>,
    pub state: String,
    pub flags: Vec<String>,
    /// The socket whose packets this state is current for.
    pub conn_id: u64,
}

/// A change seen between two consecutive packets of a device.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub device_id: String,
    pub time: DateTime<Utc>,
    pub kind: &'static str,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub flag: Option<String>,
}

/// Events between `prev` and `next` (pure; unit-tested).
pub(crate) fn derive_events(device_id: &str, prev: &LastState, next: &LastState) -> Vec<Event> {
    let mut out = Vec::new();
    let event = |kind, from_state, to_state, flag| Event {
        device_id: device_id.to_string(),
        time: next.time,
        kind,
        from_state,
        to_state,
        flag,
    };
    if prev.state != next.state {
        out.push(event(
            "STATE_CHANGED",
            Some(prev.state.clone()),
            Some(next.state.clone()),
            None,
        ));
    }
    for f in next.flags.iter().filter(|f| !prev.flags.contains(f)) {
        out.push(event("ERROR_RAISED", None, None, Some(f.clone())));
    }
    for f in prev.flags.iter().filter(|f| !next.flags.contains(f)) {
        out.push(event("ERROR_CLEARED", None, None, Some(f.clone())));
    }
    out
}

impl LastState {
    /// Becomes the state of `t`, reusing the allocations.
    fn set_to(&mut self, t: &Telemetry) {
        let status = &t.system_status;
        self.time = t.timestamp.as_datetime();
        if self.state != status.state.as_str() {
            self.state.clear();
            self.state.push_str(status.state.as_str());
        }
        if self.flags.len() != status.error_flags.len()
            || self
                .flags
                .iter()
                .zip(&status.error_flags)
                .any(|(a, b)| a != b.as_str())
        {
            self.flags = status
                .error_flags
                .iter()
                .map(|f| f.as_str().to_string())
                .collect();
        }
    }
}

/// The state `t` shows; `conn_id` 0 (no socket), so a device first stored by this packet is read
/// from the database once more by its next batch.
fn last_state_of(t: &Telemetry) -> LastState {
    LastState {
        conn_id: 0,
        time: t.timestamp.as_datetime(),
        state: t.system_status.state.as_str().to_string(),
        flags: t
            .system_status
            .error_flags
            .iter()
            .map(|f| f.as_str().to_string())
            .collect(),
    }
}

struct Writer {
    /// Where [`Connection`] connects.
    url: String,
    /// The writer's own connection, opened on its thread; dropped after a failure and opened
    /// again for the retry.
    conn: Option<Connection>,
    hub: Arc<Hub>,
    /// Last stored state per device (events of newer packets are derived against it; an older
    /// packet filled in later has its stretch derived again by [`REDERIVE_EVENTS`]).
    last: HashMap<String, LastState>,
    /// TimescaleDB: told the times of stored packets, so the aggregate covers late ones at once.
    refresher: Option<AggregateRefresher>,
}

/// What [`derive`] makes of a batch: the events, and the newest packet of each device.
struct Derived<'a> {
    events: Vec<Event>,
    updates: HashMap<&'a str, &'a Telemetry>,
}

/// The state a packet is compared with: stored before this batch, or an earlier packet of it.
#[derive(Clone, Copy)]
enum Prev<'a> {
    Stored(&'a LastState),
    Packet(&'a Telemetry),
}

impl Prev<'_> {
    fn time(self) -> DateTime<Utc> {
        match self {
            Prev::Stored(s) => s.time,
            Prev::Packet(t) => t.timestamp.as_datetime(),
        }
    }

    /// Same state and same set of flags as `t` (flags never repeat within a packet).
    fn same_as(self, t: &Telemetry) -> bool {
        let status = &t.system_status;
        match self {
            Prev::Stored(s) => {
                s.state == status.state.as_str()
                    && s.flags.len() == status.error_flags.len()
                    && status
                        .error_flags
                        .iter()
                        .all(|f| s.flags.iter().any(|g| g == f.as_str()))
            }
            Prev::Packet(p) => {
                let prev = &p.system_status;
                prev.state == status.state
                    && prev.error_flags.len() == status.error_flags.len()
                    && status
                        .error_flags
                        .iter()
                        .all(|f| prev.error_flags.contains(f))
            }
        }
    }

    fn to_last_state(self) -> LastState {
        match self {
            Prev::Stored(s) => s.clone(),
            Prev::Packet(t) => last_state_of(t),
        }
    }
}

/// Derives the events of the packets of `batch` that are `fresh` (all when `None`), per device
/// in time order, against `last` (pure). Allocates only for the events themselves.
fn derive<'a>(
    last: &HashMap<String, LastState>,
    batch: &'a [Packet],
    fresh: Option<&[bool]>,
) -> Derived<'a> {
    let mut new: Vec<&'a Telemetry> = match fresh {
        None => batch.iter().map(|p| &p.telemetry).collect(),
        Some(fresh) => batch
            .iter()
            .zip(fresh)
            .filter(|(_, is_new)| **is_new)
            .map(|(p, _)| &p.telemetry)
            .collect(),
    };
    new.sort_by(|a, b| (&a.device_id, a.timestamp).cmp(&(&b.device_id, b.timestamp)));
    let mut updates: HashMap<&'a str, &'a Telemetry> = HashMap::new();
    let mut events = Vec::new();
    for t in new {
        let prev = updates
            .get(t.device_id.as_str())
            .map(|p| Prev::Packet(p))
            .or_else(|| last.get(&t.device_id).map(Prev::Stored));
        match prev {
            Some(prev) if prev.time() >= t.timestamp.as_datetime() => continue,
            Some(prev) if !prev.same_as(t) => events.extend(derive_events(
                &t.device_id,
                &prev.to_last_state(),
                &last_state_of(t),
            )),
            _ => {}
        }
        updates.insert(t.device_id.as_str(), t);
    }
    Derived { events, updates }
}

/// The batch as the columns of [`INSERT_TELEMETRY`], borrowing from the packets.
struct Columns<'a> {
    time: Vec<DateTime<Utc>>,
    device: Vec<&'a str>,
    state: Vec<&'static str>,
    mode: Vec<&'static str>,
    flags: Vec<String>,
    wifi: Vec<Option<i32>>,
    numbers: [Vec<Option<f64>>; 7],
    ext: Vec<Option<&'a Value>>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [Packet]) -> Self {
        let n = batch.len();
        let mut c = Columns {
            time: Vec::with_capacity(n),
            device: Vec::with_capacity(n),
            state: Vec::with_capacity(n),
            mode: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            wifi: Vec::with_capacity(n),
            numbers: std::array::from_fn(|_| Vec::with_capacity(n)),
            ext: Vec::with_capacity(n),
        };
        for p in batch {
            let t = &p.telemetry;
            c.time.push(t.timestamp.as_datetime());
            c.device.push(t.device_id.as_str());
            c.state.push(t.system_status.state.as_str());
            c.mode.push(t.system_status.mode.as_str());
            let mut flags = String::new();
            for (i, f) in t.system_status.error_flags.iter().enumerate() {
                if i > 0 {
                    flags.push(',');
                }
                flags.push_str(f.as_str());
            }
            c.flags.push(flags);
            c.wifi.push(t.system_status.wifi_strength);
            let values = [
                t.battery.voltage,
                t.battery.current,
                t.battery.power,
                t.battery.soc,
                t.grid.voltage,
                t.grid.power,
                t.grid.frequency,
            ];
            for (col, v) in c.numbers.iter_mut().zip(values) {
                col.push(v);
            }
            c.ext.push(p.extensions.as_ref());
        }
        c
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        let [bv, bc, bp, bs, gv, gp, gf] = &self.numbers;
        [
            &self.time,
            &self.device,
            &self.state,
            &self.mode,
            &self.flags,
            &self.wifi,
            bv,
            bc,
            bp,
            bs,
            gv,
            gp,
            gf,
            &self.ext,
        ]
    }
}

/// Which packets of `batch` the `RETURNING device_id, time` rows name (the others were stored
/// before: duplicates).
fn fresh_of(batch: &[Packet], rows: &[Row]) -> Vec<bool> {
    let mut fresh = vec![false; batch.len()];
    if rows.len() == batch.len() {
        // Every row is new (a packet repeated within the batch inserts once, so it cannot be
        // this case).
        fresh.fill(true);
        return fresh;
    }
    let mut at: HashMap<(&str, DateTime<Utc>), Vec<usize>> = HashMap::with_capacity(batch.len());
    for (i, p) in batch.iter().enumerate() {
        at.entry((
            p.telemetry.device_id.as_str(),
            p.telemetry.timestamp.as_datetime(),
        ))
        .or_default()
        .push(i);
    }
    for r in rows {
        let key = (r.get::<_, &str>(0), r.get::<_, DateTime<Utc>>(1));
        for &i in at.get(&key).into_iter().flatten() {
            fresh[i] = true;
        }
    }
    fresh
}

/// Whether a packet of `batch` is older than its device's newest stored row.
fn any_late(last: &HashMap<String, LastState>, batch: &[Packet]) -> bool {
    batch.iter().any(|p| {
        last.get(&p.telemetry.device_id)
            .is_some_and(|s| p.telemetry.timestamp.as_datetime() < s.time)
    })
}

/// Whether every packet of `batch` is newer than its device's newest stored row (so none can be
/// a duplicate, unless another instance stored it meanwhile).
fn all_newer(last: &HashMap<String, LastState>, batch: &[Packet]) -> bool {
    batch.iter().all(|p| {
        last.get(&p.telemetry.device_id)
            .is_none_or(|s| p.telemetry.timestamp.as_datetime() > s.time)
    })
}

/// Stores `batch` with one binary COPY; all or nothing.
async fn copy_batch(conn: &Connection, batch: &[Packet]) -> Result<(), tokio_postgres::Error> {
    let rows = batch.iter().map(|p| (&p.telemetry, p.extensions.as_ref()));
    copy_rows(&conn.client, &conn.copy, rows).await
}

/// Writes packets (with their extension fields) through a prepared [`copy_statement`]; all or
/// nothing.
pub async fn copy_rows<'a>(
    client: &tokio_postgres::Client,
    copy: &Statement,
    rows: impl IntoIterator<Item = (&'a Telemetry, Option<&'a Value>)>,
) -> Result<(), tokio_postgres::Error> {
    let sink = client.copy_in(copy).await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, COPY_TYPES));
    for (t, extensions) in rows {
        let time = t.timestamp.as_datetime();
        let flags: Vec<&str> = t
            .system_status
            .error_flags
            .iter()
            .map(|f| f.as_str())
            .collect();
        let row: [&(dyn ToSql + Sync); 14] = [
            &time,
            &t.device_id,
            &t.system_status.state.as_str(),
            &t.system_status.mode.as_str(),
            &flags,
            &t.system_status.wifi_strength,
            &t.battery.voltage,
            &t.battery.current,
            &t.battery.power,
            &t.battery.soc,
            &t.grid.voltage,
            &t.grid.power,
            &t.grid.frequency,
            &extensions,
        ];
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    Ok(())
}

/// Per device, the earliest and the latest newly stored packet older than its newest stored row.
fn late_spans<'a>(
    last: &HashMap<String, LastState>,
    batch: &'a [Packet],
    fresh: &[bool],
) -> HashMap<&'a str, (DateTime<Utc>, DateTime<Utc>)> {
    let mut spans: HashMap<&str, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    for (p, _) in batch.iter().zip(fresh).filter(|(_, is_new)| **is_new) {
        let t = p.telemetry.timestamp.as_datetime();
        let device = p.telemetry.device_id.as_str();
        if last.get(device).is_some_and(|s| t < s.time) {
            let span = spans.entry(device).or_insert((t, t));
            span.0 = span.0.min(t);
            span.1 = span.1.max(t);
        }
    }
    spans
}

impl Writer {
    /// Stores one batch. Returns which packets were new (not duplicates).
    ///
    /// A batch that cannot produce events (every packet carries its device's last state; the
    /// usual case) is one prepared statement on its own, committed by itself: one round trip.
    /// Otherwise the insert and the events derived from the rows it really inserted share a
    /// transaction.
    async fn write(&mut self, batch: &[Packet]) -> Result<Vec<bool>, WriteError> {
        let mut conn = match self.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => Connection::open(&self.url).await?,
        };
        let fresh = self.write_on(&mut conn, batch).await?;
        self.conn = Some(conn);
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

    async fn write_on(
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
                    self.remember(all.updates);
                    return Ok(vec![true; batch.len()]);
                }
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    tracing::debug!("a packet of the batch is stored already; inserting instead");
                }
                Err(e) => return Err(e.into()),
            }
        }
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
    fn remember(&mut self, updates: HashMap<&str, &Telemetry>) {
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
    async fn load_last_states(
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
        let rows = client
            .query(
                "SELECT DISTINCT ON (device_id) device_id, time, state, error_flags \
                 FROM telemetry WHERE device_id = ANY($1) ORDER BY device_id, time DESC",
                &[&devices],
            )
            .await?;
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
struct Connection {
    client: tokio_postgres::Client,
    insert: Statement,
    insert_events: Statement,
    rederive_events: Statement,
    copy: Statement,
}

impl Connection {
    async fn open(url: &str) -> Result<Connection, WriteError> {
        let client = db::connect(url).await?;
        let insert = client.prepare(INSERT_TELEMETRY).await?;
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

/// Why a batch could not be stored this time; either way the writer retries.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{0}")]
    Connect(#[from] DbError),
    #[error("{0}")]
    Sql(#[from] tokio_postgres::Error),
}

async fn run(
    mut rx: mpsc::Receiver<Packet>,
    mut writer: Writer,
    config: CloudConfig,
    committed_tx: mpsc::UnboundedSender<(Vec<Packet>, Vec<bool>)>,
) {
    let max_rows = config.batch_max_rows.max(1);
    let mut batch: Vec<Packet> = Vec::with_capacity(max_rows);
    loop {
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = writer.hub.stopped() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + config.batch_max_delay();
        while batch.len() < max_rows {
            let room = max_rows - batch.len();
            tokio::select! {
                got = rx.recv_many(&mut batch, room) => if got == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let fresh = write_with_retry(&mut writer, &batch).await;
        let Some(fresh) = fresh else { break };
        let committed = std::mem::replace(&mut batch, Vec::with_capacity(max_rows));
        let _ = committed_tx.send((committed, fresh));
    }
    tracing::info!("ingest writer stopped");
}

/// Acknowledges committed batches and publishes their new packets, in commit order, while the
/// writer already stores the next batch.
async fn acknowledge(
    mut committed: mpsc::UnboundedReceiver<(Vec<Packet>, Vec<bool>)>,
    hub: Arc<Hub>,
) {
    while let Some((batch, fresh)) = committed.recv().await {
        ack(&batch);
        for (packet, is_new) in batch.into_iter().zip(fresh) {
            if is_new {
                hub.publish_telemetry(packet.telemetry).await;
            }
        }
    }
}

/// Acknowledges a committed batch: one message per run of packets from the same socket (a
/// device's backlog arrives together), so its socket wakes once and sends one `TELEMETRY_ACK`.
fn ack(batch: &[Packet]) {
    let mut rest = batch;
    while let Some(first) = rest.first() {
        let run = rest
            .iter()
            .take_while(|p| p.ack.same_channel(&first.ack))
            .count();
        let timestamps = rest[..run].iter().map(|p| p.telemetry.timestamp).collect();
        let _ = first.ack.send(Outbound::Acks(timestamps));
        rest = &rest[run..];
    }
}

/// Writes `batch`, retrying with backoff until it is committed. `None` when the server stops
/// first (nothing acknowledged; the devices resend).
async fn write_with_retry(writer: &mut Writer, batch: &[Packet]) -> Option<Vec<bool>> {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        match writer.write(batch).await {
            Ok(fresh) => {
                if attempt > 0 {
                    tracing::info!(
                        rows = batch.len(),
                        attempt,
                        "telemetry batch stored after retries"
                    );
                }
                return Some(fresh);
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(
                    rows = batch.len(),
                    attempt,
                    "storing telemetry failed, retrying: {e}"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = writer.hub.stopped() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Manages [`Ingest`] and starts the writer.
pub fn stage() -> AdHoc {
    AdHoc::try_on_ignite("ingest", |rocket| async move {
        let config: CloudConfig = need!(rocket);
        let db: Db = need!(rocket);
        let hub: Arc<Hub> = need!(rocket);
        let (tx, rx) = mpsc::channel(config.ingest_queue.max(1));
        let (committed_tx, committed_rx) = mpsc::unbounded_channel();
        tokio::spawn(acknowledge(committed_rx, hub.clone()));
        let writer = Writer {
            url: db.url.clone(),
            conn: None,
            hub,
            last: HashMap::new(),
            refresher: db
                .timescale
                .then(|| AggregateRefresher::spawn(db.pool.clone())),
        };
        // The writer is the one serial step of ingest. On the main runtime, under load, its
        // task and its connection's task wait behind thousands of socket tasks every time
        // PostgreSQL answers; on a thread of their own they run as soon as the answer is there.
        let spawned = std::thread::Builder::new()
            .name("ems-ingest".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(run(rx, writer, config, committed_tx)),
                    Err(e) => tracing::error!("starting the ingest writer failed: {e}"),
                }
            });
        match spawned {
            Ok(_) => Ok(rocket.manage(Ingest { tx })),
            Err(e) => {
                tracing::error!("starting the ingest writer thread failed: {e}");
                Err(rocket)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(time: i64, state: &str, flags: &[&str]) -> LastState {
        LastState {
            conn_id: 1,
            time: DateTime::from_timestamp(time, 0).unwrap(),
            state: state.into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn state_change_and_flags_raised_and_cleared() {
        let events = derive_events(
            "d",
            &s(1, "CHARGING", &["OVERHEAT", "COMM_LOSS"]),
            &s(2, "ERROR", &["COMM_LOSS", "GRID_FAULT"]),
        );
        let kinds: Vec<_> = events
            .iter()
            .map(|e| (e.kind, e.flag.as_deref(), e.to_state.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("STATE_CHANGED", None, Some("ERROR")),
                ("ERROR_RAISED", Some("GRID_FAULT"), None),
                ("ERROR_CLEARED", Some("OVERHEAT"), None),
            ]
        );
    }

    #[test]
    fn no_change_no_event() {
        assert!(derive_events("d", &s(1, "IDLE", &[]), &s(2, "IDLE", &[])).is_empty());
    }
}
