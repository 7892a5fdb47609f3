//! The quarantine digest: a periodic email to each recipient listing what is newly held for them
//! (sender, subject, date), each message with signed, expiring one-click links to release it, to
//! release it and always allow its sender, or, for phish, to ask the security team to release
//! it; and the checks those links pass. The links lead to the click service, which shows a
//! confirmation page on GET (mail scanners fetch every link) and acts only on the POST its form
//! makes (`redirect::quarantine`). Digests go out through the delivery queue, so a downstream
//! that is down loses none.

use std::collections::BTreeMap;
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::Deserialize;

use crate::escape::html as escape;
use crate::i18n::{Catalog, Catalogs};
use crate::store::{DeliveryBody, DeliveryKind, NewDelivery, Store, StoreError, insert_delivery, now};
use crate::token::{KeyRing, LiveKeyRing};

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS digest_listed (
    hold_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    listed_at INTEGER NOT NULL,
    PRIMARY KEY (hold_id, recipient)
);
CREATE TABLE IF NOT EXISTS digest_runs (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_run INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS recipient_languages (
    recipient TEXT PRIMARY KEY,
    language TEXT NOT NULL,
    seen_at INTEGER NOT NULL
);";

/// The categories a digest can list. Malware never: only an admin releases it.
const LISTABLE: &[&str] = &["spam", "bulk", "phish"];

/// `[quarantine.digest]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Sends digests on the schedule below (`portcullis quarantine digest` sends one any time).
    pub enabled: bool,
    /// How often: 1 to 720 hours.
    pub every_hours: u32,
    /// What is listed: `spam`, `bulk` (released by the recipient) and `phish` (release requested).
    pub categories: Vec<String>,
    /// The digest's From address; `quarantine@<smtp.hostname>` when unset.
    pub from: Option<String>,
    /// How long the links stay valid: 1 to 30 days, and never past the message's retention.
    pub link_days: u32,
    /// The language of a recipient's digest by address or domain (`"example.jp" = "ja"`); else
    /// the language their browser last asked for on a digest page; else `click.default_language`.
    pub languages: BTreeMap<String, String>,
    /// The most messages one digest lists; the rest come in the next.
    pub max_entries: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            every_hours: 24,
            categories: vec!["spam".into(), "bulk".into(), "phish".into()],
            from: None,
            link_days: 14,
            languages: BTreeMap::new(),
            max_entries: 100,
        }
    }
}

impl DigestConfig {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=720).contains(&self.every_hours) {
            return Err(format!(
                "quarantine.digest.every_hours must be 1 to 720, not {}",
                self.every_hours
            ));
        }
        if !(1..=30).contains(&self.link_days) {
            return Err(format!(
                "quarantine.digest.link_days must be 1 to 30, not {}",
                self.link_days
            ));
        }
        if let Some(category) = self.categories.iter().find(|c| !LISTABLE.contains(&c.as_str())) {
            return Err(format!(
                "quarantine.digest.categories: {category:?} cannot be listed (spam, bulk or phish; malware is released by an admin only)"
            ));
        }
        if self.max_entries == 0 {
            return Err("quarantine.digest.max_entries must be at least 1".into());
        }
        if let Some(from) = &self.from
            && crate::senders::normalise(from).is_none_or(|address| !address.contains('@'))
        {
            return Err(format!("quarantine.digest.from: {from:?} is not an address"));
        }
        Ok(())
    }

    pub fn from_address(&self, hostname: &str) -> String {
        self.from.clone().unwrap_or_else(|| format!("quarantine@{hostname}"))
    }
}

/// What a digest link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Deliver the recipient's copy.
    Release,
    /// Deliver it, and let the sender's mail reach this recipient past spam and bulk holds.
    Allow,
    /// Ask the security team to release it (phish).
    Request,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Release => "release",
            Action::Allow => "allow",
            Action::Request => "request",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "release" => Some(Action::Release),
            "allow" => Some(Action::Allow),
            "request" => Some(Action::Request),
            _ => None,
        }
    }

    /// What a recipient may do with a message held in `category`: release spam and bulk
    /// themselves, ask for phish; nothing else.
    pub fn permitted(category: &str) -> &'static [Action] {
        match category {
            "spam" | "bulk" => &[Action::Release, Action::Allow],
            "phish" => &[Action::Request],
            _ => &[],
        }
    }
}

