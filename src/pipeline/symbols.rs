//! Symbols: the one registry of every name a stage can add, each with its group and default
//! weight; the weights configuration may change (`[pipeline.symbols]`, checked against the
//! registry so a typo is an error, never a silent zero); and the thresholds that turn scores into
//! a verdict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reputation::heuristics::edit_distance;

/// A symbol's group: which score its weight adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Spam,
    Phish,
    Bulk,
    Malware,
    /// Impersonation: a sender pretending to be someone it is not (`impostorscore`).
    Spoof,
    /// An operator's rule: its weight adds to the spam score.
    Policy,
    /// Suspicious but not yet spam: reported as `suspectscore`, never decides alone.
    Suspect,
    /// Informational: recorded and stamped, weight ignored.
    Info,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Spam => "spam",
            Category::Phish => "phish",
            Category::Bulk => "bulk",
            Category::Malware => "malware",
            Category::Spoof => "spoof",
            Category::Policy => "policy",
            Category::Suspect => "suspect",
            Category::Info => "info",
        }
    }
}

/// A configured weight: for a registered symbol the group may be left out (it keeps its own); a
/// symbol of the operator's own (a transport rule's) must say its group.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolWeight {
    pub weight: f64,
    #[serde(alias = "category", default)]
    pub group: Option<Category>,
}

/// A resolved weight: how much, and which score it adds to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weight {
    pub weight: f64,
    pub group: Category,
}

/// One registered symbol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Symbol {
    pub name: &'static str,
    pub group: Category,
    pub weight: f64,
    /// What it means, for `portcullis scan` and the docs.
    pub about: &'static str,
}

/// A symbol a stage added to one message, and what triggered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub name: String,
    pub detail: String,
}

impl Hit {
    pub fn new(symbol: &Symbol, detail: impl Into<String>) -> Hit {
        Hit {
            name: symbol.name.to_string(),
            detail: detail.into(),
        }
    }
}

macro_rules! registry {
    ($($name:ident: $group:ident, $weight:expr, $about:expr;)*) => {
        $(pub const $name: Symbol = Symbol {
            name: stringify!($name),
            group: Category::$group,
            weight: $weight,
            about: $about,
        };)*
        /// Every built-in symbol, in the order the stages add them.
        pub const REGISTRY: &[Symbol] = &[$($name),*];
    };
}

