//! The gateway's store: one SQLite database (`gateway.db` in the data directory) holding the message
//! index, the accepted messages (each stored once, with the plan its copies are rendered by), the
//! delivery queue and the quarantine, and the one transaction that files a filtered message into
//! them. The queue and quarantine modules add their own queries on top.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("gateway store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("gateway store: {0}")]
    Json(#[from] serde_json::Error),
    #[error("no such entry: {0}")]
    NotFound(String),
    /// The entry is not in a state that allows the change.
    #[error("{0}")]
    Conflict(String),
}

/// A handle on the store; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
    /// A second, read-only connection for lookups the analysis makes (first contact): under WAL
    /// it reads while the writer commits, so filtering never waits behind another message's fsync.
    reader: Arc<Mutex<Connection>>,
    /// A third, read-only connection for searches (the message trace, the API's lookups): a
    /// slow search never holds the writer's lock, so filing mail never waits behind one.
    search: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    message_ref TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    message_id TEXT,
    sender TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    helo TEXT NOT NULL,
    subject TEXT,
    recipients TEXT NOT NULL,
    urls TEXT NOT NULL,
    symbols TEXT NOT NULL,
    verdict TEXT NOT NULL,
    category TEXT,
    rule TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received_at);
-- Who has had mail delivered to whom (header From address, recipient), for first contact.
CREATE TABLE IF NOT EXISTS correspondents (
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (sender, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_ref TEXT NOT NULL,
    kind TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_until INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS queue_due ON queue (next_attempt);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_ref TEXT NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT,
    body BLOB NOT NULL,
    held_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_expiry ON quarantine (expires_at);
CREATE TABLE IF NOT EXISTS stored_messages (
    message_ref TEXT PRIMARY KEY,
    message BLOB NOT NULL,
    plan TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_message ON queue (message_ref);
CREATE INDEX IF NOT EXISTS quarantine_message ON quarantine (message_ref);
-- Each recipient of an indexed message, lowercase, for the message trace.
CREATE TABLE IF NOT EXISTS message_recipients (
    address TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    message_ref TEXT NOT NULL,
    PRIMARY KEY (address, received_at, message_ref)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender COLLATE NOCASE, received_at);
-- Every delivery attempt's outcome per recipient: delivered, deferred, failed.
CREATE TABLE IF NOT EXISTS delivery_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_ref TEXT NOT NULL,
    at INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reply TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS delivery_attempts_message ON delivery_attempts (message_ref);
-- Messages per hour by verdict and category as they were decided, for the dashboards.
CREATE TABLE IF NOT EXISTS message_hours (
    hour INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    category TEXT NOT NULL,
    messages INTEGER NOT NULL,
    PRIMARY KEY (hour, verdict, category)
) WITHOUT ROWID;
-- Each link of an indexed message, by URL and by reversed host (`com.example.www`), so a link
-- judged bad after delivery finds every message that carried it.
CREATE TABLE IF NOT EXISTS message_links (
    url TEXT NOT NULL,
    host_rev TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    PRIMARY KEY (url, message_ref)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS message_links_host ON message_links (host_rev, message_ref);
";

/// Columns added after the first release, for stores created before them: `queue.copy_for` is
/// the JSON of [`DeliveryBody::Rendered`] (NULL: `body` is the literal copy, as every entry was
/// before), and a quarantine row with an empty `body` refers to `stored_messages`.
/// `messages.from_address` is the header From address (NULL before it was kept).
const MIGRATIONS: &[(&str, &str, &str)] = &[
    ("queue", "copy_for", "ALTER TABLE queue ADD COLUMN copy_for TEXT"),
    (
        "messages",
        "from_address",
        "ALTER TABLE messages ADD COLUMN from_address TEXT",
    ),
    ("messages", "size", "ALTER TABLE messages ADD COLUMN size INTEGER"),
    (
        "quarantine",
        "self_service",
        "ALTER TABLE quarantine ADD COLUMN self_service INTEGER NOT NULL DEFAULT 0",
    ),
];

/// One recipient of an indexed message and the keyed pseudonym its links carry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexedRecipient {
    pub address: String,
    /// Hex of the recipient reference signed into its links; empty for one copy per message.
    pub reference: String,
}

/// The message index entry: what arrived, what was found, what was decided.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexEntry {
    pub message_ref: String,
    pub received_at: i64,
    pub message_id: Option<String>,
    pub sender: String,
    pub client_ip: String,
    pub helo: String,
    /// The header From address.
    #[serde(default)]
    pub from_address: Option<String>,
    /// The message's size in bytes as received (0 for entries indexed before it was kept).
    #[serde(default)]
    pub size: i64,
    /// DMARC passed, so the From address is the sender's own: only then does a delivered message
    /// make its sender familiar to its recipients (a spoof must not).
    #[serde(skip)]
    pub from_authenticated: bool,
    pub subject: Option<String>,
    pub recipients: Vec<IndexedRecipient>,
    pub urls: Vec<String>,
    pub symbols: Vec<String>,
    /// Every symbol as it was weighed, with what triggered it (empty for entries indexed before
    /// weights were kept).
    #[serde(default)]
    pub weighed: Vec<WeighedSymbol>,
    /// deliver, quarantine, reject, discard.
    pub verdict: String,
    pub category: Option<String>,
    /// The transport rule that decided, if one did.
    pub rule: Option<String>,
    /// The `X-Portcullis-Spam-Details` value.
    pub details: String,
}

/// How familiar a sender is to a message's recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Familiarity {
    /// Whether the store has seen any delivered mail at all.
    pub anyone: bool,
    /// How many of the recipients have had mail from this sender before.
    pub known_to: usize,
}

/// One symbol of an indexed message: its group and weight when the message was decided, and what
/// in the message triggered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeighedSymbol {
    pub name: String,
    pub group: String,
    pub weight: f64,
    pub detail: String,
}

