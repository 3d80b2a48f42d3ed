//! The store-and-forward queue: every telemetry packet is written here before it is sent and
//! deleted only when the cloud acknowledges it as stored. Command answers are kept here too,
//! so a command id repeated after a restart gets its first answer again.
//!
//! Why SQLite, in WAL mode with `synchronous = FULL`:
//! - it is the most tested embedded store there is, and its WAL recovery is proven against
//!   `kill -9` and power loss at any instant (a transaction is either in the WAL, checksummed,
//!   or not at all);
//! - with WAL a commit is an append to one file plus one fsync; `FULL` makes that fsync happen
//!   on every commit, so a packet counts as queued only once it is on the card. At 1 Hz that is
//!   one small sequential write a second, which SD cards handle well (the wear is in random
//!   rewrites, which WAL batches into checkpoints of 1000 pages);
//! - `NORMAL` would save the fsync but can lose the last commits on power loss, which the "no
//!   lost packets" promise does not allow.
//!
//! # Layout
//! - this file: [`Queue`] and what it does while the agent runs: queue, acknowledge,
//!   quarantine, hand out the oldest packets, remember command answers.
//! - `open`: opening the file (creating and migrating the schema), recovering from an unusable
//!   file, the in-memory fallback ([`Opened`]).
//! - `report`: reading a queue file without changing it, for `ems-agent status`.

mod open;
mod report;
#[cfg(test)]
mod tests;