registry! {
    IP_ALLOW: Info, 0.0, "client address on smtp.allow_ips: spam scoring skipped";
    IP_BLOCK: Spam, 100.0, "client address on smtp.block_ips";
    SENDER_ALLOW: Info, 0.0, "From address on the organisation's allow list, DMARC passing: spam scoring skipped";
    SENDER_ALLOW_UNAUTHENTICATED: Info, 0.0, "From address on the allow list without DMARC passing: filtered as usual";
    RECIPIENT_ALLOW: Info, 0.0, "From address allowed by some recipients for themselves, DMARC passing: their copies skip a spam or bulk hold";
    SENDER_BLOCK: Info, 0.0, "sender on the organisation's block list: held as spam";
    SPF_PASS: Spam, -0.5, "SPF passes for the envelope sender";
    SPF_FAIL: Spam, 3.0, "SPF fails: the client may not send for the envelope sender's domain";
    SPF_SOFTFAIL: Spam, 1.0, "SPF soft-fails";
    SPF_NEUTRAL: Spam, 0.0, "SPF neutral";
    SPF_NONE: Spam, 0.5, "no SPF record";
    SPF_TEMPERROR: Info, 0.0, "SPF lookup failed temporarily";
    SPF_PERMERROR: Spam, 0.5, "SPF record broken";
    DKIM_PASS: Spam, -0.5, "a DKIM signature verifies";
    DKIM_FAIL: Spam, 1.0, "DKIM signatures fail";
    DKIM_NEUTRAL: Info, 0.0, "DKIM neutral";
    DKIM_NONE: Info, 0.0, "no DKIM signature";
    DKIM_TEMPERROR: Info, 0.0, "DKIM key lookup failed temporarily";
    DKIM_PERMERROR: Spam, 0.5, "DKIM signature or key broken";
    DMARC_PASS: Phish, -1.0, "SPF or DKIM passes aligned with the From domain";
    DMARC_NONE: Info, 0.0, "the From domain publishes no DMARC record";
    DMARC_POLICY_NONE: Phish, 1.0, "DMARC fails; the domain asks for no action";
    DMARC_POLICY_QUARANTINE: Phish, 6.0, "DMARC fails; the domain asks for quarantine";
    DMARC_POLICY_REJECT: Phish, 15.0, "DMARC fails; the domain asks for rejection";
    DMARC_TEMPERROR: Info, 0.0, "DMARC lookup failed temporarily";
    DMARC_PERMERROR: Info, 0.0, "DMARC record broken";
    ARC_PASS: Info, 0.0, "the message arrived with a valid ARC chain";
    ARC_FAIL: Info, 0.0, "the message arrived with a broken ARC chain";
    EICAR: Malware, 100.0, "the EICAR test file";
    MALWARE_SIGNATURE: Malware, 100.0, "a file's SHA-256 is on a signature list (attachments.signature_files)";
    CLAMAV_VIRUS: Malware, 100.0, "ClamAV found malware";
    CLAMAV_UNAVAILABLE: Info, 0.0, "clamd did not answer: ClamAV did not scan this message";
    ATTACHMENT_BLOCKED_TYPE: Malware, 5.0, "a blocked file type (attachments.blocked_types), by name or by content, archives included";
    ATTACHMENT_TYPE_MISMATCH: Phish, 3.0, "a file's name or declared type disagrees with its content (a program named invoice.pdf)";
    ARCHIVE_BOMB: Malware, 5.0, "an archive expands past the bounds (ratio, total size, file count): not expanded";
    ARCHIVE_TOO_DEEP: Phish, 3.0, "archives nested past attachments.max_archive_depth: the inner ones not opened";
    ARCHIVE_LIMIT: Suspect, 1.0, "the message's archives pass max_files or max_expanded_mib: the rest not opened";
    ARCHIVE_UNOPENED: Suspect, 1.0, "a 7z, RAR or CAB archive: not opened here (ClamAV opens them when configured)";
    PDF_JAVASCRIPT: Suspect, 1.0, "a PDF with JavaScript (common in fillable forms)";
    ARCHIVE_ENCRYPTED: Phish, 3.0, "a password-protected archive member: no scanner can read it";
    PDF_ENCRYPTED: Phish, 2.0, "an encrypted PDF: its content cannot be scanned";
    OFFICE_ENCRYPTED: Phish, 2.0, "a password-protected Office document: its content cannot be scanned";
    OFFICE_MACRO: Phish, 3.0, "an Office document with VBA macros";
    OFFICE_MACRO_HIDDEN: Malware, 5.0, "macros in a document whose name or type says it has none (.docx carrying vbaProject.bin)";
    OFFICE_EXTERNAL_TEMPLATE: Malware, 5.0, "an Office document fetches a template, frame or object from outside when opened";
    OFFICE_DDE: Malware, 5.0, "an Office document with a DDE field (runs a command)";
    ATTACHMENT_ACTIVE_CONTENT: Phish, 4.0, "an HTML, SVG or PDF attachment with scripts, event handlers, foreignObject or launch actions";
    ATTACHMENT_FORM: Phish, 6.0, "an HTML or SVG attachment with a form posting elsewhere or a password field";
    ATTACHMENT_UNREADABLE: Suspect, 0.5, "a file that claims a structure it does not have (damaged archive, failed inspection)";
    QR_CODE_URL: Suspect, 1.0, "an image holds a QR code with a link";
    PHISH_QR_CODE: Phish, 4.0, "a QR code's link asks to sign in or goes outside the sender's domain";
    FROM_OWN_DOMAIN_UNAUTHENTICATED: Spoof, 8.0, "From one of our own domains (smtp.domains) without passing DMARC";
    FROM_LOOKALIKE_DOMAIN: Spoof, 6.0, "From a domain that looks like one of ours or a protected one";
    FROM_VIP_NAME_OUTSIDE: Spoof, 5.0, "a protected person's name (pipeline.vip_names) on an outside address";
    FROM_NAME_HAS_OTHER_ADDRESS: Spoof, 3.0, "the display name shows an address of another domain";
    FROM_INVISIBLE_CHARACTERS: Spoof, 2.0, "zero-width or bidi characters in the sender's name";
    REPLY_TO_FREEMAIL: Spoof, 2.5, "answers go to a free mail address while the sender is not one";
    REPLY_TO_OTHER_DOMAIN: Spoof, 0.5, "answers go to another domain than the sender's";
    FIRST_CONTACT: Spoof, 1.0, "no recipient has had mail delivered from this sender before";
    BULK_SIMILAR_5: Bulk, 1.0, "5 or more near-identical messages in the last day";
    BULK_SIMILAR_50: Bulk, 2.5, "50 or more near-identical messages in the last day";
    BULK_SIMILAR_500: Bulk, 4.0, "500 or more near-identical messages in the last day";
    BULK_LIST_UNSUBSCRIBE: Bulk, 2.0, "a List-Unsubscribe field";
    BULK_ONE_CLICK_UNSUBSCRIBE: Bulk, 1.0, "one-click unsubscribe (RFC 8058)";
    BULK_LIST_ID: Bulk, 1.0, "a List-Id field";
    BULK_PRECEDENCE: Bulk, 2.0, "Precedence: bulk, list or junk";
    BULK_ESP: Bulk, 2.0, "header fields of a bulk email service provider";
    BULK_UNSUBSCRIBE_WORDING: Bulk, 1.0, "unsubscribe wording in the body";
    BULK_TRACKING_PIXEL: Bulk, 1.0, "a 1×1 tracking image";
    MISSING_FROM: Spam, 2.0, "no From field";
    MISSING_DATE: Spam, 1.0, "no Date field";
    INVALID_DATE: Spam, 1.0, "a Date field that does not parse";
    MISSING_MESSAGE_ID: Spam, 0.5, "no Message-ID field";
    INVALID_MESSAGE_ID: Spam, 1.0, "a Message-ID that is not <local@domain>";
    SUBJECT_ALL_CAPS: Spam, 1.0, "a subject of ten or more letters, all capitals";
    SUBJECT_INVISIBLE_CHARACTERS: Spam, 2.0, "zero-width or bidi characters in the subject";
    DATE_IN_FUTURE: Spam, 1.5, "the Date field is more than 6 hours after the message was received";
    DATE_IN_PAST: Spam, 1.0, "the Date field is more than 4 days before the message was received";
    SUBJECT_FAKE_REPLY: Spam, 1.0, "a Re: or Fwd: subject on a message that answers nothing (no In-Reply-To or References)";
    RECEIVED_NONE: Spam, 0.5, "no Received field: sent straight from the client that wrote it";
    HTML_ONLY: Spam, 0.3, "HTML with no plain-text alternative";
    HTML_IMAGE_ONLY: Spam, 2.0, "HTML that shows images and almost no text";
    HTML_HIDDEN_TEXT: Suspect, 0.5, "text the reader does not see (display:none, zero font size, colour of the background)";
    HTML_ZERO_FONT: Phish, 3.0, "hidden text splitting visible words or inside a link (ZeroFont)";
    BODY_EXCESSIVE_CAPS: Spam, 1.0, "most of a long body in capitals";
    BODY_OBFUSCATED_WORDS: Spam, 2.0, "words spelt to dodge filters (v1agra, F R E E)";
    CHARSET_UNDECLARED_8BIT: Spam, 0.5, "8-bit text in a part that declares no charset or US-ASCII";
    PHISH_LINK_TEXT_MISMATCH: Phish, 3.0, "a link's text shows one domain while it goes to another";
    PHISH_FORM: Phish, 2.0, "a form in the body";
    PHISH_PASSWORD_FIELD: Phish, 3.0, "a password field in the body";
    PHISH_CREDENTIAL_WORDING: Phish, 2.5, "asks to sign in, verify the account or update payment details, with a link";
    URL_REPUTATION_MALICIOUS: Phish, 10.0, "a link goes where a reputation provider knows phishing or malware";
    URL_REPUTATION_SPAM: Spam, 5.0, "a link goes where a reputation provider knows spam";
    URL_REPUTATION_SUSPICIOUS: Phish, 3.0, "a reputation provider finds a link's destination suspicious (a lookalike domain…)";
    URL_IP_LITERAL: Phish, 2.5, "a link to a bare IP address";
    URL_SHORTENER: Suspect, 1.0, "a link through a URL shortener";
    URL_USERINFO: Phish, 3.0, "a link with a user name before the host (https://bank.example@evil.example/)";
    URL_INVISIBLE_CHARACTERS: Phish, 3.0, "zero-width or bidi characters inside a link";
    CLASSIFIER_SPAM_999: Spam, 7.0, "the trained classifier is at least 99.9% sure this is spam";
    CLASSIFIER_SPAM_99: Spam, 6.0, "the trained classifier is at least 99% sure this is spam";
    CLASSIFIER_SPAM_90: Spam, 3.0, "the trained classifier is at least 90% sure this is spam";
    CLASSIFIER_HAM_90: Spam, -1.0, "the trained classifier is at least 90% sure this is not spam";
    CLASSIFIER_HAM_99: Spam, -3.0, "the trained classifier is at least 99% sure this is not spam";
    URL_REWRITTEN: Info, 0.0, "links rewritten to the click service";
    URL_SKIPPED_SIGNED: Info, 0.0, "links in a signed (S/MIME, PGP) part left alone";
    URL_REWRITE_FAILED: Info, 0.0, "the rewriter could not read the message; links left as they were";
    DLP_MATCH: Info, 0.0, "sensitive information a transport rule looks for (values masked)";
    MIME_TOO_DEEP: Info, 0.0, "MIME structure nested deeper than pipeline.max_nesting";
    PROCESSING_FAILED: Info, 0.0, "filtering failed pipeline.max_attempts times";
}

