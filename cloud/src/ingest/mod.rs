//! Telemetry ingest: batches packets from all device sockets into one multi-row insert.
//!
//! A socket task [`submit`](Ingest::submit)s the valid packets of the frames it read together
//! (a device's backlog stays together in the queue) with the sender of its socket. The writer
//! takes the packets queued when it is free, up to `batch_max_rows` (flush when idle: batches
//! grow only under load; with `batch_max_delay_ms` above 0 it also waits that long for more),
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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ems_protocol::Telemetry;
use rocket::fairing::AdHoc;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::CloudConfig;
use crate::db::Db;
use crate::db::timescale::AggregateRefresher;
use crate::hub::{Hub, Outbound, OutboundTx};

mod events;
mod sql;
mod writer;

use crate::stage::need;
pub use sql::{LAST_STATES, copy_rows, copy_statement};
use writer::Writer;

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
    /// Packets waiting for the writer.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues as many of `waiting` as the queue has room for, in order and next to each other
    /// (so a device's backlog lands in one batch and is acknowledged together), without
    /// waiting; the rest stays in `waiting`.
    pub fn try_submit(&self, waiting: &mut VecDeque<Packet>) -> Result<(), WriterStopped> {
        while !waiting.is_empty() {
            match self.tx.try_reserve() {
                Ok(permit) => {
                    if let Some(p) = waiting.pop_front() {
                        permit.send(p);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(())) => return Err(WriterStopped),
            }
        }
        Ok(())
    }

    /// Waits until the queue has room for one packet (back-pressure). Cancel-safe: nothing is
    /// taken until there is room; send the waiting front with the permit, then
    /// [`try_submit`](Self::try_submit) the rest.
    pub async fn room(&self) -> Result<mpsc::Permit<'_, Packet>, WriterStopped> {
        self.tx.reserve().await.map_err(|_| WriterStopped)
    }
}

/// What became of each packet of a stored batch.
struct Outcome {
    /// Stored by this batch (not a duplicate of a stored row).
    fresh: Vec<bool>,
    /// Refused by the database: why, per packet; `None` for the others.
    refused: Vec<Option<String>>,
}

async fn run(
    mut rx: mpsc::Receiver<Packet>,
    mut writer: Writer,
    config: CloudConfig,
    committed_tx: mpsc::UnboundedSender<(Vec<Packet>, Outcome)>,
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
        let linger = config.batch_max_delay();
        if linger.is_zero() {
            // Flush when idle: what is queued now goes, nothing is waited for. Under load the
            // packets that arrive while a batch is written make the next batch.
            while batch.len() < max_rows {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        } else {
            let deadline = tokio::time::Instant::now() + linger;
            while batch.len() < max_rows {
                let room = max_rows - batch.len();
                tokio::select! {
                    got = rx.recv_many(&mut batch, room) => if got == 0 { break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
        }
        let started = std::time::Instant::now();
        let Some(outcome) = store(&mut writer, &batch).await else {
            break;
        };
        let metrics = &writer.hub.metrics;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.batch_rows.observe(batch.len() as f64);
        metrics
            .rows_stored
            .inc_by(outcome.fresh.iter().filter(|f| **f).count() as u64);
        metrics
            .rejected
            .inc_by(outcome.refused.iter().filter(|r| r.is_some()).count() as u64);
        let committed = std::mem::replace(&mut batch, Vec::with_capacity(max_rows));
        let _ = committed_tx.send((committed, outcome));
    }
    tracing::info!("ingest writer stopped");
}

/// Acknowledges committed batches and publishes their new packets, in commit order, while the
/// writer already stores the next batch. Refused packets are named to their device instead.
async fn acknowledge(
    mut committed: mpsc::UnboundedReceiver<(Vec<Packet>, Outcome)>,
    hub: Arc<Hub>,
) {
    while let Some((batch, outcome)) = committed.recv().await {
        ack(&batch, &outcome.refused);
        for ((packet, is_new), refused) in batch.into_iter().zip(outcome.fresh).zip(outcome.refused)
        {
            if let Some(why) = refused {
                let _ = packet.ack.send(Outbound::Rejected(
                    vec![packet.telemetry.timestamp],
                    format!(
                        "the database refused this packet ({why}); it is kept in \
                         rejected_telemetry, do not resend it"
                    ),
                ));
            } else if is_new {
                hub.publish_telemetry(packet.telemetry).await;
            }
        }
    }
}

/// Acknowledges a committed batch but its refused packets: one message per run of packets from
/// the same socket (a device's backlog arrives together), so its socket wakes once and sends one
/// `TELEMETRY_ACK`.
fn ack(batch: &[Packet], refused: &[Option<String>]) {
    let mut start = 0;
    while start < batch.len() {
        let first = &batch[start];
        let run = batch[start..]
            .iter()
            .take_while(|p| p.ack.same_channel(&first.ack))
            .count();
        let timestamps: Vec<_> = batch[start..start + run]
            .iter()
            .zip(&refused[start..start + run])
            .filter(|(_, r)| r.is_none())
            .map(|(p, _)| p.telemetry.timestamp)
            .collect();
        if !timestamps.is_empty() {
            let _ = first.ack.send(Outbound::Acks(timestamps));
        }
        start += run;
    }
}

/// Stores `batch`. While the database cannot be reached (or is out of resources) the same
/// packets are retried with backoff; `None` when the server stops first (nothing acknowledged;
/// the devices resend).
///
/// When the database refuses the data itself ([`writer::WriteError::is_refusal`]), the part that
/// failed is split in halves and each is written on its own, down to the single packets that
/// fail alone: those are kept in `rejected_telemetry` and named to their device; every other
/// packet is stored and acknowledged as usual. One bad packet in a batch of n costs about
/// 2·log2(n) extra statements, and no other device waits on it.
async fn store(writer: &mut Writer, batch: &[Packet]) -> Option<Outcome> {
    let mut outcome = Outcome {
        fresh: vec![false; batch.len()],
        refused: vec![None; batch.len()],
    };
    let mut todo = vec![(0, batch.len())];
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    while let Some(&(from, to)) = todo.last() {
        match writer.write(&batch[from..to]).await {
            Ok(fresh) => {
                todo.pop();
                outcome.fresh[from..to].copy_from_slice(&fresh);
                if attempt > 0 {
                    tracing::info!(rows = to - from, attempt, "telemetry stored after retries");
                    attempt = 0;
                    backoff = Duration::from_millis(50);
                }
            }
            Err(e) if e.is_refusal() => {
                todo.pop();
                if to - from == 1 {
                    let why = e.to_string();
                    writer.reject(&batch[from], &why).await;
                    outcome.refused[from] = Some(why);
                } else {
                    let mid = from + (to - from) / 2;
                    // The earlier half first, so a device's packets go in in time order.
                    todo.push((mid, to));
                    todo.push((from, mid));
                }
            }
            Err(e) => {
                attempt += 1;
                tracing::warn!(
                    rows = to - from,
                    attempt,
                    "storing telemetry failed, retrying: {e}"
                );
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = writer.hub.stopped() => return None,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    Some(outcome)
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