/// The `symbols` column: weighed symbols, or (entries from before weights were kept) names.
#[derive(Deserialize)]
#[serde(untagged)]
enum SymbolsColumn {
    Weighed(Vec<WeighedSymbol>),
    Names(Vec<String>),
}

/// A copy to relay: one recipient (or all of them for one copy per message).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_ref: String,
    pub kind: DeliveryKind,
    pub sender: String,
    pub recipients: Vec<String>,
    pub body: DeliveryBody,
}

/// What a queue entry delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryBody {
    /// These bytes (a delivery status notification; entries queued before messages were stored once).
    Literal(Vec<u8>),
    /// The stored message, rendered by its plan for this recipient (`None`: one copy for all).
    Rendered { recipient: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Message,
    /// A delivery status notification we generated; never answered with another one.
    Dsn,
}

impl DeliveryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Message => "message",
            DeliveryKind::Dsn => "dsn",
        }
    }

    pub fn parse(text: &str) -> Self {
        if text == "dsn" {
            DeliveryKind::Dsn
        } else {
            DeliveryKind::Message
        }
    }
}

/// A message held in quarantine.
#[derive(Debug, Clone)]
pub struct NewHold {
    pub message_ref: String,
    pub category: String,
    pub reason: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub expires_at: i64,
    /// Held by its scores alone (spam, bulk, phish): its recipients may act on it from their
    /// digest. Not for a hold a transport rule, the block list or a refusal after DATA made.
    pub self_service: bool,
}

/// An accepted message as stored: the bytes as received and the JSON of the plan its copies are
/// rendered by.
pub struct StoredMessage {
    pub message: Vec<u8>,
    pub plan: String,
}

fn insert_links(connection: &Connection, message_ref: &str, urls: &[String]) -> Result<(), StoreError> {
    let mut link = connection
        .prepare_cached("INSERT OR IGNORE INTO message_links (url, host_rev, message_ref) VALUES (?1, ?2, ?3)")?;
    for url in urls {
        link.execute(params![url, crate::clicklog::reversed_host(url), message_ref])?;
    }
    Ok(())
}

/// How far back the link table is filled for messages indexed before it existed.
const LINKS_BACKFILL_SECS: i64 = 30 * 86_400;