const PURPOSE: &str = "quarantine-digest";

/// One signed digest link's fields, as its query carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionLink {
    pub action: Action,
    pub hold_id: i64,
    pub recipient: String,
    /// Unix seconds.
    pub expires: i64,
    pub token: String,
}

impl ActionLink {
    /// The signed data: the hold's message too, so a link can never act on another hold.
    fn data(action: Action, hold_id: i64, message_ref: &str, recipient: &str, expires: i64) -> String {
        format!(
            "{}\0{hold_id}\0{message_ref}\0{}\0{expires}",
            action.as_str(),
            recipient.to_ascii_lowercase()
        )
    }

    pub fn sign(
        keys: &KeyRing,
        action: Action,
        hold_id: i64,
        message_ref: &str,
        recipient: &str,
        expires: i64,
    ) -> Option<ActionLink> {
        let token = keys.sign_token(
            PURPOSE,
            Self::data(action, hold_id, message_ref, recipient, expires).as_bytes(),
        )?;
        Some(ActionLink {
            action,
            hold_id,
            recipient: recipient.to_ascii_lowercase(),
            expires,
            token,
        })
    }

    /// Whether this link was signed by us for this hold's message (constant time).
    pub fn verify(&self, keys: &KeyRing, message_ref: &str) -> bool {
        keys.verify_token(
            PURPOSE,
            Self::data(self.action, self.hold_id, message_ref, &self.recipient, self.expires).as_bytes(),
            &self.token,
        )
    }

    /// The fields as a query string or form body.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("a", self.action.as_str().to_string()),
            ("h", self.hold_id.to_string()),
            ("r", self.recipient.clone()),
            ("e", self.expires.to_string()),
            ("t", self.token.clone()),
        ]
    }

    pub fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.fields() {
            query.append_pair(name, &value);
        }
        query.finish()
    }

    /// The fields from a query string or form body; `None` when one is missing or malformed.
    pub fn parse(encoded: &[u8]) -> Option<ActionLink> {
        let (mut action, mut hold_id, mut recipient, mut expires, mut token) = (None, None, None, None, None);
        for (key, value) in url::form_urlencoded::parse(encoded) {
            match &*key {
                "a" => action = Action::parse(&value),
                "h" => hold_id = value.parse::<i64>().ok(),
                "r" if value.len() <= 320 => recipient = Some(value.to_ascii_lowercase()),
                "e" => expires = value.parse::<i64>().ok(),
                "t" if value.len() <= 64 => token = Some(value.into_owned()),
                _ => {}
            }
        }
        Some(ActionLink {
            action: action?,
            hold_id: hold_id?,
            recipient: recipient?,
            expires: expires?,
            token: token?,
        })
    }
}

/// One held message as a digest lists it.
#[derive(Debug, Clone)]
pub struct DigestEntry {
    pub hold_id: i64,
    pub message_ref: String,
    pub category: String,
    /// The From address, else the envelope sender.
    pub sender: String,
    /// The From address, when it is one a recipient can allow.
    pub allowable: Option<String>,
    pub subject: Option<String>,
    pub held_at: i64,
    pub expires_at: i64,
}

/// What one run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DigestRun {
    pub recipients: usize,
    pub messages: usize,
}

/// A hold as a digest link sees it.
#[derive(Debug, Clone)]
pub struct DigestTarget {
    pub message_ref: String,
    pub category: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub self_service: bool,
    /// The From address, else the envelope sender.
    pub sender: String,
    /// The From address, when it is one a recipient can allow.
    pub allowable: Option<String>,
}

impl DigestTarget {
    /// Whether `recipient` may do `action` to this hold from their digest: it is still held for
    /// them, held by its scores alone, and its category allows the action (and, to allow the
    /// sender, the sender has an address to allow).
    pub fn permits(&self, action: Action, recipient: &str) -> bool {
        self.self_service
            && self.recipients.iter().any(|r| r.eq_ignore_ascii_case(recipient))
            && Action::permitted(&self.category).contains(&action)
            && (action != Action::Allow || self.allowable.is_some())
    }
}

/// A From address a recipient may allow: a whole address (never a bare domain), lowercased.
fn allowable_address(from: &str) -> Option<String> {
    crate::senders::normalise(from).filter(|address| address.contains('@'))
}

