//! Delivery: the queue of copies to relay downstream, the workers that relay them (retrying
//! temporary failures with backoff), and the delivery status notifications (RFC 3464) for
//! permanent failures and expiry — never sent to the null sender, never about a DSN.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::DeliveryConfig;
use crate::pipeline::{RenderPlan, Renderer};
use crate::smtp::client::{Client, ClientError, ClientSettings, Reply};
use crate::store::{
    DeliveryBody, DeliveryKind, NewDelivery, Store, StoreError, forget_unreferenced, insert_delivery, now,
};

/// What a queue entry's copy is made from.
enum Source {
    /// The entry's own bytes.
    Literal,
    /// A stored message, read once for the entries of a batch that share it.
    Stored {
        message_ref: String,
        message: Vec<u8>,
        plan: RenderPlan,
    },
}

/// A claimed queue entry.
#[derive(Debug, Clone)]
pub struct QueueItem {
    pub id: i64,
    pub message_ref: String,
    pub kind: DeliveryKind,
    pub sender: String,
    pub recipients: Vec<String>,
    pub body: DeliveryBody,
    pub created_at: i64,
    pub attempts: i64,
}

/// A queue entry as `portcullis queue list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueSummary {
    pub id: i64,
    pub message_ref: String,
    pub kind: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub size: i64,
    pub created_at: i64,
    pub next_attempt: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// How long a worker owns a claimed entry; a crashed owner's entries come back after this.
const LEASE_SECS: i64 = 600;

impl Store {
    /// Claims up to `limit` due entries for this process.
    pub fn claim_due(&self, limit: usize) -> Result<Vec<QueueItem>, StoreError> {
        let now = now();
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "UPDATE queue SET lease_until = ?1 + ?2 WHERE id IN
               (SELECT id FROM queue WHERE next_attempt <= ?1 AND lease_until < ?1 ORDER BY next_attempt, id LIMIT ?3)
             RETURNING id, message_ref, kind, sender, recipients, body, copy_for, created_at, attempts",
        )?;
        let rows = statement.query_map(params![now, LEASE_SECS, limit as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Vec<u8>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, i64>(7)?,
                row.get::<_, i64>(8)?,
            ))
        })?;
        let mut items = Vec::new();
        for row in rows {
            let (id, message_ref, kind, sender, recipients, body, copy_for, created_at, attempts) = row?;
            items.push(QueueItem {
                id,
                message_ref,
                kind: DeliveryKind::parse(&kind),
                sender,
                recipients: serde_json::from_str(&recipients)?,
                body: match copy_for {
                    Some(copy_for) => serde_json::from_str(&copy_for)?,
                    None => DeliveryBody::Literal(body),
                },
                created_at,
                attempts,
            });
        }
        items.sort_by_key(|item| item.id);
        Ok(items)
    }

    /// Records an attempt: each recipient's outcome for the trace; delivered recipients leave,
    /// the rest wait until `next_attempt`; any DSN to send is queued in the same transaction.
    fn settle(&self, id: i64, message_ref: &str, settlement: &Settlement<'_>) -> Result<(), StoreError> {
        let Settlement {
            remaining,
            next_attempt,
            error,
            dsn,
            outcomes,
        } = *settlement;
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let at = now();
        for outcome in outcomes {
            transaction
                .prepare_cached(
                    "INSERT INTO delivery_attempts (message_ref, at, recipient, outcome, reply) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![message_ref, at, outcome.recipient, outcome.outcome, outcome.reply])?;
        }
        if remaining.is_empty() {
            transaction.execute("DELETE FROM queue WHERE id = ?1", [id])?;
            forget_unreferenced(&transaction, message_ref)?;
        } else {
            transaction.execute(
                "UPDATE queue SET recipients = ?2, next_attempt = ?3, attempts = attempts + 1, lease_until = 0,
                 last_error = ?4 WHERE id = ?1",
                params![id, serde_json::to_string(remaining)?, next_attempt, error],
            )?;
        }
        if let Some(dsn) = dsn {
            insert_delivery(&transaction, dsn, now())?;
        }
        transaction.commit()?;
        Ok(())
    }

    /// Entries claimed by a process that is gone come back at once (called at server start).
    pub fn release_leases(&self) -> Result<(), StoreError> {
        self.lock().execute("UPDATE queue SET lease_until = 0", [])?;
        Ok(())
    }

    pub fn queue(&self) -> Result<Vec<QueueSummary>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT id, message_ref, kind, sender, recipients,
             CASE WHEN copy_for IS NULL THEN length(body)
                  ELSE COALESCE((SELECT length(message) FROM stored_messages s WHERE s.message_ref = queue.message_ref), 0) END,
             created_at, next_attempt, attempts, last_error FROM queue ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                QueueSummary {
                    id: row.get(0)?,
                    message_ref: row.get(1)?,
                    kind: row.get(2)?,
                    sender: row.get(3)?,
                    recipients: Vec::new(),
                    size: row.get(5)?,
                    created_at: row.get(6)?,
                    next_attempt: row.get(7)?,
                    attempts: row.get(8)?,
                    last_error: row.get(9)?,
                },
                row.get::<_, String>(4)?,
            ))
        })?;
        let mut entries = Vec::new();
        for row in rows {
            let (mut entry, recipients) = row?;
            entry.recipients = serde_json::from_str(&recipients)?;
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Makes every waiting entry (or one) due now. Returns how many.
    pub fn flush_queue(&self, id: Option<i64>) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "UPDATE queue SET next_attempt = 0 WHERE (?1 IS NULL OR id = ?1)",
            params![id],
        )?)
    }

    /// Removes one entry (or every entry of a message reference) without delivering it.
    pub fn delete_queued(&self, id: Option<i64>, message_ref: Option<&str>) -> Result<usize, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let removed: Vec<String> = transaction
            .prepare("DELETE FROM queue WHERE id = ?1 OR message_ref = ?2 RETURNING message_ref")?
            .query_map(params![id, message_ref], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for message_ref in &removed {
            forget_unreferenced(&transaction, message_ref)?;
        }
        transaction.commit()?;
        Ok(removed.len())
    }
}

