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

use std::path::{Path, PathBuf};

use ems_protocol::{CommandAnswer, Telemetry, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

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
}

/// How [`Queue::open_or_recover`] came by its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The file, as it was.
    File,
    /// The file could not be used; it was moved to `kept` (with its WAL) and a new one started.
    MovedAside { kept: PathBuf, reason: String },
    /// No file could be used (unwritable directory, full disk): packets are kept in memory only,
    /// until the agent restarts.
    InMemory { reason: String },
}

const SCHEMA_SQL: &str = "CREATE TABLE IF NOT EXISTS telemetry (ts INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS answers (command_id TEXT PRIMARY KEY, body TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS quarantine (ts INTEGER PRIMARY KEY, body TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);";

impl Queue {
    /// Opens the queue at `path` and never fails, because the control loop must start whatever
    /// the card does: a file that cannot be used (corrupt, not a database, unreadable) is moved
    /// aside as `<path>.broken-<unix time>` together with its `-wal` and `-shm` files, kept for
    /// inspection, and a new queue is started; when no file can be used at all the queue lives
    /// in memory. Every outcome but [`Opened::File`] is logged as an error.
    pub fn open_or_recover(path: &Path, budget: Budget) -> (Queue, Opened) {
        let first = match Queue::open(path, budget) {
            Ok(q) => return (q, Opened::File),
            Err(e) => e,
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept = PathBuf::from(format!("{}.broken-{stamp}", path.display()));
        let moved = path.exists() && std::fs::rename(path, &kept).is_ok();
        if moved {
            for suffix in ["-wal", "-shm"] {
                let side = PathBuf::from(format!("{}{suffix}", path.display()));
                if side.exists() {
                    let _ = std::fs::rename(&side, format!("{}{suffix}", kept.display()));
                }
            }
            if let Ok(q) = Queue::open(path, budget) {
                tracing::error!(
                    kept = %kept.display(),
                    "telemetry queue unusable ({first}); moved aside and a new queue started \
                     (its unsent packets and remembered command answers are in the kept file)"
                );
                return (
                    q,
                    Opened::MovedAside {
                        kept,
                        reason: first.to_string(),
                    },
                );
            }
        }
        tracing::error!(
            "TELEMETRY QUEUE IN MEMORY ONLY: {first}; packets are buffered in RAM and lost on \
             restart until the data directory is fixed"
        );
        (
            Queue::in_memory(budget),
            Opened::InMemory {
                reason: first.to_string(),
            },
        )
    }

    /// A queue in RAM (the fallback when no file can be used).
    pub fn in_memory(budget: Budget) -> Queue {
        let conn = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        conn.execute_batch(&format!("PRAGMA cache_size = -2048; {SCHEMA_SQL}"))
            .expect("the schema applies to an empty in-memory database");
        Queue {
            conn,
            path: ":memory:".into(),
            budget,
            len: 0,
        }
    }

    /// Whether this queue lives in RAM only.
    pub fn is_in_memory(&self) -> bool {
        self.path == ":memory:"
    }

    /// Moves to an in-memory queue after the file failed (a full disk), taking along the queued
    /// packets that can still be read. Loud: this loses the packets on a restart.
    pub fn degrade_to_memory(&mut self, why: &QueueError) {
        let mut memory = Queue::in_memory(self.budget);
        let mut after = i64::MIN;
        while let Ok(rows) = self.oldest_after(after, 1000) {
            let Some(last) = rows.last().map(|r| r.0) else {
                break;
            };
            for (ts, body) in rows {
                if memory
                    .conn
                    .execute(
                        "INSERT OR IGNORE INTO telemetry (ts, body) VALUES (?1, ?2)",
                        params![ts, body],
                    )
                    .is_ok()
                {
                    memory.len += 1;
                }
            }
            after = last;
        }
        tracing::error!(
            "TELEMETRY QUEUE IN MEMORY ONLY: writing {} failed ({why}); {} queued packets moved \
             to RAM, where they are lost on restart until the disk is fixed",
            self.path,
            memory.len
        );
        *self = memory;
    }

    pub fn open(path: &Path, budget: Budget) -> Result<Queue, QueueError> {
        let name = path.display().to_string();
        let wrap = |source| QueueError::Sqlite {
            path: name.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(wrap)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -512;",
        )
        .map_err(wrap)?;
        conn.execute_batch(SCHEMA_SQL).map_err(wrap)?;
        let len: i64 = conn
            .query_row("SELECT count(*) FROM telemetry", [], |r| r.get(0))
            .map_err(wrap)?;
        Ok(Queue {
            conn,
            path: name,
            budget,
            len: len as u64,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> QueueError + '_ {
        move |source| QueueError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Queues a packet durably (fsync'd when this returns). Returns how many of the oldest
    /// packets were evicted to stay within the budget.
    pub fn push(&mut self, t: &Telemetry) -> Result<u64, QueueError> {
        let path = self.path.clone();
        let e = |source| QueueError::Sqlite {
            path: path.clone(),
            source,
        };
        let ts = t.timestamp.unix();
        let tx = self.conn.transaction().map_err(&e)?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO telemetry (ts, body) VALUES (?1, ?2)",
                params![ts, t.to_json()],
            )
            .map_err(&e)?;
        let mut evicted = tx
            .execute(
                "DELETE FROM telemetry WHERE ts < ?1",
                params![ts - self.budget.max_age_s],
            )
            .map_err(&e)? as u64;
        let len = self.len + inserted as u64 - evicted;
        if len > self.budget.max_packets {
            let excess = len - self.budget.max_packets;
            evicted += tx
                .execute(
                    "DELETE FROM telemetry WHERE ts IN (SELECT ts FROM telemetry ORDER BY ts LIMIT ?1)",
                    params![excess as i64],
                )
                .map_err(&e)? as u64;
        }
        if evicted > 0 {
            tx.execute(
                "INSERT INTO counters (name, value) VALUES ('evicted', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                params![evicted as i64],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        self.len = self.len + inserted as u64 - evicted;
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

#[cfg(test)]
mod tests {
    use super::*;
    use ems_protocol::{AnswerStatus, Battery, Grid, Mode, State, SystemStatus};

    fn packet(ts: i64) -> Telemetry {
        Telemetry {
            device_id: "q".into(),
            timestamp: Timestamp::from_unix(ts).unwrap(),
            system_status: SystemStatus {
                state: State::Idle,
                mode: Mode::Auto,
                error_flags: vec![],
                wifi_strength: None,
            },
            battery: Battery {
                voltage: Some(52.0),
                current: Some(0.0),
                power: Some(0.0),
                soc: Some(50.0),
            },
            grid: Grid {
                voltage: Some(230.0),
                power: Some(10.0),
                frequency: Some(50.0),
            },
        }
    }

    #[test]
    fn packets_survive_reopening_and_leave_only_when_acked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        {
            let mut q = Queue::open(&path, Budget::default()).unwrap();
            for ts in 1000..1010 {
                q.push(&packet(ts)).unwrap();
            }
            q.push(&packet(1005)).unwrap(); // same second again: stored once
            assert_eq!(q.len(), 10);
        }
        let mut q = Queue::open(&path, Budget::default()).unwrap();
        assert_eq!(q.len(), 10);
        let acked = q
            .ack(&[
                Timestamp::from_unix(1000).unwrap(),
                Timestamp::from_unix(1003).unwrap(),
            ])
            .unwrap();
        assert_eq!(acked, 2);
        let rest: Vec<i64> = q
            .oldest_after(i64::MIN, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(rest, vec![1001, 1002, 1004, 1005, 1006, 1007, 1008, 1009]);
        assert_eq!(q.oldest_after(1006, 2).unwrap().len(), 2);
    }

    #[test]
    fn budget_evicts_oldest_first_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(
            &dir.path().join("q.sqlite"),
            Budget {
                max_packets: 5,
                max_age_s: 100,
            },
        )
        .unwrap();
        for ts in 0..8 {
            q.push(&packet(1000 + ts)).unwrap();
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.evicted_total().unwrap(), 3);
        assert_eq!(q.oldest_after(i64::MIN, 1).unwrap()[0].0, 1003);
        // Age: a packet 200 s newer pushes everything older than 100 s out.
        q.push(&packet(1300)).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q.evicted_total().unwrap(), 8);
    }

    #[test]
    fn refused_packets_move_to_the_quarantine_and_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let stamp = |ts| Timestamp::from_unix(ts).unwrap();
        {
            let mut q = Queue::open(&path, Budget::default()).unwrap();
            for ts in 1000..1005 {
                q.push(&packet(ts)).unwrap();
            }
            // 1009 was never queued (or already gone): not counted.
            let moved = q
                .quarantine(
                    &[stamp(1001), stamp(1003), stamp(1009)],
                    "BAD_FRAME",
                    "future",
                    5,
                )
                .unwrap();
            assert_eq!(moved, 2);
            assert_eq!(q.len(), 3);
        }
        let q = Queue::open(&path, Budget::default()).unwrap();
        assert_eq!(q.len(), 3);
        let rest: Vec<i64> = q
            .oldest_after(i64::MIN, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(rest, vec![1000, 1002, 1004]);
        assert_eq!(q.quarantined().unwrap(), vec![1001, 1003]);
        assert_eq!(q.quarantined_total().unwrap(), 2);
    }

    #[test]
    fn a_garbage_file_is_moved_aside_and_a_new_queue_started() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        std::fs::write(&path, b"this is not a database, it is garbage".repeat(200)).unwrap();
        let (mut q, opened) = Queue::open_or_recover(&path, Budget::default());
        let Opened::MovedAside { kept, .. } = opened else {
            panic!("{opened:?}")
        };
        assert!(
            std::fs::read(&kept)
                .unwrap()
                .starts_with(b"this is not a database")
        );
        assert!(!q.is_in_memory());
        q.push(&packet(1000)).unwrap();
        drop(q);
        assert_eq!(Queue::open(&path, Budget::default()).unwrap().len(), 1);
    }

    #[test]
    fn no_usable_directory_means_a_queue_in_memory() {
        let (mut q, opened) =
            Queue::open_or_recover(Path::new("/dev/null/ems/q.sqlite"), Budget::default());
        assert!(matches!(opened, Opened::InMemory { .. }), "{opened:?}");
        assert!(q.is_in_memory());
        q.push(&packet(1000)).unwrap();
        q.push(&packet(1001)).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q.ack(&[Timestamp::from_unix(1000).unwrap()]).unwrap(), 1);
    }

    #[test]
    fn degrading_to_memory_keeps_the_queued_packets() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&dir.path().join("q.sqlite"), Budget::default()).unwrap();
        for ts in 1000..1010 {
            q.push(&packet(ts)).unwrap();
        }
        q.degrade_to_memory(&QueueError::Sqlite {
            path: "q".into(),
            source: rusqlite::Error::InvalidQuery,
        });
        assert!(q.is_in_memory());
        assert_eq!(q.len(), 10);
        assert_eq!(q.oldest_after(i64::MIN, 1).unwrap()[0].0, 1000);
    }

    #[test]
    fn answers_are_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&dir.path().join("q.sqlite"), Budget::default()).unwrap();
        let a = CommandAnswer {
            command_id: "c1".into(),
            status: AnswerStatus::Rejected,
            reason: Some("no".into()),
        };
        q.store_answer(&a, 1000).unwrap();
        assert_eq!(q.answer("c1").unwrap(), Some(a));
        assert_eq!(q.answer("c2").unwrap(), None);
    }
}