impl Store {
    /// Held messages of these categories not yet listed for each of their recipients, by
    /// recipient, at most `max` each, oldest first.
    fn unlisted(
        &self,
        categories: &[String],
        max: usize,
        only: Option<&str>,
        local: impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, Vec<DigestEntry>)>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT lower(r.value), q.id, q.message_ref, q.category, q.sender,
                    (SELECT m.from_address FROM messages m WHERE m.message_ref = q.message_ref),
                    q.subject, q.held_at, q.expires_at
             FROM quarantine q, json_each(q.recipients) r
             WHERE q.self_service AND q.category IN (SELECT value FROM json_each(?1)) AND q.expires_at > ?2
               AND (?3 IS NULL OR lower(r.value) = lower(?3))
               AND NOT EXISTS (SELECT 1 FROM digest_listed d WHERE d.hold_id = q.id AND d.recipient = lower(r.value))
             ORDER BY lower(r.value), q.id",
        )?;
        let rows = statement.query_map(params![serde_json::to_string(categories)?, now(), only], |row| {
            let envelope_sender: String = row.get(4)?;
            let from: Option<String> = row.get(5)?;
            Ok((
                row.get::<_, String>(0)?,
                DigestEntry {
                    hold_id: row.get(1)?,
                    message_ref: row.get(2)?,
                    category: row.get(3)?,
                    allowable: from.as_deref().and_then(allowable_address),
                    sender: from.unwrap_or(envelope_sender),
                    subject: row.get(6)?,
                    held_at: row.get(7)?,
                    expires_at: row.get(8)?,
                },
            ))
        })?;
        let mut by_recipient: Vec<(String, Vec<DigestEntry>)> = Vec::new();
        for row in rows {
            let (recipient, entry) = row?;
            if !local(&recipient) {
                continue;
            }
            match by_recipient.last_mut() {
                Some((last, entries)) if *last == recipient => {
                    if entries.len() < max {
                        entries.push(entry);
                    }
                }
                _ => by_recipient.push((recipient, vec![entry])),
            }
        }
        Ok(by_recipient)
    }

    /// What a digest link needs of a hold, without its message: read on the read-only
    /// connection, so links fetched by the thousand keep no mail waiting.
    pub fn digest_target(&self, hold_id: i64) -> Result<DigestTarget, StoreError> {
        self.read_only(|connection| {
            let found = connection
                .prepare_cached(
                    "SELECT q.message_ref, q.category, q.recipients, q.subject, q.self_service, q.sender,
                        (SELECT m.from_address FROM messages m WHERE m.message_ref = q.message_ref)
                     FROM quarantine q WHERE q.id = ?1",
                )?
                .query_row([hold_id], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get::<_, bool>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                })
                .optional()?;
            let (message_ref, category, recipients, subject, self_service, envelope_sender, from) =
                found.ok_or_else(|| StoreError::NotFound(format!("quarantine {hold_id}")))?;
            Ok(DigestTarget {
                message_ref,
                category,
                recipients: serde_json::from_str(&recipients)?,
                subject,
                self_service,
                allowable: from.as_deref().and_then(allowable_address),
                sender: from.unwrap_or(envelope_sender),
            })
        })
    }

    /// Remembers the language a recipient's browser asked for on a digest page, for their next
    /// digest.
    pub fn remember_language(&self, recipient: &str, tag: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR REPLACE INTO recipient_languages (recipient, language, seen_at) VALUES (lower(?1), ?2, ?3)",
            params![recipient, tag, now()],
        )?;
        Ok(())
    }

    fn remembered_language(&self, recipient: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT language FROM recipient_languages WHERE recipient = lower(?1)",
                [recipient],
                |row| row.get(0),
            )
            .optional()?)
    }

    fn last_digest_run(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT last_run FROM digest_runs WHERE id = 1", [], |row| row.get(0))
            .optional()?)
    }
}

/// Sends digests: builds each recipient's from the store and queues it for delivery.
pub struct Digests {
    store: Store,
    keys: LiveKeyRing,
    catalogs: Catalogs,
    config: DigestConfig,
    base_url: String,
    organisation: String,
    logo_url: Option<String>,
    support_contact: Option<String>,
    hostname: String,
    /// Only recipients in these domains get digests (`smtp.domains`, lowercase).
    domains: Vec<String>,
    /// Wakes the delivery workers once digests are queued.
    wake: Option<Arc<tokio::sync::Notify>>,
}

