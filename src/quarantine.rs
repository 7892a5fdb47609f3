//! The quarantine: held messages with their category and reason, retention per category (spam and
//! bulk configurable 1–30 days, malware and phish 15, transport rules 7), expiry, release (back
//! into delivery, skipping the filters) and delete.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::store::{DeliveryKind, NewDelivery, Store, StoreError, insert_delivery, now};

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

const COLUMNS: &str =
    "id, message_ref, category, reason, sender, recipients, subject, length(body), held_at, expires_at";

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

impl Store {
    /// Held messages, newest first, optionally of one category.
    pub fn held(&self, category: Option<&str>) -> Result<Vec<Held>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM quarantine WHERE ?1 IS NULL OR category = ?1 ORDER BY id DESC"
        ))?;
        let rows = statement.query_map(params![category], held)?;
        let mut list = Vec::new();
        for row in rows {
            let (mut entry, recipients) = row?;
            entry.recipients = serde_json::from_str(&recipients)?;
            list.push(entry);
        }
        Ok(list)
    }

    /// One held message and its bytes.
    pub fn held_message(&self, id: i64) -> Result<(Held, Vec<u8>), StoreError> {
        let connection = self.lock();
        let found = connection
            .prepare_cached(&format!("SELECT {COLUMNS}, body FROM quarantine WHERE id = ?1"))?
            .query_row([id], |row| Ok((held(row)?, row.get::<_, Vec<u8>>(10)?)))
            .optional()?;
        let ((mut entry, recipients), body) = found.ok_or_else(|| StoreError::NotFound(format!("quarantine {id}")))?;
        entry.recipients = serde_json::from_str(&recipients)?;
        Ok((entry, body))
    }

    /// Moves a held message into the delivery queue (one transaction): it is delivered as held,
    /// without filtering again.
    pub fn release(&self, id: i64) -> Result<Held, StoreError> {
        let (entry, body) = self.held_message(id)?;
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        insert_delivery(
            &transaction,
            &NewDelivery {
                message_ref: entry.message_ref.clone(),
                kind: DeliveryKind::Message,
                sender: entry.sender.clone(),
                recipients: entry.recipients.clone(),
                body,
            },
            now(),
        )?;
        transaction.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
        transaction.execute(
            "UPDATE messages SET verdict = 'released' WHERE message_ref = ?1",
            [&entry.message_ref],
        )?;
        transaction.commit()?;
        Ok(entry)
    }

    pub fn delete_held(&self, id: i64) -> Result<(), StoreError> {
        match self.lock().execute("DELETE FROM quarantine WHERE id = ?1", [id])? {
            0 => Err(StoreError::NotFound(format!("quarantine {id}"))),
            _ => Ok(()),
        }
    }

    /// Deletes everything past its retention; returns how many.
    pub fn expire_held(&self, at: i64) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM quarantine WHERE expires_at <= ?1", [at])?)
    }
}
