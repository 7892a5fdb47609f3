//! The organisation's sender lists, as the security team keeps them from the quarantine and the
//! API: addresses or whole domains whose mail is always held as spam (block), or whose mail skips
//! spam filtering when its From address is authenticated (allow; malware is still scanned). In
//! the gateway store, every change audited; the pipeline reads them through [`SenderPolicy`].

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::audit::{self, Actor};
use crate::store::{Store, StoreError, now};

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sender_lists (
    pattern TEXT PRIMARY KEY,
    list TEXT NOT NULL,
    note TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recipient_senders (
    recipient TEXT NOT NULL,
    pattern TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (pattern, recipient)
);";

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0:?} is neither an address (name@example.com) nor a domain (example.com)")]
    Pattern(String),
    #[error("no entry for {0:?}")]
    Unknown(String),
}

impl From<rusqlite::Error> for SenderError {
    fn from(error: rusqlite::Error) -> Self {
        SenderError::Store(StoreError::Sqlite(error))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum List {
    Allow,
    Block,
}

impl List {
    pub fn as_str(self) -> &'static str {
        match self {
            List::Allow => "allow",
            List::Block => "block",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SenderEntry {
    /// An address, or a domain (its subdomains included).
    pub pattern: String,
    pub list: List,
    pub note: String,
    pub added_by: String,
    pub added_at: i64,
}

/// What the pipeline asks: which list, if any, an address is on (an address entry first, then
/// its domain and each parent domain).
pub trait SenderPolicy: Send + Sync {
    fn list_of(&self, address: &str) -> Result<Option<List>, String>;
    /// Which of `recipients` allow mail from `from` for themselves (from their quarantine
    /// digest): an entry for the address, its domain or a parent domain.
    fn recipients_allowing(&self, from: &str, recipients: &[String]) -> Result<Vec<String>, String>;
}

/// An address, then its domain and each parent domain (two labels at least), lowercased: the
/// entries that can match it. Not validated: a sender shapes its own address, and one that
/// would not pass as an entry (a quoted local part, an underscore in a label) must still meet
/// its domain's.
fn candidates(address: &str) -> Vec<String> {
    let address = address
        .trim()
        .trim_matches(['<', '>'])
        .trim_end_matches('.')
        .to_lowercase();
    let Some((_, domain)) = address.rsplit_once('@') else {
        return Vec::new();
    };
    let domain = domain.trim_end_matches('.').to_string();
    let mut candidates = vec![address.clone()];
    let mut rest = domain.as_str();
    loop {
        candidates.push(rest.to_string());
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => break,
        }
    }
    candidates
}

/// An address or a domain, lowercased; `None` when it is neither.
pub fn normalise(pattern: &str) -> Option<String> {
    let pattern = pattern
        .trim()
        .trim_matches(['<', '>'])
        .trim_start_matches('@')
        .to_lowercase();
    let (local, domain) = match pattern.rsplit_once('@') {
        Some((local, domain)) => (Some(local), domain),
        None => (None, pattern.as_str()),
    };
    let domain_ok = domain.contains('.')
        && domain.len() <= 253
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let local_ok = local.is_none_or(|local| {
        !local.is_empty() && local.len() <= 64 && !local.bytes().any(|b| b.is_ascii_whitespace() || b == b'@')
    });
    (domain_ok && local_ok).then_some(pattern)
}

impl Store {
    /// Puts an address or domain on a list (replacing its entry on the other), audited.
    pub fn add_sender(&self, pattern: &str, list: List, note: &str, by: &Actor) -> Result<SenderEntry, SenderError> {
        let pattern = normalise(pattern).ok_or_else(|| SenderError::Pattern(pattern.to_string()))?;
        let entry = SenderEntry {
            pattern: pattern.clone(),
            list,
            note: note.chars().take(500).collect(),
            added_by: by.name.clone(),
            added_at: now(),
        };
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        transaction.execute(
            "INSERT OR REPLACE INTO sender_lists (pattern, list, note, added_by, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![entry.pattern, list.as_str(), entry.note, entry.added_by, entry.added_at],
        )?;
        audit::record(
            &transaction,
            by,
            &format!("sender.{}", list.as_str()),
            &pattern,
            &serde_json::json!({"note": entry.note}),
        )?;
        transaction.commit()?;
        Ok(entry)
    }

    pub fn remove_sender(&self, pattern: &str, by: &Actor) -> Result<(), SenderError> {
        let normalised = normalise(pattern).ok_or_else(|| SenderError::Pattern(pattern.to_string()))?;
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        if transaction.execute("DELETE FROM sender_lists WHERE pattern = ?1", [&normalised])? == 0 {
            return Err(SenderError::Unknown(normalised));
        }
        audit::record(&transaction, by, "sender.remove", &normalised, &serde_json::json!({}))?;
        transaction.commit()?;
        Ok(())
    }

    pub fn senders(&self) -> Result<Vec<SenderEntry>, SenderError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare("SELECT pattern, list, note, added_by, added_at FROM sender_lists ORDER BY pattern")?;
        let rows = statement.query_map([], |row| {
            let list: String = row.get(1)?;
            Ok(SenderEntry {
                pattern: row.get(0)?,
                list: if list == "allow" { List::Allow } else { List::Block },
                note: row.get(2)?,
                added_by: row.get(3)?,
                added_at: row.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl SenderPolicy for Store {
    fn list_of(&self, address: &str) -> Result<Option<List>, String> {
        let candidates = candidates(address);
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT list FROM sender_lists WHERE pattern = ?1")
            .map_err(|e| e.to_string())?;
        for candidate in candidates {
            let found: Option<String> = statement
                .query_row([&candidate], |row| row.get(0))
                .optional()
                .map_err(|e| e.to_string())?;
            if let Some(list) = found {
                return Ok(Some(if list == "allow" { List::Allow } else { List::Block }));
            }
        }
        Ok(None)
    }

    fn recipients_allowing(&self, from: &str, recipients: &[String]) -> Result<Vec<String>, String> {
        let candidates = candidates(from);
        if candidates.is_empty() || recipients.is_empty() {
            return Ok(Vec::new());
        }
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT recipient FROM recipient_senders WHERE pattern = ?1")
            .map_err(|e| e.to_string())?;
        let mut allowing: Vec<String> = Vec::new();
        for candidate in &candidates {
            let found: Vec<String> = statement
                .query_map([candidate], |row| row.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| e.to_string())?;
            for recipient in recipients {
                if found.iter().any(|f| f.eq_ignore_ascii_case(recipient))
                    && !allowing.iter().any(|a| a.eq_ignore_ascii_case(recipient))
                {
                    allowing.push(recipient.clone());
                }
            }
        }
        Ok(allowing)
    }
}

/// Lets `recipient` receive mail from `sender` (an address) past spam and bulk filtering, inside
/// the caller's transaction (the release it comes with).
pub(crate) fn allow_for_recipient(
    transaction: &rusqlite::Transaction<'_>,
    recipient: &str,
    sender: &str,
) -> Result<String, SenderError> {
    // A whole address only: a recipient never allows a whole domain (a webmail's, say).
    let pattern = normalise(sender)
        .filter(|pattern| pattern.contains('@'))
        .ok_or_else(|| SenderError::Pattern(sender.to_string()))?;
    transaction.execute(
        "INSERT OR REPLACE INTO recipient_senders (recipient, pattern, added_at) VALUES (?1, ?2, ?3)",
        params![recipient.to_ascii_lowercase(), pattern, now()],
    )?;
    Ok(pattern)
}

/// One recipient's own allowed senders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientSender {
    pub recipient: String,
    pub pattern: String,
    pub added_at: i64,
}

impl Store {
    /// Every recipient's own allowed senders (added from their digests), or one recipient's.
    pub fn recipient_senders(&self, recipient: Option<&str>) -> Result<Vec<RecipientSender>, SenderError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT recipient, pattern, added_at FROM recipient_senders
             WHERE ?1 IS NULL OR recipient = lower(?1) ORDER BY recipient, pattern",
        )?;
        let rows = statement.query_map([recipient], |row| {
            Ok(RecipientSender {
                recipient: row.get(0)?,
                pattern: row.get(1)?,
                added_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Takes a sender off one recipient's own list, audited.
    pub fn remove_recipient_sender(&self, recipient: &str, pattern: &str, by: &Actor) -> Result<(), SenderError> {
        let normalised = normalise(pattern).ok_or_else(|| SenderError::Pattern(pattern.to_string()))?;
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        if transaction.execute(
            "DELETE FROM recipient_senders WHERE recipient = lower(?1) AND pattern = ?2",
            params![recipient, normalised],
        )? == 0
        {
            return Err(SenderError::Unknown(format!("{normalised} for {recipient}")));
        }
        audit::record(
            &transaction,
            by,
            "sender.recipient.remove",
            &normalised,
            &serde_json::json!({"recipient": recipient.to_ascii_lowercase()}),
        )?;
        transaction.commit()?;
        Ok(())
    }
}

/// The pipeline stage: `SENDER_BLOCK` when the envelope sender or the From address is on the
/// block list; `SENDER_ALLOW` when the From address is on the allow list and DMARC passed (an
/// allow entry must not let a spoof of the address through).
pub struct SenderLists {
    policy: std::sync::Arc<dyn SenderPolicy>,
}

impl SenderLists {
    pub fn new(policy: std::sync::Arc<dyn SenderPolicy>) -> SenderLists {
        SenderLists { policy }
    }
}

impl crate::pipeline::Stage for SenderLists {
    fn name(&self) -> &'static str {
        "sender-lists"
    }

    fn check(&self, context: &crate::pipeline::ScanContext<'_>, hits: &mut Vec<crate::pipeline::symbols::Hit>) {
        use crate::pipeline::symbols::{self, Hit};
        let from = context.from.as_ref().map(|from| from.address.as_str());
        let lookup = |address: &str| match self.policy.list_of(address) {
            Ok(list) => list,
            Err(error) => {
                tracing::warn!(%error, "sender lists not read");
                None
            }
        };
        for address in [Some(context.envelope.sender.as_str()), from].into_iter().flatten() {
            if lookup(address) == Some(List::Block) {
                hits.push(Hit::new(
                    &symbols::SENDER_BLOCK,
                    format!("{address} is on the block list"),
                ));
                return;
            }
        }
        if let Some(from) = from
            && lookup(from) == Some(List::Allow)
        {
            if hits.iter().any(|hit| hit.name == symbols::DMARC_PASS.name) {
                hits.push(Hit::new(&symbols::SENDER_ALLOW, format!("{from} is on the allow list")));
            } else {
                hits.push(Hit::new(
                    &symbols::SENDER_ALLOW_UNAUTHENTICATED,
                    format!("{from} is on the allow list but DMARC did not pass: filtered as usual"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_match_before_domains_and_parents_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let by = Actor::cli();
        store
            .add_sender("@Partner.example", List::Allow, "supplier", &by)
            .unwrap();
        store
            .add_sender("billing@partner.example", List::Block, "", &by)
            .unwrap();
        store.add_sender("evil.example", List::Block, "", &by).unwrap();
        assert!(matches!(
            store.add_sender("not a pattern", List::Block, "", &by),
            Err(SenderError::Pattern(_))
        ));
        assert_eq!(store.list_of("ann@partner.example").unwrap(), Some(List::Allow));
        assert_eq!(store.list_of("Billing@Partner.example").unwrap(), Some(List::Block));
        assert_eq!(store.list_of("x@mail.evil.example").unwrap(), Some(List::Block));
        assert_eq!(store.list_of("x@example").unwrap(), None);
        assert_eq!(store.list_of("x@other.example").unwrap(), None);
        // Addresses that would not pass as entries still meet their domain's.
        assert_eq!(store.list_of("\"a b\"@evil.example").unwrap(), Some(List::Block));
        assert_eq!(store.list_of("x@a_b.evil.example.").unwrap(), Some(List::Block));
        assert_eq!(
            store.list_of(&format!("{}@evil.example", "x".repeat(100))).unwrap(),
            Some(List::Block)
        );
        store.remove_sender("evil.example", &by).unwrap();
        assert_eq!(store.list_of("x@mail.evil.example").unwrap(), None);
        assert_eq!(store.senders().unwrap().len(), 2);
    }
}