/// Writes one index entry: the message, its recipients for the trace, its hour's count, and
/// (delivered and authenticated) its sender as known to its recipients.
fn insert_index(transaction: &rusqlite::Transaction<'_>, entry: &IndexEntry) -> Result<(), StoreError> {
    let replaced = transaction
        .prepare_cached("SELECT 1 FROM messages WHERE message_ref = ?1")?
        .exists([&entry.message_ref])?;
    transaction
        .prepare_cached(
            "INSERT OR REPLACE INTO messages (message_ref, received_at, message_id, sender, client_ip, helo,
                 subject, recipients, urls, symbols, verdict, category, rule, details, from_address, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            entry.message_ref,
            entry.received_at,
            entry.message_id,
            entry.sender,
            entry.client_ip,
            entry.helo,
            entry.subject,
            serde_json::to_string(&entry.recipients)?,
            serde_json::to_string(&entry.urls)?,
            if entry.weighed.is_empty() {
                serde_json::to_string(&entry.symbols)?
            } else {
                serde_json::to_string(&entry.weighed)?
            },
            entry.verdict,
            entry.category,
            entry.rule,
            entry.details,
            entry.from_address,
            entry.size,
        ])?;
    // A delivered message makes its sender known to its recipients; a held or refused one
    // does not (an attacker must not become familiar by being caught).
    if entry.verdict == "deliver"
        && entry.from_authenticated
        && let Some(from) = &entry.from_address
    {
        let mut remember = transaction.prepare_cached(
            "INSERT INTO correspondents (sender, recipient, first_seen, last_seen, messages)
                 VALUES (?1, ?2, ?3, ?3, 1)
                 ON CONFLICT (sender, recipient) DO UPDATE SET last_seen = ?3, messages = messages + 1",
        )?;
        for recipient in &entry.recipients {
            remember.execute(params![
                from.to_ascii_lowercase(),
                recipient.address.to_ascii_lowercase(),
                entry.received_at
            ])?;
        }
    }
    insert_links(transaction, &entry.message_ref, &entry.urls)?;
    let mut trace = transaction.prepare_cached(
        "INSERT OR IGNORE INTO message_recipients (address, received_at, message_ref) VALUES (?1, ?2, ?3)",
    )?;
    for recipient in &entry.recipients {
        trace.execute(params![
            recipient.address.to_lowercase(),
            entry.received_at,
            entry.message_ref
        ])?;
    }
    // Filed again (a spool replayed after a crash): counted once.
    if !replaced {
        transaction
            .prepare_cached(
                "INSERT INTO message_hours (hour, verdict, category, messages) VALUES (?1, ?2, ?3, 1)
                 ON CONFLICT (hour, verdict, category) DO UPDATE SET messages = messages + 1",
            )?
            .execute(params![
                entry.received_at.div_euclid(3600),
                entry.verdict,
                entry.category.as_deref().unwrap_or("")
            ])?;
    }
    Ok(())
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (or creates) `gateway.db` in `data_dir`. Commits are fully synced: a message the
    /// gateway answered 250 for is on disk before its spool file is removed.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        crate::token::create_private_dir(data_dir).map_err(|e| {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("{}: {e}", data_dir.display())),
            ))
        })?;
        let connection = Connection::open(data_dir.join("gateway.db"))?;
        connection.busy_timeout(std::time::Duration::from_secs(30))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(SCHEMA)?;
        for (table, column, statement) in MIGRATIONS {
            let present = connection
                .prepare(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"))?
                .exists([column])?;
            if !present {
                connection.execute_batch(statement)?;
            }
        }
        connection.execute_batch(
            "CREATE INDEX IF NOT EXISTS messages_from ON messages (from_address COLLATE NOCASE, received_at);",
        )?;
        crate::audit::create(&connection)?;
        connection.execute_batch(crate::senders::SCHEMA)?;
        connection.execute_batch(crate::threats::SCHEMA)?;
        connection.execute_batch(crate::follow::SCHEMA)?;
        connection.execute_batch(crate::quarantine::SCHEMA)?;
        connection.execute_batch(crate::digest::SCHEMA)?;
        // Messages indexed before the trace table existed (once: the table fills at filing).
        let traced = connection
            .prepare("SELECT 1 FROM message_recipients LIMIT 1")?
            .exists([])?;
        if !traced {
            connection.execute_batch(
                "INSERT OR IGNORE INTO message_recipients (address, received_at, message_ref)
                 SELECT lower(json_extract(r.value, '$.address')), m.received_at, m.message_ref
                 FROM messages m, json_each(m.recipients) r",
            )?;
        }
        // Links of messages indexed before the link table existed, for the last 30 days (once).
        let linked = connection.prepare("SELECT 1 FROM message_links LIMIT 1")?.exists([])?;
        if !linked {
            let transaction = connection.unchecked_transaction()?;
            {
                let mut recent =
                    transaction.prepare("SELECT message_ref, urls FROM messages WHERE received_at >= ?1")?;
                let rows = recent.query_map([now() - LINKS_BACKFILL_SECS], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (message_ref, urls) = row?;
                    let urls: Vec<String> = serde_json::from_str(&urls).unwrap_or_default();
                    insert_links(&transaction, &message_ref, &urls)?;
                }
            }
            transaction.commit()?;
        }
        let counted = connection.prepare("SELECT 1 FROM message_hours LIMIT 1")?.exists([])?;
        if !counted {
            connection.execute_batch(
                "INSERT INTO message_hours (hour, verdict, category, messages)
                 SELECT received_at / 3600, CASE verdict WHEN 'released' THEN 'quarantine' ELSE verdict END,
                        COALESCE(category, ''), count(*)
                 FROM messages GROUP BY 1, 2, 3",
            )?;
        }
        let reader = Connection::open_with_flags(
            data_dir.join("gateway.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        let search = Connection::open_with_flags(
            data_dir.join("gateway.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        search.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
            reader: Arc::new(Mutex::new(reader)),
            search: Arc::new(Mutex::new(search)),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll back),
        // so a poisoned lock is still usable.
        self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the pipeline already filed this message (a spool file left by a crash after filing).
    pub fn is_indexed(&self, message_ref: &str) -> Result<bool, StoreError> {
        let connection = self.lock();
        let found = connection
            .prepare_cached("SELECT 1 FROM messages WHERE message_ref = ?1")?
            .exists([message_ref])?;
        Ok(found)
    }

    /// Files one filtered message: its index entry, the message itself (once, whatever the number
    /// of recipients) with its render plan, its copies to relay and its quarantine hold, in one
    /// transaction, so a crash leaves either all of it or none.
    pub fn file(
        &self,
        entry: &IndexEntry,
        stored: Option<(&[u8], &str)>,
        deliveries: &[NewDelivery],
        hold: Option<&NewHold>,
    ) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        insert_index(&transaction, entry)?;
        if let Some((message, plan)) = stored {
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO stored_messages (message_ref, message, plan) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![entry.message_ref, message, plan])?;
        }
        let now = now();
        for delivery in deliveries {
            insert_delivery(&transaction, delivery, now)?;
        }
        if let Some(hold) = hold {
            insert_hold(&transaction, hold, now)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Files index entries only (no message, delivery or hold) in one transaction: an import of
    /// history, and how the admin benchmark loads a million messages.
    pub fn file_index_batch(&self, entries: &[IndexEntry]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        for entry in entries {
            insert_index(&transaction, entry)?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// The newest index entries (all when `limit` is 0), or one message's.
    pub fn index(&self, limit: usize, message_ref: Option<&str>) -> Result<Vec<IndexEntry>, StoreError> {
        let limit = if limit == 0 { -1 } else { limit as i64 };
        // Two statements: `?1 IS NULL OR message_ref = ?1` would keep SQLite off the key's index.
        match message_ref {
            Some(message_ref) => self.index_where("message_ref = ?1", "received_at DESC", &[&message_ref, &limit]),
            None => self.index_where("1", "received_at DESC, rowid DESC", &[&limit]),
        }
    }

    /// Runs `read` on the read-only search connection: long reads wait for no writer and keep
    /// no writer waiting.
    pub(crate) fn read_only<T, E: From<StoreError>>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let connection = self.search.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&connection)
    }

    /// Index entries matching an SQL condition over `messages`, in `order`; the last parameter
    /// is the limit.
    pub(crate) fn index_where(
        &self,
        condition: &str,
        order: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<IndexEntry>, StoreError> {
        let connection = self.search.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut statement = connection.prepare_cached(&format!(
            "SELECT message_ref, received_at, message_id, sender, client_ip, helo, subject, recipients, urls,
             symbols, verdict, category, rule, details, from_address, COALESCE(size, 0) FROM messages
             WHERE {condition} ORDER BY {order} LIMIT ?{}",
            values.len()
        ))?;
        let rows = statement.query_map(values, |row| {
            Ok((
                IndexEntry {
                    message_ref: row.get(0)?,
                    received_at: row.get(1)?,
                    message_id: row.get(2)?,
                    sender: row.get(3)?,
                    client_ip: row.get(4)?,
                    helo: row.get(5)?,
                    from_address: row.get(14)?,
                    size: row.get(15)?,
                    from_authenticated: false,
                    subject: row.get(6)?,
                    recipients: Vec::new(),
                    urls: Vec::new(),
                    symbols: Vec::new(),
                    weighed: Vec::new(),
                    verdict: row.get(10)?,
                    category: row.get(11)?,
                    rule: row.get(12)?,
                    details: row.get(13)?,
                },
                row.get::<_, String>(7)?,
                row.get::<_, String>(8)?,
                row.get::<_, String>(9)?,
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (mut entry, recipients, urls, symbols) = row?;
            entry.recipients = serde_json::from_str(&recipients)?;
            entry.urls = serde_json::from_str(&urls)?;
            match serde_json::from_str(&symbols)? {
                SymbolsColumn::Weighed(weighed) => {
                    entry.symbols = weighed.iter().map(|symbol| symbol.name.clone()).collect();
                    entry.weighed = weighed;
                }
                SymbolsColumn::Names(names) => entry.symbols = names,
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Of `recipients`, how many have had mail from `sender` (a header From address) delivered
    /// before, and whether anyone has had any (a fresh store knows nobody yet).
    pub fn correspondents(&self, sender: &str, recipients: &[String]) -> Result<Familiarity, StoreError> {
        let connection = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let anyone = connection
            .prepare_cached("SELECT 1 FROM correspondents LIMIT 1")?
            .exists([])?;
        let mut known =
            connection.prepare_cached("SELECT 1 FROM correspondents WHERE sender = ?1 AND recipient = ?2")?;
        let mut known_to = 0;
        for recipient in recipients {
            if known.exists(params![sender.to_ascii_lowercase(), recipient.to_ascii_lowercase()])? {
                known_to += 1;
            }
        }
        Ok(Familiarity { anyone, known_to })
    }

    /// A stored message and its plan's JSON.
    pub fn stored_message(&self, message_ref: &str) -> Result<StoredMessage, StoreError> {
        let connection = self.lock();
        let found = connection
            .prepare_cached("SELECT message, plan FROM stored_messages WHERE message_ref = ?1")?
            .query_row([message_ref], |row| {
                Ok(StoredMessage {
                    message: row.get(0)?,
                    plan: row.get(1)?,
                })
            })
            .optional()?;
        found.ok_or_else(|| StoreError::NotFound(format!("stored message {message_ref}")))
    }
}

pub(crate) fn insert_delivery(connection: &Connection, delivery: &NewDelivery, now: i64) -> Result<(), StoreError> {
    let (body, copy_for): (&[u8], Option<String>) = match &delivery.body {
        DeliveryBody::Literal(bytes) => (bytes, None),
        rendered => (&[], Some(serde_json::to_string(rendered)?)),
    };
    connection
        .prepare_cached(
            "INSERT INTO queue (message_ref, kind, sender, recipients, body, copy_for, created_at, next_attempt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        )?
        .execute(params![
            delivery.message_ref,
            delivery.kind.as_str(),
            delivery.sender,
            serde_json::to_string(&delivery.recipients)?,
            body,
            copy_for,
            now,
        ])?;
    Ok(())
}

/// Removes a stored message once no queue entry and no quarantine hold refers to it.
pub(crate) fn forget_unreferenced(connection: &Connection, message_ref: &str) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "DELETE FROM stored_messages WHERE message_ref = ?1
             AND NOT EXISTS (SELECT 1 FROM queue WHERE message_ref = ?1)
             AND NOT EXISTS (SELECT 1 FROM quarantine WHERE message_ref = ?1)",
        )?
        .execute([message_ref])?;
    Ok(())
}

pub(crate) fn insert_hold(connection: &Connection, hold: &NewHold, now: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO quarantine (message_ref, category, reason, sender, recipients, subject, body, held_at,
             expires_at, self_service) VALUES (?1, ?2, ?3, ?4, ?5, ?6, x'', ?7, ?8, ?9)",
        )?
        .execute(params![
            hold.message_ref,
            hold.category,
            hold.reason,
            hold.sender,
            serde_json::to_string(&hold.recipients)?,
            hold.subject,
            now,
            hold.expires_at,
            hold.self_service,
        ])?;
    Ok(())
}
