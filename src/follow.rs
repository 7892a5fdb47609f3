//! Followers of the append-only records (the click log, the message index, the threats): each
//! follower keeps its position in the store and moves it only after it has handed on what it
//! read, so a restart or a failed hand-off reads the same records again (at least once).

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use crate::clicklog::{ClickEvent, ClickQuery, read_clicks};
use crate::store::{Store, StoreError};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS followers (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
";

/// How far behind now the click log is read. A click carries the time its request came in and
/// is committed after its reputation lookups (1.5 s by default, more with redirect hops) and
/// the writer's group commit: ten seconds covers that. Clicks spooled while the log could not
/// be written are replayed later with their own times and are not followed.
pub const CLICK_LAG_MS: i64 = 10_000;
/// The most of the click log read in one step.
const CLICK_WINDOW_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("click log: {0}")]
    Clicks(String),
}

impl Store {
    /// Where the follower `name` got to (`None` when it never ran).
    pub fn follower_position(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let connection = self.lock();
        Ok(connection
            .prepare_cached("SELECT position FROM followers WHERE name = ?1")?
            .query_row([name], |row| row.get(0))
            .optional()?)
    }

    pub fn set_follower_position(&self, name: &str, position: i64) -> Result<(), StoreError> {
        let connection = self.lock();
        connection
            .prepare_cached(
                "INSERT INTO followers (name, position) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET position = ?2",
            )?
            .execute(params![name, position])?;
        Ok(())
    }
}

/// The next stretch of the click log the follower `name` has not handed on, `(from, to)` in
/// Unix milliseconds: at most a minute, ending a moment ago. A follower that never ran starts now.
pub fn next_click_window(store: &Store, name: &str) -> Result<Option<(i64, i64)>, StoreError> {
    let end_limit = crate::store::now_ms() - CLICK_LAG_MS;
    match store.follower_position(name)? {
        None => {
            store.set_follower_position(name, end_limit)?;
            Ok(None)
        }
        Some(position) if position >= end_limit => Ok(None),
        Some(position) => Ok(Some((position, end_limit.min(position + CLICK_WINDOW_MS)))),
    }
}

/// The clicks matching `filter` in a window, oldest first.
pub fn read_click_window(
    data_dir: &Path,
    filter: &ClickQuery,
    (from, to): (i64, i64),
) -> Result<Vec<ClickEvent>, FollowError> {
    let query = ClickQuery {
        since_ms: Some(from),
        until_ms: Some(to),
        limit: 0,
        before_id: None,
        ..filter.clone()
    };
    let mut clicks = read_clicks(data_dir, &query).map_err(|e| FollowError::Clicks(e.to_string()))?;
    clicks.reverse();
    Ok(clicks)
}

/// Hands the clicks matching `filter` to `take` a minute at a time, oldest first, from the
/// follower's position to a moment ago; the position moves past a minute once `take` accepted it.
pub fn follow_clicks<E: From<FollowError>>(
    store: &Store,
    data_dir: &Path,
    name: &str,
    filter: &ClickQuery,
    mut take: impl FnMut(&[ClickEvent]) -> Result<(), E>,
) -> Result<(), E> {
    while let Some(window) = next_click_window(store, name).map_err(FollowError::Store)? {
        take(&read_click_window(data_dir, filter, window)?)?;
        store
            .set_follower_position(name, window.1)
            .map_err(FollowError::Store)?;
    }
    Ok(())
}
