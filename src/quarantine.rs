//! The quarantine: held messages with their category and reason, retention per category (spam and
//! bulk configurable 1–30 days, malware and phish 15, transport rules 7), expiry, release (back
//! into delivery, skipping the filters) and delete. A hold refers to the stored message; its
//! copies are rendered when released.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::audit::{self, Actor};
use crate::pipeline::RenderPlan;
use crate::store::{
    DeliveryBody, DeliveryKind, NewDelivery, Store, StoreError, StoredMessage, forget_unreferenced, insert_delivery,
    now,
};

#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub id: i64,
    pub message_ref: String,
    pub category: String,
    pub reason: String,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub size: i64,
    pub held_at: i64,
    pub expires_at: i64,
    /// Its recipients may act on it from their digest (held by its scores alone).
    pub self_service: bool,
}

/// A hold's bytes: its own `body` for holds made before messages were stored once, else the
/// stored message as received.
const BODY: &str = "CASE WHEN length(q.body) > 0 THEN q.body
    ELSE (SELECT message FROM stored_messages s WHERE s.message_ref = q.message_ref) END";

fn columns() -> String {
    format!(
        "q.id, q.message_ref, q.category, q.reason, q.sender, q.recipients, q.subject, COALESCE(length({BODY}), 0), q.held_at, q.expires_at, q.self_service"
    )
}

fn held(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Held, String)> {
    Ok((
        Held {
            id: row.get(0)?,
            message_ref: row.get(1)?,
            category: row.get(2)?,
            reason: row.get(3)?,
            sender: row.get(4)?,
            recipients: Vec::new(),
            subject: row.get(6)?,
            size: row.get(7)?,
            held_at: row.get(8)?,
            expires_at: row.get(9)?,
            self_service: row.get(10)?,
        },
        row.get(5)?,
    ))
}

/// Holds as rows give them, their recipients decoded.
fn collect_held(rows: impl Iterator<Item = rusqlite::Result<(Held, String)>>) -> Result<Vec<Held>, StoreError> {
    let mut list = Vec::new();
    for row in rows {
        let (mut entry, recipients) = row?;
        entry.recipients = serde_json::from_str(&recipients)?;
        list.push(entry);
    }
    Ok(list)
}

/// What a hold holds.
pub enum HeldCopy {
    /// The copy that was held (holds made before messages were stored once).
    Held(Vec<u8>),
    /// The stored message as received, and the plan its copies are rendered by.
    Stored(StoredMessage),
}

/// What the audit log keeps of a hold that was acted on.
fn audit_detail(entry: &Held) -> serde_json::Value {
    serde_json::json!({
        "message_ref": entry.message_ref,
        "category": entry.category,
        "sender": entry.sender,
        "recipients": entry.recipients,
        "subject": entry.subject,
    })
}

impl HeldCopy {
    /// The bytes as they arrived.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            HeldCopy::Held(bytes) => bytes,
            HeldCopy::Stored(stored) => stored.message,
        }
    }
}

