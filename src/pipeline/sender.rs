//! Content stages on the sender and the form of a message: who it says it is from, whether its
//! header block looks like real mail, and how much it looks like bulk mail. Each is a [`Stage`]: it reads the scan context and only adds
//! symbols; the weights live in the registry (`symbols`).

use crate::pipeline::symbols::{self, Hit};
use crate::pipeline::{ScanContext, Stage};
use crate::reputation::heuristics::Heuristics;

/// Free mail providers: a Reply-To there, on mail from anywhere else, is how invoice fraud asks
/// for the answer.
const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "ymail.com",
    "aol.com",
    "icloud.com",
    "me.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "proton.me",
    "protonmail.com",
    "zoho.com",
    "qq.com",
    "163.com",
    "126.com",
];

/// Characters that change how text is shown without being seen: zero-width and bidi controls.
pub(crate) fn invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|domain| !domain.is_empty())
}

/// Spoofing and impersonation (Exchange's spoof intelligence, Proofpoint's Impostor): our own
/// domains used from outside, lookalikes of them, protected people's names on outside addresses,
/// a display name carrying another address, a Reply-To elsewhere, invisible characters.
pub struct Impostor {
    own_domains: Vec<String>,
    lookalikes: Heuristics,
    vip_names: Vec<String>,
}

impl Impostor {
    pub fn new(own_domains: &[String], protected_domains: &[String], vip_names: &[String]) -> Impostor {
        let own: Vec<String> = own_domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        let protected: Vec<String> = own.iter().chain(protected_domains).cloned().collect();
        Impostor {
            own_domains: own,
            lookalikes: Heuristics::new(&protected),
            vip_names: vip_names.iter().map(|name| normalise_name(name)).collect(),
        }
    }

    fn is_own(&self, domain: &str) -> bool {
        self.own_domains
            .iter()
            .any(|own| domain == own || domain.ends_with(&format!(".{own}")))
    }
}

/// Lowercase words without punctuation, so `"Smith, Jane"` and `Jane  Smith` compare.
fn normalise_name(name: &str) -> String {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.join(" ")
}

impl Stage for Impostor {
    fn name(&self) -> &'static str {
        "impostor"
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let Some(from) = &context.from else {
            return;
        };
        let Some(from_domain) = domain_of(&from.address) else {
            return;
        };
        let dmarc_pass = hits.iter().any(|hit| hit.name == symbols::DMARC_PASS.name);
        let authenticated = hits.iter().any(|hit| hit.name.starts_with("DMARC_"));
        if self.is_own(&from_domain) && authenticated && !dmarc_pass {
            hits.push(Hit::new(
                &symbols::FROM_OWN_DOMAIN_UNAUTHENTICATED,
                format!("From {} without passing DMARC", from.address),
            ));
        }
        if let Some(reason) = self.lookalikes.lookalike(&from_domain) {
            hits.push(Hit::new(&symbols::FROM_LOOKALIKE_DOMAIN, reason));
        }
        if let Some(name) = &from.name {
            if !self.vip_names.is_empty() && !self.is_own(&from_domain) {
                let normalised = normalise_name(name);
                if self.vip_names.contains(&normalised) {
                    hits.push(Hit::new(
                        &symbols::FROM_VIP_NAME_OUTSIDE,
                        format!("\"{name}\" <{}>", from.address),
                    ));
                }
            }
            if let Some(shown) = name.split_whitespace().find(|word| word.contains('@'))
                && domain_of(shown).is_some_and(|shown_domain| shown_domain != from_domain)
            {
                hits.push(Hit::new(
                    &symbols::FROM_NAME_HAS_OTHER_ADDRESS,
                    format!("\"{name}\" <{}>", from.address),
                ));
            }
            if name.chars().any(invisible) {
                hits.push(Hit::new(
                    &symbols::FROM_INVISIBLE_CHARACTERS,
                    "zero-width or bidi control in the display name",
                ));
            }
        }
        if let Some(reply_to) = &context.reply_to
            && let Some(reply_domain) = domain_of(reply_to)
            && reply_domain != from_domain
        {
            if FREEMAIL.contains(&reply_domain.as_str()) && !FREEMAIL.contains(&from_domain.as_str()) {
                hits.push(Hit::new(
                    &symbols::REPLY_TO_FREEMAIL,
                    format!("Reply-To {reply_to}, From {}", from.address),
                ));
            } else {
                hits.push(Hit::new(
                    &symbols::REPLY_TO_OTHER_DOMAIN,
                    format!("Reply-To {reply_to}, From {}", from.address),
                ));
            }
        }
    }
}

