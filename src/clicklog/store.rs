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
    key_id TEXT NOT NULL,
    host_rev TEXT NOT NULL DEFAULT ''
);
";

/// Built when a slice is finished: inserts at random places in an index are what make each
/// commit write many pages, so the slice being written has none. Each search filter has an
/// index ending in the id, so a page of results is read in order without sorting the slice.
/// `clicks_host` is the last one made: a slice without it is not finished.
const FINISHED_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS clicks_message ON clicks (message_ref);
CREATE INDEX IF NOT EXISTS clicks_recipient ON clicks (recipient_ref, id);
CREATE INDEX IF NOT EXISTS clicks_action ON clicks (action, id);
CREATE INDEX IF NOT EXISTS clicks_verdict ON clicks (verdict, id);
CREATE INDEX IF NOT EXISTS clicks_host ON clicks (host_rev, id);
";

/// Slices written before clicks kept their host have the column added and filled when finished.
const HOST_COLUMN: &str = "ALTER TABLE clicks ADD COLUMN host_rev TEXT NOT NULL DEFAULT ''";

/// The host of a URL with its labels reversed (`com.example.www`), lowercase: a domain and all
/// its subdomains are one range of an index. Empty when the URL has no host.
pub fn reversed_host(url: &str) -> String {
    let host = url::Url::parse(url).ok().and_then(|parsed| {
        parsed
            .host_str()
            .map(|host| host.trim_end_matches('.').to_ascii_lowercase())
    });
    match host {
        Some(host) if host.starts_with('[') => host,
        Some(host) if host.parse::<std::net::Ipv4Addr>().is_ok() => host,
        Some(host) => host.rsplit('.').collect::<Vec<_>>().join("."),
        None => String::new(),
    }
}

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
                 client_ip, user_agent, cache_hit, latency_us, key_id, host_rev)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
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
                    e.key_id,
                    reversed_host(&e.url)
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

/// Finishes a slice nobody writes any more: its search indexes, a checkpoint that empties the log,
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
    if !has_host_column(&connection)? {
        fill_host_column(&connection)?;
    }
    connection.execute_batch(FINISHED_SCHEMA)?;
    super::rollup::build(&connection)?;
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    connection.close().map_err(|(_, error)| error)
}

fn has_host_column(connection: &Connection) -> rusqlite::Result<bool> {
    connection
        .prepare("SELECT 1 FROM pragma_table_info('clicks') WHERE name = 'host_rev'")?
        .exists([])
}

/// For a store from before clicks kept their host, not finished since (the single store of
/// earlier versions): a temporary view that shadows `clicks` in this connection and works the
/// host out from the URL as rows are read. Nothing is written.
fn host_column_view(connection: &Connection) -> rusqlite::Result<()> {
    if has_host_column(connection)? {
        return Ok(());
    }
    connection.create_scalar_function(
        "reversed_host",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC | rusqlite::functions::FunctionFlags::SQLITE_UTF8,
        |context| Ok(reversed_host(&context.get::<String>(0)?)),
    )?;
    connection.execute_batch(
        "CREATE TEMP VIEW IF NOT EXISTS clicks AS SELECT *, reversed_host(url) AS host_rev FROM main.clicks",
    )
}

