//! The header block of a filtered message: removing what outsiders may not set, adding what we
//! stamp. Works on raw bytes; everything outside the removed fields is copied unchanged.

use crate::rewrite::mime::parse_headers;

/// Header fields only Portcullis may set. Any copy arriving from outside is removed so a sender
/// cannot forge a verdict; `Authentication-Results` is removed when it claims our authserv-id.
pub fn strip_forgeable(message: &[u8], authserv_id: &str) -> Vec<u8> {
    let headers = parse_headers(message);
    let mut out = Vec::with_capacity(message.len());
    let mut copied = 0;
    for (name, value, range) in &headers.fields {
        let ours = name.starts_with("x-portcullis-")
            || (name == "authentication-results" && authserv_id_of(value).eq_ignore_ascii_case(authserv_id));
        if ours {
            out.extend_from_slice(&message[copied..range.start]);
            copied = range.end;
        }
    }
    out.extend_from_slice(&message[copied..]);
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