/// The form of the header block: fields every mail program writes, and subjects written to shout.
pub struct HeaderForm;

impl Stage for HeaderForm {
    fn name(&self) -> &'static str {
        "header-form"
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let headers = context.headers;
        if headers.get("from").is_none() {
            hits.push(Hit::new(&symbols::MISSING_FROM, "no From field"));
        }
        // The newest Received field's time is when the message reached a server; without one,
        // when it reached us.
        // Our own field (the gateway adds it before the analysis) says nothing about the sender.
        let received: Vec<&str> = headers
            .fields
            .iter()
            .filter(|(name, _, _)| name == "received")
            .map(|(_, value, _)| value.as_str())
            .filter(|value| !value.contains("(Portcullis) with "))
            .collect();
        if received.is_empty() {
            hits.push(Hit::new(&symbols::RECEIVED_NONE, "no Received field"));
        }
        let arrived = received
            .first()
            .and_then(|value| value.rsplit_once(';'))
            .and_then(|(_, date)| mail_parser::DateTime::parse_rfc822(date.trim()))
            .map_or(context.envelope.received_at, |date| date.to_timestamp());
        match headers.get("date") {
            None => hits.push(Hit::new(&symbols::MISSING_DATE, "no Date field")),
            Some(date) => match mail_parser::DateTime::parse_rfc822(date) {
                None => hits.push(Hit::new(&symbols::INVALID_DATE, format!("Date: {}", clip(date)))),
                Some(written) => {
                    let ahead = written.to_timestamp() - arrived;
                    if ahead > 6 * 3600 {
                        let detail = format!("{} hours after it was received", ahead / 3600);
                        hits.push(Hit::new(&symbols::DATE_IN_FUTURE, detail));
                    } else if ahead < -4 * 86400 {
                        let detail = format!("{} days before it was received", -ahead / 86400);
                        hits.push(Hit::new(&symbols::DATE_IN_PAST, detail));
                    }
                }
            },
        }
        match headers.get("message-id") {
            None => hits.push(Hit::new(&symbols::MISSING_MESSAGE_ID, "no Message-ID field")),
            Some(id) if !(id.contains('@') && id.trim().starts_with('<') && id.trim().ends_with('>')) => {
                hits.push(Hit::new(
                    &symbols::INVALID_MESSAGE_ID,
                    format!("Message-ID: {}", clip(id)),
                ));
            }
            Some(_) => {}
        }
        if let Some(subject) = &context.subject {
            let lower = subject.trim_start().to_lowercase();
            let replies = ["re:", "re :", "fw:", "fwd:", "aw:", "sv:", "返信:", "転送:"];
            if replies.iter().any(|prefix| lower.starts_with(prefix))
                && headers.get("in-reply-to").is_none()
                && headers.get("references").is_none()
                // Outlook's forwards and some mobile replies carry only Exchange's thread fields.
                && headers.get("thread-index").is_none()
            {
                hits.push(Hit::new(&symbols::SUBJECT_FAKE_REPLY, clip(subject)));
            }
            let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
            if letters.len() >= 10
                && letters.iter().all(|c| !c.is_lowercase())
                && letters.iter().any(|c| c.is_uppercase())
            {
                hits.push(Hit::new(&symbols::SUBJECT_ALL_CAPS, clip(subject)));
            }
            if subject.chars().any(invisible) {
                hits.push(Hit::new(
                    &symbols::SUBJECT_INVISIBLE_CHARACTERS,
                    "zero-width or bidi control",
                ));
            }
        }
    }
}

/// At most 80 characters of a value from the message, for a symbol's detail.
pub(crate) fn clip(value: &str) -> String {
    value.chars().take(80).collect()
}

/// Bulk mail signals, EOP's bulk complaint level (BCL) in spirit: list headers, one-click
/// unsubscribe, `Precedence: bulk`, an email service provider's fingerprints, unsubscribe wording
/// and tracking pixels. Their weights (group bulk) sum to the bulk score; `X-Portcullis-BCL` is that
/// score rounded and capped at 9.
pub struct Bulk;

