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
/// The least: a follower waits for a second of the log rather than chase now millisecond by
/// millisecond.
const CLICK_STEP_MS: i64 = 1_000;

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

/// Where a follower that starts now may read the click log up to.
pub fn click_log_end() -> i64 {
    crate::store::now_ms() - CLICK_LAG_MS
}

/// The next stretch of the click log the follower `name` has not handed on, `(from, to)` in
/// Unix milliseconds: a second to a minute, ending by `end` (from [`click_log_end`], taken once
/// per round so a round ends). A follower that never ran starts at `end`.
pub fn next_click_window(store: &Store, name: &str, end: i64) -> Result<Option<(i64, i64)>, StoreError> {
    match store.follower_position(name)? {
        None => {
            store.set_follower_position(name, end)?;
            Ok(None)
        }
        Some(position) if position + CLICK_STEP_MS > end => Ok(None),
        Some(position) => Ok(Some((position, end.min(position + CLICK_WINDOW_MS)))),
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
    let end = click_log_end();
    while let Some(window) = next_click_window(store, name, end).map_err(FollowError::Store)? {
        take(&read_click_window(data_dir, filter, window)?)?;
        store
            .set_follower_position(name, window.1)
            .map_err(FollowError::Store)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_of_following_ends_even_while_the_clock_moves() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // First run: starts at the end it is given.
        let end = click_log_end();
        assert_eq!(next_click_window(&store, "t", end).unwrap(), None);
        // Ten minutes behind: ten windows of a minute, then none, whatever the time is now.
        store.set_follower_position("t", end - 600_000).unwrap();
        let mut calls = 0;
        follow_clicks(&store, dir.path(), "t", &ClickQuery::default(), |clicks| {
            calls += 1;
            assert!(clicks.is_empty());
            std::thread::sleep(std::time::Duration::from_millis(2));
            Ok::<(), FollowError>(())
        })
        .unwrap();
        assert!((10..=11).contains(&calls), "{calls} windows");
        // Less than a second of new log: nothing to read yet.
        let position = store.follower_position("t").unwrap().unwrap();
        assert_eq!(next_click_window(&store, "t", position + 999).unwrap(), None);
        assert_eq!(
            next_click_window(&store, "t", position + 1000).unwrap(),
            Some((position, position + 1000))
        );
    }
}
