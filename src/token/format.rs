//! Encoding and verification of our own links.
//!
//! `{base}/v1/{kid}/{ctx}/__{readable}__;{replaced}!{mac}`: the destination stays readable, every
//! byte that is unsafe in a URL path is shown as `*` and carried in `replaced`, and the MAC binds
//! version, key id, context and the exact destination bytes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::Mac;

use super::keyring::{HmacSha256, KeyRing, KeyState};

/// The format version carried in every link path (`/v1/`).
pub const LINK_VERSION: u8 = 1;
const VERSION_SEGMENT: &str = "/v1/";
/// MAC length in bytes: HMAC-SHA256 truncated to 128 bits.
const MAC_LEN: usize = 16;
const MAC_DOMAIN: &[u8] = b"portcullis-link\0";
const RECIPIENT_DOMAIN: &[u8] = b"portcullis-rcpt\0";
/// Longest message reference a link carries.
pub const MAX_MESSAGE_REF: usize = 64;
/// Longest recipient reference a link carries.
pub const MAX_RECIPIENT_REF: usize = 32;
/// Length of the keyed recipient pseudonym.
const RECIPIENT_REF_LEN: usize = 12;
/// Refuse to verify absurdly long links before doing any work on them.
const MAX_LINK_LEN: usize = 64 * 1024;

/// Policy flags signed into a link. They can only make click-time policy stricter.
pub mod policy {
    /// Always show the warning page, whatever the verdict.
    pub const FORCE_WARN: u8 = 0b0000_0001;
    /// Never offer click-through on a warning page.
    pub const NO_CLICK_THROUGH: u8 = 0b0000_0010;
    /// Treat "reputation could not answer" as blocked.
    pub const FAIL_CLOSED: u8 = 0b0000_0100;
    /// Every flag this version knows; links with other bits set are refused.
    pub const KNOWN: u8 = FORCE_WARN | NO_CLICK_THROUGH | FAIL_CLOSED;
}

/// What a link says about where it came from, bound into its MAC.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LinkContext {
    /// Opaque message reference (the message index key).
    pub message_ref: Vec<u8>,
    /// Keyed recipient pseudonym; empty when links are per message.
    pub recipient_ref: Vec<u8>,
    /// Unix seconds when the link was issued.
    pub issued_at: u32,
    /// [`policy`] flags.
    pub flags: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    #[error("message reference is {0} bytes; at most {MAX_MESSAGE_REF} fit in a link")]
    MessageRefTooLong(usize),
    #[error("recipient reference is {0} bytes; at most {MAX_RECIPIENT_REF} fit in a link")]
    RecipientRefTooLong(usize),
    #[error("unknown policy flags {0:#04x}")]
    UnknownFlags(u8),
}

impl LinkContext {
    /// Whether this context fits in a link.
    pub fn check(&self) -> Result<(), ContextError> {
        if self.message_ref.len() > MAX_MESSAGE_REF {
            return Err(ContextError::MessageRefTooLong(self.message_ref.len()));
        }
        if self.recipient_ref.len() > MAX_RECIPIENT_REF {
            return Err(ContextError::RecipientRefTooLong(self.recipient_ref.len()));
        }
        if self.flags & !policy::KNOWN != 0 {
            return Err(ContextError::UnknownFlags(self.flags));
        }
        Ok(())
    }

    fn to_bytes(&self) -> Result<Vec<u8>, ContextError> {
        self.check()?;
        let mut out = Vec::with_capacity(7 + self.message_ref.len() + self.recipient_ref.len());
        out.push(self.flags);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.push(self.message_ref.len() as u8);
        out.extend_from_slice(&self.message_ref);
        out.push(self.recipient_ref.len() as u8);
        out.extend_from_slice(&self.recipient_ref);
        Ok(out)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, LinkError> {
        let bad = || LinkError::Malformed("context");
        let (&flags, rest) = bytes.split_first().ok_or_else(bad)?;
        if flags & !policy::KNOWN != 0 {
            return Err(bad());
        }
        let issued: [u8; 4] = rest.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let rest = &rest[4..];
        let (message_ref, rest) = take_len_prefixed(rest, MAX_MESSAGE_REF).ok_or_else(bad)?;
        let (recipient_ref, rest) = take_len_prefixed(rest, MAX_RECIPIENT_REF).ok_or_else(bad)?;
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            message_ref: message_ref.to_vec(),
            recipient_ref: recipient_ref.to_vec(),
            issued_at: u32::from_be_bytes(issued),
            flags,
        })
    }
}

