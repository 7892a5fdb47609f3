//! Transport rules, as Exchange mail-flow rules work: conditions on the envelope, headers, subject
//! and body, attachments, symbols, scores and sensitive information (DLP); actions that decide
//! (quarantine, reject, discard), change the message (headers, subject), change who gets it
//! (redirect, add a recipient) or change filtering (bypass spam filtering, set the SCL). Rules
//! run by priority; a rule may stop the ones after it. Address patterns are case-insensitive
//! with `*` for any run; `*_matches` conditions are regular expressions.

use serde::{Deserialize, Serialize};

use crate::dlp;
use crate::pipeline::symbols::Hit;
use crate::smtp::IpRange;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportRule {
    pub name: String,
    /// Lower runs first; rules of equal priority run in file order.
    #[serde(default)]
    pub priority: i32,
    /// No rule after this one runs when it matches.
    #[serde(default)]
    pub stop: bool,

    // Conditions: every one given must hold.
    /// Envelope sender patterns (`*@example.net`); `<>` is the null sender.
    #[serde(default)]
    pub sender: Vec<String>,
    /// Envelope sender domains (subdomains included).
    #[serde(default)]
    pub sender_domain: Vec<String>,
    /// Envelope recipient patterns; the rule matches if any recipient does.
    #[serde(default)]
    pub recipient: Vec<String>,
    #[serde(default)]
    pub recipient_domain: Vec<String>,
    /// Patterns for the `From:` header address.
    #[serde(default)]
    pub header_from: Vec<String>,
    /// Header fields whose value matches a regular expression: `{ name = "X-Mailer", pattern = "…" }`.
    #[serde(default)]
    pub header_matches: Vec<HeaderPattern>,
    /// Substrings of the subject.
    #[serde(default)]
    pub subject_contains: Vec<String>,
    #[serde(default)]
    pub subject_matches: Option<String>,
    /// A regular expression over the body text as the reader sees it.
    #[serde(default)]
    pub body_matches: Option<String>,
    /// Attachment file name patterns (`*.exe`), archive members included.
    #[serde(default)]
    pub attachment_name: Vec<String>,
    /// Attachment types by content (`exe`, `pdf`, `zip`, `ooxml`, `ole`, `png`…).
    #[serde(default)]
    pub attachment_type: Vec<String>,
    /// Some attachment is at least this many KiB.
    #[serde(default)]
    pub attachment_size_kib_over: Option<u64>,
    /// At least this many attached files (archive members not counted).
    #[serde(default)]
    pub attachment_count_at_least: Option<usize>,
    /// Any of these symbols was added (patterns, `PHISH_*`).
    #[serde(default)]
    pub has_symbol: Vec<String>,
    /// Inclusive ranges: `[6, 100]`.
    #[serde(default)]
    pub score: Option<[Number; 2]>,
    #[serde(default)]
    pub scl: Option<[Number; 2]>,
    #[serde(default)]
    pub bcl: Option<[Number; 2]>,
    /// Sensitive information: the rule matches if any of these is found often and surely enough.
    #[serde(default)]
    pub sensitive: Vec<SensitiveCondition>,
    /// Client address ranges (CIDR).
    #[serde(default)]
    pub client_ip: Vec<String>,

    // Actions.
    pub action: Actions,
    /// For `symbol`: the symbol to add (weighed by `[pipeline.symbols]`).
    #[serde(default)]
    pub symbol: Option<String>,
    /// For `reject`: the text of the 550 reply.
    #[serde(default)]
    pub message: Option<String>,
    /// For `add_header`: `"X-Review: yes"`.
    #[serde(default)]
    pub add_header: Option<String>,
    /// For `remove_header`: field names.
    #[serde(default)]
    pub remove_header: Vec<String>,
    /// For `prepend_subject`.
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// For `redirect` (instead of the recipients) and `add_recipient` (beside them).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// For `set_scl`: -1 (trusted) to 9.
    #[serde(default)]
    pub set_scl: Option<i8>,
}

/// A number written as an integer or a float.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Number {
    Integer(i64),
    Float(f64),
}

