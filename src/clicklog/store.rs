//! The SQLite click store, in time slices (`clicks/<first-ms>.db` in the data directory). The
//! writer appends to the newest slice, which has only its time-ordered primary key (each commit
//! touches a few pages at the end of the file) and is never checkpointed while it is written.
//! Past a size or an age the writer starts a new slice and hands the finished one to the closer
//! thread, which indexes it by message and checkpoints it, away from the commit path: under
//! saturation no commit waits for a checkpoint. Readers walk the slices newest first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::{Action, ClickEvent, ClickLogError, Durability, Slicing};

pub(super) struct Store {
    connection: Connection,
    path: PathBuf,
    opened: Instant,
    batches: u64,
    slicing: Slicing,
}

/// Click ids are time-ordered, so the primary key doubles as the time index.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS clicks (
    id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    message_ref TEXT NOT NULL,
    recipient_ref TEXT NOT NULL,
    url TEXT NOT NULL,
    verdict TEXT NOT NULL,
    category TEXT NOT NULL,
    action TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    cache_hit INTEGER NOT NULL,
    latency_us INTEGER NOT NULL,
    key_id TEXT NOT NULL
);
";

/// Built when a slice is finished: inserts at random places in an index are what make each
/// commit write many pages, so the slice being written has none.
const FINISHED_SCHEMA: &str = "CREATE INDEX IF NOT EXISTS clicks_message ON clicks (message_ref);";

/// The log's size is looked at every this many commits.
const SIZE_CHECK_EVERY: u64 = 64;

/// The directory of slices in `data_dir`.
pub(super) fn slices_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("clicks")
}

fn connect(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(
        None,
        "synchronous",
        if durability == Durability::Full {
            "FULL"
        } else {
            "NORMAL"
        },
    )?;
    // Keep hot pages in memory and read the rest through mmap: otherwise the writer spends its
    // time in read(2) for pages it has just written.
    connection.pragma_update(None, "cache_size", -65536)?;
    connection.pragma_update(None, "mmap_size", 268_435_456)?;
    // The slice being written is checkpointed only once finished, by the closer.
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

impl Store {
    /// Starts a new slice in `dir`, named after the current time in milliseconds.
    pub(super) fn open_new(dir: &Path, durability: Durability, slicing: Slicing) -> Result<Self, ClickLogError> {
        let store_error = |path: &Path, source| ClickLogError::Store {
            path: path.into(),
            source,
        };
        crate::token::create_private_dir(dir).map_err(|e| ClickLogError::Spool {
            path: dir.into(),
            source: e,
        })?;
        let mut ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let path = loop {
            let candidate = dir.join(format!("{ms:016}.db"));
            if !candidate.exists() {
                break candidate;
            }
            ms += 1;
        };
        let connection = connect(&path, durability).map_err(|source| store_error(&path, source))?;
        Ok(Self {
            connection,
            path,
            opened: Instant::now(),
            batches: 0,
            slicing,
        })
    }

    /// Inserts a batch in one transaction. Replays are idempotent: the click id is the key.
    pub(super) fn insert(&mut self, events: &[&ClickEvent]) -> rusqlite::Result<()> {
        let transaction = self.connection.transaction()?;
        {
            let mut statement = transaction.prepare_cached(
                "INSERT OR IGNORE INTO clicks (id, at_ms, message_ref, recipient_ref, url, verdict, category, action,
                 client_ip, user_agent, cache_hit, latency_us, key_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for e in events {
                statement.execute(params![
                    e.id,
                    e.at_ms,
                    e.message_ref,
                    e.recipient_ref,
                    e.url,
                    e.verdict,
                    e.category,
                    e.action.as_str(),
                    e.client_ip,
                    e.user_agent,
                    e.cache_hit,
                    e.latency_us,
                    e.key_id
                ])?;
            }
        }
        transaction.commit()?;
        self.batches += 1;
        Ok(())
    }

    /// Whether this slice is done: its log or its age past the [`Slicing`] bounds.
    pub(super) fn is_full(&self) -> bool {
        if self.opened.elapsed() > self.slicing.age {
            return true;
        }
        self.batches.is_multiple_of(SIZE_CHECK_EVERY)
            && std::fs::metadata(wal_path(&self.path)).is_ok_and(|meta| meta.len() > self.slicing.wal_bytes)
    }

    /// The slice's path and its open connection, for the closer.
    pub(super) fn into_parts(self) -> (PathBuf, Connection) {
        (self.path, self.connection)
    }
}

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Finishes a slice nobody writes any more: the message index, a checkpoint that empties the log,
/// and the close that removes it.
pub(super) fn finish(path: &Path, connection: Option<Connection>) -> rusqlite::Result<()> {
    let connection = match connection {
        Some(open) => open,
        None => {
            let open = Connection::open(path)?;
            open.busy_timeout(Duration::from_secs(5))?;
            open
        }
    };
    connection.execute_batch(SCHEMA)?;
    connection.execute_batch(FINISHED_SCHEMA)?;
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    connection.close().map_err(|(_, error)| error)
}

/// Slices not finished yet (a crash, a slice dropped after a write error): a log still beside
/// them, or no message index. Called before the writer starts, so none of them is being written.
pub(super) fn unfinished(dir: &Path) -> Vec<PathBuf> {
    slices(dir)
        .into_iter()
        .filter(|path| wal_path(path).exists() || !has_message_index(path))
        .collect()
}

fn has_message_index(path: &Path) -> bool {
    // Read-write (never create): a read-only connection to a WAL database leaves its `-wal` and
    // `-shm` behind when it closes.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .and_then(|connection| {
            connection
                .prepare("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'clicks_message'")?
                .exists([])
        })
        .unwrap_or(false)
}

