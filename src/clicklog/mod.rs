//! Click events and their durable store: SQLite (WAL) in time slices with batched group commits
//! on a writer thread, a closer thread that finishes full slices off the commit path, and an
//! append-only spool that takes clicks while the store is down and is replayed into it once the
//! store answers again. A click is acknowledged only once it is durable.

mod rollup;
mod spool;
mod store;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use rollup::{ClickFigures, HourCount, TOP_PER_DAY, TopEntry};
pub use store::{ClickQuery, click_figures, read_clicks, reversed_host};

/// What the click service did with a click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Redirected to the destination.
    Permitted,
    /// Block page.
    Blocked,
    /// Warning page.
    Warned,
    /// The user went on from a warning page.
    ClickedThrough,
    /// A link scanner or a HEAD request: answered, not counted as a user click.
    Prefetch,
    /// Forged, altered, truncated or unknown-key link.
    Rejected,
    /// A genuine link whose key is retired.
    Expired,
    /// A user reported a block as a mistake (false positive) from the block page.
    Reported,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Permitted => "permitted",
            Action::Blocked => "blocked",
            Action::Warned => "warned",
            Action::ClickedThrough => "clicked-through",
            Action::Prefetch => "prefetch",
            Action::Rejected => "rejected",
            Action::Expired => "expired",
            Action::Reported => "reported",
        }
    }
}

/// One click, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickEvent {
    /// 128-bit id, hex, time-ordered ([`ClickEvent::new_id`]).
    pub id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub message_ref: String,
    /// Hex of the keyed recipient pseudonym.
    pub recipient_ref: String,
    pub url: String,
    pub verdict: String,
    pub category: String,
    pub action: Action,
    pub client_ip: String,
    pub user_agent: String,
    pub cache_hit: bool,
    pub latency_us: i64,
    pub key_id: String,
}

impl ClickEvent {
    /// Time-ordered: 48 bits of Unix milliseconds, then 80 random bits (hex). New rows append at
    /// the end of the primary-key index instead of landing on a random page.
    pub fn new_id() -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let random: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
        format!("{:012x}{:020x}", ms & 0xffff_ffff_ffff, random)
    }
}

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: a committed click survives a process crash.
    #[default]
    Normal,
    /// `synchronous=FULL` and fsync of the spool: a committed click survives power loss.
    Full,
}

/// When the slice being written is finished and a new one started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slicing {
    /// Once its write-ahead log passes this many bytes (under saturation, every few seconds)...
    pub wal_bytes: u64,
    /// ...or once it is this old (under light load).
    pub age: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClickLogError {
    #[error("click store {path}: {source}")]
    Store { path: PathBuf, source: rusqlite::Error },
    #[error("click spool {path}: {source}")]
    Spool { path: PathBuf, source: std::io::Error },
    #[error("click neither stored nor spooled: {0}")]
    NotRecorded(String),
    #[error("the click log has shut down")]
    Closed,
}

/// Where a click ended up once acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Committed to the store.
    Stored,
    /// The store did not answer; the click is in the spool and will be replayed.
    Spooled,
}

type Reply = oneshot::Sender<Result<Recorded, String>>;

/// The handle requests use to log clicks. Cloning is cheap; the writer stops when every handle is
/// dropped and [`ClickLog::close`] has been called.
#[derive(Clone)]
pub struct ClickLog {
    sender: mpsc::SyncSender<(ClickEvent, Reply)>,
}

/// Owns the writer and closer threads.
pub struct ClickLogWriter {
    thread: Option<JoinHandle<()>>,
    closer: Option<JoinHandle<()>>,
}

impl ClickLogWriter {
    /// Waits until every queued click is written and every slice finished. Call after the last
    /// [`ClickLog`] is dropped.
    pub fn join(mut self) {
        // The writer hands its last slice to the closer and drops its end of the channel; the
        // closer then finishes what it has and stops.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(thread) = self.closer.take() {
            let _ = thread.join();
        }
    }
}

/// A slice for the closer: its path, and its connection when the writer had one open.
type Finished = (PathBuf, Option<rusqlite::Connection>);

/// Largest batch committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Clicks waiting for the writer before `log` applies back-pressure.
const QUEUE: usize = 16 * 1024;

