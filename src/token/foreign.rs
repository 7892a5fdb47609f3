//! Decoders for other vendors' rewritten links: Proofpoint URL Defense v1, v2, v3 and Microsoft
//! Safe Links, nested up to a bounded depth. Links copied out of HTML (`&amp;`) are accepted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

/// How many wrapper layers we peel before giving up on a link.
pub const MAX_FOREIGN_DEPTH: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForeignVendor {
    ProofpointV1,
    ProofpointV2,
    ProofpointV3,
    SafeLinks,
}

impl ForeignVendor {
    pub fn name(self) -> &'static str {
        match self {
            ForeignVendor::ProofpointV1 => "proofpoint-v1",
            ForeignVendor::ProofpointV2 => "proofpoint-v2",
            ForeignVendor::ProofpointV3 => "proofpoint-v3",
            ForeignVendor::SafeLinks => "safelinks",
        }
    }
}

/// A foreign wrapper and the destination inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignLink {
    /// The outermost wrapper.
    pub vendor: ForeignVendor,
    /// The destination once every layer we could peel is peeled.
    pub inner: String,
    /// How many layers were peeled.
    pub layers: usize,
    /// True when [`MAX_FOREIGN_DEPTH`] stopped the peeling: `inner` is itself still wrapped.
    pub depth_exceeded: bool,
}

/// Peels every foreign wrapper around `link`. `None` when the outermost link is no wrapper we know
/// or its payload does not decode.
pub fn unwrap_foreign(link: &str) -> Option<ForeignLink> {
    let (vendor, mut inner) = decode_layer(link)?;
    let mut layers = 1;
    while let Some((_, next)) = decode_layer(&inner) {
        if layers == MAX_FOREIGN_DEPTH {
            return Some(ForeignLink {
                vendor,
                inner,
                layers,
                depth_exceeded: true,
            });
        }
        inner = next;
        layers += 1;
    }
    Some(ForeignLink {
        vendor,
        inner,
        layers,
        depth_exceeded: false,
    })
}

fn decode_layer(link: &str) -> Option<(ForeignVendor, String)> {
    let link = link.trim();
    let rest = strip_prefix_ignore_case(link, "https://").or_else(|| strip_prefix_ignore_case(link, "http://"))?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..host_end].to_ascii_lowercase();
    let after_host = &rest[host_end..];
    if matches!(
        host.as_str(),
        "urldefense.proofpoint.com" | "urldefense.com" | "urldefense.us"
    ) {
        if let Some(v3) = after_host.strip_prefix("/v3/__") {
            return decode_proofpoint_v3(v3).map(|u| (ForeignVendor::ProofpointV3, u));
        }
        let query = html_unescape_amp(after_host.split_once('?')?.1);
        let u = query_param(&query, "u")?;
        if after_host.starts_with("/v1/") {
            return Some((ForeignVendor::ProofpointV1, u));
        }
        if after_host.starts_with("/v2/") {
            let translated: String = u
                .chars()
                .map(|c| match c {
                    '-' => '%',
                    '_' => '/',
                    other => other,
                })
                .collect();
            let bytes = percent_decode(translated.as_bytes());
            return String::from_utf8(bytes).ok().map(|u| (ForeignVendor::ProofpointV2, u));
        }
        return None;
    }
    if host == "safelinks.protection.outlook.com" || host.ends_with(".safelinks.protection.outlook.com") {
        let query = html_unescape_amp(after_host.split_once('?')?.1);
        return query_param(&query, "url").map(|u| (ForeignVendor::SafeLinks, u));
    }
    None
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
        .then(|| &s[prefix.len()..])
}

fn html_unescape_amp(query: &str) -> String {
    query.replace("&amp;", "&")
}

fn query_param(query: &str, name: &str) -> Option<String> {
    let query = query.split('#').next().unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(h), Some(l)) = (input.get(i + 1).and_then(hex), input.get(i + 2).and_then(hex))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

fn hex(b: &u8) -> Option<u8> {
    (*b as char).to_digit(16).map(|d| d as u8)
}

/// v3: `__<url with * tokens>__;<base64url of the replaced bytes>!<customer>!<signature>$`.
/// `*` stands for one replaced byte; `**X` for a run whose length X encodes (A = 2 … _ = 65).
fn decode_proofpoint_v3(payload: &str) -> Option<String> {
    let (embedded, rest) = payload.split_once("__;")?;
    let (encoded, _) = rest.split_once('!')?;
    let replaced = URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    let mut replaced = replaced.as_slice();
    let mut out = Vec::with_capacity(embedded.len());
    let mut bytes = embedded.as_bytes().iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b != b'*' {
            out.push(b);
            continue;
        }
        let run = if bytes.peek() == Some(&b'*') {
            bytes.next();
            v3_run_length(bytes.next()?)?
        } else {
            1
        };
        if replaced.len() < run {
            return None;
        }
        let (taken, left) = replaced.split_at(run);
        out.extend_from_slice(taken);
        replaced = left;
    }
    String::from_utf8(out).ok()
}

fn v3_run_length(c: u8) -> Option<usize> {
    let index = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(usize::from(index) + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_wrappers_are_peeled() {
        let inner = "https://urldefense.com/v3/__https://example.com/a__;!!x!y$";
        let outer = format!(
            "https://nam01.safelinks.protection.outlook.com/?url={}&amp;data=x",
            url::form_urlencoded::byte_serialize(inner.as_bytes()).collect::<String>()
        );
        let link = unwrap_foreign(&outer).unwrap();
        assert_eq!(link.vendor, ForeignVendor::SafeLinks);
        assert_eq!(link.inner, "https://example.com/a");
        assert_eq!(link.layers, 2);
    }

    #[test]
    fn not_a_wrapper() {
        assert!(unwrap_foreign("https://example.com/?url=x").is_none());
        assert!(unwrap_foreign("https://urldefense.com/v3/__broken").is_none());
    }
}
