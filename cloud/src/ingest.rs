//! Telemetry ingest: batches packets from all device sockets into one multi-row insert.
//!
//! A socket task [`submit`](Ingest::submit)s each valid packet with the sender of its socket.
//! The writer collects packets until it has `batch_max_rows` or the first has waited
//! `batch_max_delay_ms`, inserts them with one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT
//! (device_id, time) DO NOTHING` in a transaction together with the events derived from them, and
//! only after COMMIT sends each packet's timestamp back to its socket for the `TELEMETRY_ACK`.
//! A resent packet conflicts, inserts nothing, and is acknowledged again.
//!
//! When the database is slow or down the writer retries the same batch with backoff; the queue
//! ([`CloudConfig::ingest_queue`]) fills, [`submit`](Ingest::submit) waits, sockets stop being
//! read: memory stays bounded, nothing is acknowledged that is not stored, nothing is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ems_protocol::Telemetry;
use rocket::fairing::AdHoc;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::CloudConfig;
use crate::db::Db;
use crate::hub::{Hub, Outbound, OutboundTx};

/// One validated packet waiting to be stored.
pub struct Packet {
    pub telemetry: Telemetry,
    /// Fields beyond the spec's, stored in the `extensions` column.
    pub extensions: Option<Value>,
    /// Where the acknowledgement goes once the packet is committed.
    pub ack: OutboundTx,
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
    /// Queues a packet; waits while the queue is full (back-pressure).
    pub async fn submit(&self, packet: Packet) -> Result<(), WriterStopped> {
        self.tx.send(packet).await.map_err(|_| WriterStopped)
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

const INSERT_EVENTS: &str = "\
INSERT INTO events (device_id, time, kind, from_state, to_state, flag) \
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[])";

/// The last stored state of a device, to derive events from the next packet.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LastState {
    pub time: DateTime<Utc>,
    pub state: String,
    pub flags: Vec<String>,
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

fn last_state_of(t: &Telemetry) -> LastState {
    LastState {
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
    db: Db,
    hub: Arc<Hub>,
    /// Last stored state per device (events are derived against it). Only packets newer than
    /// it produce events; an older packet filled in later (a backlog after an outage) does not.
    last: HashMap<String, LastState>,
}

impl Writer {
    /// Stores one batch in one transaction. Returns which packets were new (not duplicates).
    async fn write(&mut self, batch: &[Packet]) -> Result<Vec<bool>, WriteError> {
        let mut client = self.db.pool.get().await?;
        let tx = client.transaction().await?;

        // Load the last state of devices seen for the first time since start.
        let unknown: Vec<String> = batch
            .iter()
            .map(|p| p.telemetry.device_id.clone())
            .filter(|d| !self.last.contains_key(d))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut loaded = HashMap::new();
        if !unknown.is_empty() {
            let rows = tx
                .query(
                    "SELECT DISTINCT ON (device_id) device_id, time, state, error_flags \
                     FROM telemetry WHERE device_id = ANY($1) ORDER BY device_id, time DESC",
                    &[&unknown],
                )
                .await?;
            for r in rows {
                loaded.insert(
                    r.get::<_, String>(0),
                    LastState {
                        time: r.get(1),
                        state: r.get(2),
                        flags: r.get(3),
                    },
                );
            }
        }

        let n = batch.len();
        let mut time = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut state = Vec::with_capacity(n);
        let mut mode = Vec::with_capacity(n);
        let mut flags = Vec::with_capacity(n);
        let mut wifi = Vec::with_capacity(n);
        let mut cols: [Vec<Option<f64>>; 7] = Default::default();
        let mut ext = Vec::with_capacity(n);
        for p in batch {
            let t = &p.telemetry;
            time.push(t.timestamp.as_datetime());
            device.push(t.device_id.as_str());
            state.push(t.system_status.state.as_str());
            mode.push(t.system_status.mode.as_str());
            flags.push(
                t.system_status
                    .error_flags
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
            wifi.push(t.system_status.wifi_strength);
            let values = [
                t.battery.voltage,
                t.battery.current,
                t.battery.power,
                t.battery.soc,
                t.grid.voltage,
                t.grid.power,
                t.grid.frequency,
            ];
            for (col, v) in cols.iter_mut().zip(values) {
                col.push(v);
            }
            ext.push(p.extensions.clone());
        }
        let rows = tx
            .query(
                INSERT_TELEMETRY,
                &[
                    &time, &device, &state, &mode, &flags, &wifi, &cols[0], &cols[1], &cols[2],
                    &cols[3], &cols[4], &cols[5], &cols[6], &ext,
                ],
            )
            .await?;
        let inserted: HashSet<(String, DateTime<Utc>)> = rows
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, DateTime<Utc>>(1)))
            .collect();

        // Derive events from the new packets, per device in time order.
        let mut fresh: Vec<&Telemetry> = batch
            .iter()
            .map(|p| &p.telemetry)
            .filter(|t| inserted.contains(&(t.device_id.clone(), t.timestamp.as_datetime())))
            .collect();
        fresh.sort_by(|a, b| (&a.device_id, a.timestamp).cmp(&(&b.device_id, b.timestamp)));
        let mut updates: HashMap<String, LastState> = HashMap::new();
        let mut events = Vec::new();
        for t in fresh {
            let next = last_state_of(t);
            let prev = updates
                .get(&t.device_id)
                .or_else(|| self.last.get(&t.device_id))
                .or_else(|| loaded.get(&t.device_id));
            match prev {
                Some(prev) if prev.time >= next.time => continue,
                Some(prev) => events.extend(derive_events(&t.device_id, prev, &next)),
                None => {}
            }
            updates.insert(t.device_id.clone(), next);
        }
        if !events.is_empty() {
            let d: Vec<&str> = events.iter().map(|e| e.device_id.as_str()).collect();
            let t: Vec<DateTime<Utc>> = events.iter().map(|e| e.time).collect();
            let k: Vec<&str> = events.iter().map(|e| e.kind).collect();
            let f: Vec<Option<&str>> = events.iter().map(|e| e.from_state.as_deref()).collect();
            let to: Vec<Option<&str>> = events.iter().map(|e| e.to_state.as_deref()).collect();
            let fl: Vec<Option<&str>> = events.iter().map(|e| e.flag.as_deref()).collect();
            tx.execute(INSERT_EVENTS, &[&d, &t, &k, &f, &to, &fl])
                .await?;
        }
        tx.commit().await?;

        for (device, state) in loaded {
            self.last.entry(device).or_insert(state);
        }
        self.last.extend(updates);
        Ok(batch
            .iter()
            .map(|p| {
                inserted.contains(&(
                    p.telemetry.device_id.clone(),
                    p.telemetry.timestamp.as_datetime(),
                ))
            })
            .collect())
    }
}

/// Why a batch could not be stored this time; either way the writer retries.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    Sql(#[from] tokio_postgres::Error),
}

async fn run(mut rx: mpsc::Receiver<Packet>, mut writer: Writer, config: CloudConfig) {
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
        for (packet, is_new) in batch.drain(..).zip(fresh) {
            let _ = packet.ack.send(Outbound::Ack(packet.telemetry.timestamp));
            if is_new {
                writer.hub.publish_telemetry(packet.telemetry).await;
            }
        }
    }
    tracing::info!("ingest writer stopped");
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
    AdHoc::on_ignite("ingest", |rocket| async move {
        let config = rocket
            .state::<CloudConfig>()
            .expect("config managed")
            .clone();
        let db = rocket
            .state::<Db>()
            .expect("database stage runs first")
            .clone();
        let hub = rocket
            .state::<Arc<Hub>>()
            .expect("hub stage runs first")
            .clone();
        let (tx, rx) = mpsc::channel(config.ingest_queue.max(1));
        let writer = Writer {
            db,
            hub,
            last: HashMap::new(),
        };
        tokio::spawn(run(rx, writer, config));
        rocket.manage(Ingest { tx })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(time: i64, state: &str, flags: &[&str]) -> LastState {
        LastState {
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