impl Digests {
    pub fn new(config: &crate::config::Config, store: Store, keys: impl Into<LiveKeyRing>) -> Result<Digests, String> {
        let catalogs = Catalogs::load(config.click.locales_dir.as_deref(), &config.click.default_language)
            .map_err(|e| e.to_string())?;
        Ok(Digests {
            store,
            keys: keys.into(),
            catalogs,
            config: config.quarantine.digest.clone(),
            base_url: config.links.base_url.trim_end_matches('/').to_string(),
            organisation: config.click.organisation.clone(),
            logo_url: config.click.logo_url.clone(),
            support_contact: config.click.support_contact.clone(),
            hostname: config.smtp.hostname.clone(),
            domains: local_domains(&config.smtp.domains),
            wake: None,
        })
    }

    pub fn with_wake(mut self, wake: Arc<tokio::sync::Notify>) -> Digests {
        self.wake = Some(wake);
        self
    }

    /// The language of a recipient's digest.
    fn words(&self, recipient: &str) -> &Catalog {
        let domain = recipient.rsplit_once('@').map_or("", |(_, domain)| domain);
        let configured = self
            .config
            .languages
            .iter()
            .find(|(pattern, _)| pattern.eq_ignore_ascii_case(recipient))
            .or_else(|| {
                self.config
                    .languages
                    .iter()
                    .find(|(pattern, _)| pattern.eq_ignore_ascii_case(domain))
            })
            .map(|(_, tag)| tag.clone());
        let tag = configured.or_else(|| self.store.remembered_language(recipient).ok().flatten());
        self.catalogs.negotiate(tag.as_deref())
    }

    /// Queues a digest for every recipient with newly held messages (or only `recipient`), and
    /// marks what each listed: each recipient's in one transaction with its delivery.
    pub fn send(&self, recipient: Option<&str>) -> Result<DigestRun, StoreError> {
        let now = now();
        {
            let connection = self.store.lock();
            connection.execute(
                "DELETE FROM digest_listed WHERE hold_id NOT IN (SELECT id FROM quarantine)",
                [],
            )?;
        }
        let pending = self
            .store
            .unlisted(&self.config.categories, self.config.max_entries, recipient, |address| {
                is_local(address, &self.domains)
            })?;
        let keys = self.keys.current();
        let mut run = DigestRun::default();
        for (recipient, entries) in &pending {
            let words = self.words(recipient);
            // Unique across runs and processes: the delivery and its attempts are traced by it.
            let id = format!("digest-{now}-{:016x}", rand::random::<u64>());
            let mut connection = self.store.lock();
            // Immediate: another run (the schedule, the API, the command line in another process)
            // that listed the same messages meanwhile has marked them; they are left out here.
            let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut fresh = Vec::with_capacity(entries.len());
            for entry in entries {
                let marked = transaction.execute(
                    "INSERT OR IGNORE INTO digest_listed (hold_id, recipient, listed_at) VALUES (?1, ?2, ?3)",
                    params![entry.hold_id, recipient, now],
                )?;
                if marked > 0 {
                    fresh.push(entry.clone());
                }
            }
            if fresh.is_empty() {
                continue;
            }
            let message = self.compose(&keys, words, recipient, &fresh, now, &id);
            insert_delivery(
                &transaction,
                &NewDelivery {
                    message_ref: id,
                    kind: DeliveryKind::Message,
                    // The null reverse path: nothing answers a digest, not even a bounce.
                    sender: String::new(),
                    recipients: vec![recipient.clone()],
                    body: DeliveryBody::Literal(message),
                },
                now,
            )?;
            transaction.commit()?;
            run.recipients += 1;
            run.messages += fresh.len();
            crate::metrics::increment("portcullis_digests_total", &[("language", &words.tag)]);
        }
        if recipient.is_none() {
            self.store.lock().execute(
                "INSERT OR REPLACE INTO digest_runs (id, last_run) VALUES (1, ?1)",
                [now],
            )?;
        }
        if run.recipients > 0
            && let Some(wake) = &self.wake
        {
            wake.notify_one();
        }
        Ok(run)
    }

