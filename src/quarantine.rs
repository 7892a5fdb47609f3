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
}

/// A hold's bytes: its own `body` for holds made before messages were stored once, else the
/// stored message as received.
const BODY: &str = "CASE WHEN length(q.body) > 0 THEN q.body
    ELSE (SELECT message FROM stored_messages s WHERE s.message_ref = q.message_ref) END";

fn columns() -> String {
    format!(
        "q.id, q.message_ref, q.category, q.reason, q.sender, q.recipients, q.subject, COALESCE(length({BODY}), 0), q.held_at, q.expires_at"
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

    /// One held message and what it holds.
    pub fn held_message(&self, id: i64) -> Result<(Held, HeldCopy), StoreError> {
        let (entry, literal) = {
            let connection = self.lock();
            let found = connection
                .prepare_cached(&format!(
                    "SELECT {}, q.body FROM quarantine q WHERE q.id = ?1",
                    columns()
                ))?
                .query_row([id], |row| Ok((held(row)?, row.get::<_, Vec<u8>>(10)?)))
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
        let (entry, copy) = self.held_message(id)?;
        let copies: Vec<(Vec<String>, DeliveryBody)> = match copy {
            HeldCopy::Held(literal) => vec![(entry.recipients.clone(), DeliveryBody::Literal(literal))],
            HeldCopy::Stored(stored) if serde_json::from_str::<RenderPlan>(&stored.plan)?.per_recipient => entry
                .recipients
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
            HeldCopy::Stored(_) => vec![(entry.recipients.clone(), DeliveryBody::Rendered { recipient: None })],
        };
        let mut connection = self.lock();
        // Immediate: the write lock is taken first, so the check below sees what another process
        // (the gateway expiring holds, an operator deleting one) did in the meantime.
        let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if transaction.execute("DELETE FROM quarantine WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::NotFound(format!("quarantine {id}")));
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
        transaction.execute(
            "UPDATE messages SET verdict = 'released' WHERE message_ref = ?1",
            [&entry.message_ref],
        )?;
        audit::record(
            &transaction,
            by,
            "quarantine.release",
            &id.to_string(),
            &audit_detail(&entry),
        )?;
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