fn take_len_prefixed(bytes: &[u8], max: usize) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = bytes.split_first()?;
    let len = usize::from(len);
    if len > max || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// Why a link does not verify. Every variant means: never redirect.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("not a Portcullis link")]
    NotOurs,
    #[error("malformed link: bad {0}")]
    Malformed(&'static str),
    #[error("link signed with unknown key {0:?}")]
    UnknownKey(String),
    #[error("link expired: key {0:?} has been retired")]
    Expired(String),
    #[error("link signature does not verify")]
    BadSignature,
    #[error("the key ring has no active key to sign with")]
    NoActiveKey,
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// A link whose MAC verified: the destination and the context are authentic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedLink {
    pub url: String,
    pub key_id: String,
    pub context: LinkContext,
}

/// Bytes shown as they are in the readable part. Everything else becomes `*` and travels in the
/// replaced-bytes field. Chosen so that browsers, mail clients and HTTP servers pass them through
/// unchanged in a path or query: no `%` (decoders would touch it), no `'` (percent-encoded in
/// queries), no `;` `*` `!` (our separators), no `#` (would start a fragment).
fn is_readable_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'/' | b':' | b'@' | b'$' | b'&' | b'(' | b')' | b'+' | b',' | b'=' | b'?'
        )
}

/// Browsers remove `.` and `..` path segments before sending a request, so a dot that makes up a
/// whole segment of the destination is carried as a replaced byte.
fn dot_segment_mask(url: &[u8]) -> Vec<bool> {
    let mut mask = vec![false; url.len()];
    let mut i = 0;
    while i < url.len() {
        if url[i] == b'.' && (i == 0 || matches!(url[i - 1], b'/' | b'\\')) {
            let mut j = i;
            while j < url.len() && url[j] == b'.' {
                j += 1;
            }
            if j - i <= 2 && (j == url.len() || matches!(url[j], b'/' | b'\\' | b'?')) {
                mask[i..j].iter_mut().for_each(|m| *m = true);
            }
            i = j;
        } else {
            i += 1;
        }
    }
    mask
}

fn split_readable(url: &[u8]) -> (String, Vec<u8>) {
    let dots = dot_segment_mask(url);
    let mut readable = String::with_capacity(url.len());
    let mut replaced = Vec::new();
    for (i, &b) in url.iter().enumerate() {
        if is_readable_byte(b) && !dots[i] {
            readable.push(b as char);
        } else {
            readable.push('*');
            replaced.push(b);
        }
    }
    (readable, replaced)
}

fn join_readable(readable: &str, replaced: &[u8]) -> Result<Vec<u8>, LinkError> {
    let mut out = Vec::with_capacity(readable.len());
    let mut next = replaced.iter();
    for b in readable.bytes() {
        if b == b'*' {
            out.push(*next.next().ok_or(LinkError::Malformed("replaced bytes"))?);
        } else if is_readable_byte(b) {
            out.push(b);
        } else {
            return Err(LinkError::Malformed("readable destination"));
        }
    }
    if next.next().is_some() {
        return Err(LinkError::Malformed("replaced bytes"));
    }
    Ok(out)
}

fn mac_input(mac: &mut HmacSha256, key_id: &str, context: &[u8], url: &[u8]) {
    mac.update(MAC_DOMAIN);
    mac.update(&[LINK_VERSION, key_id.len() as u8]);
    mac.update(key_id.as_bytes());
    mac.update(&(context.len() as u16).to_be_bytes());
    mac.update(context);
    mac.update(url);
}

impl KeyRing {
    /// Signs `url` with the active key and returns the link under `base` (no trailing slash).
    pub fn sign(&self, base: &str, url: &str, context: &LinkContext) -> Result<String, LinkError> {
        let key = self.active().ok_or(LinkError::NoActiveKey)?;
        let ctx = context.to_bytes()?;
        let mut mac = key.mac();
        mac_input(&mut mac, &key.id, &ctx, url.as_bytes());
        let tag = mac.finalize().into_bytes();
        let (readable, replaced) = split_readable(url.as_bytes());
        let base = base.trim_end_matches('/');
        let mut link = String::with_capacity(base.len() + readable.len() + 96);
        link.push_str(base);
        link.push_str(VERSION_SEGMENT);
        link.push_str(&key.id);
        link.push('/');
        B64.encode_string(&ctx, &mut link);
        link.push_str("/__");
        link.push_str(&readable);
        link.push_str("__;");
        B64.encode_string(&replaced, &mut link);
        link.push('!');
        B64.encode_string(&tag[..MAC_LEN], &mut link);
        Ok(link)
    }

    /// The keyed pseudonym of a recipient address under the active key: stable for one key,
    /// meaningless without the key, mapped back to the address only through the message index.
    pub fn recipient_ref(&self, address: &str) -> Result<Vec<u8>, LinkError> {
        let key = self.active().ok_or(LinkError::NoActiveKey)?;
        Ok(recipient_ref_under(key, address))
    }

