//! The audit log: every change a person or a tool makes (release, delete, sender lists, users,
//! tokens, sign-ins) as an append-only table in the gateway store. Rows are written in the same
//! transaction as the change they describe, so a change is never without its record; SQLite
//! triggers refuse any UPDATE or DELETE, so nothing that talks to the store (the API included)
//! can edit history.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::store::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    via TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// Creates the table and its guards (called when the store opens).
pub(crate) fn create(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)
}

/// Who makes a change, and through what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// A user name, `token:<name>`, `cli:<login>`, or `digest:<recipient>` for a link in a
    /// quarantine digest.
    pub name: String,
    /// `api`, `console`, `cli`, `digest`.
    pub via: String,
    pub client_ip: String,
}

impl Actor {
    /// The operator at the command line, named after their login.
    pub fn cli() -> Actor {
        let login = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        Actor {
            name: format!("cli:{login}"),
            via: "cli".into(),
            client_ip: String::new(),
        }
    }
}

/// One audited change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub via: String,
    pub client_ip: String,
    /// `quarantine.release`, `quarantine.delete`, `sender.allow`, `user.add`, `session.login`…
    pub action: String,
    /// What was changed: a hold id, an address, a user name.
    pub target: String,
    /// The change's particulars as JSON text.
    pub detail: String,
}

/// Appends a record through `connection`, normally inside the change's own transaction.
pub(crate) fn record(
    connection: &Connection,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO audit_log (at, actor, via, client_ip, action, target, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            crate::store::now(),
            actor.name,
            actor.via,
            actor.client_ip,
            action,
            target,
            detail.to_string()
        ])?;
    Ok(())
}

/// Filters for reading the log, newest first; `before` is the cursor (an entry id).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub limit: usize,
    pub before: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Store {
    /// Records a change that has no transaction of its own (a sign-in, a refused sign-in).
    pub fn audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        record(&self.lock(), actor, action, target, detail)?;
        Ok(())
    }

    pub fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT id, at, actor, via, client_ip, action, target, detail FROM audit_log
             WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3)
               AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
             ORDER BY id DESC LIMIT ?6",
        )?;
        let rows = statement.query_map(
            params![
                query.before,
                query.actor,
                query.action,
                query.since,
                query.until,
                query.limit.clamp(1, 1000) as i64
            ],
            |row| {
                Ok(AuditEntry {
                    id: row.get(0)?,
                    at: row.get(1)?,
                    actor: row.get(2)?,
                    via: row.get(3)?,
                    client_ip: row.get(4)?,
                    action: row.get(5)?,
                    target: row.get(6)?,
                    detail: row.get(7)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_back_newest_first_and_can_be_neither_changed_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let actor = Actor {
            name: "ann".into(),
            via: "api".into(),
            client_ip: "192.0.2.1".into(),
        };
        store
            .audit(
                &actor,
                "quarantine.release",
                "7",
                &serde_json::json!({"category": "spam"}),
            )
            .unwrap();
        store
            .audit(&actor, "quarantine.delete", "8", &serde_json::json!({}))
            .unwrap();
        let all = store
            .audit_log(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["quarantine.delete", "quarantine.release"]
        );
        let older = store
            .audit_log(&AuditQuery {
                limit: 10,
                before: Some(all[0].id),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(older[0].target, "7");
        let connection = store.lock();
        let update = connection.execute("UPDATE audit_log SET actor = 'mallory'", []);
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = connection.execute("DELETE FROM audit_log", []);
        assert!(delete.unwrap_err().to_string().contains("append-only"));
    }
}
