//! What a finished slice knows about itself, so dashboards and searches need not read its rows:
//! its span of click ids, clicks per hour by action and verdict, and each day's most clicked URLs,
//! hosts, clickers and at-risk clickers (the top [`TOP_PER_DAY`] of each per slice). Made by the
//! closer when it finishes a slice, in the same pass as the indexes; for the slice still being
//! written the same figures come from its rows.

use std::collections::HashMap;

use rusqlite::{Connection, params};

/// How many of each top list a slice keeps per day. A key outside every slice's top 200 of
/// its day cannot be in the overall top 10 unless clicks are spread over more slices than
/// that; the dashboards show top 10 to 100.
pub const TOP_PER_DAY: i64 = 200;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS slice_span (first_id TEXT NOT NULL, last_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS click_hours (
    hour INTEGER NOT NULL,
    action TEXT NOT NULL,
    verdict TEXT NOT NULL,
    clicks INTEGER NOT NULL,
    cache_hits INTEGER NOT NULL,
    PRIMARY KEY (hour, action, verdict)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS click_tops (
    day INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    clicks INTEGER NOT NULL,
    blocked INTEGER NOT NULL,
    sample_message TEXT NOT NULL,
    PRIMARY KEY (day, kind, key)
) WITHOUT ROWID;
";

/// The table made last when a slice is finished: a slice without it is not finished.
pub(super) const FINISHED_MARK: &str = "click_tops";

/// What counts as blocked in the top lists.
const BLOCKED: &str = "action IN ('blocked', 'warned')";

/// A click that put its recipient at risk: through a warning, or let through to a link judged
/// bad (at click time).
const RISKY: &str = "(action = 'clicked-through' OR (action = 'permitted' AND verdict IN ('malicious', 'suspicious')))";

/// The top-list kinds: the column each is keyed by, and which clicks count.
const KINDS: [(&str, &str, &str); 4] = [
    ("url", "url", "action NOT IN ('prefetch', 'rejected')"),
    (
        "host",
        "host_rev",
        "action NOT IN ('prefetch', 'rejected') AND host_rev != ''",
    ),
    (
        "clicker",
        "recipient_ref",
        "action NOT IN ('prefetch', 'rejected') AND recipient_ref != ''",
    ),
    ("at_risk", "recipient_ref", "recipient_ref != ''"),
];

/// Builds the span and rollups of a slice nobody writes any more (replacing any from before).
pub(super) fn build(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let built = (|| {
        connection.execute_batch(
            "DROP TABLE IF EXISTS slice_span; DROP TABLE IF EXISTS click_hours; DROP TABLE IF EXISTS click_tops;",
        )?;
        connection.execute_batch(SCHEMA)?;
        connection.execute(
            "INSERT INTO slice_span SELECT min(id), max(id) FROM clicks HAVING count(*) > 0",
            [],
        )?;
        connection.execute(
            "INSERT INTO click_hours SELECT at_ms / 3600000, action, verdict, count(*), sum(cache_hit)
             FROM clicks GROUP BY 1, 2, 3",
            [],
        )?;
        for (kind, column, which) in KINDS {
            let which = if kind == "at_risk" {
                format!("{which} AND {RISKY}")
            } else {
                which.to_string()
            };
            connection.execute(
                &format!(
                    "INSERT INTO click_tops (day, kind, key, clicks, blocked, sample_message)
                     SELECT day, ?1, key, clicks, blocked, sample FROM (
                         SELECT at_ms / 86400000 AS day, {column} AS key, count(*) AS clicks,
                                sum({BLOCKED}) AS blocked, max(message_ref) AS sample,
                                row_number() OVER (PARTITION BY at_ms / 86400000 ORDER BY count(*) DESC) AS rank
                         FROM clicks WHERE {which} GROUP BY 1, 2)
                     WHERE rank <= ?2"
                ),
                params![kind, TOP_PER_DAY],
            )?;
        }
        Ok(())
    })();
    connection.execute_batch(if built.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
    built
}

/// A slice's span of click ids, `None` for a slice not finished (or empty).
pub(super) fn span(connection: &Connection) -> Option<(String, String)> {
    connection
        .query_row("SELECT first_id, last_id FROM slice_span", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .ok()
}

fn is_finished(connection: &Connection) -> bool {
    connection
        .prepare(&format!(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{FINISHED_MARK}'"
        ))
        .and_then(|mut statement| statement.exists([]))
        .unwrap_or(false)
}

/// Clicks in one hour with one action and verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCount {
    /// Hours since the Unix epoch.
    pub hour: i64,
    pub action: String,
    pub verdict: String,
    pub clicks: i64,
    pub cache_hits: i64,
}

/// One entry of a top list, summed over the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopEntry {
    /// The URL, the reversed host, or the recipient's pseudonym (hex).
    pub key: String,
    pub clicks: i64,
    pub blocked: i64,
    /// A message the clicks were on (to name a clicker from the message index).
    pub sample_message: String,
}

/// The period's figures across every slice.
#[derive(Debug, Clone, Default)]
pub struct ClickFigures {
    pub hours: Vec<HourCount>,
    /// By kind (`url`, `host`, `clicker`, `at_risk`), most clicks first.
    pub tops: HashMap<String, Vec<TopEntry>>,
}

/// Adds one slice's figures for hours `[from_hour, to_hour)` to `figures`: from its rollups when
/// finished, from its rows otherwise.
pub(super) fn add_slice(
    connection: &Connection,
    from_hour: i64,
    to_hour: i64,
    hours: &mut HashMap<(i64, String, String), (i64, i64)>,
    tops: &mut HashMap<(String, String), TopEntry>,
) -> rusqlite::Result<()> {
    let finished = is_finished(connection);
    let hour_sql = if finished {
        "SELECT hour, action, verdict, clicks, cache_hits FROM click_hours WHERE hour >= ?1 AND hour < ?2".to_string()
    } else {
        "SELECT at_ms / 3600000, action, verdict, count(*), sum(cache_hit) FROM clicks
         WHERE id >= printf('%012x', ?1 * 3600000) AND id < printf('%012x', ?2 * 3600000) GROUP BY 1, 2, 3"
            .to_string()
    };
    let mut statement = connection.prepare(&hour_sql)?;
    let rows = statement.query_map(params![from_hour, to_hour], |row| {
        Ok((
            (
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ),
            (row.get::<_, i64>(3)?, row.get::<_, i64>(4)?),
        ))
    })?;
    for row in rows {
        let (key, (clicks, cache_hits)) = row?;
        let entry = hours.entry(key).or_insert((0, 0));
        entry.0 += clicks;
        entry.1 += cache_hits;
    }
    // Top lists by day: the days the hours fall in.
    let (from_day, to_day) = (from_hour.div_euclid(24), (to_hour + 23).div_euclid(24));
    let mut add_top = |kind: String, key: String, clicks: i64, blocked: i64, sample: String| {
        let entry = tops.entry((kind, key.clone())).or_insert(TopEntry {
            key,
            clicks: 0,
            blocked: 0,
            sample_message: sample,
        });
        entry.clicks += clicks;
        entry.blocked += blocked;
    };
    if finished {
        let mut statement = connection.prepare(
            "SELECT kind, key, clicks, blocked, sample_message FROM click_tops WHERE day >= ?1 AND day < ?2",
        )?;
        let rows = statement.query_map(params![from_day, to_day], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
        })?;
        for row in rows {
            let (kind, key, clicks, blocked, sample) = row?;
            add_top(kind, key, clicks, blocked, sample);
        }
    } else {
        for (kind, column, which) in KINDS {
            let which = if kind == "at_risk" {
                format!("{which} AND {RISKY}")
            } else {
                which.to_string()
            };
            let mut statement = connection.prepare(&format!(
                "SELECT {column}, count(*), sum({BLOCKED}), max(message_ref) FROM clicks
                 WHERE id >= printf('%012x', ?1 * 86400000) AND id < printf('%012x', ?2 * 86400000) AND {which}
                 GROUP BY 1 ORDER BY 2 DESC LIMIT ?3"
            ))?;
            let rows = statement.query_map(params![from_day, to_day, TOP_PER_DAY], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
            for row in rows {
                let (key, clicks, blocked, sample) = row?;
                add_top(kind.to_string(), key, clicks, blocked, sample);
            }
        }
    }
    Ok(())
}

/// Turns the sums into the figures: hours in order, each top list most clicked first.
pub(super) fn figures(
    hours: HashMap<(i64, String, String), (i64, i64)>,
    tops: HashMap<(String, String), TopEntry>,
    top_n: usize,
) -> ClickFigures {
    let mut hour_list: Vec<HourCount> = hours
        .into_iter()
        .map(|((hour, action, verdict), (clicks, cache_hits))| HourCount {
            hour,
            action,
            verdict,
            clicks,
            cache_hits,
        })
        .collect();
    hour_list.sort_by(|a, b| (a.hour, &a.action, &a.verdict).cmp(&(b.hour, &b.action, &b.verdict)));
    let mut by_kind: HashMap<String, Vec<TopEntry>> = HashMap::new();
    for ((kind, _), entry) in tops {
        by_kind.entry(kind).or_default().push(entry);
    }
    for list in by_kind.values_mut() {
        list.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.key.cmp(&b.key)));
        list.truncate(top_n);
    }
    ClickFigures {
        hours: hour_list,
        tops: by_kind,
    }
}
