//! People who sign in to the console and the admin API: accounts with argon2id password hashes
//! and a role, sessions (a random token kept only as its SHA-256, a CSRF token bound to it, idle
//! and absolute expiry), and the sign-in throttle that bounds password guessing per client and
//! per account. Roles are those of [`crate::tokens::Role`] except `scan`, which is for machines.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::{self, Actor};
use crate::store::{Store, StoreError, now};
use crate::tokens::Role;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error("no user named {0:?}")]
    Unknown(String),
    #[error("a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'")]
    Name,
    #[error("people have the roles viewer, operator or admin (scan is for API tokens)")]
    Role,
    #[error("a password is 12 to 1024 characters")]
    Password,
    #[error("hashing the password: {0}")]
    Hash(String),
}

impl From<rusqlite::Error> for UserError {
    fn from(error: rusqlite::Error) -> Self {
        UserError::Store(StoreError::Sqlite(error))
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_name);
";

/// A session ends after this long without a request...
pub const SESSION_IDLE_SECS: i64 = 3600;
/// ...and after this long whatever happens.
pub const SESSION_MAX_SECS: i64 = 12 * 3600;
/// A session's last use is written at most this often.
const LAST_SEEN_GRANULARITY: i64 = 60;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// A signed-in person, as a request carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

/// A new session: the cookie value (shown once) and what it stands for.
pub struct NewSession {
    pub token: String,
    pub session: Session,
}

/// The user store, in the gateway database.
#[derive(Clone)]
pub struct Users {
    store: Store,
}

fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_text() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The argon2id hash (PHC string) of a password, with a fresh salt.
fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| UserError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so an unknown name costs as much time
/// as a wrong password and names cannot be probed by timing.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("not a password anyone has").unwrap_or_default())
}

fn check_name(name: &str) -> Result<(), UserError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if fine { Ok(()) } else { Err(UserError::Name) }
}

fn check_password(password: &str) -> Result<(), UserError> {
    let length = password.chars().count();
    if (12..=1024).contains(&length) {
        Ok(())
    } else {
        Err(UserError::Password)
    }
}

impl Users {
    pub fn new(store: Store) -> Result<Users, UserError> {
        store.lock().execute_batch(SCHEMA)?;
        Ok(Users { store })
    }

    pub fn add(&self, name: &str, role: Role, password: &str, by: &Actor) -> Result<(), UserError> {
        check_name(name)?;
        check_password(password)?;
        if role == Role::Scan {
            return Err(UserError::Role);
        }
        let hash = hash_password(password)?;
        let mut connection = self.store.lock();
        let transaction = connection.transaction()?;
        let inserted = transaction.execute(
            "INSERT OR IGNORE INTO users (name, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, hash, role.as_str(), now()],
        )?;
        if inserted == 0 {
            return Err(UserError::Exists(name.to_string()));
        }
        audit::record(
            &transaction,
            by,
            "user.add",
            name,
            &serde_json::json!({"role": role.as_str()}),
        )?;
        transaction.commit()?;
        Ok(())
    }