use ems_protocol::{CommandAnswer, Telemetry, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

pub use open::Opened;
pub use report::{QueueReport, report};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("telemetry queue {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Budget of the queue: whichever limit is hit first evicts the oldest packets.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_packets: u64,
    pub max_age_s: i64,
}

impl Default for Budget {
    /// 7 days at 1 Hz.
    fn default() -> Self {
        Budget {
            max_packets: 7 * 86_400,
            max_age_s: 7 * 86_400,
        }
    }
}

pub struct Queue {
    conn: Connection,
    path: String,
    budget: Budget,
    len: u64,
    /// The insertion order of the next packet: eviction goes by insertion, not by timestamp, so
    /// a packet stamped by a wrong clock cannot push the backlog out.
    next_seq: i64,
    /// The queue clock's origin (see [`Queue::queue_now`]) and when it was taken.
    clock_base: i64,
    opened: std::time::Instant,
}

fn wall_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Most packets a queue in RAM keeps: 3 hours at 1 Hz, a few MB (a 7-day budget in RAM would
/// not fit a Pi's memory).
pub const IN_MEMORY_MAX_PACKETS: u64 = 3 * 3600;

impl Queue {
    fn err(&self) -> impl Fn(rusqlite::Error) -> QueueError + '_ {
        move |source| QueueError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Queues a packet durably (fsync'd when this returns). Returns how many packets were
    /// evicted to stay within the budget: by age, those queued more than `max_age_s` ago, and
    /// beyond `max_packets`, the first queued; both in insertion order, whatever the packets'
    /// timestamps say. Age is measured on the queue's own clock (see [`Queue::queue_now`]), so
    /// a wall clock that jumps evicts nothing. A packet already queued for the same second (made
    /// before the clock stepped back) is not dropped: it moves to the quarantine.
    pub fn push(&mut self, t: &Telemetry) -> Result<u64, QueueError> {
        self.push_at(t, self.queue_now())
    }

    /// The queue's clock, s: the latest insertion time stored when the queue was opened, plus the
    /// monotonic time since. It never jumps with the wall clock; time the agent was not running
    /// does not count as age (the packet cap still bounds the queue).
    pub fn queue_now(&self) -> i64 {
        self.clock_base + self.opened.elapsed().as_secs() as i64
    }

    /// [`Queue::push`] at queue time `now` (tests).
    fn push_at(&mut self, t: &Telemetry, now: i64) -> Result<u64, QueueError> {
        let now_unix = wall_unix();
        let path = self.path.clone();
        let e = |source| QueueError::Sqlite {
            path: path.clone(),
            source,
        };
        let ts = t.timestamp.unix();
        let seq = self.next_seq;
        let tx = self.conn.transaction().map_err(&e)?;
        let superseded = tx
            .execute(
                "INSERT OR REPLACE INTO quarantine (ts, body, code, reason, at)
                 SELECT ts, body, 'SUPERSEDED', 'a newer packet for this second was made after the clock stepped back', ?2
                 FROM telemetry WHERE ts = ?1",
                params![ts, now_unix],
            )
            .map_err(&e)? as u64;
        let replaced = tx
            .execute("DELETE FROM telemetry WHERE ts = ?1", params![ts])
            .map_err(&e)? as u64;
        tx.execute(
            "INSERT INTO telemetry (ts, body, seq, queued_at) VALUES (?1, ?2, ?3, ?4)",
            params![ts, t.to_json(), seq, now],
        )
        .map_err(&e)?;
        let mut len = self.len + 1 - replaced;
        let mut evicted = 0u64;
        let cutoff = now - self.budget.max_age_s;
        loop {
            let oldest: Option<(i64, Option<i64>)> = tx
                .query_row(
                    "SELECT seq, queued_at FROM telemetry ORDER BY seq LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&e)?;
            let Some((oldest_seq, queued_at)) = oldest else {
                break;
            };
            let too_old = queued_at.is_some_and(|q| q < cutoff);
            if !too_old && len <= self.budget.max_packets {
                break;
            }
            evicted += tx
                .execute("DELETE FROM telemetry WHERE seq = ?1", params![oldest_seq])
                .map_err(&e)? as u64;
            len -= 1;
        }
        for (name, n) in [("evicted", evicted), ("quarantined", superseded)] {
            if n > 0 {
                tx.execute(
                    "INSERT INTO counters (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    params![name, n as i64],
                )
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)?;
        if superseded > 0 {
            tracing::warn!(
                timestamp = %t.timestamp,
                "a packet for this second was already queued (the clock stepped back); the older one moved to the quarantine"
            );
        }
        self.next_seq += 1;
        self.len = len;
        Ok(evicted)
    }

    /// Deletes acknowledged packets; returns how many were still queued.
    pub fn ack(&mut self, stamps: &[Timestamp]) -> Result<u64, QueueError> {
        let path = self.path.clone();
        let e = |source| QueueError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&e)?;
        let mut deleted = 0;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM telemetry WHERE ts = ?1")
                .map_err(&e)?;
            for t in stamps {
                deleted += stmt.execute(params![t.unix()]).map_err(&e)? as u64;
            }
        }
        tx.commit().map_err(&e)?;
        self.len -= deleted;
        Ok(deleted)
    }

    /// Moves packets the cloud refused for good out of the queue into the `quarantine` table
    /// (kept for inspection, never sent again) with the cloud's `code` and `reason`; returns how
    /// many were still queued. The quarantine keeps at most the queue's packet budget, oldest
    /// dropped first.
    pub fn quarantine(
        &mut self,
        stamps: &[Timestamp],
        code: &str,
        reason: &str,
        now_unix: i64,
    ) -> Result<u64, QueueError> {
        let path = self.path.clone();
        let e = |source| QueueError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(&e)?;
        let mut moved = 0;
        {
            let mut copy = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO quarantine (ts, body, code, reason, at)
                     SELECT ts, body, ?2, ?3, ?4 FROM telemetry WHERE ts = ?1",
                )
                .map_err(&e)?;
            let mut delete = tx
                .prepare_cached("DELETE FROM telemetry WHERE ts = ?1")
                .map_err(&e)?;
            for t in stamps {
                copy.execute(params![t.unix(), code, reason, now_unix])
                    .map_err(&e)?;
                moved += delete.execute(params![t.unix()]).map_err(&e)? as u64;
            }
        }
        tx.execute(
            "DELETE FROM quarantine WHERE ts NOT IN
             (SELECT ts FROM quarantine ORDER BY ts DESC LIMIT ?1)",
            params![self.budget.max_packets as i64],
        )
        .map_err(&e)?;
        if moved > 0 {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('quarantined', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                params![moved as i64],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        self.len -= moved;
        Ok(moved)
    }

    /// How long the oldest packet (by timestamp) has been queued, s on the queue's clock; `None`
    /// when the queue is empty. One primary-key lookup (cheap enough for every scrape).
    pub fn oldest_age_s(&self) -> Result<Option<i64>, QueueError> {
        let queued_at: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT queued_at FROM telemetry ORDER BY ts LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(queued_at.flatten().map(|at| (self.queue_now() - at).max(0)))
    }

    /// Packets quarantined since the queue was created.
    pub fn quarantined_total(&self) -> Result<u64, QueueError> {
        self.counter("quarantined")
    }

    /// The quarantined packets' timestamps (unix s), oldest first.
    pub fn quarantined(&self) -> Result<Vec<i64>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts FROM quarantine ORDER BY ts")
            .map_err(self.err())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    fn counter(&self, name: &str) -> Result<u64, QueueError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Up to `limit` packets after `after` (unix seconds), oldest first.
    pub fn oldest_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, String)>, QueueError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts, body FROM telemetry WHERE ts > ?1 ORDER BY ts LIMIT ?2")
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Packets evicted by the budget since the queue was created.
    pub fn evicted_total(&self) -> Result<u64, QueueError> {
        self.counter("evicted")
    }

    pub fn answer(&self, command_id: &str) -> Result<Option<CommandAnswer>, QueueError> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM answers WHERE command_id = ?1",
                params![command_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// Keeps an answer (and forgets answers older than 30 days).
    pub fn store_answer(
        &mut self,
        answer: &CommandAnswer,
        now_unix: i64,
    ) -> Result<(), QueueError> {
        let body = serde_json::to_string(answer).expect("answers serialise");
        self.conn
            .execute(
                "INSERT OR IGNORE INTO answers (command_id, body, at) VALUES (?1, ?2, ?3)",
                params![answer.command_id, body, now_unix],
            )
            .map_err(self.err())?;
        self.conn
            .execute(
                "DELETE FROM answers WHERE at < ?1",
                params![now_unix - 30 * 86_400],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Folds the WAL into the database and truncates it (SQLite also does this on its own
    /// every 1000 pages); returns the database size afterwards, bytes.
    pub fn checkpoint(&self) -> Result<u64, QueueError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(self.err())?;
        Ok(self.disk_bytes())
    }

    /// Bytes the queue occupies on disk (database + WAL).
    pub fn disk_bytes(&self) -> u64 {
        let base = std::path::PathBuf::from(&self.path);
        let wal = std::path::PathBuf::from(format!("{}-wal", self.path));
        [base, wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}