impl ClickLog {
    /// Opens the click store (a new slice in `clicks/`) and `clicks.spool` in `data_dir`, and
    /// starts the writer and the closer. A store that cannot be opened is not fatal: clicks go to
    /// the spool until it can.
    pub fn open(
        data_dir: &Path,
        durability: Durability,
        slicing: Slicing,
    ) -> Result<(ClickLog, ClickLogWriter), ClickLogError> {
        let dir = store::slices_dir(data_dir);
        let unfinished = store::unfinished(&dir);
        let mut spool = spool::Spool::open(&data_dir.join("clicks.spool"), durability)?;
        let mut store = store::Store::open_new(&dir, durability, slicing).ok();
        if let Some(store) = store.as_mut() {
            spool.replay_into(store)?;
        }
        let (sender, receiver) = mpsc::sync_channel::<(ClickEvent, Reply)>(QUEUE);
        let (finish, finished) = mpsc::channel::<Finished>();
        for path in unfinished {
            let _ = finish.send((path, None));
        }
        let spawn_error = |source| ClickLogError::Spool {
            path: data_dir.into(),
            source,
        };
        let closer = std::thread::Builder::new()
            .name("clicklog-closer".into())
            .spawn(move || closer(finished))
            .map_err(spawn_error)?;
        let thread = std::thread::Builder::new()
            .name("clicklog-writer".into())
            .spawn(move || writer(receiver, finish, dir, durability, slicing, store, spool))
            .map_err(spawn_error)?;
        Ok((
            ClickLog { sender },
            ClickLogWriter {
                thread: Some(thread),
                closer: Some(closer),
            },
        ))
    }

    /// Records a click; resolves once it is committed (or spooled). Never drops a click silently:
    /// an error means it was neither stored nor spooled.
    pub async fn record(&self, event: ClickEvent) -> Result<Recorded, ClickLogError> {
        let (reply, answer) = oneshot::channel();
        match self.sender.try_send((event, reply)) {
            Ok(()) => {}
            // A full queue blocks until the writer catches up; keep that off the async workers.
            Err(mpsc::TrySendError::Full(item)) => {
                let sender = self.sender.clone();
                tokio::task::spawn_blocking(move || sender.send(item).map_err(|_| ()))
                    .await
                    .map_err(|_| ClickLogError::Closed)?
                    .map_err(|()| ClickLogError::Closed)?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(ClickLogError::Closed),
        }
        match answer.await {
            Ok(Ok(recorded)) => Ok(recorded),
            Ok(Err(message)) => Err(ClickLogError::NotRecorded(message)),
            Err(_) => Err(ClickLogError::Closed),
        }
    }
}

/// The writer: take the first waiting click, then everything else already queued, and commit them
/// in one transaction. Group commit is what makes "answer only after commit" cheap under load.
/// A full slice is swapped for a new one, before the next batch, and handed to the closer.
fn writer(
    receiver: mpsc::Receiver<(ClickEvent, Reply)>,
    finish: mpsc::Sender<Finished>,
    dir: PathBuf,
    durability: Durability,
    slicing: Slicing,
    mut store: Option<store::Store>,
    mut spool: spool::Spool,
) {
    let mut last_reopen = std::time::Instant::now();
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if store.is_none() && last_reopen.elapsed() > Duration::from_secs(1) {
            last_reopen = std::time::Instant::now();
            store = store::Store::open_new(&dir, durability, slicing).ok();
        }
        // Swapped before the batch goes in, not after its replies: a click answered is a click
        // in the slice that will hold it, and a slice's clicks all fall within its age.
        if store.as_ref().is_some_and(store::Store::is_full)
            && let Ok(next) = store::Store::open_new(&dir, durability, slicing)
            && let Some(full) = store.replace(next)
        {
            let (path, connection) = full.into_parts();
            let _ = finish.send((path, Some(connection)));
        }
        if let Some(open) = store.as_mut()
            && spool.has_pending()
            && spool.replay_into(open).is_err()
        {
            store = None;
        }
        let events: Vec<&ClickEvent> = batch.iter().map(|(e, _)| e).collect();
        let stored = match store.as_mut() {
            Some(open) => match open.insert(&events) {
                Ok(()) => Ok(Recorded::Stored),
                Err(error) => {
                    tracing::error!(%error, "click store failed; spooling clicks");
                    store = None;
                    Err(())
                }
            },
            None => Err(()),
        };
        let result = stored.or_else(|()| {
            spool
                .append(&events)
                .map(|()| Recorded::Spooled)
                .map_err(|e| e.to_string())
        });
        for (_, reply) in batch {
            let _ = reply.send(result.clone());
        }
    }
    if let Some(last) = store {
        let (path, connection) = last.into_parts();
        let _ = finish.send((path, Some(connection)));
    }
}

/// Finishes slices as they come (index, checkpoint, close) until the writer is gone. A slice it
/// cannot finish stays as it is, readable, and is tried again at the next start.
fn closer(finished: mpsc::Receiver<Finished>) {
    for (path, connection) in finished {
        if let Err(error) = store::finish(&path, connection) {
            tracing::warn!(path = %path.display(), %error, "click store slice not finished");
        }
    }
}