/// The delivery workers: each claimed entry is rendered from the stored message (one copy at a
/// time per worker) and relayed.
pub struct Delivery {
    store: Store,
    renderer: Arc<Renderer>,
    settings: ClientSettings,
    relays: Vec<String>,
    dsn_relays: Vec<String>,
    retry_secs: Vec<u64>,
    max_age_secs: i64,
    workers: usize,
    hostname: String,
    pub wake: Arc<Notify>,
}

/// What one attempt for one entry came to.
/// What one attempt leaves behind in the queue.
#[derive(Clone, Copy)]
struct Settlement<'a> {
    /// Recipients still to try.
    remaining: &'a [String],
    next_attempt: i64,
    error: Option<&'a str>,
    dsn: Option<&'a NewDelivery>,
    outcomes: &'a [AttemptOutcome],
}

/// One recipient's result of one delivery attempt, as the message trace shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptOutcome {
    pub recipient: String,
    /// `delivered`, `deferred` or `failed`.
    pub outcome: &'static str,
    /// The downstream's reply or the error that stopped the attempt.
    pub reply: String,
}

struct Attempt {
    delivered: Vec<String>,
    failed: Vec<(String, Reply)>,
    deferred: Vec<String>,
    error: Option<String>,
}

impl Delivery {
    pub fn new(
        store: Store,
        renderer: Arc<Renderer>,
        config: &DeliveryConfig,
        hostname: &str,
        wake: Arc<Notify>,
    ) -> Result<Self, String> {
        Ok(Self {
            store,
            renderer,
            settings: ClientSettings::new(config, hostname)?,
            relays: config.relay.clone(),
            dsn_relays: if config.dsn_relay.is_empty() {
                config.relay.clone()
            } else {
                config.dsn_relay.clone()
            },
            retry_secs: config.retry_secs.clone(),
            max_age_secs: config.max_age_secs as i64,
            workers: config.workers.max(1),
            hostname: hostname.to_string(),
            wake,
        })
    }