/// Symbols named at run time: `DNSBL_<ZONE>` for each zone in `smtp.dnsbl_zones`.
pub const DNSBL_PREFIX: &str = "DNSBL_";
/// The weight and group of every `DNSBL_<ZONE>`, unless configured per zone.
const DNSBL_DEFAULT: Weight = Weight {
    weight: 10.0,
    group: Category::Spam,
};

/// The registered symbol of that name.
pub fn registered(name: &str) -> Option<&'static Symbol> {
    REGISTRY.iter().find(|symbol| symbol.name == name)
}

/// Score at or above which each verdict applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Spam + phish + bulk at or above this is refused at DATA with a 5xx.
    pub reject: f64,
    pub spam: f64,
    pub phish: f64,
    pub bulk: f64,
    pub malware: f64,
    /// Impersonation at or above this is held as phish.
    pub impostor: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            reject: 15.0,
            spam: 6.0,
            phish: 6.0,
            bulk: 7.0,
            malware: 1.0,
            impostor: 6.0,
        }
    }
}

/// Weights looked up by symbol name: the registry's, with the configured ones over them.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    configured: BTreeMap<String, Weight>,
}

impl SymbolTable {
    /// The registry with `overrides` applied. `custom` are the operator's own symbol names (the
    /// `symbol` of transport rules): they may be weighed too, with a group. Any other name is a
    /// typo, and an error that says which registered name it is closest to.
    pub fn new(overrides: &BTreeMap<String, SymbolWeight>, custom: &[String]) -> Result<Self, String> {
        let mut configured = BTreeMap::new();
        for (name, weight) in overrides {
            let upper = name.to_ascii_uppercase();
            let group = match (registered(&upper), weight.group) {
                (Some(symbol), group) => group.unwrap_or(symbol.group),
                (None, group) if upper.starts_with(DNSBL_PREFIX) => group.unwrap_or(DNSBL_DEFAULT.group),
                (None, Some(group)) if custom.iter().any(|c| c.eq_ignore_ascii_case(&upper)) => group,
                (None, None) if custom.iter().any(|c| c.eq_ignore_ascii_case(&upper)) => {
                    return Err(format!(
                        "pipeline.symbols.{name}: a transport rule's own symbol needs a group (spam, phish, bulk, malware, spoof, policy)"
                    ));
                }
                (None, _) => {
                    let closest = REGISTRY
                        .iter()
                        .map(|symbol| (edit_distance(&upper, symbol.name), symbol.name))
                        .min()
                        .map(|(_, name)| name)
                        .unwrap_or_default();
                    return Err(format!(
                        "pipeline.symbols.{name}: no such symbol (closest: {closest}); `portcullis scan --symbols` lists them"
                    ));
                }
            };
            configured.insert(
                upper,
                Weight {
                    weight: weight.weight,
                    group,
                },
            );
        }
        for name in custom {
            if registered(&name.to_ascii_uppercase()).is_none() && !configured.contains_key(&name.to_ascii_uppercase())
            {
                return Err(format!(
                    "transport rule symbol {name} is weighed nowhere: add it to [pipeline.symbols] with a weight and group"
                ));
            }
        }
        Ok(SymbolTable { configured })
    }

