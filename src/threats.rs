//! Post-delivery threats: a link judged bad after its messages were delivered. A threat is
//! recorded when the click service judges a link in a delivered message malicious, when a
//! reputation feed changes and lists a link of a message delivered in the look-back window, or
//! when an analyst declares a URL or a whole domain bad. Each threat finds, when read, every
//! delivered message that carried it (through the `message_links` table) and its status moves
//! from `active` to `cleared` or `falsePositive` by an operator, audited. The watcher here
//! follows the click log from a persisted position, so a restart misses nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::audit::Actor;
use crate::clicklog::{ClickQuery, reversed_host};
use crate::reputation::{LocalFeeds, Verdict};
use crate::store::{IndexEntry, Store, StoreError};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS threats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- A URL (scope 'url') or a host whose subdomains count too (scope 'domain').
    target TEXT NOT NULL,
    scope TEXT NOT NULL,
    host_rev TEXT NOT NULL,
    verdict TEXT NOT NULL,
    category TEXT NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    found_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    changed_by TEXT NOT NULL,
    UNIQUE (scope, target)
);
CREATE INDEX IF NOT EXISTS threats_host ON threats (host_rev);
CREATE INDEX IF NOT EXISTS threats_found ON threats (found_at);
";

/// What an operator can say of a threat, as TAP's `threatStatus` words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ThreatStatus {
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "cleared")]
    Cleared,
    #[serde(rename = "falsePositive")]
    FalsePositive,
}

impl ThreatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreatStatus::Active => "active",
            ThreatStatus::Cleared => "cleared",
            ThreatStatus::FalsePositive => "falsePositive",
        }
    }

    pub fn parse(text: &str) -> Option<ThreatStatus> {
        match text {
            "active" => Some(ThreatStatus::Active),
            "cleared" => Some(ThreatStatus::Cleared),
            "falsePositive" => Some(ThreatStatus::FalsePositive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Url,
    Domain,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Url => "url",
            Scope::Domain => "domain",
        }
    }
}

/// A threat to record.
#[derive(Debug, Clone)]
pub struct NewThreat {
    pub target: String,
    pub scope: Scope,
    pub verdict: String,
    pub category: String,
    /// `click`, `feed`, or `analyst`.
    pub source: String,
    pub reason: String,
}

impl NewThreat {
    /// A threat on a URL or a domain as an analyst gives it: a URL must be http(s) with a host,
    /// a domain a host name.
    pub fn declared(target: &str, scope: Scope, category: &str, reason: &str) -> Result<NewThreat, ThreatError> {
        let target = target.trim();
        let target = match scope {
            Scope::Url => {
                let url = url::Url::parse(target).map_err(|e| ThreatError::Target(format!("{target:?}: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(ThreatError::Target(format!(
                        "{target:?}: not an http(s) URL with a host"
                    )));
                }
                // As the rewriter and the click log keep links: the parser's form.
                url.to_string()
            }
            Scope::Domain => {
                let host = target.trim_end_matches('.').to_ascii_lowercase();
                let valid = !host.is_empty()
                    && host.parse::<std::net::Ipv4Addr>().is_err()
                    && host.chars().any(|c| c.is_ascii_alphabetic())
                    && host.len() <= 253
                    && host.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    });
                if !valid {
                    return Err(ThreatError::Target(format!("{target:?}: not a domain name")));
                }
                host
            }
        };
        Ok(NewThreat {
            target,
            scope,
            verdict: "malicious".into(),
            category: if category.is_empty() {
                "phish".into()
            } else {
                category.to_string()
            },
            source: "analyst".into(),
            reason: reason.to_string(),
        })
    }

    fn host_rev(&self) -> String {
        match self.scope {
            Scope::Url => reversed_host(&self.target),
            Scope::Domain => self.target.rsplit('.').collect::<Vec<_>>().join("."),
        }
    }
}

/// A recorded threat.
#[derive(Debug, Clone, Serialize)]
pub struct Threat {
    pub id: i64,
    pub target: String,
    pub scope: Scope,
    pub verdict: String,
    pub category: String,
    pub source: String,
    pub reason: String,
    pub status: ThreatStatus,
    pub found_at_ms: i64,
    pub changed_at_ms: i64,
    pub changed_by: String,
}

