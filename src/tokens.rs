//! API tokens: issued to a named client with a role, shown once, kept only as a SHA-256 hash in
//! the gateway store, checked in constant time, revoked by name. A token is `pc_<id>_<secret>`:
//! the id finds the row without comparing secrets, the 256-bit secret is what is hashed. A fast
//! hash is enough for a random 256-bit secret (a password would need argon2; these are not
//! passwords).

use base64::Engine;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{self, Actor};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a token named {0:?} already exists")]
    Exists(String),
    #[error("no token named {0:?}")]
    Unknown(String),
    #[error("unknown role {0:?} (scan, viewer, operator or admin)")]
    Role(String),
    #[error("a token name is 1 to 64 letters, digits, '.', '_' or '-'")]
    Name,
}

impl From<rusqlite::Error> for TokenError {
    fn from(error: rusqlite::Error) -> Self {
        TokenError::Store(StoreError::Sqlite(error))
    }
}

/// What a token may do. `scan` is for a mail platform or MTA hook: the scan and rewrite calls
/// only. The others are for people's tools, from reading (viewer) to changing (operator,
/// admin); the hook calls accept operator and admin too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Scan,
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Result<Role, TokenError> {
        match text {
            "scan" => Ok(Role::Scan),
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(TokenError::Role(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scan => "scan",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may hand messages over for scanning and rewriting.
    pub fn may_inspect(self) -> bool {
        matches!(self, Role::Scan | Role::Operator | Role::Admin)
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The token store, in the gateway's database.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER
)";

/// Seconds between writes of a token's last use: a busy client does not write on every call.
const LAST_USED_GRANULARITY: i64 = 60;

impl Tokens {
    pub fn new(store: Store) -> Result<Tokens, TokenError> {
        store.lock().execute_batch(SCHEMA)?;
        Ok(Tokens { store })
    }

    /// Issues a token; the returned text is the only time the secret exists outside the caller.
    pub fn issue(&self, name: &str, role: Role, by: &Actor) -> Result<String, TokenError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(TokenError::Name);
        }
        let id = crate::pipeline::hex(&rand::random::<[u8; 6]>());
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let token = format!("pc_{id}_{secret}");
        let mut connection = self.store.lock();
        let transaction = connection.transaction()?;
        let inserted = transaction.execute(
            "INSERT OR IGNORE INTO api_tokens (id, name, hash, role, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                name,
                Sha256::digest(token.as_bytes()).to_vec(),
                role.as_str(),
                crate::store::now()
            ],
        )?;
        if inserted == 0 {
            return Err(TokenError::Exists(name.to_string()));
        }
        audit::record(
            &transaction,
            by,
            "token.add",
            name,
            &serde_json::json!({"role": role.as_str(), "id": id}),
        )?;
        transaction.commit()?;
        Ok(token)
    }

    pub fn list(&self) -> Result<Vec<TokenInfo>, TokenError> {
        let rows = named_with_roles(
            &self.store,
            "SELECT name, role, created_at, last_used_at FROM api_tokens ORDER BY name",
        )?;
        rows.into_iter()
            .map(|(name, role, created_at, last_used_at)| {
                Ok(TokenInfo {
                    name,
                    role: Role::parse(&role)?,
                    created_at,
                    last_used_at,
                })
            })
            .collect()
    }

    /// Revokes a token at once: the next call with it is refused.
    pub fn revoke(&self, name: &str, by: &Actor) -> Result<(), TokenError> {
        let mut connection = self.store.lock();
        let transaction = connection.transaction()?;
        let removed = transaction.execute("DELETE FROM api_tokens WHERE name = ?1", [name])?;
        if removed == 0 {
            return Err(TokenError::Unknown(name.to_string()));
        }
        audit::record(&transaction, by, "token.revoke", name, &serde_json::json!({}))?;
        transaction.commit()?;
        Ok(())
    }

    /// The name and role a presented token belongs to; `None` for anything not a live token.
    pub fn verify(&self, presented: &str) -> Result<Option<(String, Role)>, TokenError> {
        let Some(id) = presented
            .strip_prefix("pc_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
        else {
            return Ok(None);
        };
        let connection = self.store.lock();
        let row = connection
            .prepare_cached("SELECT name, hash, role, last_used_at FROM api_tokens WHERE id = ?1")?
            .query_row([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, Option<i64>>(3)?,
                ))
            })
            .optional()?;
        let Some((name, hash, role, last_used)) = row else {
            return Ok(None);
        };
        let presented_hash = Sha256::digest(presented.as_bytes());
        if !bool::from(presented_hash.as_slice().ct_eq(&hash)) {
            return Ok(None);
        }
        let now = crate::store::now();
        if last_used.is_none_or(|at| now - at >= LAST_USED_GRANULARITY) {
            connection
                .prepare_cached("UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2")?
                .execute(params![now, id])?;
        }
        Ok(Some((name, Role::parse(&role)?)))
    }
}

/// One listed name: `(name, role, created_at, last use)`.
pub(crate) type NamedRow = (String, String, i64, Option<i64>);

/// Rows of [`NamedRow`] from `sql`, for the token and user lists.
pub(crate) fn named_with_roles(store: &Store, sql: &str) -> rusqlite::Result<Vec<NamedRow>> {
    let connection = store.lock();
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_verifies_until_revoked_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::new(Store::open(dir.path()).unwrap()).unwrap();
        let token = tokens.issue("mail-platform", Role::Scan, &Actor::cli()).unwrap();
        assert_eq!(
            tokens.verify(&token).unwrap(),
            Some(("mail-platform".to_string(), Role::Scan))
        );
        assert!(matches!(
            tokens.issue("mail-platform", Role::Admin, &Actor::cli()),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(
            tokens.issue("bad name", Role::Admin, &Actor::cli()),
            Err(TokenError::Name)
        ));
        // Same id, another secret; no id; garbage.
        let (prefix, _) = token.rsplit_once('_').unwrap();
        assert_eq!(tokens.verify(&format!("{prefix}_forged")).unwrap(), None);
        assert_eq!(tokens.verify("pc_").unwrap(), None);
        assert_eq!(tokens.verify("").unwrap(), None);
        let listed = tokens.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].last_used_at.is_some());
        tokens.revoke("mail-platform", &Actor::cli()).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), None);
        assert!(matches!(
            tokens.revoke("mail-platform", &Actor::cli()),
            Err(TokenError::Unknown(_))
        ));
    }
}
