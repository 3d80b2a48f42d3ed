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

const SCHEMA_SQL: &str = "CREATE TABLE IF NOT EXISTS telemetry (ts INTEGER PRIMARY KEY, body TEXT NOT NULL, seq INTEGER, queued_at INTEGER);
             CREATE TABLE IF NOT EXISTS answers (command_id TEXT PRIMARY KEY, body TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS quarantine (ts INTEGER PRIMARY KEY, body TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);";

/// Adds the insertion order (`seq`) and insertion time (`queued_at`) to a queue made before
/// they existed; its rows were inserted in timestamp order, at about their timestamp.
const MIGRATE_SQL: &str = "ALTER TABLE telemetry ADD COLUMN seq INTEGER;
     ALTER TABLE telemetry ADD COLUMN queued_at INTEGER;
     UPDATE telemetry SET seq = ts, queued_at = ts;";

/// Indexes that need the migrated columns.
const INDEX_SQL: &str = "CREATE INDEX IF NOT EXISTS telemetry_seq ON telemetry (seq);";

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

    /// A queue in RAM (the fallback when no file can be used), at most
    /// [`IN_MEMORY_MAX_PACKETS`] whatever the budget says.
    pub fn in_memory(budget: Budget) -> Queue {
        let budget = Budget {
            max_packets: budget.max_packets.min(IN_MEMORY_MAX_PACKETS),
            ..budget
        };
        let conn = Connection::open_in_memory().expect("SQLite opens an in-memory database");
        conn.execute_batch(&format!(
            "PRAGMA cache_size = -2048; {SCHEMA_SQL} {INDEX_SQL}"
        ))
        .expect("the schema applies to an empty in-memory database");
        Queue {
            conn,
            path: ":memory:".into(),
            budget,
            len: 0,
            next_seq: 1,
            clock_base: wall_unix(),
            opened: std::time::Instant::now(),
        }
    }

    /// Whether this queue lives in RAM only.
    pub fn is_in_memory(&self) -> bool {
        self.path == ":memory:"
    }

    /// Moves to an in-memory queue after the file failed (a full disk). The packets queued in the
    /// file stay there (a full card still holds them) and go out after a restart once it can be
    /// written again; new packets are kept in RAM, at most [`IN_MEMORY_MAX_PACKETS`]. Loud: what
    /// is in RAM is lost on a restart.
    pub fn degrade_to_memory(&mut self, why: &QueueError) {
        let memory = Queue::in_memory(self.budget);
        tracing::error!(
            "TELEMETRY QUEUE IN MEMORY ONLY: writing {} failed ({why}); its {} queued packets stay \
             in the file and go out after a restart once it can be written; new packets are kept \
             in RAM (at most {} h, lost on restart)",
            self.path,
            self.len,
            IN_MEMORY_MAX_PACKETS / 3600
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
        let has_seq: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('telemetry') WHERE name = 'seq'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(wrap)?
            > 0;
        if !has_seq {
            conn.execute_batch(&format!("BEGIN; {MIGRATE_SQL} COMMIT;"))
                .map_err(wrap)?;
        }
        conn.execute_batch(INDEX_SQL).map_err(wrap)?;
        let (len, max_seq, last_queued): (i64, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT count(*), max(seq), max(queued_at) FROM telemetry",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(wrap)?;
        Ok(Queue {
            conn,
            path: name,
            budget,
            len: len as u64,
            next_seq: max_seq.unwrap_or(0) + 1,
            clock_base: last_queued.unwrap_or_else(wall_unix),
            opened: std::time::Instant::now(),
        })
    }

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

/// What `ems-agent status` shows of a queue file.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueReport {
    pub queued: u64,
    /// Oldest and newest queued timestamps (unix s).
    pub queued_span: Option<(i64, i64)>,
    pub evicted_total: u64,
    pub quarantined_total: u64,
    /// Quarantined packets kept now.
    pub quarantined_kept: u64,
    /// The latest quarantined packets: timestamp (unix s), code, reason.
    pub latest_quarantined: Vec<(i64, String, String)>,
}

/// Reads a queue file without changing it (the agent may be running).
pub fn report(path: &Path, latest: usize) -> Result<QueueReport, QueueError> {
    let wrap = |source| QueueError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(wrap)?;
    let (queued, first, last): (i64, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT count(*), min(ts), max(ts) FROM telemetry",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(wrap)?;
    let counter = |name: &str| -> Result<u64, QueueError> {
        let v: Option<i64> = conn
            .query_row(
                "SELECT value FROM counters WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(wrap)?;
        Ok(v.unwrap_or(0) as u64)
    };
    let has_quarantine: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(wrap)?
        > 0;
    let (kept, latest_quarantined) = if has_quarantine {
        let kept: i64 = conn
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))
            .map_err(wrap)?;
        let mut stmt = conn
            .prepare("SELECT ts, code, reason FROM quarantine ORDER BY at DESC, ts DESC LIMIT ?1")
            .map_err(wrap)?;
        let rows = stmt
            .query_map(params![latest as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(wrap)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(wrap)?;
        (kept as u64, rows)
    } else {
        (0, Vec::new())
    };
    Ok(QueueReport {
        queued: queued as u64,
        queued_span: first.zip(last),
        evicted_total: counter("evicted")?,
        quarantined_total: counter("quarantined")?,
        quarantined_kept: kept,
        latest_quarantined,
    })
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
            // The same second again (the clock stepped back): the newer packet is queued, the
            // older one kept in the quarantine.
            q.push(&packet(1005)).unwrap();
            assert_eq!(q.len(), 10);
            assert_eq!(q.quarantined().unwrap(), vec![1005]);
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
    fn budget_evicts_first_queued_first_and_counts() {
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
            q.push_at(&packet(1000 + ts), 1000 + ts).unwrap();
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.evicted_total().unwrap(), 3);
        assert_eq!(q.oldest_after(i64::MIN, 1).unwrap()[0].0, 1003);
        // Age: 200 s of queue time later, everything queued more than 100 s before goes.
        q.push_at(&packet(1300), 1300).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q.evicted_total().unwrap(), 8);
    }

    #[test]
    fn a_packet_stamped_far_ahead_evicts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(&dir.path().join("q.sqlite"), Budget::default()).unwrap();
        for ts in 1000..1010 {
            q.push(&packet(ts)).unwrap();
        }
        // The wall clock jumps 30 days ahead for one packet, then back.
        q.push(&packet(1010 + 30 * 86_400)).unwrap();
        q.push(&packet(1011)).unwrap();
        assert_eq!(q.len(), 12);
        assert_eq!(q.evicted_total().unwrap(), 0);
        // Over the packet cap, the first queued go first, not the lowest timestamps.
        let mut q2 = Queue::open(
            &dir.path().join("q2.sqlite"),
            Budget {
                max_packets: 2,
                max_age_s: 100,
            },
        )
        .unwrap();
        for ts in [5000, 100, 200] {
            q2.push(&packet(ts)).unwrap();
        }
        let left: Vec<i64> = q2
            .oldest_after(i64::MIN, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(left, vec![100, 200]);
    }

    #[test]
    fn a_queue_from_before_insertion_order_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE telemetry (ts INTEGER PRIMARY KEY, body TEXT NOT NULL);
                 INSERT INTO telemetry VALUES (1000, '{}'), (1001, '{}');",
            )
            .unwrap();
        }
        let mut q = Queue::open(&path, Budget::default()).unwrap();
        assert_eq!(q.len(), 2);
        q.push(&packet(1002)).unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(q.evicted_total().unwrap(), 0);
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
    fn degrading_to_memory_leaves_the_queued_packets_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let mut q = Queue::open(&path, Budget::default()).unwrap();
        for ts in 1000..1010 {
            q.push(&packet(ts)).unwrap();
        }
        q.degrade_to_memory(&QueueError::Sqlite {
            path: "q".into(),
            source: rusqlite::Error::InvalidQuery,
        });
        assert!(q.is_in_memory());
        assert_eq!(q.budget.max_packets, IN_MEMORY_MAX_PACKETS);
        q.push(&packet(1010)).unwrap();
        assert_eq!(q.len(), 1);
        drop(q);
        assert_eq!(Queue::open(&path, Budget::default()).unwrap().len(), 10);
    }

    #[test]
    fn the_report_counts_queued_and_quarantined_packets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let mut q = Queue::open(&path, Budget::default()).unwrap();
        for ts in 1000..1004 {
            q.push(&packet(ts)).unwrap();
        }
        q.quarantine(
            &[Timestamp::from_unix(1001).unwrap()],
            "BAD_FRAME",
            "600 s in the future",
            7,
        )
        .unwrap();
        let r = report(&path, 5).unwrap();
        assert_eq!(r.queued, 3);
        assert_eq!(r.queued_span, Some((1000, 1003)));
        assert_eq!((r.quarantined_total, r.quarantined_kept), (1, 1));
        assert_eq!(
            r.latest_quarantined,
            vec![(
                1001,
                "BAD_FRAME".to_string(),
                "600 s in the future".to_string()
            )]
        );
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