    /// The registry's weights, nothing configured.
    pub fn built_in() -> Self {
        SymbolTable {
            configured: BTreeMap::new(),
        }
    }

    /// The weight of a symbol.
    pub fn weight(&self, symbol: &str) -> Weight {
        if let Some(weight) = self.configured.get(symbol) {
            return *weight;
        }
        if let Some(symbol) = registered(symbol) {
            return Weight {
                weight: symbol.weight,
                group: symbol.group,
            };
        }
        if symbol.starts_with(DNSBL_PREFIX) {
            return DNSBL_DEFAULT;
        }
        Weight {
            weight: 0.0,
            group: Category::Info,
        }
    }
}

/// The summed score of each category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub spam: f64,
    pub phish: f64,
    pub bulk: f64,
    pub malware: f64,
    pub impostor: f64,
    pub suspect: f64,
}

impl Scores {
    pub fn of<'a>(symbols: impl IntoIterator<Item = &'a str>, table: &SymbolTable) -> Scores {
        let mut scores = Scores::default();
        for symbol in symbols {
            let Weight { weight, group } = table.weight(symbol);
            scores.add(weight, group);
        }
        scores
    }

    /// The scores of symbols as the message index kept them (group by name, weight when decided).
    pub fn of_weighed(symbols: &[crate::store::WeighedSymbol]) -> Scores {
        let mut scores = Scores::default();
        for symbol in symbols {
            if let Ok(group) = serde_json::from_value(serde_json::Value::String(symbol.group.clone())) {
                scores.add(symbol.weight, group);
            }
        }
        scores
    }

    fn add(&mut self, weight: f64, group: Category) {
        match group {
            Category::Spam | Category::Policy => self.spam += weight,
            Category::Phish => self.phish += weight,
            Category::Bulk => self.bulk += weight,
            Category::Malware => self.malware += weight,
            Category::Spoof => self.impostor += weight,
            Category::Suspect => self.suspect += weight,
            Category::Info => {}
        }
    }

    /// Spam, phish, bulk and impostor together: what the reject threshold is compared with.
    pub fn total(&self) -> f64 {
        self.spam + self.phish + self.bulk + self.impostor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(weight: f64, group: Option<Category>) -> SymbolWeight {
        SymbolWeight { weight, group }
    }

    #[test]
    fn overrides_families_and_typos() {
        let mut overrides = BTreeMap::new();
        overrides.insert("dnsbl_zen_spamhaus_org".to_string(), weight(20.0, None));
        overrides.insert("SPF_SOFTFAIL".to_string(), weight(2.0, None));
        let table = SymbolTable::new(&overrides, &[]).unwrap();
        assert_eq!(table.weight("DNSBL_ZEN_SPAMHAUS_ORG").weight, 20.0);
        assert_eq!(table.weight("DNSBL_OTHER").weight, 10.0);
        assert_eq!(
            table.weight("SPF_SOFTFAIL"),
            Weight {
                weight: 2.0,
                group: Category::Spam
            }
        );
        assert_eq!(table.weight("NOBODY_KNOWS").group, Category::Info);
        let scores = Scores::of(["SPF_FAIL", "DMARC_POLICY_REJECT", "EICAR"], &table);
        assert_eq!(scores.spam, 3.0);
        assert_eq!(scores.phish, 15.0);
        assert_eq!(scores.malware, 100.0);
        assert_eq!(scores.total(), 18.0);

        let mut typo = BTreeMap::new();
        typo.insert("SPF_SOFTFAILL".to_string(), weight(2.0, None));
        let error = SymbolTable::new(&typo, &[]).unwrap_err();
        assert!(error.contains("no such symbol (closest: SPF_SOFTFAIL)"), "{error}");

        let custom = vec!["VENDOR_INVOICE".to_string()];
        assert!(
            SymbolTable::new(&BTreeMap::new(), &custom)
                .unwrap_err()
                .contains("weighed nowhere")
        );
        let mut declared = BTreeMap::new();
        declared.insert("VENDOR_INVOICE".to_string(), weight(4.0, None));
        assert!(
            SymbolTable::new(&declared, &custom)
                .unwrap_err()
                .contains("needs a group")
        );
        declared.insert("VENDOR_INVOICE".to_string(), weight(4.0, Some(Category::Policy)));
        let table = SymbolTable::new(&declared, &custom).unwrap();
        assert_eq!(Scores::of(["VENDOR_INVOICE"], &table).spam, 4.0);
    }

    #[test]
    fn every_registered_name_is_unique_and_upper_case() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|s| s.name).collect();
        assert!(names.iter().all(|n| {
            n.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        }));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
    }
}