    /// The recipient's pseudonym under every key in the ring: what links signed at any time
    /// carry for them, for finding their clicks.
    pub fn recipient_refs(&self, address: &str) -> Vec<Vec<u8>> {
        self.keys()
            .iter()
            .map(|key| recipient_ref_under(key, address))
            .collect()
    }

    /// Verifies a link (any base URL, or only its path) in constant time over the MAC and returns what it binds.
    pub fn verify(&self, link: &str) -> Result<VerifiedLink, LinkError> {
        let parts = LinkParts::parse(link)?;
        let key = self
            .get(parts.key_id)
            .ok_or_else(|| LinkError::UnknownKey(parts.key_id.to_string()))?;
        let context = B64.decode(parts.context).map_err(|_| LinkError::Malformed("context"))?;
        let replaced = B64
            .decode(parts.replaced)
            .map_err(|_| LinkError::Malformed("replaced bytes"))?;
        let tag = B64.decode(parts.mac).map_err(|_| LinkError::Malformed("signature"))?;
        if tag.len() != MAC_LEN {
            return Err(LinkError::Malformed("signature"));
        }
        let url = join_readable(parts.readable, &replaced)?;
        let mut mac = key.mac();
        mac_input(&mut mac, &key.id, &context, &url);
        mac.verify_truncated_left(&tag).map_err(|_| LinkError::BadSignature)?;
        // Checked after the MAC so a retired key's links say "expired" only when they are genuine.
        if key.state == KeyState::Retired {
            return Err(LinkError::Expired(key.id.clone()));
        }
        let url = String::from_utf8(url).map_err(|_| LinkError::Malformed("destination encoding"))?;
        Ok(VerifiedLink {
            url,
            key_id: key.id.clone(),
            context: LinkContext::from_bytes(&context)?,
        })
    }
}

/// Whether `link` has the shape of one of our links under `base`.
pub fn is_own_link(base: &str, link: &str) -> bool {
    let base = base.trim_end_matches('/');
    link.len() > base.len()
        && link.as_bytes()[..base.len()].eq_ignore_ascii_case(base.as_bytes())
        && link[base.len()..].starts_with(VERSION_SEGMENT)
}

struct LinkParts<'a> {
    key_id: &'a str,
    context: &'a str,
    readable: &'a str,
    replaced: &'a str,
    mac: &'a str,
}

impl<'a> LinkParts<'a> {
    fn parse(link: &'a str) -> Result<Self, LinkError> {
        if link.len() > MAX_LINK_LEN {
            return Err(LinkError::Malformed("length"));
        }
        // A full link under any base, or just its path (what the click service receives).
        let after_scheme = if link.starts_with('/') {
            link
        } else {
            link.strip_prefix("https://")
                .or_else(|| link.strip_prefix("http://"))
                .ok_or(LinkError::NotOurs)?
        };
        let start = after_scheme.find(VERSION_SEGMENT).ok_or(LinkError::NotOurs)?;
        let rest = &after_scheme[start + VERSION_SEGMENT.len()..];
        let (key_id, rest) = rest.split_once('/').ok_or(LinkError::Malformed("key id"))?;
        if key_id.is_empty() || key_id.len() > 16 || !key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LinkError::Malformed("key id"));
        }
        let (context, rest) = rest.split_once("/__").ok_or(LinkError::Malformed("context"))?;
        let (readable, tail) = rest.rsplit_once(';').ok_or(LinkError::Malformed("separator"))?;
        let readable = readable.strip_suffix("__").ok_or(LinkError::Malformed("separator"))?;
        let (replaced, mac) = tail.split_once('!').ok_or(LinkError::Malformed("signature"))?;
        Ok(Self {
            key_id,
            context,
            readable,
            replaced,
            mac,
        })
    }
}

fn recipient_ref_under(key: &super::Key, address: &str) -> Vec<u8> {
    let mut mac = key.mac();
    mac.update(RECIPIENT_DOMAIN);
    mac.update(address.trim().to_lowercase().as_bytes());
    mac.finalize().into_bytes()[..RECIPIENT_REF_LEN].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_replaced() {
        let (readable, replaced) = split_readable(b"https://x.org/a/../b/./c?d=..");
        assert_eq!(readable, "https://x.org/a/**/b/*/c?d=..");
        assert_eq!(replaced, b"...");
    }

    #[test]
    fn context_round_trips() {
        let ctx = LinkContext {
            message_ref: b"m1".to_vec(),
            recipient_ref: vec![9; 12],
            issued_at: 7,
            flags: 3,
        };
        assert_eq!(LinkContext::from_bytes(&ctx.to_bytes().unwrap()).unwrap(), ctx);
    }
}
