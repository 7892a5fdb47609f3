//! The dashboards' figures over a period: clicks and verdicts per hour, the most clicked URLs and
//! domains, the top clickers and the users at risk, what the block page's "report a mistake"
//! brought in, and how the reputation providers and the cache are doing. Clicks come from the
//! click log's per-slice rollups ([`crate::clicklog::click_figures`]), messages from the gateway
//! store's hourly counts, so a report costs the same on ten million clicks as on a thousand.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::params;
use serde::Serialize;

use crate::clicklog::{ClickEvent, ClickLogError, ClickQuery, TopEntry, click_figures, read_clicks};
use crate::metrics::ProviderHealth;
use crate::store::{Store, StoreError};
use crate::time::rfc3339;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Clicks(#[from] ClickLogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ReportError {
    fn from(error: rusqlite::Error) -> Self {
        ReportError::Store(StoreError::Sqlite(error))
    }
}

/// One hour's clicks by what the click service did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ClickHour {
    pub time: String,
    pub permitted: i64,
    pub blocked: i64,
    pub warned: i64,
    pub clicked_through: i64,
    /// Link scanners and previews (not people).
    pub prefetch: i64,
    /// Forged, altered or expired links.
    pub rejected: i64,
    pub reported: i64,
}

/// One hour's messages by verdict.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VerdictHour {
    pub time: String,
    pub delivered: i64,
    pub quarantined: i64,
    pub rejected: i64,
    pub discarded: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Top {
    /// A URL, a domain, or a recipient's address (their pseudonym when the index no longer
    /// knows the message).
    pub key: String,
    pub clicks: i64,
    pub blocked: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    pub clicks: i64,
    pub permitted: i64,
    pub blocked: i64,
    pub warned: i64,
    pub clicked_through: i64,
    pub prefetch: i64,
    pub rejected: i64,
    pub reported: i64,
    pub messages: i64,
    pub delivered: i64,
    pub quarantined: i64,
    pub rejected_messages: i64,
    pub discarded: i64,
    /// Of the clicks that asked the providers, the share answered from the cache.
    pub cache_hit_ratio: Option<f64>,
}

/// The dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub since: String,
    pub until: String,
    pub totals: Totals,
    pub clicks_by_hour: Vec<ClickHour>,
    pub verdicts_by_hour: Vec<VerdictHour>,
    /// Verdicts of quarantined messages by category (spam, bulk, phish, malware, transport…).
    pub quarantined_by_category: BTreeMap<String, i64>,
    pub top_urls: Vec<Top>,
    pub top_domains: Vec<Top>,
    pub top_clickers: Vec<Top>,
    /// Recipients who clicked through a warning or were let through to a link judged bad.
    pub users_at_risk: Vec<Top>,
    /// The latest "report a mistake" submissions from block pages in the period.
    pub false_positive_reports: Vec<ClickEvent>,
    pub providers: Vec<ProviderHealth>,
}

/// The most of each list a summary carries.
pub const MAX_TOP: usize = 100;

