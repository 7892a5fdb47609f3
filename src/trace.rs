//! The message trace: finding indexed messages by Message-ID, sender, recipient, subject, verdict
//! and time, newest first with a cursor, and a message's delivery attempts. Every search either
//! starts from an index (`message_recipients`, `messages_sender`, `messages_message_id`) or from
//! the time index, so a page costs the same on a million messages as on a hundred.

use rusqlite::params;
use serde::Serialize;

use crate::store::{IndexEntry, Store, StoreError};

/// What to look for. Times are Unix seconds; `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub limit: usize,
    /// The cursor: only messages before this one (`received_at`, `message_ref`) in the order.
    pub before: Option<(i64, String)>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The Message-ID, with or without its angle brackets.
    pub message_id: Option<String>,
    /// The envelope sender, or the header From address.
    pub sender: Option<String>,
    pub recipient: Option<String>,
    /// A substring of the subject, any case.
    pub subject: Option<String>,
    /// deliver, quarantine, reject, discard, released.
    pub verdict: Option<String>,
    pub category: Option<String>,
}

/// A delivery attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    pub at: i64,
    pub recipient: String,
    pub outcome: String,
    pub reply: String,
}

/// The largest page a trace returns.
pub const MAX_PAGE: usize = 1000;

impl Store {
    pub fn trace(&self, query: &MessageQuery) -> Result<Vec<IndexEntry>, StoreError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut param = |value: rusqlite::types::Value| {
            values.push(value);
            format!("?{}", values.len())
        };
        use rusqlite::types::Value::{Integer, Text};
        if let Some(since) = query.since {
            conditions.push(format!("received_at >= {}", param(Integer(since))));
        }
        if let Some(until) = query.until {
            conditions.push(format!("received_at < {}", param(Integer(until))));
        }
        if let Some((at, message_ref)) = &query.before {
            conditions.push(format!(
                "(received_at, message_ref) < ({}, {})",
                param(Integer(*at)),
                param(Text(message_ref.clone()))
            ));
        }
        if let Some(message_id) = &query.message_id {
            let bare = message_id.trim().trim_start_matches('<').trim_end_matches('>');
            conditions.push(format!(
                "message_id IN ({}, {})",
                param(Text(bare.to_string())),
                param(Text(format!("<{bare}>")))
            ));
        }
        if let Some(sender) = &query.sender {
            let sender = param(Text(sender.trim().to_string()));
            conditions.push(format!(
                "(sender = {sender} COLLATE NOCASE OR from_address = {sender} COLLATE NOCASE)"
            ));
        }
        if let Some(recipient) = &query.recipient {
            conditions.push(format!(
                "message_ref IN (SELECT message_ref FROM message_recipients WHERE address = {})",
                param(Text(recipient.trim().to_lowercase()))
            ));
        }
        if let Some(subject) = &query.subject {
            conditions.push(format!(
                "instr(lower(subject), {}) > 0",
                param(Text(subject.to_lowercase()))
            ));
        }
        if let Some(verdict) = &query.verdict {
            conditions.push(format!("verdict = {}", param(Text(verdict.clone()))));
        }
        if let Some(category) = &query.category {
            conditions.push(format!("category = {}", param(Text(category.clone()))));
        }
        values.push(Integer(query.limit.clamp(1, MAX_PAGE) as i64));
        let condition = if conditions.is_empty() {
            "1".to_string()
        } else {
            conditions.join(" AND ")
        };
        let borrowed: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        self.index_where(&condition, "received_at DESC, message_ref DESC", &borrowed)
    }

    /// A message's delivery attempts, oldest first.
    pub fn delivery_attempts(&self, message_ref: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT at, recipient, outcome, reply FROM delivery_attempts WHERE message_ref = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map(params![message_ref], |row| {
            Ok(AttemptRecord {
                at: row.get(0)?,
                recipient: row.get(1)?,
                outcome: row.get(2)?,
                reply: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