    /// Runs the workers forever.
    pub async fn run(self: Arc<Self>) {
        let mut tasks = Vec::new();
        for _ in 0..self.workers {
            let delivery = self.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let notified = delivery.wake.notified();
                    if delivery.pass_once().await == 0 {
                        let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Delivers everything due now; returns how many entries were attempted.
    pub async fn pass(&self) -> usize {
        let mut attempted = 0;
        loop {
            let batch = self.pass_once().await;
            if batch == 0 {
                return attempted;
            }
            attempted += batch;
        }
    }

    /// Claims one batch and attempts it over one connection per relay list.
    async fn pass_once(&self) -> usize {
        let store = self.store.clone();
        let batch = match tokio::task::spawn_blocking(move || store.claim_due(32)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::error!(%error, "delivery queue unreadable");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return 0;
            }
            Err(_) => return 0,
        };
        let count = batch.len();
        let (dsns, messages): (Vec<QueueItem>, Vec<QueueItem>) =
            batch.into_iter().partition(|item| item.kind == DeliveryKind::Dsn);
        self.attempt_all(messages, &self.relays).await;
        self.attempt_all(dsns, &self.dsn_relays).await;
        count
    }

    /// What one entry's copy is made from: its literal bytes, or the stored message and its plan
    /// (kept across the entries of one batch that share it, so 100 recipients read it once).
    async fn source_of(&self, item: &QueueItem, cached: &mut Option<Arc<Source>>) -> Result<Arc<Source>, String> {
        let DeliveryBody::Rendered { .. } = &item.body else {
            return Ok(Arc::new(Source::Literal));
        };
        if let Some(source) = cached
            && let Source::Stored { message_ref, .. } = source.as_ref()
            && *message_ref == item.message_ref
        {
            return Ok(source.clone());
        }
        let store = self.store.clone();
        let message_ref = item.message_ref.clone();
        let loaded = tokio::task::spawn_blocking(move || store.stored_message(&message_ref))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let plan = serde_json::from_str(&loaded.plan).map_err(|e| format!("render plan: {e}"))?;
        let source = Arc::new(Source::Stored {
            message_ref: item.message_ref.clone(),
            message: loaded.message,
            plan,
        });
        *cached = Some(source.clone());
        Ok(source)
    }

    /// The bytes to send: rendered (off the async threads) only once a relay has answered, so a
    /// relay that is down costs no rendering.
    async fn copy_of(&self, item: &QueueItem, source: &Arc<Source>) -> Result<Arc<Vec<u8>>, String> {
        let recipient = match &item.body {
            DeliveryBody::Literal(bytes) => return Ok(Arc::new(bytes.clone())),
            DeliveryBody::Rendered { recipient } => recipient.clone(),
        };
        let (renderer, source, message_ref) = (self.renderer.clone(), source.clone(), item.message_ref.clone());
        tokio::task::spawn_blocking(move || match source.as_ref() {
            Source::Stored { message, plan, .. } => Ok(Arc::new(renderer.render(
                message,
                plan,
                &message_ref,
                recipient.as_deref(),
            ))),
            Source::Literal => Err("a rendered entry without its stored message".to_string()),
        })
        .await
        .map_err(|e| format!("rendering failed: {e}"))?
    }

    async fn attempt_all(&self, items: Vec<QueueItem>, relays: &[String]) {
        let mut client: Option<Client> = None;
        let mut last_error = String::new();
        let mut cached = None;
        for item in items {
            let deferred = |error: String| Attempt {
                delivered: Vec::new(),
                failed: Vec::new(),
                deferred: item.recipients.clone(),
                error: Some(error),
            };
            let source = match self.source_of(&item, &mut cached).await {
                Ok(source) => source,
                Err(error) => {
                    tracing::error!(message_ref = %item.message_ref, %error, "cannot read the stored message");
                    self.settle(&item, &[], deferred(error)).await;
                    continue;
                }
            };
            if client.is_none() {
                for relay in relays {
                    match Client::connect(relay, &self.settings).await {
                        Ok(connected) => {
                            client = Some(connected);
                            break;
                        }
                        Err(error) => last_error = format!("{relay}: {error}"),
                    }
                }
            }
            let copy = match &client {
                None => Err(last_error.clone()),
                Some(_) => self.copy_of(&item, &source).await,
            };
            let attempt = match (client.as_mut(), copy) {
                (_, Err(error)) => deferred(error),
                (None, Ok(_)) => deferred(last_error.clone()),
                (Some(open), Ok(body)) => match open.send(&item.sender, &item.recipients, &body).await {
                    Ok(sent) => {
                        let mut attempt = Attempt {
                            delivered: Vec::new(),
                            failed: Vec::new(),
                            deferred: Vec::new(),
                            error: None,
                        };
                        for (recipient, reply) in sent.results {
                            if reply.is_positive() {
                                attempt.delivered.push(recipient);
                            } else if reply.is_permanent() {
                                attempt.failed.push((recipient, reply));
                            } else {
                                attempt.error = Some(reply.to_string());
                                attempt.deferred.push(recipient);
                            }
                        }
                        attempt
                    }
                    Err(ClientError::Rejected(reply)) if reply.is_permanent() => Attempt {
                        delivered: Vec::new(),
                        failed: item.recipients.iter().map(|r| (r.clone(), reply.clone())).collect(),
                        deferred: Vec::new(),
                        error: None,
                    },
                    Err(error) => {
                        // The connection may be unusable now; the next entry opens a new one.
                        if !matches!(error, ClientError::Rejected(_)) {
                            client = None;
                        }
                        deferred(error.to_string())
                    }
                },
            };
            let original = match (source.as_ref(), &item.body) {
                (Source::Stored { message, .. }, _) => message.as_slice(),
                (Source::Literal, DeliveryBody::Literal(bytes)) => bytes.as_slice(),
                (Source::Literal, DeliveryBody::Rendered { .. }) => &[],
            };
            self.settle(&item, original, attempt).await;
        }
        if let Some(open) = client {
            open.quit().await;
        }
    }

    /// Writes the attempt's result: retry schedule, expiry, DSN (quoting the header block of
    /// `body`, the message as it was given to us).
    async fn settle(&self, item: &QueueItem, body: &[u8], mut attempt: Attempt) {
        let now = now();
        for recipient in &attempt.delivered {
            tracing::info!(message_ref = %item.message_ref, %recipient, "delivered");
        }
        let expired = !attempt.deferred.is_empty() && now - item.created_at >= self.max_age_secs;
        if expired {
            let reason = Reply {
                code: 451,
                text: format!(
                    "4.4.7 Delivery time expired; last error: {}",
                    attempt.error.as_deref().unwrap_or("none")
                ),
            };
            for recipient in std::mem::take(&mut attempt.deferred) {
                attempt.failed.push((recipient, reason.clone()));
            }
        }
        let dsn = if attempt.failed.is_empty() || item.kind == DeliveryKind::Dsn || item.sender.is_empty() {
            None
        } else {
            Some(NewDelivery {
                message_ref: item.message_ref.clone(),
                kind: DeliveryKind::Dsn,
                sender: String::new(),
                recipients: vec![item.sender.clone()],
                body: DeliveryBody::Literal(dsn_message(&self.hostname, item, body, &attempt.failed, now)),
            })
        };
        for (recipient, reply) in &attempt.failed {
            tracing::warn!(message_ref = %item.message_ref, %recipient, %reply, "delivery failed permanently");
        }
        let step = (item.attempts.max(0) as usize).min(self.retry_secs.len() - 1);
        let next_attempt = now + self.retry_secs[step] as i64;
        if !attempt.deferred.is_empty() {
            tracing::warn!(
                message_ref = %item.message_ref,
                recipients = attempt.deferred.len(),
                error = %attempt.error.as_deref().unwrap_or("temporary failure"),
                retry_in_secs = next_attempt - now,
                "delivery deferred"
            );
        }
        let mut outcomes: Vec<AttemptOutcome> = Vec::new();
        for recipient in &attempt.delivered {
            outcomes.push(AttemptOutcome {
                recipient: recipient.clone(),
                outcome: "delivered",
                reply: String::new(),
            });
        }
        for (recipient, reply) in &attempt.failed {
            outcomes.push(AttemptOutcome {
                recipient: recipient.clone(),
                outcome: "failed",
                reply: reply.to_string(),
            });
        }
        for recipient in &attempt.deferred {
            outcomes.push(AttemptOutcome {
                recipient: recipient.clone(),
                outcome: "deferred",
                reply: attempt.error.clone().unwrap_or_else(|| "temporary failure".into()),
            });
        }
        let store = self.store.clone();
        let (id, message_ref, remaining, error) = (item.id, item.message_ref.clone(), attempt.deferred, attempt.error);
        let result = tokio::task::spawn_blocking(move || {
            store.settle(
                id,
                &message_ref,
                &Settlement {
                    remaining: &remaining,
                    next_attempt,
                    error: error.as_deref(),
                    dsn: dsn.as_ref(),
                    outcomes: &outcomes,
                },
            )
        })
        .await;
        if !matches!(result, Ok(Ok(()))) {
            tracing::error!(id, "delivery result not recorded; the entry is retried after its lease");
        }
    }
}

/// An RFC 3464 delivery status notification for the recipients that failed.
pub fn dsn_message(hostname: &str, item: &QueueItem, body: &[u8], failed: &[(String, Reply)], now: i64) -> Vec<u8> {
    let boundary = format!("dsn-{}-{}", item.message_ref, item.id);
    let date = crate::smtp::rfc5322_date(now);
    let mut human = String::from(
        "This is the mail gateway. Your message could not be delivered to the following recipients:\r\n\r\n",
    );
    let mut status = format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Portcullis-Message-Ref: {}\r\nArrival-Date: {}\r\n",
        item.message_ref,
        crate::smtp::rfc5322_date(item.created_at)
    );
    for (recipient, reply) in failed {
        let enhanced = reply
            .text
            .split_whitespace()
            .next()
            .filter(|code| code.split('.').count() == 3 && code.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .map(str::to_string)
            .unwrap_or_else(|| {
                if reply.code >= 500 {
                    "5.0.0".into()
                } else {
                    "4.0.0".into()
                }
            });
        let status_code = if reply.code >= 500 {
            enhanced.clone()
        } else {
            // An expiry is a permanent failure whatever the last temporary reply said.
            format!("5{}", &enhanced[1..])
        };
        human.push_str(&format!("<{recipient}>: {reply}\r\n"));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status_code}\r\n\
             Diagnostic-Code: smtp; {}\r\nLast-Attempt-Date: {date}\r\n",
            crate::pipeline::headers::clean(&reply.to_string())
        ));
    }
    let headers_end = memchr::memmem::find(body, b"\r\n\r\n").map_or(body.len(), |at| at + 2);
    let original_headers = String::from_utf8_lossy(&body[..headers_end]);
    let mut message = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\nTo: <{}>\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\nMessage-ID: <dsn.{}.{}@{hostname}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{human}\r\n\
         --{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{status}\r\n\
         --{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n",
        item.sender, item.message_ref, item.id
    );
    message.push_str(&original_headers);
    message.push_str(&format!("\r\n--{boundary}--\r\n"));
    message.into_bytes()
}