impl Store {
    /// Held messages, newest first, optionally of one category; `before` (a hold id) is the
    /// cursor, `limit` 0 means all.
    pub fn held(&self, category: Option<&str>, before: Option<i64>, limit: usize) -> Result<Vec<Held>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {} FROM quarantine q WHERE (?1 IS NULL OR q.category = ?1) AND (?2 IS NULL OR q.id < ?2)
             ORDER BY q.id DESC LIMIT ?3",
            columns()
        ))?;
        let limit = if limit == 0 { -1 } else { limit as i64 };
        collect_held(statement.query_map(params![category, before, limit], held)?)
    }

    /// The holds of one message (one per hold made; usually none or one).
    pub fn holds_of(&self, message_ref: &str) -> Result<Vec<Held>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {} FROM quarantine q WHERE q.message_ref = ?1 ORDER BY q.id",
            columns()
        ))?;
        collect_held(statement.query_map(params![message_ref], held)?)
    }

    /// One hold's particulars, without reading its message.
    pub fn hold(&self, id: i64) -> Result<Held, StoreError> {
        let connection = self.lock();
        let mut statement =
            connection.prepare_cached(&format!("SELECT {} FROM quarantine q WHERE q.id = ?1", columns()))?;
        collect_held(statement.query_map([id], held)?)?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("quarantine {id}")))
    }

    /// One held message and what it holds.
    pub fn held_message(&self, id: i64) -> Result<(Held, HeldCopy), StoreError> {
        let (entry, literal) = {
            let connection = self.lock();
            let found = connection
                .prepare_cached(&format!(
                    "SELECT {}, q.body FROM quarantine q WHERE q.id = ?1",
                    columns()
                ))?
                .query_row([id], |row| Ok((held(row)?, row.get::<_, Vec<u8>>(11)?)))
                .optional()?;
            let ((mut entry, recipients), literal) =
                found.ok_or_else(|| StoreError::NotFound(format!("quarantine {id}")))?;
            entry.recipients = serde_json::from_str(&recipients)?;
            (entry, literal)
        };
        if !literal.is_empty() {
            return Ok((entry, HeldCopy::Held(literal)));
        }
        let stored = self.stored_message(&entry.message_ref)?;
        Ok((entry, HeldCopy::Stored(stored)))
    }

    /// Moves a held message into the delivery queue (one transaction), without filtering again:
    /// its copies are rendered by the plan made when it arrived (one per recipient when that plan
    /// says so), or, for a hold from before messages were stored once, delivered as held.
    pub fn release(&self, id: i64, by: &Actor) -> Result<Held, StoreError> {
        self.release_copies(id, None, by, |_| Ok(()))
    }

    /// Releases one recipient's copy of a hold (a recipient acting from their digest, or an
    /// approved request): the hold keeps its other recipients, and goes once none is left.
    pub fn release_to(&self, id: i64, recipient: &str, by: &Actor) -> Result<Held, StoreError> {
        self.release_copies(id, Some(recipient), by, |_| Ok(()))
    }

    /// Releases the copies of `only` (or of every recipient left), and runs `also` in the same
    /// transaction. The write lock is taken first, so what another process did in the meantime
    /// (the gateway expiring holds, an operator deleting one, another recipient releasing their
    /// copy) is seen.
    pub(crate) fn release_copies(
        &self,
        id: i64,
        only: Option<&str>,
        by: &Actor,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<Held, StoreError> {
        let (mut entry, copy) = self.held_message(id)?;
        let plan_per_recipient = match &copy {
            HeldCopy::Held(_) => None,
            HeldCopy::Stored(stored) => Some(serde_json::from_str::<RenderPlan>(&stored.plan)?.per_recipient),
        };
        let mut literal = match copy {
            HeldCopy::Held(bytes) => Some(bytes),
            HeldCopy::Stored(_) => None,
        };
        let mut connection = self.lock();
        let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: Option<String> = transaction
            .query_row("SELECT recipients FROM quarantine WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        let current: Vec<String> = match current {
            Some(recipients) => serde_json::from_str(&recipients)?,
            None => return Err(StoreError::NotFound(format!("quarantine {id}"))),
        };
        let (released, kept): (Vec<String>, Vec<String>) = current
            .into_iter()
            .partition(|address| only.is_none_or(|only| address.eq_ignore_ascii_case(only)));
        if released.is_empty() {
            return Err(StoreError::NotFound(format!(
                "quarantine {id} for {}",
                only.unwrap_or_default()
            )));
        }
        let copies: Vec<(Vec<String>, DeliveryBody)> = match plan_per_recipient {
            None => vec![(
                released.clone(),
                DeliveryBody::Literal(literal.take().unwrap_or_default()),
            )],
            Some(true) => released
                .iter()
                .map(|recipient| {
                    (
                        vec![recipient.clone()],
                        DeliveryBody::Rendered {
                            recipient: Some(recipient.clone()),
                        },
                    )
                })
                .collect(),
            Some(false) => vec![(released.clone(), DeliveryBody::Rendered { recipient: None })],
        };
        if kept.is_empty() {
            transaction.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
            transaction.execute(
                "UPDATE messages SET verdict = 'released' WHERE message_ref = ?1",
                [&entry.message_ref],
            )?;
        } else {
            transaction.execute(
                "UPDATE quarantine SET recipients = ?2 WHERE id = ?1",
                params![id, serde_json::to_string(&kept)?],
            )?;
        }
        let now = now();
        for (recipients, body) in copies {
            insert_delivery(
                &transaction,
                &NewDelivery {
                    message_ref: entry.message_ref.clone(),
                    kind: DeliveryKind::Message,
                    sender: entry.sender.clone(),
                    recipients,
                    body,
                },
                now,
            )?;
        }
        entry.recipients = released;
        let mut detail = audit_detail(&entry);
        if !kept.is_empty() {
            detail["still_held_for"] = serde_json::json!(kept);
        }
        audit::record(&transaction, by, "quarantine.release", &id.to_string(), &detail)?;
        also(&transaction)?;
        transaction.commit()?;
        Ok(entry)
    }

    pub fn delete_held(&self, id: i64, by: &Actor) -> Result<(), StoreError> {
        self.delete_held_where("id = ?1", id, Some(by))
            .and_then(|deleted| match deleted {
                0 => Err(StoreError::NotFound(format!("quarantine {id}"))),
                _ => Ok(()),
            })
    }

    /// Deletes everything past its retention; returns how many.
    pub fn expire_held(&self, at: i64) -> Result<usize, StoreError> {
        self.delete_held_where("expires_at <= ?1", at, None)
    }

    /// Deletes holds, and each stored message nothing refers to any more, in one transaction;
    /// a person's deletion is audited in it.
    fn delete_held_where(&self, condition: &str, value: i64, by: Option<&Actor>) -> Result<usize, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let removed: Vec<(i64, String, String, String, Option<String>)> = transaction
            .prepare(&format!(
                "DELETE FROM quarantine WHERE {condition} RETURNING id, message_ref, category, sender, subject"
            ))?
            .query_map([value], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        for (id, message_ref, category, sender, subject) in &removed {
            forget_unreferenced(&transaction, message_ref)?;
            if let Some(by) = by {
                let detail = serde_json::json!({
                    "message_ref": message_ref, "category": category, "sender": sender, "subject": subject,
                });
                audit::record(&transaction, by, "quarantine.delete", &id.to_string(), &detail)?;
            }
        }
        let removed: Vec<String> = removed.into_iter().map(|(_, message_ref, ..)| message_ref).collect();
        transaction.commit()?;
        Ok(removed.len())
    }
}

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS release_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hold_id INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    UNIQUE (hold_id, recipient)
);
CREATE INDEX IF NOT EXISTS release_requests_status ON release_requests (status, id);";

