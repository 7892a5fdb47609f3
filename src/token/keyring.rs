//! The key ring: several HMAC keys with ids, one active for signing, older ones still verifying
//! until retired. Stored as JSON in the data directory with owner-only permissions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub(crate) type HmacSha256 = Hmac<Sha256>;

const KEYRING_FILE: &str = "keys.json";
const SECRET_LEN: usize = 32;

/// Where a key stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs new links (exactly one key) and verifies.
    Active,
    /// Rotated out: verifies links it signed, signs nothing new.
    Verifying,
    /// Its links answer "link expired".
    Retired,
}

impl std::fmt::Display for KeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyState::Active => "active",
            KeyState::Verifying => "verifying",
            KeyState::Retired => "retired",
        })
    }
}

/// One signing key.
#[derive(Clone, Serialize, Deserialize)]
pub struct Key {
    pub id: String,
    #[serde(with = "secret_b64")]
    secret: [u8; SECRET_LEN],
    /// Unix seconds.
    pub created: u64,
    pub state: KeyState,
    /// HMAC state with the key already absorbed: cloning it saves two SHA-256 blocks per link.
    #[serde(skip)]
    keyed: Option<HmacSha256>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Key {
    fn generate(existing: &[Key]) -> Self {
        let mut rng = rand::rng();
        let id = loop {
            let candidate = format!("{:06x}", rng.next_u32() & 0x00ff_ffff);
            if existing.iter().all(|k| k.id != candidate) {
                break candidate;
            }
        };
        let mut secret = [0u8; SECRET_LEN];
        rng.fill_bytes(&mut secret);
        let mut key = Key {
            id,
            secret,
            created: unix_now(),
            state: KeyState::Verifying,
            keyed: None,
        };
        key.prepare();
        key
    }

    fn prepare(&mut self) {
        self.keyed = Some(HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length"));
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        match &self.keyed {
            Some(m) => m.clone(),
            None => HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length"),
        }
    }
}

mod secret_b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8; SECRET_LEN], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; SECRET_LEN], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = B64.decode(text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("key secret must be 32 bytes"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("key ring {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key ring {path} is corrupt: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("key ring {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("no key with id {0:?}")]
    NoSuchKey(String),
    #[error("key {0:?} is the active key: rotate first, then retire it")]
    RetireActive(String),
}

#[derive(Serialize, Deserialize)]
struct KeyRingFile {
    keys: Vec<Key>,
}

/// The set of keys, loaded from and saved to `<data_dir>/keys.json`.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
    path: Option<PathBuf>,
}

impl KeyRing {
    /// A ring with one fresh active key, kept in memory only (tests, benchmarks).
    pub fn ephemeral() -> Self {
        let mut ring = KeyRing {
            keys: Vec::new(),
            path: None,
        };
        ring.add_key(true);
        ring
    }

    /// Opens the ring in `data_dir`, creating the directory and a first active key on first use.
    pub fn open_or_create(data_dir: &Path) -> Result<Self, KeyRingError> {
        let path = data_dir.join(KEYRING_FILE);
        if path.exists() {
            return Self::load(&path);
        }
        create_private_dir(data_dir).map_err(|source| KeyRingError::Io {
            path: data_dir.into(),
            source,
        })?;
        let mut ring = KeyRing {
            keys: Vec::new(),
            path: Some(path),
        };
        ring.add_key(true);
        ring.save()?;
        Ok(ring)
    }

    fn load(path: &Path) -> Result<Self, KeyRingError> {
        let text = fs::read(path).map_err(|source| KeyRingError::Io {
            path: path.into(),
            source,
        })?;
        let file: KeyRingFile = serde_json::from_slice(&text).map_err(|source| KeyRingError::Corrupt {
            path: path.into(),
            source,
        })?;
        let mut ring = KeyRing {
            keys: file.keys,
            path: Some(path.into()),
        };
        let active = ring.keys.iter().filter(|k| k.state == KeyState::Active).count();
        if active > 1 {
            return Err(KeyRingError::Invalid {
                path: path.into(),
                reason: format!("{active} active keys"),
            });
        }
        ring.keys.iter_mut().for_each(Key::prepare);
        Ok(ring)
    }

    /// Writes the ring atomically (temporary file, fsync, rename) with mode 0600.
    pub fn save(&self) -> Result<(), KeyRingError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| KeyRingError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(&KeyRingFile {
            keys: self.keys.clone(),
        })
        .expect("key ring serialises");
        let tmp = path.with_extension("json.tmp");
        let mut file = private_file(&tmp).map_err(io)?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    fn add_key(&mut self, make_active: bool) -> &Key {
        let mut key = Key::generate(&self.keys);
        if make_active || self.active().is_none() {
            self.keys
                .iter_mut()
                .filter(|k| k.state == KeyState::Active)
                .for_each(|k| k.state = KeyState::Verifying);
            key.state = KeyState::Active;
        }
        self.keys.push(key);
        self.keys.last().expect("just pushed")
    }

    /// Adds a key that verifies but does not sign (it becomes active only if the ring has none).
    pub fn generate(&mut self) -> Result<Key, KeyRingError> {
        let key = self.add_key(false).clone();
        self.save()?;
        Ok(key)
    }

    /// Adds a key and makes it the active one; the previous active key keeps verifying.
    pub fn rotate(&mut self) -> Result<Key, KeyRingError> {
        let key = self.add_key(true).clone();
        self.save()?;
        Ok(key)
    }

    /// Retires a key: links it signed answer "link expired" from now on.
    pub fn retire(&mut self, id: &str) -> Result<(), KeyRingError> {
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyRingError::NoSuchKey(id.into()))?;
        if key.state == KeyState::Active {
            return Err(KeyRingError::RetireActive(id.into()));
        }
        key.state = KeyState::Retired;
        self.save()
    }

    /// Signs `data` under a purpose label with the active key: `kid.mac` (base64url, 128 bits).
    /// Used for short-lived tokens such as click-through links.
    pub fn sign_token(&self, purpose: &str, data: &[u8]) -> Option<String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = self.active()?;
        let mut mac = key.mac();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        Some(format!(
            "{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
        ))
    }

    /// Verifies a [`KeyRing::sign_token`] token in constant time; retired keys never verify.
    pub fn verify_token(&self, purpose: &str, data: &[u8], token: &str) -> bool {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Some((kid, tag)) = token.split_once('.') else {
            return false;
        };
        let Some(key) = self.get(kid).filter(|k| k.state != KeyState::Retired) else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let mut mac = key.mac();
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        tag.len() == 16 && mac.verify_truncated_left(&tag).is_ok()
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    pub fn active(&self) -> Option<&Key> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }

    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Creates `dir` (and parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The key ring a running server signs and verifies with. `keys rotate` and `keys retire` change
/// the file; [`LiveKeyRing::reload_if_changed`] (polled every second, and on SIGHUP) swaps the new
/// ring in, so an emergency retirement takes effect in seconds without a restart. Readers take a
/// snapshot per message or click, so one message is never signed with two rings.
#[derive(Clone, Debug)]
pub struct LiveKeyRing {
    current: Arc<RwLock<Arc<KeyRing>>>,
    seen: Arc<Mutex<Option<FileStamp>>>,
}

/// What identifies one version of the key file without reading it.
type FileStamp = (std::time::SystemTime, u64);

impl LiveKeyRing {
    pub fn new(ring: KeyRing) -> Self {
        let seen = ring.path.as_deref().and_then(stamp_of);
        Self {
            current: Arc::new(RwLock::new(Arc::new(ring))),
            seen: Arc::new(Mutex::new(seen)),
        }
    }

    /// The ring as it is now.
    pub fn current(&self) -> Arc<KeyRing> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the key file again when it changed since the last look (`force`: whatever its time
    /// stamp says) and returns what changed, or `None` when nothing did. A file that does not
    /// load (half-written by hand, say) leaves the running ring in place and is reported.
    pub fn reload_if_changed(&self, force: bool) -> Result<Option<String>, KeyRingError> {
        let old = self.current();
        let Some(path) = old.path.clone() else {
            return Ok(None);
        };
        let stamp = stamp_of(&path);
        if !force && *self.seen.lock().unwrap_or_else(|p| p.into_inner()) == stamp {
            return Ok(None);
        }
        // A load that fails (out of descriptors, a file half-written by hand) is tried again on
        // the next look: the stamp is only taken once the new ring is in.
        let new = KeyRing::load(&path)?;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp;
        let changes = describe_changes(&old, &new);
        if changes.is_empty() {
            return Ok(None);
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
        Ok(Some(changes.join("; ")))
    }
}

impl From<KeyRing> for LiveKeyRing {
    fn from(ring: KeyRing) -> Self {
        Self::new(ring)
    }
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let metadata = fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// `key abc123: verifying -> retired`, `key def456 added (active)`, one entry per key that changed.
fn describe_changes(old: &KeyRing, new: &KeyRing) -> Vec<String> {
    let mut changes = Vec::new();
    for key in &new.keys {
        match old.get(&key.id) {
            None => changes.push(format!("key {} added ({})", key.id, key.state)),
            Some(before) if before.state != key.state => {
                changes.push(format!("key {}: {} -> {}", key.id, before.state, key.state))
            }
            Some(before) if before.secret != key.secret => changes.push(format!("key {}: secret replaced", key.id)),
            Some(_) => {}
        }
    }
    for key in &old.keys {
        if new.get(&key.id).is_none() {
            changes.push(format!("key {} removed", key.id));
        }
    }
    changes
}
