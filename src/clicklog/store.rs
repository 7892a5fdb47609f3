//! The SQLite click store.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use super::{Action, ClickEvent, ClickLogError, Durability};

pub(super) struct Store {
    connection: Connection,
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
CREATE INDEX IF NOT EXISTS clicks_message ON clicks (message_ref);
";

fn connect(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
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
    // Checkpoints run on their own thread (`checkpoint_loop`), so a commit never waits for one.
    connection.pragma_update(None, "wal_autocheckpoint", 0)?;
    connection.execute_batch(SCHEMA)?;
    Ok(connection)
}

impl Store {
    pub(super) fn open(path: &Path, durability: Durability) -> Result<Self, ClickLogError> {
        let connection = connect(path, durability).map_err(|source| ClickLogError::Store {
            path: path.into(),
            source,
        })?;
        Ok(Self { connection })
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
        transaction.commit()
    }
}

/// Past this the checkpointer forces the WAL to start over (bounded disk use under saturation).
const WAL_RESTART_BYTES: u64 = 1024 * 1024 * 1024;

fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Copies the WAL back into the database four times a second with a passive checkpoint, which never
/// blocks the writer. Keeps retrying while the store cannot be opened; returns once `stop` is set.
pub(super) fn checkpoint_loop(path: &Path, durability: Durability, stop: &std::sync::atomic::AtomicBool) {
    let mut connection = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        if connection.is_none() {
            connection = connect(path, durability).ok();
        }
        // Under steady load a passive checkpoint never catches the writer, and the WAL only starts
        // over after a complete one: past a size, finish the job with RESTART (it waits for the
        // writer briefly, after the passive rounds did most of the copying).
        let wal_bytes = std::fs::metadata(wal_path(path)).map_or(0, |m| m.len());
        let mode = if wal_bytes > WAL_RESTART_BYTES {
            "RESTART"
        } else {
            "PASSIVE"
        };
        if let Some(open) = &connection
            && let Err(error) = open.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
        {
            tracing::warn!(%error, "click store checkpoint failed");
            connection = None;
        }
    }
    if let Some(open) = connection {
        let _ = open.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// Filters for reading the log back.
#[derive(Debug, Clone, Default)]
pub struct ClickQuery {
    pub limit: usize,
    pub message_ref: Option<String>,
    pub action: Option<String>,
}

/// Reads clicks, newest first, straight from the store (works whether or not the server runs).
pub fn read_clicks(data_dir: &Path, query: &ClickQuery) -> Result<Vec<ClickEvent>, ClickLogError> {
    let path: PathBuf = data_dir.join("clicks.db");
    let err = |source| ClickLogError::Store {
        path: path.clone(),
        source,
    };
    let connection = connect(&path, Durability::Normal).map_err(err)?;
    let mut statement = connection
        .prepare(
            "SELECT id, at_ms, message_ref, recipient_ref, url, verdict, category, action, client_ip, user_agent,
             cache_hit, latency_us, key_id FROM clicks
             WHERE (?1 IS NULL OR message_ref = ?1) AND (?2 IS NULL OR action = ?2)
             ORDER BY id DESC LIMIT ?3",
        )
        .map_err(err)?;
    let limit = if query.limit == 0 { i64::MAX } else { query.limit as i64 };
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