/// A recipient's request to have a held message released to them (phish cannot be released by
/// the recipient), waiting for the security team.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRequest {
    pub id: i64,
    pub hold_id: i64,
    pub recipient: String,
    pub requested_at: i64,
    /// `pending`, `approved`, `denied`, or `gone` (the message was deleted, expired or released
    /// to this recipient some other way first).
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    /// The hold, while it is still held.
    pub held: Option<Held>,
}

/// What a request asks for becomes one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Deny,
}

impl Store {
    /// Files a recipient's request to release their copy of a hold (once; asking again answers
    /// with the request already filed), audited.
    pub fn request_release(&self, hold_id: i64, recipient: &str, by: &Actor) -> Result<ReleaseRequest, StoreError> {
        let entry = self.hold(hold_id)?;
        let Some(recipient) = entry
            .recipients
            .iter()
            .find(|address| address.eq_ignore_ascii_case(recipient))
            .cloned()
        else {
            return Err(StoreError::NotFound(format!("quarantine {hold_id} for {recipient}")));
        };
        if entry.category == "malware" {
            return Err(StoreError::Conflict("malware is released by an admin only".into()));
        }
        {
            let mut connection = self.lock();
            let transaction = connection.transaction()?;
            let added = transaction.execute(
                "INSERT OR IGNORE INTO release_requests (hold_id, recipient, requested_at, status)
                 VALUES (?1, ?2, ?3, 'pending')",
                params![hold_id, recipient.to_ascii_lowercase(), now()],
            )?;
            if added > 0 {
                let mut detail = audit_detail(&entry);
                detail["recipient"] = serde_json::json!(recipient);
                audit::record(&transaction, by, "quarantine.request", &hold_id.to_string(), &detail)?;
            }
            transaction.commit()?;
        }
        let id: i64 = self.lock().query_row(
            "SELECT id FROM release_requests WHERE hold_id = ?1 AND recipient = ?2",
            params![hold_id, recipient.to_ascii_lowercase()],
            |row| row.get(0),
        )?;
        let request = self.release_request(id)?;
        if request.status != "pending" {
            // Asked again after the security team decided: the decision stands.
            return Err(StoreError::Conflict(format!(
                "release request {id} is already {}",
                request.status
            )));
        }
        Ok(request)
    }