    /// Sends on the schedule: checks every minute whether `every_hours` have passed since the
    /// last run (kept in the store, so a restart does not send early).
    pub async fn run(self: Arc<Self>) {
        let every = i64::from(self.config.every_hours) * 3600;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            let digests = self.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let due = digests
                    .store
                    .last_digest_run()?
                    .is_none_or(|last| now() - last >= every);
                if due { digests.send(None).map(Some) } else { Ok(None) }
            })
            .await;
            match outcome {
                Ok(Ok(Some(run))) if run.recipients > 0 => {
                    tracing::info!(
                        recipients = run.recipients,
                        messages = run.messages,
                        "quarantine digests queued"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "quarantine digests not sent; tried again in a minute"),
                Err(error) => tracing::error!(%error, "quarantine digest task failed"),
            }
        }
    }

    /// One recipient's digest: a text and an HTML part, in their language.
    fn compose(
        &self,
        keys: &KeyRing,
        words: &Catalog,
        recipient: &str,
        entries: &[DigestEntry],
        now: i64,
        id: &str,
    ) -> Vec<u8> {
        let link_until = now + i64::from(self.config.link_days) * 86_400;
        let count = entries.len().to_string();
        let subject_key = if entries.len() == 1 {
            "digest.subject_one"
        } else {
            "digest.subject"
        };
        let subject = words.fill(subject_key, &[("count", &count)]);
        let intro = words.fill("digest.intro", &[("organisation", &self.organisation)]);
        let mut text = format!("{}\r\n\r\n{intro}\r\n", words.word("digest.heading"));
        let mut rows = String::new();
        for entry in entries {
            let expires = entry.expires_at.min(link_until);
            let links: Vec<(Action, String)> = Action::permitted(&entry.category)
                .iter()
                .filter(|&&action| action != Action::Allow || entry.allowable.is_some())
                .filter_map(|&action| {
                    ActionLink::sign(keys, action, entry.hold_id, &entry.message_ref, recipient, expires)
                        .map(|link| (action, format!("{}/quarantine?{}", self.base_url, link.query())))
                })
                .collect();
            let sender = one_line(&entry.sender, 200);
            let subject = entry
                .subject
                .as_deref()
                .map(|s| one_line(s, 200))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| words.word("digest.no_subject").to_string());
            let date = crate::time::rfc3339(entry.held_at)
                .replace('T', " ")
                .replace('Z', " UTC");
            let category = words.word(&format!("digest.category_{}", entry.category)).to_string();
            text.push_str(&format!(
                "\r\n{}: {sender}\r\n{}: {subject}\r\n{}: {date} ({category})\r\n",
                words.word("digest.from"),
                words.word("digest.subject_label"),
                words.word("digest.date"),
            ));
            let mut actions = String::new();
            for (action, href) in &links {
                let key = format!("digest.{}", action.as_str());
                let label = words.word(&key);
                text.push_str(&format!("  {label}: {href}\r\n"));
                actions.push_str(&format!(
                    r#"<a href="{}" style="display:inline-block;margin:0 8px 4px 0">{}</a>"#,
                    escape(href),
                    escape(label)
                ));
            }
            if entry.category == "phish" {
                text.push_str(&format!("  {}\r\n", words.word("digest.phish_note")));
                actions.push_str(&format!(
                    r#"<br><small>{}</small>"#,
                    escape(words.word("digest.phish_note"))
                ));
            }
            rows.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}<br><small>{}</small></td><td>{actions}</td></tr>",
                escape(&sender),
                escape(&subject),
                escape(&date),
                escape(&category),
            ));
        }
        let until = crate::time::rfc3339(link_until)[..10].to_string();
        let expiry = words.fill("digest.links_expire", &[("date", &until)]);
        let support = self
            .support_contact
            .as_deref()
            .map(|contact| words.fill("page.questions", &[("contact", contact)]))
            .unwrap_or_default();
        text.push_str(&format!("\r\n{expiry}\r\n{support}\r\n"));
        let html = format!(
            "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body style=\"font-family:sans-serif;color:#1d2433\">{logo}<h1 style=\"font-size:20px\">{heading}</h1><p>{intro}</p>\
             <table cellpadding=\"6\" style=\"border-collapse:collapse\"><thead><tr><th align=\"left\">{from}</th>\
             <th align=\"left\">{subject_label}</th><th align=\"left\">{date}</th><th></th></tr></thead><tbody>{rows}</tbody></table>\
             <p><small>{expiry}</small></p><p><small>{support}</small></p></body></html>",
            lang = escape(&words.tag),
            logo = self
                .logo_url
                .as_deref()
                .map(|url| format!(
                    "<img src=\"{}\" alt=\"{}\" style=\"max-height:40px\">",
                    escape(url),
                    escape(&self.organisation)
                ))
                .unwrap_or_default(),
            title = escape(&subject),
            heading = escape(words.word("digest.heading")),
            intro = escape(&intro),
            from = escape(words.word("digest.from")),
            subject_label = escape(words.word("digest.subject_label")),
            date = escape(words.word("digest.date")),
            expiry = escape(&expiry),
            support = escape(&support),
        );
        let from = self.config.from_address(&self.hostname);
        let boundary = format!("{id}-part");
        let display = words.fill("digest.sender_name", &[("organisation", &self.organisation)]);
        let mut message = format!(
            "From: {} <{from}>\r\nTo: <{recipient}>\r\nSubject: {}\r\nDate: {}\r\n\
             Message-ID: <{id}@{}>\r\nAuto-Submitted: auto-generated\r\n\
             X-Auto-Response-Suppress: All\r\nContent-Language: {}\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n",
            display_name(&display),
            encoded_word(&subject),
            crate::smtp::rfc5322_date(now),
            self.hostname,
            words.tag,
        );
        for (kind, body) in [("plain", text), ("html", html)] {
            message.push_str(&format!(
                "--{boundary}\r\nContent-Type: text/{kind}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                base64_lines(body.as_bytes())
            ));
        }
        message.push_str(&format!("--{boundary}--\r\n"));
        message.into_bytes()
    }
}