impl Number {
    fn value(self) -> f64 {
        match self {
            Number::Integer(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPattern {
    pub name: String,
    pub pattern: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitiveCondition {
    /// `credit_card`, `iban`, `jp_my_number`, `us_ssn`, or a `[[pipeline.sensitive_types]]` name.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "one")]
    pub min_count: usize,
    /// 65 low, 75 medium, 85 high.
    #[serde(default = "medium")]
    pub min_confidence: u8,
}

fn one() -> usize {
    1
}

fn medium() -> u8 {
    dlp::MEDIUM_CONFIDENCE
}

/// An operator's own sensitive-information type (`[[pipeline.sensitive_types]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensitiveType {
    pub name: String,
    pub pattern: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub proximity: Option<usize>,
}

/// One action or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Actions {
    One(RuleAction),
    Many(Vec<RuleAction>),
}

impl Default for Actions {
    fn default() -> Self {
        Actions::Many(Vec::new())
    }
}

impl Actions {
    pub fn all(&self) -> &[RuleAction] {
        match self {
            Actions::One(action) => std::slice::from_ref(action),
            Actions::Many(actions) => actions,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Hold in quarantine (category `transport`, 7 days).
    Quarantine,
    /// Refuse at DATA with a 550.
    Reject,
    /// Accept and drop, recorded in the message index with the rule's name.
    Discard,
    /// Add a symbol and let the scores decide.
    Symbol,
    AddHeader,
    RemoveHeader,
    PrependSubject,
    /// Deliver to `recipients` instead.
    Redirect,
    /// Deliver to `recipients` as well (a reviewer's blind copy).
    AddRecipient,
    /// Skip spam, phish, bulk and impostor verdicts (malware still applies).
    BypassSpamFiltering,
    SetScl,
}

impl RuleAction {
    /// Whether it decides the message's fate (the first such rule wins).
    pub fn is_final(self) -> bool {
        matches!(self, RuleAction::Quarantine | RuleAction::Reject | RuleAction::Discard)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("transport rule {rule:?}: {field}: {source}")]
    Pattern {
        rule: String,
        field: String,
        source: Box<regex::Error>,
    },
    #[error("transport rule {rule:?}: {message}")]
    Invalid { rule: String, message: String },
    #[error(transparent)]
    Sensitive(#[from] dlp::DlpError),
}

/// What a rule sees of a message.
pub struct RuleInput<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub header_from: Option<&'a str>,
    /// Every file name the MIME parts give, even of parts with no content.
    pub attachment_names: &'a [String],
    /// Every top-level header field: lower-case name, value.
    pub headers: &'a [(String, String)],
    pub subject: Option<&'a str>,
    /// The body as the reader sees it.
    pub body: &'a str,
    pub attachments: &'a [crate::attachments::File],
    pub symbols: &'a [Hit],
    pub score: f64,
    pub scl: i8,
    pub bcl: u8,
    pub client_ip: std::net::IpAddr,
}

/// A rule with its patterns compiled.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: TransportRule,
    headers: Vec<(String, regex::Regex)>,
    subject: Option<regex::Regex>,
    body: Option<regex::Regex>,
    sensitive: Vec<(dlp::InfoType, usize, u8)>,
}

/// What the matching rules did, beside a final decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleEffects {
    /// The rule that decides, its action and its reply text.
    pub decided: Option<(String, RuleAction, Option<String>)>,
    pub add_headers: Vec<String>,
    pub remove_headers: Vec<String>,
    pub subject_prefix: Option<String>,
    pub redirect: Option<Vec<String>>,
    pub add_recipients: Vec<String>,
    pub bypass_spam: bool,
    pub scl: Option<i8>,
    /// Symbols and DLP findings the rules added.
    pub hits: Vec<Hit>,
}

/// Compiles the rules, in the order they run.
pub fn compile(rules: &[TransportRule], custom: &[SensitiveType]) -> Result<Vec<CompiledRule>, RuleError> {
    let regex = |rule: &TransportRule, field: &str, pattern: &str| {
        regex::RegexBuilder::new(pattern)
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|source| RuleError::Pattern {
                rule: rule.name.clone(),
                field: field.into(),
                source: Box::new(source),
            })
    };
    let mut custom_types = Vec::new();
    for own in custom {
        custom_types.push(dlp::CustomType::new(
            &own.name,
            &own.pattern,
            &own.keywords,
            own.proximity,
        )?);
    }
    let mut compiled = Vec::new();
    for rule in rules {
        let invalid = |message: String| RuleError::Invalid {
            rule: rule.name.clone(),
            message,
        };
        if rule.action.all().is_empty() {
            return Err(invalid("no action".into()));
        }
        for action in rule.action.all() {
            let missing = match action {
                RuleAction::Symbol => rule.symbol.is_none().then_some("symbol"),
                RuleAction::AddHeader => rule
                    .add_header
                    .as_deref()
                    .is_none_or(|h| !h.contains(':'))
                    .then_some("add_header (\"Name: value\")"),
                RuleAction::RemoveHeader => rule.remove_header.is_empty().then_some("remove_header"),
                RuleAction::PrependSubject => rule.subject_prefix.is_none().then_some("subject_prefix"),
                RuleAction::Redirect | RuleAction::AddRecipient => rule.recipients.is_empty().then_some("recipients"),
                RuleAction::SetScl => match rule.set_scl {
                    Some(-1..=9) => None,
                    _ => Some("set_scl (-1 to 9)"),
                },
                _ => None,
            };
            if let Some(field) = missing {
                return Err(invalid(format!("{action:?} needs {field}")));
            }
        }
        if let Some((name, _)) = rule.add_header.as_deref().and_then(|h| h.split_once(':'))
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
        {
            return Err(invalid(format!("add_header: {name:?} is not a field name")));
        }
        if let Some(bad) = rule.recipients.iter().find(|r| {
            !r.contains('@')
                || r.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        }) {
            return Err(invalid(format!("recipients: {bad:?} is not an address")));
        }
        for (name, range) in [("score", &rule.score), ("scl", &rule.scl), ("bcl", &rule.bcl)] {
            if let Some([low, high]) = range
                && low.value() > high.value()
            {
                return Err(invalid(format!("{name}: the range starts above its end")));
            }
        }
        let mut sensitive = Vec::new();
        for condition in &rule.sensitive {
            let kind = dlp::InfoType::parse(&condition.kind)
                .or_else(|| {
                    custom_types
                        .iter()
                        .find(|own| own.name.eq_ignore_ascii_case(&condition.kind))
                        .map(|own| dlp::InfoType::Custom(own.clone()))
                })
                .ok_or_else(|| invalid(format!("unknown sensitive information type {:?}", condition.kind)))?;
            sensitive.push((kind, condition.min_count.max(1), condition.min_confidence));
        }
        compiled.push(CompiledRule {
            headers: rule
                .header_matches
                .iter()
                .map(|h| Ok((h.name.to_ascii_lowercase(), regex(rule, "header_matches", &h.pattern)?)))
                .collect::<Result<_, RuleError>>()?,
            subject: rule
                .subject_matches
                .as_deref()
                .map(|p| regex(rule, "subject_matches", p))
                .transpose()?,
            body: rule
                .body_matches
                .as_deref()
                .map(|p| regex(rule, "body_matches", p))
                .transpose()?,
            sensitive,
            rule: rule.clone(),
        });
    }
    compiled.sort_by_key(|c| c.rule.priority);
    Ok(compiled)
}

/// Runs the rules over one message.
pub fn apply(rules: &[CompiledRule], input: &RuleInput<'_>) -> RuleEffects {
    let mut effects = RuleEffects::default();
    // Built once, and only when some rule looks for sensitive information.
    let sensitive = std::cell::OnceCell::new();
    for compiled in rules {
        let Some(found) = compiled.matches(input, &sensitive) else {
            continue;
        };
        let rule = &compiled.rule;
        if let Some(found) = found {
            effects.hits.push(Hit::new(
                &crate::pipeline::symbols::DLP_MATCH,
                format!("transport rule {}: {found}", rule.name),
            ));
        }
        let mut decided = false;
        for action in rule.action.all() {
            match action {
                RuleAction::Symbol => {
                    if let Some(symbol) = &rule.symbol {
                        effects.hits.push(Hit {
                            name: symbol.to_ascii_uppercase(),
                            detail: format!("transport rule {}", rule.name),
                        });
                    }
                }
                RuleAction::AddHeader => {
                    if let Some((name, value)) = rule.add_header.as_deref().and_then(|h| h.split_once(':')) {
                        let name: String = name.chars().filter(|c| c.is_ascii_graphic() && *c != ':').collect();
                        effects
                            .add_headers
                            .push(format!("{name}: {}\r\n", crate::pipeline::headers::clean(value)));
                    }
                }
                RuleAction::RemoveHeader => effects
                    .remove_headers
                    .extend(rule.remove_header.iter().map(|n| n.to_ascii_lowercase())),
                RuleAction::PrependSubject => {
                    if effects.subject_prefix.is_none() {
                        effects.subject_prefix = rule.subject_prefix.clone();
                    }
                }
                RuleAction::Redirect => effects.redirect = Some(rule.recipients.clone()),
                RuleAction::AddRecipient => effects.add_recipients.extend(rule.recipients.iter().cloned()),
                RuleAction::BypassSpamFiltering => effects.bypass_spam = true,
                RuleAction::SetScl => effects.scl = rule.set_scl,
                final_action => {
                    if effects.decided.is_none() {
                        effects.decided = Some((rule.name.clone(), *final_action, rule.message.clone()));
                        decided = true;
                    }
                }
            }
        }
        if rule.stop || decided {
            break;
        }
    }
    effects
}

impl CompiledRule {
    /// `None` when the rule does not match; `Some(found)` when it does, with what its sensitive
    /// conditions found (masked) if it has any.
    fn matches(&self, input: &RuleInput<'_>, sensitive: &std::cell::OnceCell<String>) -> Option<Option<String>> {
        let rule = &self.rule;
        let any = |patterns: &[String], value: &str| patterns.iter().any(|p| wildcard(p, value));
        let in_domain = |domains: &[String], address: &str| {
            let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
            domains.iter().any(|d| {
                let d = d.trim_start_matches('@').to_ascii_lowercase();
                domain == d || domain.ends_with(&format!(".{d}"))
            })
        };
        let sender = if input.sender.is_empty() { "<>" } else { input.sender };
        let in_range = |range: &Option<[Number; 2]>, value: f64| {
            range.is_none_or(|[low, high]| value >= low.value() && value <= high.value())
        };
        let holds = (rule.sender.is_empty() || any(&rule.sender, sender))
            && (rule.sender_domain.is_empty() || in_domain(&rule.sender_domain, input.sender))
            && (rule.recipient.is_empty() || input.recipients.iter().any(|r| any(&rule.recipient, r)))
            && (rule.recipient_domain.is_empty()
                || input.recipients.iter().any(|r| in_domain(&rule.recipient_domain, r)))
            && (rule.header_from.is_empty() || input.header_from.is_some_and(|f| any(&rule.header_from, f)))
            && self.headers.iter().all(|(name, pattern)| {
                input
                    .headers
                    .iter()
                    .any(|(field, value)| field == name && pattern.is_match(value))
            })
            && (rule.subject_contains.is_empty()
                || input.subject.is_some_and(|subject| {
                    let subject = subject.to_lowercase();
                    rule.subject_contains
                        .iter()
                        .any(|needle| subject.contains(&needle.to_lowercase()))
                }))
            && self
                .subject
                .as_ref()
                .is_none_or(|pattern| input.subject.is_some_and(|s| pattern.is_match(s)))
            && self.body.as_ref().is_none_or(|pattern| pattern.is_match(input.body))
            && (rule.attachment_name.is_empty()
                || input
                    .attachments
                    .iter()
                    .filter_map(|file| file.name.as_deref())
                    .chain(input.attachment_names.iter().map(String::as_str))
                    // Windows drops trailing dots and spaces: `evil.exe. ` is `evil.exe`.
                    .map(|name| {
                        name.rsplit(['/', '\\'])
                            .next()
                            .unwrap_or(name)
                            .trim_end_matches(['.', ' '])
                    })
                    .any(|name| any(&rule.attachment_name, name)))
            && (rule.attachment_type.is_empty()
                || input.attachments.iter().any(|file| {
                    rule.attachment_type
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case(file.kind.name()))
                }))
            && rule.attachment_size_kib_over.is_none_or(|kib| {
                input
                    .attachments
                    .iter()
                    .any(|file| file.bytes.len() as u64 > kib.saturating_mul(1024))
            })
            && rule
                .attachment_count_at_least
                .is_none_or(|count| input.attachments.iter().filter(|f| f.depth == 0).count() >= count)
            && (rule.has_symbol.is_empty() || input.symbols.iter().any(|hit| any(&rule.has_symbol, &hit.name)))
            && in_range(&rule.score, input.score)
            && in_range(&rule.scl, f64::from(input.scl))
            && in_range(&rule.bcl, f64::from(input.bcl))
            && (rule.client_ip.is_empty()
                || rule
                    .client_ip
                    .iter()
                    .filter_map(|range| range.parse::<IpRange>().ok())
                    .any(|range| range.contains(input.client_ip)));
        if !holds {
            return None;
        }
        if self.sensitive.is_empty() {
            return Some(None);
        }
        let text = sensitive.get_or_init(|| sensitive_text(input));
        for (kind, min_count, min_confidence) in &self.sensitive {
            let (found, count) = dlp::find_counted(text, kind, *min_confidence);
            if count >= *min_count {
                let shown: Vec<String> = found.iter().take(3).map(|m| clip(&m.masked, 40)).collect();
                return Some(Some(format!("{count} {} ({})", kind.name(), shown.join(", "))));
            }
        }
        None
    }
}

fn clip(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}

/// The text sensitive information is looked for in: the subject, the body as read, and attached
/// text files, up to the bound the DLP scanner reads.
fn sensitive_text(input: &RuleInput<'_>) -> String {
    let mut text = String::new();
    if let Some(subject) = input.subject {
        text.push_str(subject);
        text.push('\n');
    }
    // Half the bound for the body at most, so a long body cannot hide the attachments.
    let body_room = input.body.floor_char_boundary(dlp::MAX_SCANNED / 2);
    text.push_str(&input.body[..body_room]);
    for file in input.attachments {
        if text.len() >= dlp::MAX_SCANNED {
            break;
        }
        if matches!(
            file.kind,
            crate::attachments::Kind::Text | crate::attachments::Kind::Html
        ) {
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(
                &file.bytes[..file.bytes.len().min(dlp::MAX_SCANNED)],
            ));
        }
    }
    text
}