    /// Requests, newest first, optionally of one status; `limit` 0 means all.
    pub fn release_requests(&self, status: Option<&str>, limit: usize) -> Result<Vec<ReleaseRequest>, StoreError> {
        let ids: Vec<i64> = {
            let connection = self.lock();
            let mut statement = connection.prepare_cached(
                "SELECT rr.id FROM release_requests rr
                 WHERE ?1 IS NULL OR (CASE WHEN rr.status = 'pending' AND NOT EXISTS (
                         SELECT 1 FROM quarantine q, json_each(q.recipients) held_for
                         WHERE q.id = rr.hold_id AND lower(held_for.value) = rr.recipient)
                     THEN 'gone' ELSE rr.status END) = ?1
                 ORDER BY rr.id DESC LIMIT ?2",
            )?;
            let limit = if limit == 0 { -1 } else { limit as i64 };
            statement
                .query_map(params![status, limit], |row| row.get(0))?
                .collect::<Result<_, _>>()?
        };
        ids.into_iter().map(|id| self.release_request(id)).collect()
    }

    pub fn release_request(&self, id: i64) -> Result<ReleaseRequest, StoreError> {
        let mut request = self
            .lock()
            .query_row(
                "SELECT id, hold_id, recipient, requested_at, status, decided_by, decided_at
                 FROM release_requests WHERE id = ?1",
                [id],
                |row| {
                    Ok(ReleaseRequest {
                        id: row.get(0)?,
                        hold_id: row.get(1)?,
                        recipient: row.get(2)?,
                        requested_at: row.get(3)?,
                        status: row.get(4)?,
                        decided_by: row.get(5)?,
                        decided_at: row.get(6)?,
                        held: None,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("release request {id}")))?;
        request.held = match self.hold(request.hold_id) {
            Ok(held) => Some(held),
            Err(StoreError::NotFound(_)) => None,
            Err(error) => return Err(error),
        };
        let still_held_for_them = request.held.as_ref().is_some_and(|held| {
            held.recipients
                .iter()
                .any(|address| address.eq_ignore_ascii_case(&request.recipient))
        });
        if request.status == "pending" && !still_held_for_them {
            request.status = "gone".into();
        }
        Ok(request)
    }

    /// Approves (the recipient's copy is released) or denies a pending request, audited; the
    /// request and the release are one transaction.
    pub fn decide_release_request(
        &self,
        id: i64,
        decision: Decision,
        by: &Actor,
    ) -> Result<ReleaseRequest, StoreError> {
        let request = self.release_request(id)?;
        if request.status != "pending" {
            return Err(StoreError::Conflict(format!(
                "release request {id} is {}, not pending",
                request.status
            )));
        }
        let mark = |transaction: &rusqlite::Transaction<'_>, status: &str| -> Result<(), StoreError> {
            let changed = transaction.execute(
                "UPDATE release_requests SET status = ?2, decided_by = ?3, decided_at = ?4
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status, by.name, now()],
            )?;
            if changed == 0 {
                return Err(StoreError::Conflict(format!(
                    "release request {id} was decided meanwhile"
                )));
            }
            Ok(())
        };
        match decision {
            Decision::Approve => {
                self.release_copies(request.hold_id, Some(&request.recipient), by, |transaction| {
                    mark(transaction, "approved")?;
                    let detail = serde_json::json!({"hold_id": request.hold_id, "recipient": request.recipient});
                    Ok(audit::record(
                        transaction,
                        by,
                        "quarantine.request.approve",
                        &id.to_string(),
                        &detail,
                    )?)
                })?;
            }
            Decision::Deny => {
                let mut connection = self.lock();
                let transaction = connection.transaction()?;
                mark(&transaction, "denied")?;
                let detail = serde_json::json!({"hold_id": request.hold_id, "recipient": request.recipient});
                audit::record(&transaction, by, "quarantine.request.deny", &id.to_string(), &detail)?;
                transaction.commit()?;
            }
        }
        self.release_request(id)
    }
}
