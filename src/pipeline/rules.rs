//! Transport rules (the Exchange mail-flow rule idea, kept small): conditions on the envelope, the
//! headers and attachment names, and an action. Patterns are case-insensitive with `*` for any run.

use serde::{Deserialize, Serialize};

use crate::smtp::IpRange;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportRule {
    pub name: String,
    /// Envelope sender patterns (`*@example.net`); `<>` is the null sender.
    #[serde(default)]
    pub sender: Vec<String>,
    /// Envelope recipient patterns; the rule matches if any recipient does.
    #[serde(default)]
    pub recipient: Vec<String>,
    /// Patterns for the `From:` header address.
    #[serde(default)]
    pub header_from: Vec<String>,
    /// Substrings of the subject.
    #[serde(default)]
    pub subject_contains: Vec<String>,
    /// Attachment file name patterns (`*.exe`).
    #[serde(default)]
    pub attachment_name: Vec<String>,
    /// Client address ranges (CIDR).
    #[serde(default)]
    pub client_ip: Vec<String>,
    pub action: RuleAction,
    /// For `action = "symbol"`: the symbol to add (weighed by `[pipeline.symbols]`).
    #[serde(default)]
    pub symbol: Option<String>,
    /// For `action = "reject"`: the text of the 550 reply.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Hold in quarantine (category `transport`, 7 days).
    Quarantine,
    /// Refuse at DATA with a 550.
    Reject,
    /// Accept and drop, recorded in the message index with the rule's name.
    Discard,
    /// Add a symbol and let the scores decide.
    Symbol,
}

/// What a rule sees of a message.
pub struct RuleInput<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub header_from: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub attachment_names: &'a [String],
    pub client_ip: std::net::IpAddr,
}

impl TransportRule {
    pub fn matches(&self, input: &RuleInput<'_>) -> bool {
        let sender = if input.sender.is_empty() { "<>" } else { input.sender };
        let any = |patterns: &[String], value: &str| patterns.iter().any(|p| wildcard(p, value));
        (self.sender.is_empty() || any(&self.sender, sender))
            && (self.recipient.is_empty() || input.recipients.iter().any(|r| any(&self.recipient, r)))
            && (self.header_from.is_empty() || input.header_from.is_some_and(|f| any(&self.header_from, f)))
            && (self.subject_contains.is_empty()
                || input.subject.is_some_and(|subject| {
                    let subject = subject.to_lowercase();
                    self.subject_contains
                        .iter()
                        .any(|needle| subject.contains(&needle.to_lowercase()))
                }))
            && (self.attachment_name.is_empty() || input.attachment_names.iter().any(|n| any(&self.attachment_name, n)))
            && (self.client_ip.is_empty()
                || self
                    .client_ip
                    .iter()
                    .filter_map(|range| range.parse::<IpRange>().ok())
                    .any(|range| range.contains(input.client_ip)))
    }
}

/// Case-insensitive match with `*` standing for any run of characters.
pub fn wildcard(pattern: &str, value: &str) -> bool {
    crate::patterns::glob(pattern.to_lowercase().as_bytes(), value.to_lowercase().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards() {
        assert!(wildcard("*@Example.net", "joe@example.NET"));
        assert!(wildcard("*.exe", "invoice.pdf.exe"));
        assert!(!wildcard("*.exe", "invoice.exe.pdf"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
        assert!(wildcard("*", ""));
    }
}