fn fill_host_column(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let filled = (|| {
        connection.execute_batch(HOST_COLUMN)?;
        let rows: Vec<(String, String)> = connection
            .prepare("SELECT id, url FROM clicks")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut update = connection.prepare("UPDATE clicks SET host_rev = ?2 WHERE id = ?1")?;
        for (id, url) in rows {
            update.execute(params![id, reversed_host(&url)])?;
        }
        Ok(())
    })();
    connection.execute_batch(if filled.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    filled
}

/// Slices not finished yet (a crash, a slice dropped after a write error): a log still beside
/// them, or not every search index. Called before the writer starts, so none of them is being written.
pub(super) fn unfinished(dir: &Path) -> Vec<PathBuf> {
    slices(dir)
        .into_iter()
        .filter(|path| wal_path(path).exists() || !has_every_index(path))
        .collect()
}

fn has_every_index(path: &Path) -> bool {
    // Read-write (never create): a read-only connection to a WAL database leaves its `-wal` and
    // `-shm` behind when it closes.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .and_then(|connection| {
            connection
                .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
                .exists([super::rollup::FINISHED_MARK])
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

/// Filters for reading the log back, newest first. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct ClickQuery {
    /// At most this many clicks (0: all).
    pub limit: usize,
    pub message_ref: Option<String>,
    pub action: Option<String>,
    pub verdict: Option<String>,
    /// The recipient's pseudonyms under every key (hex): one address has one per key. `Some`
    /// of an empty list matches nothing.
    pub recipient_refs: Option<Vec<String>>,
    /// A host or a parent domain of it (`example.com` also finds `www.example.com`).
    pub domain: Option<String>,
    /// URLs that start with this (the host is taken from it to use the index).
    pub url_prefix: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<i64>,
    /// The cursor: only clicks older than this click id.
    pub before_id: Option<String>,
    /// Only clicks that are threat events: blocked or warned, clicked through a warning, or let
    /// through to a link judged malicious or suspicious.
    pub threats_only: bool,
}

impl ClickQuery {
    /// The smallest id a click at or after `since_ms` can have, and the first id past `until_ms`
    /// and the cursor: the time range is a range of the primary key.
    fn id_bounds(&self) -> (Option<String>, Option<String>) {
        let lower = self.since_ms.map(|ms| format!("{:012x}", ms.max(0)));
        let until = self.until_ms.map(|ms| format!("{:012x}", ms.max(0)));
        let upper = match (until, self.before_id.clone()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (lower, upper)
    }

    /// The host the search is on, reversed, from `domain` or the URL prefix.
    fn host_rev(&self) -> Option<String> {
        if let Some(domain) = &self.domain {
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            return Some(reversed_host(&format!("http://{domain}/")));
        }
        self.url_prefix
            .as_deref()
            .map(reversed_host)
            .filter(|host| !host.is_empty())
    }
}

/// Every store of clicks: the slices, then `clicks.db`, the single store of earlier versions, if
/// there is one.
fn sources(data_dir: &Path) -> Vec<PathBuf> {
    let mut paths = slices(&slices_dir(data_dir));
    let legacy = data_dir.join("clicks.db");
    if legacy.is_file() {
        paths.push(legacy);
    }
    paths
}

fn open_reader(path: &Path) -> Result<Connection, ClickLogError> {
    let err = |source| ClickLogError::Store {
        path: path.into(),
        source,
    };
    // A slice without a write-ahead log is finished and never written again: read it as
    // immutable, so a reader (the followers read every second) leaves no `-wal` or `-shm`
    // behind, not even when the process is killed while it reads.
    if !path.with_extension("db-wal").exists() {
        let uri = format!(
            "file:{}?immutable=1",
            path.display()
                .to_string()
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23")
        );
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if let Ok(connection) = Connection::open_with_flags(&uri, flags) {
            return Ok(connection);
        }
    }
    let connection = Connection::open(path).map_err(err)?;
    connection.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    Ok(connection)
}

/// Reads clicks, newest first, straight from the slices (works whether or not the server runs).
/// A finished slice knows its span of ids: slices outside the query's time range are not read,
/// and once `limit` clicks newer than every slice left are in hand, the rest are not either.
pub fn read_clicks(data_dir: &Path, query: &ClickQuery) -> Result<Vec<ClickEvent>, ClickLogError> {
    if query.recipient_refs.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let (lower, upper) = query.id_bounds();
    let mut candidates: Vec<(PathBuf, Connection, Option<String>)> = Vec::new();
    for path in sources(data_dir) {
        let connection = open_reader(&path)?;
        let span = super::rollup::span(&connection);
        if let Some((first, last)) = &span
            && (lower.as_ref().is_some_and(|lower| last < lower) || upper.as_ref().is_some_and(|upper| first >= upper))
        {
            continue;
        }
        candidates.push((path, connection, span.map(|(_, last)| last)));
    }
    // Slices without a span (being written, not finished) first, then by newest click.
    candidates.sort_by(|a, b| match (&a.2, &b.2) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(a),
    });
    let limit = if query.limit == 0 { usize::MAX } else { query.limit };
    let mut clicks: Vec<ClickEvent> = Vec::new();
    for (path, connection, last) in candidates {
        if let Some(last) = last
            && clicks.len() >= limit
        {
            clicks.sort_unstable_by(|a, b| b.id.cmp(&a.id));
            clicks.truncate(limit);
            if clicks.last().is_some_and(|oldest| oldest.id > last) {
                break;
            }
        }
        clicks.extend(read_slice(&path, &connection, query, limit)?);
    }
    clicks.sort_unstable_by(|a, b| b.id.cmp(&a.id));
    // A spool replayed twice (a crash between the replay and the spool's truncation) can put a
    // click in two slices; the id is the same.
    clicks.dedup_by(|a, b| a.id == b.id);
    clicks.truncate(limit);
    Ok(clicks)
}

/// Clicks per hour and the top lists over `[since_ms, until_ms)` (to the hour), across every
/// slice: from finished slices' rollups, from the rows of the others.
pub fn click_figures(
    data_dir: &Path,
    since_ms: i64,
    until_ms: i64,
    top_n: usize,
) -> Result<super::rollup::ClickFigures, ClickLogError> {
    let (from_hour, to_hour) = (
        since_ms.div_euclid(3_600_000),
        (until_ms + 3_599_999).div_euclid(3_600_000),
    );
    let (lower, upper) = (format!("{:012x}", since_ms.max(0)), format!("{:012x}", until_ms.max(0)));
    let mut hours = std::collections::HashMap::new();
    let mut tops = std::collections::HashMap::new();
    for path in sources(data_dir) {
        let connection = open_reader(&path)?;
        if let Some((first, last)) = super::rollup::span(&connection)
            && (last < lower || first >= upper)
        {
            continue;
        }
        let has_table = connection
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clicks'")
            .and_then(|mut statement| statement.exists([]))
            .map_err(|source| ClickLogError::Store {
                path: path.clone(),
                source,
            })?;
        if !has_table {
            continue;
        }
        host_column_view(&connection).map_err(|source| ClickLogError::Store {
            path: path.clone(),
            source,
        })?;
        super::rollup::add_slice(&connection, from_hour, to_hour, &mut hours, &mut tops).map_err(|source| {
            ClickLogError::Store {
                path: path.clone(),
                source,
            }
        })?;
    }
    Ok(super::rollup::figures(hours, tops, top_n))
}

fn read_slice(
    path: &Path,
    connection: &Connection,
    query: &ClickQuery,
    limit: usize,
) -> Result<Vec<ClickEvent>, ClickLogError> {
    let err = |source| ClickLogError::Store {
        path: path.into(),
        source,
    };
    // A slice the writer has only just created may not have its table yet: nothing in it.
    let has_table = connection
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'clicks'")
        .and_then(|mut statement| statement.exists([]))
        .map_err(err)?;
    if !has_table {
        return Ok(Vec::new());
    }
    host_column_view(connection).map_err(err)?;
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    let mut param = |value: String| {
        values.push(rusqlite::types::Value::Text(value));
        format!("?{}", values.len())
    };
    let (lower, upper) = query.id_bounds();
    if let Some(lower) = lower {
        conditions.push(format!("id >= {}", param(lower)));
    }
    if let Some(upper) = upper {
        conditions.push(format!("id < {}", param(upper)));
    }
    for (column, value) in [
        ("message_ref", &query.message_ref),
        ("action", &query.action),
        ("verdict", &query.verdict),
    ] {
        if let Some(value) = value {
            conditions.push(format!("{column} = {}", param(value.clone())));
        }
    }
    if query.threats_only {
        conditions.push(
            "(action IN ('blocked', 'warned', 'clicked-through') \
             OR (action = 'permitted' AND verdict IN ('malicious', 'suspicious')))"
                .to_string(),
        );
    }
    if let Some(refs) = &query.recipient_refs {
        let alternatives: Vec<String> = refs
            .iter()
            .map(|reference| format!("recipient_ref = {}", param(reference.clone())))
            .collect();
        conditions.push(format!("({})", alternatives.join(" OR ")));
    }
    if let Some(host) = query.host_rev() {
        let column = "host_rev";
        let exact = format!("{column} = {}", param(host.clone()));
        if query.domain.is_some() {
            // Subdomains: every reversed host that continues the domain's with a dot, which is
            // the range [host + ".", host + "/") since '/' follows '.'.
            let (low, high) = (param(format!("{host}.")), param(format!("{host}/")));
            conditions.push(format!("({exact} OR ({column} >= {low} AND {column} < {high}))"));
        } else {
            conditions.push(exact);
        }
    }
    if let Some(prefix) = &query.url_prefix {
        let length = prefix.chars().count();
        conditions.push(format!("substr(url, 1, {length}) = {}", param(prefix.clone())));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    values.push(rusqlite::types::Value::Integer(
        i64::try_from(limit).unwrap_or(i64::MAX),
    ));
    let sql = format!(
        "SELECT id, at_ms, message_ref, recipient_ref, url, verdict, category, action, client_ip, user_agent,
         cache_hit, latency_us, key_id FROM clicks {filter} ORDER BY id DESC LIMIT ?{}",
        values.len()
    );
    let mut statement = connection.prepare(&sql).map_err(err)?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), |row| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn click(ms: i64, n: u32, url: &str, action: Action, verdict: &str, recipient: &str) -> ClickEvent {
        ClickEvent {
            id: format!("{ms:012x}{n:020x}"),
            at_ms: ms,
            message_ref: "m1".into(),
            recipient_ref: recipient.into(),
            url: url.into(),
            verdict: verdict.into(),
            category: String::new(),
            action,
            client_ip: "192.0.2.1".into(),
            user_agent: "test".into(),
            cache_hit: n.is_multiple_of(2),
            latency_us: 10,
            key_id: "k".into(),
        }
    }

    /// Three days of clicks in two slices: the finished one answers from its rollups and span,
    /// the one still being written from its rows, and both agree with counting by hand.
    #[test]
    fn finished_and_live_slices_give_the_same_figures_and_searches_skip_by_span() {
        let data = tempfile::tempdir().unwrap();
        let dir = slices_dir(data.path());
        let slicing = Slicing {
            wal_bytes: u64::MAX,
            age: Duration::from_secs(3600),
        };
        let day = 86_400_000i64;
        let start = 1_795_000_000_000i64 - 1_795_000_000_000 % day;
        let mut all = Vec::new();
        for (i, offset) in [0, 3_600_000, 3_600_001, day + 5, day + 7_200_000, 2 * day + 1]
            .iter()
            .enumerate()
        {
            let (url, action, verdict, recipient) = match i % 3 {
                0 => ("https://www.evil.example/a", Action::Blocked, "malicious", "aa"),
                1 => ("https://docs.example.org/x", Action::Permitted, "clean", "bb"),
                _ => ("https://www.evil.example/a", Action::ClickedThrough, "suspicious", "aa"),
            };
            all.push(click(start + offset, i as u32, url, action, verdict, recipient));
        }
        let (older, newer) = all.split_at(4);
        let mut first = Store::open_new(&dir, Durability::Normal, slicing).unwrap();
        first.insert(&older.iter().collect::<Vec<_>>()).unwrap();
        let (path, connection) = first.into_parts();
        finish(&path, Some(connection)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let mut second = Store::open_new(&dir, Durability::Normal, slicing).unwrap();
        second.insert(&newer.iter().collect::<Vec<_>>()).unwrap();

        let figures = click_figures(data.path(), start, start + 3 * day, 10).unwrap();
        let total: i64 = figures.hours.iter().map(|h| h.clicks).sum();
        assert_eq!(total, 6);
        let hour1: i64 = figures
            .hours
            .iter()
            .filter(|h| h.hour == (start + 3_600_000) / 3_600_000)
            .map(|h| h.clicks)
            .sum();
        assert_eq!(hour1, 2);
        let hosts = &figures.tops["host"];
        assert_eq!(
            (hosts[0].key.as_str(), hosts[0].clicks, hosts[0].blocked),
            ("example.evil.www", 4, 2)
        );
        let risky = &figures.tops["at_risk"];
        assert_eq!((risky[0].key.as_str(), risky[0].clicks), ("aa", 2));
        // Day two only: one slice's rollup and the other's rows.
        let day_two = click_figures(data.path(), start + day, start + 2 * day, 10).unwrap();
        assert_eq!(day_two.hours.iter().map(|h| h.clicks).sum::<i64>(), 2);

        // Searches by time read only the slices whose span meets the range.
        let query = |since: i64, until: i64| ClickQuery {
            since_ms: Some(since),
            until_ms: Some(until),
            ..ClickQuery::default()
        };
        assert_eq!(
            read_clicks(data.path(), &query(start, start + 3 * day)).unwrap().len(),
            6
        );
        assert_eq!(
            read_clicks(data.path(), &query(start + 2 * day, start + 3 * day))
                .unwrap()
                .len(),
            1
        );
        let by_domain = read_clicks(
            data.path(),
            &ClickQuery {
                domain: Some("evil.example".into()),
                ..ClickQuery::default()
            },
        )
        .unwrap();
        assert_eq!(by_domain.len(), 4);
        let newest_two = read_clicks(
            data.path(),
            &ClickQuery {
                limit: 2,
                ..ClickQuery::default()
            },
        )
        .unwrap();
        assert_eq!(
            newest_two.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            [all[5].id.clone(), all[4].id.clone()]
        );
    }
}