/// The slices in `dir`, newest first.
fn slices(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "db")
                && path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// Filters for reading the log back.
#[derive(Debug, Clone, Default)]
pub struct ClickQuery {
    pub limit: usize,
    pub message_ref: Option<String>,
    pub action: Option<String>,
}

/// Reads clicks, newest first, straight from the slices (works whether or not the server runs),
/// then from `clicks.db`, the single store of earlier versions, if there is one.
pub fn read_clicks(data_dir: &Path, query: &ClickQuery) -> Result<Vec<ClickEvent>, ClickLogError> {
    let mut paths: Vec<(PathBuf, u64)> = slices(&slices_dir(data_dir))
        .into_iter()
        .map(|path| {
            let started = slice_start_ms(&path);
            (path, started)
        })
        .collect();
    let legacy = data_dir.join("clicks.db");
    if legacy.is_file() {
        paths.push((legacy, 0));
    }
    let limit = if query.limit == 0 { usize::MAX } else { query.limit };
    let mut clicks: Vec<ClickEvent> = Vec::new();
    for (path, started_ms) in paths {
        clicks.extend(read_slice(&path, query, limit)?);
        // A click's id carries the millisecond its request began, and it is committed after
        // that, so every click in an older slice began before this slice was started. Once
        // `limit` clicks began after that, no older slice can hold a newer one.
        let newer = clicks.iter().filter(|click| id_ms(&click.id) > started_ms).count();
        if newer >= limit {
            break;
        }
    }
    clicks.sort_unstable_by(|a, b| b.id.cmp(&a.id));
    // A spool replayed twice (a crash between the replay and the spool's truncation) can put a
    // click in two slices; the id is the same.
    clicks.dedup_by(|a, b| a.id == b.id);
    clicks.truncate(limit);
    Ok(clicks)
}

/// The millisecond a slice was started, from its name.
fn slice_start_ms(path: &Path) -> u64 {
    path.file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .unwrap_or(0)
}

/// The millisecond a click's request began: the first 48 bits of its id ([`ClickEvent::new_id`]).
fn id_ms(id: &str) -> u64 {
    id.get(..12)
        .and_then(|ms| u64::from_str_radix(ms, 16).ok())
        .unwrap_or(0)
}

fn read_slice(path: &Path, query: &ClickQuery, limit: usize) -> Result<Vec<ClickEvent>, ClickLogError> {
    let err = |source| ClickLogError::Store {
        path: path.into(),
        source,
    };
    let connection = Connection::open(path).map_err(err)?;
    connection.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    // A slice the writer has only just created may not have its table yet: nothing in it.
    let has_table = connection
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clicks'")
        .and_then(|mut statement| statement.exists([]))
        .map_err(err)?;
    if !has_table {
        return Ok(Vec::new());
    }
    let mut statement = connection
        .prepare(
            "SELECT id, at_ms, message_ref, recipient_ref, url, verdict, category, action, client_ip, user_agent,
             cache_hit, latency_us, key_id FROM clicks
             WHERE (?1 IS NULL OR message_ref = ?1) AND (?2 IS NULL OR action = ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .map_err(err)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement
        .query_map(params![query.message_ref, query.action, limit], |row| {
            let action: String = row.get(7)?;
            Ok(ClickEvent {
                id: row.get(0)?,
                at_ms: row.get(1)?,
                message_ref: row.get(2)?,
                recipient_ref: row.get(3)?,
                url: row.get(4)?,
                verdict: row.get(5)?,
                category: row.get(6)?,
                action: serde_json::from_value(serde_json::Value::String(action)).unwrap_or(Action::Rejected),
                client_ip: row.get(8)?,
                user_agent: row.get(9)?,
                cache_hit: row.get(10)?,
                latency_us: row.get(11)?,
                key_id: row.get(12)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}