/// Header fields only bulk senders' platforms write.
const ESP_FIELDS: &[&str] = &[
    "x-mailgun-sid",
    "x-mailgun-variables",
    "x-ses-outgoing",
    "x-sg-eid",
    "x-sg-id",
    "x-mc-user",
    "x-mandrill-user",
    "x-campaign",
    "x-campaignid",
    "x-mailchimp-campaign",
    "x-sfmc-stack",
    "x-marketo-id",
    "x-hubspot-id",
    "x-cmae-score",
    "feedback-id",
];

const UNSUBSCRIBE_WORDS: &[&str] = &["unsubscribe", "opt out", "opt-out", "配信停止", "登録解除"];

impl Stage for Bulk {
    fn name(&self) -> &'static str {
        "bulk"
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let headers = context.headers;
        if let Some(unsubscribe) = headers.get("list-unsubscribe") {
            hits.push(Hit::new(&symbols::BULK_LIST_UNSUBSCRIBE, clip(unsubscribe)));
        }
        if headers.get("list-unsubscribe-post").is_some() {
            hits.push(Hit::new(&symbols::BULK_ONE_CLICK_UNSUBSCRIBE, "List-Unsubscribe-Post"));
        }
        if let Some(list) = headers.get("list-id") {
            hits.push(Hit::new(&symbols::BULK_LIST_ID, clip(list)));
        }
        if let Some(precedence) = headers.get("precedence")
            && ["bulk", "list", "junk"].contains(&precedence.trim().to_ascii_lowercase().as_str())
        {
            hits.push(Hit::new(
                &symbols::BULK_PRECEDENCE,
                format!("Precedence: {}", clip(precedence)),
            ));
        }
        if let Some((name, _, _)) = headers
            .fields
            .iter()
            .find(|(name, _, _)| ESP_FIELDS.contains(&name.as_str()))
        {
            hits.push(Hit::new(&symbols::BULK_ESP, format!("{name} field")));
        }
        let mut wording = None;
        let mut pixel = false;
        for body in &context.parts.bodies {
            let text = String::from_utf8_lossy(body).to_lowercase();
            if wording.is_none() {
                wording = UNSUBSCRIBE_WORDS.iter().find(|word| text.contains(*word));
            }
            pixel = pixel || has_tracking_pixel(&text);
        }
        if let Some(word) = wording {
            hits.push(Hit::new(
                &symbols::BULK_UNSUBSCRIBE_WORDING,
                format!("\"{word}\" in the body"),
            ));
        }
        if pixel {
            hits.push(Hit::new(&symbols::BULK_TRACKING_PIXEL, "a 1×1 image"));
        }
    }
}

/// An `<img>` one pixel wide and high: a read receipt nobody asked for.
fn has_tracking_pixel(html: &str) -> bool {
    html.match_indices("<img").any(|(at, _)| {
        let tag = &html[at..html[at..].find('>').map_or(html.len(), |end| at + end)];
        let one = |attribute: &str| {
            [
                format!("{attribute}=\"1\""),
                format!("{attribute}='1'"),
                format!("{attribute}=1 "),
                format!("{attribute}:1px"),
            ]
            .iter()
            .any(|form| tag.contains(form.as_str()))
        };
        one("width") && one("height")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_whatever_their_order_and_punctuation() {
        assert_eq!(normalise_name("Smith, Jane"), normalise_name("jane  SMITH"));
        assert_ne!(normalise_name("Jane Smith"), normalise_name("Jane Smithers"));
        assert!(invisible('\u{200B}') && invisible('\u{202E}') && !invisible('a'));
    }

    #[test]
    fn tracking_pixels_are_one_by_one_images() {
        assert!(has_tracking_pixel(r#"<p>x</p><img src="o.gif" width="1" height="1">"#));
        assert!(has_tracking_pixel("<img style=\"width:1px;height:1px\" src=o.gif>"));
        assert!(!has_tracking_pixel(r#"<img src="logo.png" width="120" height="1">"#));
        assert!(!has_tracking_pixel("<img src=\"a\" width=\"1\""));
    }
}