/// Case-insensitive match with `*` standing for any run of characters.
pub fn wildcard(pattern: &str, value: &str) -> bool {
    crate::patterns::glob(pattern.to_lowercase().as_bytes(), value.to_lowercase().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*@Example.net", "joe@example.NET"));
        assert!(wildcard("*.exe", "invoice.pdf.exe"));
        assert!(!wildcard("*.exe", "invoice.exe.pdf"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
        assert!(wildcard("*", ""));
    }

    fn input<'a>(body: &'a str, headers: &'a [(String, String)], symbols: &'a [Hit]) -> RuleInput<'a> {
        RuleInput {
            sender: "ann@partner.test",
            recipients: &[],
            header_from: Some("ann@partner.test"),
            attachment_names: &[],
            headers,
            subject: Some("Quarterly numbers"),
            body,
            attachments: &[],
            symbols,
            score: 3.0,
            scl: 1,
            bcl: 0,
            client_ip: "192.0.2.1".parse().unwrap(),
        }
    }

    #[derive(Deserialize)]
    struct RulesFile {
        rules: Vec<TransportRule>,
        #[serde(default)]
        sensitive_types: Vec<SensitiveType>,
    }

    fn compiled(toml: &str) -> Result<Vec<CompiledRule>, RuleError> {
        let file: RulesFile = toml::from_str(toml).unwrap();
        compile(&file.rules, &file.sensitive_types)
    }

    fn rules(toml: &str) -> Vec<CompiledRule> {
        compiled(toml).unwrap()
    }

    #[test]
    fn priorities_stop_and_several_actions() {
        let compiled = rules(
            r#"
            [[rules]]
            name = "tag"
            priority = 5
            action = ["add_header", "prepend_subject"]
            add_header = "X-Reviewed: yes"
            subject_prefix = "[EXT]"
            [[rules]]
            name = "first"
            priority = 1
            sender_domain = ["partner.test"]
            action = "add_recipient"
            recipients = ["review@example.com"]
            stop = true
            "#,
        );
        let effects = apply(&compiled, &input("hello", &[], &[]));
        assert_eq!(effects.add_recipients, vec!["review@example.com"]);
        assert!(effects.add_headers.is_empty(), "stopped before the second rule");
    }

    #[test]
    fn headers_body_symbols_and_ranges() {
        let compiled = rules(
            r#"
            [[rules]]
            name = "mailer"
            header_matches = [{ name = "X-Mailer", pattern = "^bulk ?mailer" }]
            body_matches = "wire\\s+transfer"
            has_symbol = ["FIRST_*"]
            scl = [0, 4]
            action = "quarantine"
            "#,
        );
        let headers = vec![("x-mailer".to_string(), "Bulk Mailer 2.0".to_string())];
        let symbols = vec![Hit {
            name: "FIRST_CONTACT".into(),
            detail: String::new(),
        }];
        let effects = apply(&compiled, &input("please do the wire  transfer", &headers, &symbols));
        assert_eq!(effects.decided.map(|d| d.1), Some(RuleAction::Quarantine));
        assert!(
            apply(&compiled, &input("nothing", &headers, &symbols))
                .decided
                .is_none()
        );
        assert!(
            apply(&compiled, &input("wire transfer", &[], &symbols))
                .decided
                .is_none()
        );
    }

    #[test]
    fn sensitive_information_is_validated_and_masked() {
        let compiled = rules(
            r#"
            [[rules]]
            name = "cards"
            sensitive = [{ type = "credit_card", min_count = 2 }]
            action = "quarantine"
            [[rules]]
            name = "employees"
            sensitive = [{ type = "employee_id", min_confidence = 85 }]
            action = "symbol"
            symbol = "HR_DATA"
            [[sensitive_types]]
            name = "employee_id"
            pattern = "EMP-\\d{6}"
            keywords = ["employee"]
            "#,
        );
        let two_cards = "card 4111 1111 1111 1111 and visa 5555555555554444";
        let effects = apply(&compiled, &input(two_cards, &[], &[]));
        assert_eq!(effects.decided.as_ref().map(|d| d.0.as_str()), Some("cards"));
        let detail = &effects.hits[0].detail;
        assert!(detail.contains("1111") && !detail.contains("4111"), "masked: {detail}");
        let one_bad = "card 4111 1111 1111 1111 and 4111 1111 1111 1112";
        assert!(
            apply(&compiled, &input(one_bad, &[], &[])).decided.is_none(),
            "Luhn fails"
        );
        let hr = apply(&compiled, &input("employee number EMP-123456", &[], &[]));
        assert!(hr.hits.iter().any(|h| h.name == "HR_DATA"));
        assert!(
            apply(&compiled, &input("ticket EMP-123456", &[], &[])).hits.is_empty(),
            "no keyword"
        );
    }

    #[test]
    fn bad_rules_are_errors_naming_the_rule() {
        let broken = compiled("[[rules]]\nname = \"broken\"\nbody_matches = \"(\"\naction = \"quarantine\"\n");
        assert!(broken.unwrap_err().to_string().contains("broken"));
        let missing = compiled("[[rules]]\nname = \"r\"\naction = \"redirect\"\n");
        assert!(missing.unwrap_err().to_string().contains("recipients"));
    }
}