    /// Sets a new password; every session of the user ends.
    pub fn set_password(&self, name: &str, password: &str, by: &Actor) -> Result<(), UserError> {
        check_password(password)?;
        let hash = hash_password(password)?;
        self.change(name, by, "user.password", &serde_json::json!({}), |transaction| {
            transaction.execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, hash],
            )
        })
    }

    /// Gives a user another role; their sessions end so the new role applies at once.
    pub fn set_role(&self, name: &str, role: Role, by: &Actor) -> Result<(), UserError> {
        if role == Role::Scan {
            return Err(UserError::Role);
        }
        self.change(
            name,
            by,
            "user.role",
            &serde_json::json!({"role": role.as_str()}),
            |transaction| {
                transaction.execute(
                    "UPDATE users SET role = ?2 WHERE name = ?1",
                    params![name, role.as_str()],
                )
            },
        )
    }

    pub fn remove(&self, name: &str, by: &Actor) -> Result<(), UserError> {
        self.change(name, by, "user.remove", &serde_json::json!({}), |transaction| {
            transaction.execute("DELETE FROM users WHERE name = ?1", [name])
        })
    }

    /// One change to an existing user, its sessions ended and the change audited, in one transaction.
    fn change(
        &self,
        name: &str,
        by: &Actor,
        action: &str,
        detail: &serde_json::Value,
        apply: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<usize>,
    ) -> Result<(), UserError> {
        let mut connection = self.store.lock();
        let transaction = connection.transaction()?;
        if apply(&transaction)? == 0 {
            return Err(UserError::Unknown(name.to_string()));
        }
        transaction.execute("DELETE FROM sessions WHERE user_name = ?1", [name])?;
        audit::record(&transaction, by, action, name, detail)?;
        transaction.commit()?;
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<UserInfo>, UserError> {
        let rows = crate::tokens::named_with_roles(
            &self.store,
            "SELECT name, role, created_at, last_login_at FROM users ORDER BY name",
        )?;
        rows.into_iter()
            .map(|(name, role, created_at, last_login_at)| {
                Ok(UserInfo {
                    name,
                    role: Role::parse(&role).map_err(|_| UserError::Role)?,
                    created_at,
                    last_login_at,
                })
            })
            .collect()
    }

    /// Checks a password (argon2, slow on purpose: call it off the async workers) and opens a
    /// session. `None` for a wrong name or password, which take the same time. Both outcomes are
    /// audited.
    pub fn sign_in(&self, name: &str, password: &str, client_ip: &str) -> Result<Option<NewSession>, UserError> {
        let found = self
            .store
            .lock()
            .prepare_cached("SELECT password_hash, role FROM users WHERE name = ?1")?
            .query_row([name], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
            .optional()?;
        let stored = found.as_ref().map_or(decoy_hash(), |(hash, _)| hash.as_str());
        let matches = password_matches(password, stored);
        let actor = Actor {
            name: name.chars().take(64).collect(),
            via: "console".into(),
            client_ip: client_ip.to_string(),
        };
        let role = match found {
            Some((_, role)) if matches => Role::parse(&role).map_err(|_| UserError::Role)?,
            _ => {
                self.store
                    .audit(&actor, "session.login_failed", &actor.name, &serde_json::json!({}))?;
                return Ok(None);
            }
        };
        let token = random_text();
        let csrf = random_text();
        let now = now();
        let mut connection = self.store.lock();
        let transaction = connection.transaction()?;
        transaction.execute(
            "DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2",
            params![now - SESSION_IDLE_SECS, now - SESSION_MAX_SECS],
        )?;
        transaction.execute(
            "INSERT INTO sessions (token_hash, user_name, csrf, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![hash_token(&token), name, csrf, now],
        )?;
        transaction.execute(
            "UPDATE users SET last_login_at = ?2 WHERE name = ?1",
            params![name, now],
        )?;
        audit::record(&transaction, &actor, "session.login", name, &serde_json::json!({}))?;
        transaction.commit()?;
        Ok(Some(NewSession {
            token,
            session: Session {
                user: name.to_string(),
                role,
                csrf,
            },
        }))
    }

    /// The live session a cookie value opens, its last use refreshed.
    pub fn session(&self, token: &str) -> Result<Option<Session>, UserError> {
        let now = now();
        let connection = self.store.lock();
        let found = connection
            .prepare_cached(
                "SELECT s.user_name, s.csrf, s.created_at, s.last_seen_at, u.role
                 FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.token_hash = ?1",
            )?
            .query_row([hash_token(token)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .optional()?;
        let Some((user, csrf, created_at, last_seen_at, role)) = found else {
            return Ok(None);
        };
        if now - last_seen_at > SESSION_IDLE_SECS || now - created_at > SESSION_MAX_SECS {
            connection.execute("DELETE FROM sessions WHERE token_hash = ?1", [hash_token(token)])?;
            return Ok(None);
        }
        if now - last_seen_at >= LAST_SEEN_GRANULARITY {
            connection
                .prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1")?
                .execute(params![hash_token(token), now])?;
        }
        Ok(Some(Session {
            user,
            role: Role::parse(&role).map_err(|_| UserError::Role)?,
            csrf,
        }))
    }

    pub fn sign_out(&self, token: &str, actor: &Actor) -> Result<(), UserError> {
        let mut connection = self.store.lock();
        let transaction = connection.transaction()?;
        if transaction.execute("DELETE FROM sessions WHERE token_hash = ?1", [hash_token(token)])? > 0 {
            audit::record(
                &transaction,
                actor,
                "session.logout",
                &actor.name,
                &serde_json::json!({}),
            )?;
        }
        transaction.commit()?;
        Ok(())
    }
}

/// Failed sign-ins remembered per client address and per account, in a sliding window: past
/// the limit, sign-in is refused before any password is checked, so guessing is bounded and a
/// flood of attempts costs no argon2 time. The table is bounded; the oldest keys go first.
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    window: Duration,
    per_client: usize,
    per_account: usize,
}

/// Keys the throttle remembers at most.
const THROTTLE_KEYS: usize = 10_000;

impl Default for SignInThrottle {
    fn default() -> Self {
        SignInThrottle::new(Duration::from_secs(900), 20, 5)
    }
}

impl SignInThrottle {
    pub fn new(window: Duration, per_client: usize, per_account: usize) -> Self {
        SignInThrottle {
            failures: Mutex::new(HashMap::new()),
            window,
            per_client,
            per_account,
        }
    }

    /// The client's key: its address, or for IPv6 its /64 (one host holds a whole /64).
    fn keys(client_ip: &str, name: &str) -> [(String, bool); 2] {
        let client = match client_ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
            _ => client_ip.to_string(),
        };
        [
            (format!("ip:{client}"), true),
            (format!("user:{}", name.to_lowercase()), false),
        ]
    }

    /// Counts a sign-in attempt before its password is checked, in the same step as the check
    /// against the limits, so parallel attempts cannot all slip under them. `Err(seconds to
    /// wait)` when this client or account has failed too often lately (nothing is counted
    /// then). A success takes its count back ([`SignInThrottle::succeeded`]).
    pub fn attempt(&self, client_ip: &str, name: &str) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = None;
        for (key, per_client) in Self::keys(client_ip, name) {
            let Some(times) = failures.get_mut(&key) else {
                continue;
            };
            times.retain(|at| now.duration_since(*at) < self.window);
            let limit = if per_client { self.per_client } else { self.per_account };
            if times.len() >= limit {
                let until = self.window.saturating_sub(now.duration_since(times[0]));
                wait = Some(wait.unwrap_or(0).max(until.as_secs().max(1)));
            }
        }
        if let Some(wait) = wait {
            return Err(wait);
        }
        if failures.len() >= THROTTLE_KEYS {
            let window = self.window;
            failures.retain(|_, times| times.last().is_some_and(|at| now.duration_since(*at) < window));
            if failures.len() >= THROTTLE_KEYS {
                // Still full of recent keys: the least recently used tenth goes, never all of
                // them (a flood of new keys must not wipe an account's count).
                let mut by_age: Vec<(Instant, String)> = failures
                    .iter()
                    .filter_map(|(key, times)| times.last().map(|at| (*at, key.clone())))
                    .collect();
                by_age.sort();
                for (_, key) in by_age.into_iter().take(THROTTLE_KEYS / 10) {
                    failures.remove(&key);
                }
            }
        }
        for (key, _) in Self::keys(client_ip, name) {
            let times = failures.entry(key).or_default();
            times.push(now);
            if times.len() > 64 {
                times.remove(0);
            }
        }
        Ok(())
    }

    /// A sign-in that succeeded: its attempt no longer counts against the client, and the
    /// account's failures are forgotten.
    pub fn succeeded(&self, client_ip: &str, name: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let [(client_key, _), (account_key, _)] = Self::keys(client_ip, name);
        if let Some(times) = failures.get_mut(&client_key) {
            times.pop();
        }
        failures.remove(&account_key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Actor {
        Actor {
            name: "setup".into(),
            via: "cli".into(),
            client_ip: String::new(),
        }
    }

    #[test]
    fn a_user_signs_in_with_the_right_password_only_and_loses_sessions_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let users = Users::new(store.clone()).unwrap();
        users
            .add("ann", Role::Operator, "correct horse battery", &admin())
            .unwrap();
        assert!(matches!(
            users.add("ann", Role::Admin, "another long password", &admin()),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(
            users.add("bob", Role::Scan, "another long password", &admin()),
            Err(UserError::Role)
        ));
        assert!(matches!(
            users.add("bob", Role::Viewer, "short", &admin()),
            Err(UserError::Password)
        ));
        let stored: String = store
            .lock()
            .query_row("SELECT password_hash FROM users WHERE name = 'ann'", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(users.sign_in("ann", "wrong password!!", "192.0.2.1").unwrap().is_none());
        assert!(
            users
                .sign_in("nobody", "correct horse battery", "192.0.2.1")
                .unwrap()
                .is_none()
        );
        let opened = users
            .sign_in("ann", "correct horse battery", "192.0.2.1")
            .unwrap()
            .unwrap();
        let session = users.session(&opened.token).unwrap().unwrap();
        assert_eq!(session.user, "ann");
        assert_eq!(session.role, Role::Operator);
        assert_eq!(session.csrf, opened.session.csrf);
        assert!(users.session("forged").unwrap().is_none());
        users.set_role("ann", Role::Viewer, &admin()).unwrap();
        assert!(
            users.session(&opened.token).unwrap().is_none(),
            "a role change ends sessions"
        );
        let again = users
            .sign_in("ann", "correct horse battery", "192.0.2.1")
            .unwrap()
            .unwrap();
        assert_eq!(users.session(&again.token).unwrap().unwrap().role, Role::Viewer);
        users.sign_out(&again.token, &admin()).unwrap();
        assert!(users.session(&again.token).unwrap().is_none());
        let actions: Vec<String> = store
            .audit_log(&crate::audit::AuditQuery {
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|entry| entry.action)
            .collect();
        assert_eq!(
            actions,
            [
                "session.logout",
                "session.login",
                "user.role",
                "session.login",
                "session.login_failed",
                "session.login_failed",
                "user.add"
            ]
        );
    }

    #[test]
    fn the_throttle_refuses_after_the_limit_per_account_and_per_client() {
        let throttle = SignInThrottle::new(Duration::from_secs(60), 3, 2);
        // Two attempts in flight for ann: both counted before either is checked.
        assert_eq!(throttle.attempt("192.0.2.1", "ann"), Ok(()));
        assert_eq!(throttle.attempt("192.0.2.2", "ann"), Ok(()));
        assert!(
            throttle.attempt("192.0.2.3", "ann").is_err(),
            "the account is locked from anywhere"
        );
        assert_eq!(throttle.attempt("192.0.2.1", "bob"), Ok(()));
        assert_eq!(throttle.attempt("192.0.2.1", "carol"), Ok(()));
        assert!(
            throttle.attempt("192.0.2.1", "dave").is_err(),
            "the client is locked for any account"
        );
        assert_eq!(throttle.attempt("192.0.2.9", "dave"), Ok(()));
        // A success gives its attempt back: dave may try again from there.
        throttle.succeeded("192.0.2.9", "dave");
        assert_eq!(throttle.attempt("192.0.2.9", "dave"), Ok(()));
        // An IPv6 client is its /64.
        let v6 = SignInThrottle::new(Duration::from_secs(60), 2, 100);
        assert_eq!(v6.attempt("2001:db8:1:2::1", "a"), Ok(()));
        assert_eq!(v6.attempt("2001:db8:1:2::ffff", "b"), Ok(()));
        assert!(v6.attempt("2001:db8:1:2:aaaa::3", "c").is_err());
        assert_eq!(v6.attempt("2001:db8:1:3::1", "d"), Ok(()));
    }
}
