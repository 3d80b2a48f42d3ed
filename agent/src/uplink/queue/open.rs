//! Opening a queue: the file with its schema (created, or migrated from an older agent), the
//! recovery from a file that cannot be used, and the in-memory fallback.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{Budget, IN_MEMORY_MAX_PACKETS, Queue, QueueError, wall_unix};

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
}