impl Threat {
    /// The threat's own fields, as the API and the exports show them.
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let serde_json::Value::Object(fields) = serde_json::json!({
            "id": self.id,
            "url": self.target,
            "scope": self.scope,
            "verdict": self.verdict,
            "category": self.category,
            "source": self.source,
            "reason": self.reason,
            "status": self.status,
            "found_at": crate::time::rfc3339_millis(self.found_at_ms),
            "changed_at": crate::time::rfc3339_millis(self.changed_at_ms),
            "changed_by": self.changed_by,
        }) else {
            unreachable!("an object literal")
        };
        fields
    }

    /// Whether a link is this threat (the URL itself, or a URL on the domain or a subdomain).
    pub fn covers(&self, url: &str) -> bool {
        match self.scope {
            Scope::Url => self.target == url,
            Scope::Domain => {
                let host = reversed_host(url);
                let own = self.target.rsplit('.').collect::<Vec<_>>().join(".");
                host == own || host.starts_with(&format!("{own}."))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThreatError {
    #[error("not a threat target: {0}")]
    Target(String),
    #[error("no threat {0}")]
    Unknown(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("click log: {0}")]
    Clicks(String),
}

impl From<crate::follow::FollowError> for ThreatError {
    fn from(error: crate::follow::FollowError) -> Self {
        match error {
            crate::follow::FollowError::Store(error) => ThreatError::Store(error),
            crate::follow::FollowError::Clicks(error) => ThreatError::Clicks(error),
        }
    }
}

impl From<rusqlite::Error> for ThreatError {
    fn from(error: rusqlite::Error) -> Self {
        ThreatError::Store(StoreError::Sqlite(error))
    }
}

const COLUMNS: &str = "id, target, scope, verdict, category, source, reason, status, found_at, changed_at, changed_by";

fn threat_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Threat> {
    let scope: String = row.get(2)?;
    let status: String = row.get(7)?;
    Ok(Threat {
        id: row.get(0)?,
        target: row.get(1)?,
        scope: if scope == "domain" { Scope::Domain } else { Scope::Url },
        verdict: row.get(3)?,
        category: row.get(4)?,
        source: row.get(5)?,
        reason: row.get(6)?,
        status: ThreatStatus::parse(&status).unwrap_or(ThreatStatus::Active),
        found_at_ms: row.get(8)?,
        changed_at_ms: row.get(9)?,
        changed_by: row.get(10)?,
    })
}

use crate::store::now_ms;

/// The reversed host of a URL and each parent domain of it: the keys a domain threat on any of
/// them is found under.
fn parent_hosts(host_rev: &str) -> Vec<String> {
    let labels: Vec<&str> = host_rev.split('.').collect();
    (1..=labels.len()).map(|n| labels[..n].join(".")).collect()
}

/// The recipients of these messages, lowercase, each once, in order: the users at risk.
pub fn recipients_of(messages: &[IndexEntry]) -> Vec<String> {
    let recipients: std::collections::BTreeSet<String> = messages
        .iter()
        .flat_map(|m| m.recipients.iter().map(|r| r.address.to_lowercase()))
        .collect();
    recipients.into_iter().collect()
}

/// Which threats a page of a listing starts after, and how many.
#[derive(Debug, Clone, Default)]
pub struct ThreatQuery {
    pub status: Option<ThreatStatus>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only threats with a smaller id (the cursor).
    pub before_id: Option<i64>,
    /// Only threats with a larger id (a follower's position).
    pub after_id: Option<i64>,
    pub limit: usize,
}

impl Store {
    /// Records a threat unless its URL or domain already has one. Returns the new threat. An
    /// analyst's declaration is audited.
    pub fn record_threat(&self, new: &NewThreat, actor: Option<&Actor>) -> Result<Option<Threat>, ThreatError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let now = now_ms();
        let by = actor.map_or_else(|| new.source.clone(), |a| a.name.clone());
        let inserted = transaction
            .prepare_cached(
                "INSERT OR IGNORE INTO threats (target, scope, host_rev, verdict, category, source, reason, status,
                     found_at, changed_at, changed_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'active', ?8, ?8, ?9)",
            )?
            .execute(params![
                new.target,
                new.scope.as_str(),
                new.host_rev(),
                new.verdict,
                new.category,
                new.source,
                new.reason,
                now,
                by
            ])?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = transaction.last_insert_rowid();
        if let Some(actor) = actor {
            crate::audit::record(
                &transaction,
                actor,
                "threat.add",
                &new.target,
                &serde_json::json!({"scope": new.scope.as_str(), "category": new.category, "reason": new.reason}),
            )?;
        }
        let threat = transaction.query_row(
            &format!("SELECT {COLUMNS} FROM threats WHERE id = ?1"),
            [id],
            threat_row,
        )?;
        transaction.commit()?;
        Ok(Some(threat))
    }

    pub fn threat(&self, id: i64) -> Result<Threat, ThreatError> {
        let connection = self.lock();
        connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM threats WHERE id = ?1"),
                [id],
                threat_row,
            )
            .optional()?
            .ok_or(ThreatError::Unknown(id))
    }

    /// Threats newest first (or, with `after_id`, oldest first from there).
    pub fn threats(&self, query: &ThreatQuery) -> Result<Vec<Threat>, ThreatError> {
        let connection = self.lock();
        let order = if query.after_id.is_some() { "ASC" } else { "DESC" };
        let limit = if query.limit == 0 { -1 } else { query.limit as i64 };
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM threats
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR found_at >= ?2) AND (?3 IS NULL OR found_at < ?3)
               AND (?4 IS NULL OR id < ?4) AND (?5 IS NULL OR id > ?5)
             ORDER BY id {order} LIMIT ?6"
        ))?;
        let rows = statement.query_map(
            params![
                query.status.map(ThreatStatus::as_str),
                query.since_ms,
                query.until_ms,
                query.before_id,
                query.after_id,
                limit
            ],
            threat_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a threat to `status`, audited. Returns it as it now is.
    pub fn set_threat_status(&self, id: i64, status: ThreatStatus, actor: &Actor) -> Result<Threat, ThreatError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let changed = transaction
            .prepare_cached("UPDATE threats SET status = ?2, changed_at = ?3, changed_by = ?4 WHERE id = ?1")?
            .execute(params![id, status.as_str(), now_ms(), actor.name])?;
        if changed == 0 {
            return Err(ThreatError::Unknown(id));
        }
        let threat = transaction.query_row(
            &format!("SELECT {COLUMNS} FROM threats WHERE id = ?1"),
            [id],
            threat_row,
        )?;
        crate::audit::record(
            &transaction,
            actor,
            "threat.status",
            &threat.target,
            &serde_json::json!({"id": id, "status": status.as_str()}),
        )?;
        transaction.commit()?;
        Ok(threat)
    }

    /// The threat already recorded for this URL or domain.
    pub fn threats_covering_target(&self, new: &NewThreat) -> Result<Option<Threat>, ThreatError> {
        let connection = self.lock();
        Ok(connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM threats WHERE scope = ?1 AND target = ?2"),
                params![new.scope.as_str(), new.target],
                threat_row,
            )
            .optional()?)
    }

    /// The threats that cover any of these links (a URL's own, or its domain's or a parent's).
    /// Threats are few: they are read once and matched here, off the writer's lock.
    pub fn threats_covering(&self, urls: &[String]) -> Result<Vec<Threat>, ThreatError> {
        if urls.is_empty() {
            return Ok(Vec::new());
        }
        let hosts: std::collections::HashSet<String> =
            urls.iter().flat_map(|url| parent_hosts(&reversed_host(url))).collect();
        let all: Vec<Threat> = self.read_only(|connection| {
            let mut statement = connection.prepare_cached(&format!("SELECT {COLUMNS}, host_rev FROM threats"))?;
            let rows = statement.query_map([], |row| Ok((threat_row(row)?, row.get::<_, String>(11)?)))?;
            let mut found = Vec::new();
            for row in rows {
                let (threat, host) = row?;
                if hosts.contains(&host) {
                    found.push(threat);
                }
            }
            Ok::<_, ThreatError>(found)
        })?;
        Ok(all
            .into_iter()
            .filter(|t| urls.iter().any(|url| t.covers(url)))
            .collect())
    }

    /// The delivered messages (delivered, or released from quarantine) that carried the
    /// threat's link, newest first, at most `limit`.
    pub fn threat_messages(&self, threat: &Threat, limit: usize) -> Result<Vec<IndexEntry>, StoreError> {
        let limit = limit.max(1) as i64;
        let delivered = "AND verdict IN ('deliver', 'released')";
        match threat.scope {
            Scope::Url => self.index_where(
                &format!("message_ref IN (SELECT message_ref FROM message_links WHERE url = ?1) {delivered}"),
                "received_at DESC",
                &[&threat.target, &limit],
            ),
            Scope::Domain => {
                let own = threat.target.rsplit('.').collect::<Vec<_>>().join(".");
                let (low, high) = (format!("{own}."), format!("{own}/"));
                self.index_where(
                    &format!(
                        "message_ref IN (SELECT message_ref FROM message_links
                           WHERE host_rev = ?1 OR (host_rev >= ?2 AND host_rev < ?3)) {delivered}"
                    ),
                    "received_at DESC",
                    &[&own, &low, &high, &limit],
                )
            }
        }
    }

    /// The links of messages delivered since `since` (Unix seconds), each once.
    pub fn delivered_links_since(&self, since: i64) -> Result<Vec<String>, StoreError> {
        self.read_only(|connection| {
            let mut statement = connection.prepare(
                "SELECT DISTINCT l.url FROM messages m JOIN message_links l ON l.message_ref = m.message_ref
                 WHERE m.received_at >= ?1 AND m.verdict IN ('deliver', 'released')",
            )?;
            let rows = statement.query_map([since], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

const CLICK_FOLLOWER: &str = "threats.clicks";

/// Finds post-delivery threats: follows the click log for malicious verdicts on links in
/// messages, and looks at the links of recently delivered messages again whenever the local
/// feeds change.
pub struct ThreatWatcher {
    pub store: Store,
    pub data_dir: PathBuf,
    pub feeds: Arc<LocalFeeds>,
    /// How far back a feed change looks at delivered messages.
    pub lookback_secs: i64,
}

impl ThreatWatcher {
    pub async fn run(self) {
        let watcher = Arc::new(self);
        let mut seen_feeds = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let step = watcher.clone();
            let generation = watcher.feeds.generation();
            let rescan = generation != seen_feeds;
            let outcome = tokio::task::spawn_blocking(move || -> Result<(), ThreatError> {
                step.follow_clicks()?;
                if rescan {
                    step.rescan_delivered()?;
                }
                Ok(())
            })
            .await;
            match outcome {
                Ok(Ok(())) => seen_feeds = generation,
                Ok(Err(error)) => tracing::error!(%error, "threat watcher: will try again"),
                Err(error) => tracing::error!(%error, "threat watcher step failed"),
            }
        }
    }

    /// Reads the next stretch of the click log and records a threat for each link in a message
    /// the click service judged malicious.
    pub fn follow_clicks(&self) -> Result<usize, ThreatError> {
        let filter = ClickQuery {
            verdict: Some(Verdict::Malicious.as_str().into()),
            ..ClickQuery::default()
        };
        let mut recorded = 0;
        crate::follow::follow_clicks(&self.store, &self.data_dir, CLICK_FOLLOWER, &filter, |clicks| {
            for click in clicks.iter().filter(|c| !c.message_ref.is_empty()) {
                let new = NewThreat {
                    target: click.url.clone(),
                    scope: Scope::Url,
                    verdict: click.verdict.clone(),
                    category: click.category.clone(),
                    source: "click".into(),
                    reason: format!("judged {} at click time", click.verdict),
                };
                if let Some(threat) = self.store.record_threat(&new, None)? {
                    recorded += 1;
                    tracing::warn!(url = %threat.target, id = threat.id, "post-delivery threat found at click time");
                }
            }
            Ok::<(), ThreatError>(())
        })?;
        Ok(recorded)
    }

    /// Checks the links of messages delivered in the look-back window against the local feeds
    /// as they are now.
    pub fn rescan_delivered(&self) -> Result<usize, ThreatError> {
        let since = now_ms() / 1000 - self.lookback_secs;
        let mut recorded = 0;
        for link in self.store.delivered_links_since(since)? {
            let Ok(url) = url::Url::parse(&link) else { continue };
            let Some(finding) = self.feeds.lookup(&url) else {
                continue;
            };
            if finding.verdict != Verdict::Malicious {
                continue;
            }
            let new = NewThreat {
                target: link,
                scope: Scope::Url,
                verdict: finding.verdict.as_str().into(),
                category: format!("{:?}", finding.category).to_lowercase(),
                source: "feed".into(),
                reason: finding.reason,
            };
            if let Some(threat) = self.store.record_threat(&new, None)? {
                recorded += 1;
                tracing::warn!(url = %threat.target, id = threat.id, "post-delivery threat found by a feed update");
            }
        }
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_threat_covers_its_subdomains_and_nothing_else() {
        let threat = Threat {
            id: 1,
            target: "evil.example".into(),
            scope: Scope::Domain,
            verdict: "malicious".into(),
            category: "phish".into(),
            source: "analyst".into(),
            reason: String::new(),
            status: ThreatStatus::Active,
            found_at_ms: 0,
            changed_at_ms: 0,
            changed_by: String::new(),
        };
        assert!(threat.covers("https://evil.example/x"));
        assert!(threat.covers("https://login.EVIL.example/x"));
        assert!(!threat.covers("https://notevil.example/x"));
        assert!(!threat.covers("https://evil.example.org/x"));
        assert_eq!(
            parent_hosts("com.example.www"),
            ["com", "com.example", "com.example.www"]
        );
    }

    #[test]
    fn declared_targets_are_checked() {
        assert!(NewThreat::declared("javascript:alert(1)", Scope::Url, "", "").is_err());
        assert!(NewThreat::declared("https://x.example/a", Scope::Url, "", "").is_ok());
        assert!(NewThreat::declared("bad domain", Scope::Domain, "", "").is_err());
        assert!(NewThreat::declared("192.0.2.1", Scope::Domain, "", "").is_err());
        assert_eq!(
            NewThreat::declared("HTTPS://Evil.Example", Scope::Url, "", "")
                .unwrap()
                .target,
            "https://evil.example/"
        );
        assert_eq!(
            NewThreat::declared("Evil.Example.", Scope::Domain, "", "")
                .unwrap()
                .target,
            "evil.example"
        );
    }

    #[test]
    fn threats_find_delivered_messages_by_link_and_keep_a_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entry = |message_ref: &str, verdict: &str, url: &str| IndexEntry {
            message_ref: message_ref.into(),
            received_at: 1_800_000_000,
            verdict: verdict.into(),
            urls: vec![url.into()],
            ..IndexEntry::default()
        };
        store
            .file_index_batch(&[
                entry("m1", "deliver", "https://a.evil.example/x"),
                entry("m2", "quarantine", "https://a.evil.example/x"),
                entry("m3", "deliver", "https://fine.example/"),
            ])
            .unwrap();
        let threat = store
            .record_threat(
                &NewThreat::declared("evil.example", Scope::Domain, "phish", "test").unwrap(),
                Some(&Actor::cli()),
            )
            .unwrap()
            .unwrap();
        let messages = store.threat_messages(&threat, 10).unwrap();
        assert_eq!(
            messages.iter().map(|m| m.message_ref.as_str()).collect::<Vec<_>>(),
            ["m1"]
        );
        assert!(
            store
                .record_threat(
                    &NewThreat::declared("evil.example", Scope::Domain, "", "").unwrap(),
                    None
                )
                .unwrap()
                .is_none()
        );
        let covering = store.threats_covering(&["https://a.evil.example/x".into()]).unwrap();
        assert_eq!(covering.len(), 1);
        let cleared = store
            .set_threat_status(threat.id, ThreatStatus::Cleared, &Actor::cli())
            .unwrap();
        assert_eq!(cleared.status, ThreatStatus::Cleared);
        let active = store
            .threats(&ThreatQuery {
                status: Some(ThreatStatus::Active),
                ..ThreatQuery::default()
            })
            .unwrap();
        assert!(active.is_empty());
    }
}
