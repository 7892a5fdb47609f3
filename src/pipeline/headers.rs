//! The header block of a filtered message: removing what outsiders may not set, adding what we
//! stamp. Works on raw bytes; everything outside the removed fields is copied unchanged.

use crate::rewrite::mime::parse_headers;

/// Header fields only Portcullis may set. Any copy arriving from outside is removed so a sender
/// cannot forge a verdict; `Authentication-Results` is removed when it claims our authserv-id.
pub fn strip_forgeable(message: &[u8], authserv_id: &str) -> Vec<u8> {
    remove_fields(message, |name, value| {
        name.starts_with("x-portcullis-")
            || (name == "authentication-results" && authserv_id_of(value).eq_ignore_ascii_case(authserv_id))
    })
}

/// Removes the top-level header fields `remove(lower-case name, value)` picks, folded lines and
/// all; every other byte is copied unchanged.
pub fn remove_fields(message: &[u8], remove: impl Fn(&str, &str) -> bool) -> Vec<u8> {
    let headers = parse_headers(message);
    let mut out = Vec::with_capacity(message.len());
    let mut copied = 0;
    for (name, value, range) in &headers.fields {
        if remove(name, value) {
            out.extend_from_slice(&message[copied..range.start]);
            copied = range.end;
        }
    }
    out.extend_from_slice(&message[copied..]);
    out
}

/// Puts `prefix` before the subject (RFC 2047-encoded when it is not ASCII); adds a subject when
/// there is none.
pub fn prefix_subject(message: &[u8], prefix: &str) -> Vec<u8> {
    let prefix = clean(prefix);
    let prefix = if prefix.is_ascii() {
        prefix
    } else {
        use base64::Engine;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(prefix.as_bytes())
        )
    };
    let headers = parse_headers(message);
    let Some((_, _, range)) = headers.fields.iter().find(|(name, _, _)| name == "subject") else {
        return prepend(message, &[format!("Subject: {prefix}\r\n")]);
    };
    let field = &message[range.clone()];
    let colon = memchr::memchr(b':', field).map_or(field.len(), |at| at + 1);
    let mut out = Vec::with_capacity(message.len() + prefix.len() + 1);
    out.extend_from_slice(&message[..range.start + colon]);
    out.push(b' ');
    out.extend_from_slice(prefix.as_bytes());
    // Only spaces and tabs go: the line's own ending (and any folded lines) must stay, or the
    // next field, or the body, would join the subject.
    let rest = &field[colon..];
    let value = &rest[rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(rest.len())..];
    if !value.starts_with(b"\r") && !value.starts_with(b"\n") {
        out.push(b' ');
    }
    out.extend_from_slice(value);
    out.extend_from_slice(&message[range.end..]);
    out
}

fn authserv_id_of(value: &str) -> &str {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
}

/// Prepends complete header fields (each ending in CRLF).
pub fn prepend(message: &[u8], fields: &[String]) -> Vec<u8> {
    let size = fields.iter().map(String::len).sum::<usize>() + message.len();
    let mut out = Vec::with_capacity(size);
    for field in fields {
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(message);
    out
}

/// Header values we put on the wire: no line breaks from attacker-controlled text.
pub fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// How many `Received:` fields the message carries (the hop count).
pub fn hop_count(message: &[u8]) -> usize {
    parse_headers(message)
        .fields
        .iter()
        .filter(|(name, _, _)| name == "received")
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prefix_keeps_the_rest() {
        let message = b"From: a@b.test\r\nSubject: =?UTF-8?Q?caf=C3=A9?=\r\n\tmenu\r\n\r\nbody\r\n";
        assert_eq!(
            String::from_utf8(prefix_subject(message, "[EXT]")).unwrap(),
            "From: a@b.test\r\nSubject: [EXT] =?UTF-8?Q?caf=C3=A9?=\r\n\tmenu\r\n\r\nbody\r\n"
        );
        // An empty subject last in the header block keeps its line end and the blank line after it.
        let empty = prefix_subject(
            b"From: a@b.test\r\nSubject:\r\n\r\nX-Portcullis-Spam-Flag: NO\r\n",
            "[EXT]",
        );
        assert_eq!(
            String::from_utf8(empty).unwrap(),
            "From: a@b.test\r\nSubject: [EXT]\r\n\r\nX-Portcullis-Spam-Flag: NO\r\n"
        );
        let bare_lf = prefix_subject(b"Subject: hi\nFrom: a@b.test\n\nbody\n", "[EXT]");
        assert_eq!(
            String::from_utf8(bare_lf).unwrap(),
            "Subject: [EXT] hi\nFrom: a@b.test\n\nbody\n"
        );
        let none = prefix_subject(b"From: a@b.test\r\n\r\nbody\r\n", "[外部]");
        assert!(
            String::from_utf8(none)
                .unwrap()
                .starts_with("Subject: =?UTF-8?B?W+WklumDqF0=?=\r\nFrom:")
        );
    }

    #[test]
    fn removes_forged_verdicts_only() {
        let message = b"X-Portcullis-Spam-Flag: NO\r\nAuthentication-Results: gw.example; spf=pass\r\n\
Authentication-Results: other.example; dkim=pass\r\nX-PORTCULLIS-Virus-Details: clean\r\n\tfolded\r\n\
Subject: hi\r\n\r\nX-Portcullis-Spam-Flag: NO in the body stays\r\n";
        let out = strip_forgeable(message, "gw.example");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Authentication-Results: other.example; dkim=pass\r\nSubject: hi\r\n\r\n\
X-Portcullis-Spam-Flag: NO in the body stays\r\n"
        );
    }
}