/// The dashboard over `[since_ms, until_ms)`, hour by hour, with top lists of `top_n`.
pub fn summary(
    store: &Store,
    data_dir: &Path,
    since_ms: i64,
    until_ms: i64,
    top_n: usize,
) -> Result<Summary, ReportError> {
    let top_n = top_n.clamp(1, MAX_TOP);
    let figures = click_figures(data_dir, since_ms, until_ms, top_n)?;
    let mut totals = Totals::default();
    let mut by_hour: BTreeMap<i64, ClickHour> = BTreeMap::new();
    let (mut asked, mut cached) = (0i64, 0i64);
    for count in &figures.hours {
        let hour = by_hour.entry(count.hour).or_insert_with(|| ClickHour {
            time: rfc3339(count.hour * 3600),
            ..ClickHour::default()
        });
        let (slot, total) = match count.action.as_str() {
            "permitted" => (&mut hour.permitted, &mut totals.permitted),
            "blocked" => (&mut hour.blocked, &mut totals.blocked),
            "warned" => (&mut hour.warned, &mut totals.warned),
            "clicked-through" => (&mut hour.clicked_through, &mut totals.clicked_through),
            "prefetch" => (&mut hour.prefetch, &mut totals.prefetch),
            "reported" => (&mut hour.reported, &mut totals.reported),
            _ => (&mut hour.rejected, &mut totals.rejected),
        };
        *slot += count.clicks;
        *total += count.clicks;
        totals.clicks += count.clicks;
        if matches!(count.action.as_str(), "permitted" | "blocked" | "warned") && !count.verdict.is_empty() {
            asked += count.clicks;
            cached += count.cache_hits;
        }
    }
    totals.cache_hit_ratio = (asked > 0).then(|| cached as f64 / asked as f64);

    let (from_hour, to_hour) = (
        since_ms.div_euclid(3_600_000),
        (until_ms + 3_599_999).div_euclid(3_600_000),
    );
    let mut verdicts: BTreeMap<i64, VerdictHour> = BTreeMap::new();
    let mut quarantined_by_category = BTreeMap::new();
    for (hour, verdict, category, messages) in store.message_hours(from_hour, to_hour)? {
        let entry = verdicts.entry(hour).or_insert_with(|| VerdictHour {
            time: rfc3339(hour * 3600),
            ..VerdictHour::default()
        });
        totals.messages += messages;
        match verdict.as_str() {
            "deliver" => {
                entry.delivered += messages;
                totals.delivered += messages;
            }
            "quarantine" => {
                entry.quarantined += messages;
                totals.quarantined += messages;
                *quarantined_by_category.entry(category).or_insert(0) += messages;
            }
            "reject" => {
                entry.rejected += messages;
                totals.rejected_messages += messages;
            }
            _ => {
                entry.discarded += messages;
                totals.discarded += messages;
            }
        }
    }

    let tops = |kind: &str| figures.tops.get(kind).cloned().unwrap_or_default();
    let plain = |entries: Vec<TopEntry>, key: &dyn Fn(&TopEntry) -> String| -> Vec<Top> {
        entries
            .iter()
            .map(|entry| Top {
                key: key(entry),
                clicks: entry.clicks,
                blocked: entry.blocked,
            })
            .collect()
    };
    let top_urls = plain(tops("url"), &|entry| entry.key.clone());
    let top_domains = plain(tops("host"), &|entry| unreverse(&entry.key));
    let name = |entry: &TopEntry| recipient_address(store, entry).unwrap_or_else(|| entry.key.clone());
    let top_clickers = plain(tops("clicker"), &name);
    let users_at_risk = plain(tops("at_risk"), &name);
    let false_positive_reports = read_clicks(
        data_dir,
        &ClickQuery {
            limit: 20,
            action: Some("reported".into()),
            since_ms: Some(since_ms),
            until_ms: Some(until_ms),
            ..ClickQuery::default()
        },
    )?;
    Ok(Summary {
        since: rfc3339(since_ms.div_euclid(1000)),
        until: rfc3339(until_ms.div_euclid(1000)),
        totals,
        clicks_by_hour: by_hour.into_values().collect(),
        verdicts_by_hour: verdicts.into_values().collect(),
        quarantined_by_category,
        top_urls,
        top_domains,
        top_clickers,
        users_at_risk,
        false_positive_reports,
        providers: crate::metrics::provider_health(),
    })
}

/// `com.example.www` back to `www.example.com` (an IP address is kept as it is).
fn unreverse(host_rev: &str) -> String {
    if host_rev.parse::<std::net::Ipv4Addr>().is_ok() || host_rev.starts_with('[') {
        return host_rev.to_string();
    }
    host_rev.rsplit('.').collect::<Vec<_>>().join(".")
}

/// The address behind a recipient pseudonym, from the message the clicks were on.
fn recipient_address(store: &Store, entry: &TopEntry) -> Option<String> {
    store
        .index(1, Some(&entry.sample_message))
        .ok()?
        .into_iter()
        .next()?
        .recipients
        .into_iter()
        .find(|recipient| recipient.reference == entry.key)
        .map(|recipient| recipient.address)
}

impl Store {
    /// Messages per hour in `[from_hour, to_hour)`: (hour, verdict, category, messages).
    pub fn message_hours(&self, from_hour: i64, to_hour: i64) -> Result<Vec<(i64, String, String, i64)>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT hour, verdict, category, messages FROM message_hours WHERE hour >= ?1 AND hour < ?2 ORDER BY hour",
        )?;
        let rows = statement.query_map(params![from_hour, to_hour], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