/// Text from a sender's message made one short line: control characters (a folded subject, a
/// smuggled line break) become spaces; bidirectional overrides and invisible characters, which
/// could disguise a sender or subject, go.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    text.chars()
        .filter(
            |c| !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'),
        )
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_string()
}

/// A header value as RFC 2047 encoded words when it is not plain ASCII (each word at most 75
/// characters, split between characters).
fn encoded_word(text: &str) -> String {
    use base64::Engine;
    let plain = text.bytes().all(|b| {
        (b' '..=b'~').contains(&b) && !matches!(b, b'"' | b'<' | b'>' | b'(' | b')' | b',' | b';' | b':' | b'@' | b'\\')
    });
    if plain && text.len() <= 70 {
        return text.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|word| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(word.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// A display name as a quoted string when it is printable ASCII, else as encoded words.
fn display_name(text: &str) -> String {
    if text.len() <= 70
        && text
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        format!("\"{text}\"")
    } else {
        encoded_word(text)
    }
}

/// The organisation's domains as the SMTP listener compares them.
fn local_domains(domains: &[String]) -> Vec<String> {
    domains
        .iter()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// Whether an address is in one of the organisation's domains: only those get digests, and only
/// their links act (a transport rule may have added an outside reviewer to a hold).
pub fn is_local(address: &str, domains: &[String]) -> bool {
    address.rsplit_once('@').is_some_and(|(_, domain)| {
        domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain.trim_end_matches('.')))
    })
}

fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    encoded
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_only_for_their_hold_recipient_and_action() {
        let keys = KeyRing::ephemeral();
        let link = ActionLink::sign(&keys, Action::Release, 7, "ref-7", "Bob@Example.com", 2_000_000_000).unwrap();
        let parsed = ActionLink::parse(link.query().as_bytes()).unwrap();
        assert_eq!(parsed, link);
        assert_eq!(parsed.recipient, "bob@example.com");
        assert!(parsed.verify(&keys, "ref-7"));
        assert!(!parsed.verify(&keys, "ref-8"), "another hold's message");
        for tampered in [
            ActionLink {
                action: Action::Allow,
                ..parsed.clone()
            },
            ActionLink {
                hold_id: 8,
                ..parsed.clone()
            },
            ActionLink {
                recipient: "eve@example.com".into(),
                ..parsed.clone()
            },
            ActionLink {
                expires: parsed.expires + 1,
                ..parsed.clone()
            },
        ] {
            assert!(!tampered.verify(&keys, "ref-7"), "{tampered:?}");
        }
        assert!(!parsed.verify(&KeyRing::ephemeral(), "ref-7"), "another key ring");
        assert!(ActionLink::parse(b"a=delete&h=1&r=x&e=1&t=y").is_none());
        assert!(ActionLink::parse(b"a=release&h=1&r=x&e=1").is_none());
    }

    proptest::proptest! {
        /// Whatever a scanner or an attacker puts in the query or form, parsing answers.
        #[test]
        fn any_query_parses_or_is_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400), text in "[a-z=&%0-9.+]{0,200}") {
            let _ = ActionLink::parse(&bytes);
            let _ = ActionLink::parse(text.as_bytes());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        /// Whatever a sender puts in a subject or From, the digest stays one well-formed message:
        /// no header or part of the sender's making, the text shown as one line in both parts.
        #[test]
        fn hostile_subjects_and_senders_stay_text(subject in "\\PC{0,120}|[\r\n<>\"&=?-]{0,40}", sender in "[a-z<>\"\r\n@.=?]{0,40}") {
            static DIGESTS: std::sync::OnceLock<(tempfile::TempDir, Digests)> = std::sync::OnceLock::new();
            let (_, digests) = DIGESTS.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path()).unwrap();
                let digests = Digests::new(&crate::config::Config::default(), store, KeyRing::ephemeral()).unwrap();
                (dir, digests)
            });
            let keys = KeyRing::ephemeral();
            let entry = DigestEntry {
                hold_id: 1,
                message_ref: "m".into(),
                category: "spam".into(),
                sender: format!("{sender}\r\nBcc: victim@example.com"),
                allowable: None,
                subject: Some(format!("{subject}\r\n--boundary\r\nContent-Type: text/html")),
                held_at: 0,
                expires_at: 2_000_000_000,
            };
            let words = digests.catalogs.default_catalog();
            let bytes = digests.compose(&keys, words, "bob@example.com", &[entry], 1_900_000_000, "digest-1-x");
            let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
            proptest::prop_assert!(parsed.header("Bcc").is_none());
            proptest::prop_assert_eq!(parsed.parts.len(), 3, "the multipart and its two parts");
            let text = parsed.body_text(0).unwrap();
            let html = parsed.body_html(0).unwrap();
            proptest::prop_assert!(!html.contains("<script") && !html.to_ascii_lowercase().contains("content-type: text/html\r\n"));
            let shown = one_line(&format!("{subject}\r\n--boundary\r\nContent-Type: text/html"), 200);
            proptest::prop_assert!(shown.is_empty() || text.contains(&shown), "{:?} not in {:?}", shown, text);
        }
    }

    #[test]
    fn malware_is_never_offered_and_phish_only_as_a_request() {
        assert!(Action::permitted("malware").is_empty());
        assert!(Action::permitted("transport").is_empty());
        assert_eq!(Action::permitted("phish"), &[Action::Request]);
        assert_eq!(Action::permitted("spam"), &[Action::Release, Action::Allow]);
        let mut config = DigestConfig {
            categories: vec!["malware".into()],
            ..Default::default()
        };
        assert!(config.check().unwrap_err().contains("malware"));
        config.categories = vec!["spam".into()];
        config.from = Some("not an address".into());
        assert!(config.check().is_err());
        config.from = Some("digest@example.com".into());
        config.check().unwrap();
    }

    #[test]
    fn header_words_are_encoded_when_not_plain() {
        assert_eq!(encoded_word("Quarantine digest"), "Quarantine digest");
        let japanese = encoded_word("隔離されたメッセージ: 3 件のメッセージがあなた宛てに保留されています");
        assert!(japanese.starts_with("=?UTF-8?B?"), "{japanese}");
        assert!(japanese.lines().all(|line| line.trim().len() <= 75), "{japanese}");
        assert_eq!(one_line("a\r\nBcc: x\tz", 100), "a  Bcc: x z");
        assert_eq!(one_line("pay\u{202e}fdp.exe\u{200b}", 100), "payfdp.exe");
        assert_eq!(display_name("Example Inc. quarantine"), "\"Example Inc. quarantine\"");
        assert!(display_name("隔離").starts_with("=?UTF-8?B?"));
        let domains = local_domains(&["Example.com.".into()]);
        assert!(is_local("bob@EXAMPLE.com", &domains));
        assert!(!is_local("reviewer@outside.test", &domains));
        assert!(!is_local("not-an-address", &domains));
        assert_eq!(
            allowable_address("Ann@Partner.test").as_deref(),
            Some("ann@partner.test")
        );
        assert_eq!(allowable_address("@gmail.com"), None, "never a whole domain");
        assert_eq!(allowable_address("gmail.com"), None);
    }
}
