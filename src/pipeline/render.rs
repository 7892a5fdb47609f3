//! Rendering: turning the one stored copy of an accepted message into the copy one recipient
//! gets — forgeable headers removed, links rewritten for that recipient, our verdict headers
//! stamped, an ARC set sealed on top. It runs when the copy is delivered (or released from
//! quarantine), not when the message is accepted, so the store holds each message once whatever
//! the number of recipients. Everything it needs from the analysis is in a [`RenderPlan`], stored
//! beside the message; nothing here looks anything up.

use serde::{Deserialize, Serialize};

use crate::pipeline::headers;
use crate::pipeline::seal::ArcKey;
use crate::rewrite::{MessageContext, Rewriter};

/// How every copy of one stored message is made; decided once, by the analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderPlan {
    /// Remove header fields only we may set (a forged verdict) before anything else.
    pub strip_forgeable: bool,
    /// Rewrite links into signed links to the click service.
    pub rewrite_links: bool,
    /// Header fields (each ending in CRLF) prepended to every copy.
    pub stamp: Vec<String>,
    /// The time signed into rewritten links: when the message arrived.
    pub issued_at: u32,
    /// Whether a release from quarantine delivers one copy per recipient (`pipeline.copies`).
    pub per_recipient: bool,
    /// What the ARC set on top of every copy asserts; `None` leaves copies unsealed.
    pub seal: Option<SealPlan>,
    /// Header fields a transport rule removes (lower-case names).
    #[serde(default)]
    pub remove_headers: Vec<String>,
    /// Put before the subject by a transport rule.
    #[serde(default)]
    pub subject_prefix: Option<String>,
}

impl RenderPlan {
    /// Delivered exactly as received: no header removed, no link rewritten, nothing stamped.
    pub fn as_received() -> RenderPlan {
        RenderPlan::default()
    }
}

/// What the analysis concluded about authentication, kept for sealing copies later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealPlan {
    /// The `ARC-Authentication-Results` payload (authserv-id and results) on one line.
    pub results: String,
    /// How many ARC sets the verified chain had, and whether it passed.
    pub chain_sets: usize,
    pub chain_pass: bool,
}

/// Makes recipients' copies. Shared by the delivery workers of the gateway and of the CLI.
pub struct Renderer {
    rewriter: Rewriter,
    arc: Option<ArcKey>,
    hostname: String,
}

impl Renderer {
    pub fn new(rewriter: Rewriter, arc: Option<ArcKey>, hostname: &str) -> Renderer {
        Renderer {
            rewriter,
            arc,
            hostname: hostname.to_string(),
        }
    }

    /// Whether copies get an ARC set (the gateway has a sealing key).
    pub fn seals(&self) -> bool {
        self.arc.is_some()
    }

    pub fn rewriter(&self) -> &Rewriter {
        &self.rewriter
    }

    /// The copy of `message` for `recipient` (`None`: one copy for every recipient). Never
    /// fails: a copy whose links cannot be rewritten goes out with them as they were (the analysis
    /// recorded that when it looked at the same bytes), one that cannot be sealed goes unsealed.
    pub fn render(&self, message: &[u8], plan: &RenderPlan, message_ref: &str, recipient: Option<&str>) -> Vec<u8> {
        let mut stripped = if plan.strip_forgeable {
            headers::strip_forgeable(message, &self.hostname)
        } else {
            message.to_vec()
        };
        if !plan.remove_headers.is_empty() {
            stripped = headers::remove_fields(&stripped, |name, _| plan.remove_headers.iter().any(|n| n == name));
        }
        if let Some(prefix) = &plan.subject_prefix {
            stripped = headers::prefix_subject(&stripped, prefix);
            // Whatever the edit did to the header block, nothing forged survives it.
            if plan.strip_forgeable {
                stripped = headers::strip_forgeable(&stripped, &self.hostname);
            }
        }
        let rewritten = if plan.rewrite_links {
            let context = MessageContext {
                message_ref: message_ref.as_bytes().to_vec(),
                recipient: recipient.map(str::to_string),
                issued_at: plan.issued_at,
                flags: 0,
            };
            match self.rewriter.rewrite(&stripped, &context) {
                Ok(rewritten) => rewritten.message,
                Err(error) => {
                    tracing::debug!(message_ref, %error, "links not rewritten in this copy");
                    stripped
                }
            }
        } else {
            stripped
        };
        let stamped = if plan.stamp.is_empty() {
            rewritten
        } else {
            headers::prepend(&rewritten, &plan.stamp)
        };
        match (&self.arc, &plan.seal) {
            (Some(key), Some(seal)) => match key.seal(&stamped, seal) {
                Ok(Some(sealed)) => sealed,
                Ok(None) => stamped,
                Err(error) => {
                    tracing::warn!(message_ref, %error, "not sealed");
                    stamped
                }
            },
            _ => stamped,
        }
    }
}

/// An `Authentication-Results` payload as one line of at most `limit` bytes. One line because
/// the ARC signature covers the field in relaxed canonical form and mail-auth writes the payload
/// as given; the full, folded field is stamped on the copy as `Authentication-Results` anyway.
/// When too long, results are dropped whole, DKIM ones first (a message can carry any number of
/// signatures; SPF, ARC and DMARC are what a downstream host trusts the seal for), and a payload
/// left with no result says `none`.
pub fn one_line_results(results: &str, limit: usize) -> String {
    let line = results.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() <= limit {
        return line;
    }
    let mut clauses = line.split(';').map(str::trim);
    let mut kept = clauses.next().unwrap_or_default().to_string();
    let (dkim, others): (Vec<&str>, Vec<&str>) = clauses.partition(|clause| clause.starts_with("dkim"));
    let mut added = 0;
    for clause in others.into_iter().chain(dkim) {
        if kept.len() + 2 + clause.len() <= limit {
            kept.push_str("; ");
            kept.push_str(clause);
            added += 1;
        }
    }
    if added == 0 {
        let mut end = limit.saturating_sub(6).min(kept.len());
        while !kept.is_char_boundary(end) {
            end -= 1;
        }
        kept.truncate(end);
        kept.push_str("; none");
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::one_line_results;

    #[test]
    fn results_fit_one_line() {
        let folded = "gw.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\tdkim=pass header.d=b.test";
        assert_eq!(
            one_line_results(folded, 900),
            "gw.test; spf=pass smtp.mailfrom=a@b.test; dkim=pass header.d=b.test"
        );
        assert_eq!(one_line_results(folded, 50), "gw.test; spf=pass smtp.mailfrom=a@b.test");
        let many = format!(
            "gw.test; spf=pass; {} arc=none; dmarc=pass header.from=b.test",
            "dkim=fail header.d=b.test header.s=é; ".repeat(40)
        );
        let cut = one_line_results(&many, 200);
        assert!(cut.len() <= 200, "{cut}");
        assert!(
            cut.starts_with("gw.test; spf=pass; arc=none; dmarc=pass header.from=b.test; dkim=fail"),
            "{cut}"
        );
        let bare = one_line_results(&"é".repeat(600), 100);
        assert!(bare.len() <= 100 && bare.ends_with("; none"), "{bare}");
    }
}
