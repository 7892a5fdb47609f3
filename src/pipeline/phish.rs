//! The phish stage: what a credential-harvesting message looks like from the inside. Links that
//! show one domain and go to another, to bare IP addresses, through shorteners, with a user name
//! before the host or invisible characters inside; forms and password fields in the body; sign-in
//! and account-suspension wording (English and Japanese); and text hidden between the letters of
//! visible words or inside links (ZeroFont). Each only adds symbols; the weights live in the
//! registry.

use url::{Host, Url};

use crate::pipeline::sender::{clip, invisible};
use crate::pipeline::symbols::{self, Hit};
use crate::pipeline::{ScanContext, Stage};
use crate::reputation::heuristics::registrable_part;

pub struct Phish {
    /// `reputation.redirects.shorteners`: the hosts the click service follows redirects through.
    shorteners: Vec<String>,
}

impl Phish {
    pub fn new(shorteners: &[String]) -> Phish {
        Phish {
            shorteners: shorteners.iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }
}

/// A link's text that ends in one of these is a file's name (`Q3-report.pdf` linking to the file
/// share), not a domain, even where the extension is also a top-level domain.
const FILE_EXTENSIONS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "xlsm", "ppt", "pptx", "txt", "csv", "md", "rtf", "odt", "ods", "zip", "rar",
    "7z", "gz", "tar", "png", "jpg", "jpeg", "gif", "svg", "mp4", "mov", "mp3", "js", "ts", "py", "rs", "json", "xml",
    "yaml", "yml", "html", "htm", "eml", "msg", "ics", "vcf", "exe", "msi", "dmg", "apk",
];

/// Email service providers' click-tracking hosts: every link of a newsletter goes through them
/// while its text names the shop, so a mismatch there says nothing.
const CLICK_TRACKERS: &[&str] = &[
    "sendgrid.net",
    "list-manage.com",
    "mailchimp.com",
    "mandrillapp.com",
    "awstrack.me",
    "hubspotlinks.com",
    "hs-analytics.net",
    "exacttarget.com",
    "klclick.com",
    "klclick1.com",
    "rs6.net",
    "createsend1.com",
    "cmail19.com",
    "cmail20.com",
    "mailgun.org",
    "sparkpostmail.com",
    "mcsv.net",
    "salesforce.com",
    "marketo.com",
    "mktoweb.com",
    "mkt.com",
];

/// The part of a host two links must share to be "the same place": an IP address whole, a name
/// by its registrable domain.
fn site(host: &str) -> &str {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        bare
    } else {
        registrable_part(host)
    }
}

/// Phrases of credential phishing, lower case. Two of them, or one in a message with few links,
/// add the symbol; any of them needs a link to click.
const CREDENTIAL_PHRASES: &[&str] = &[
    "verify your account",
    "verify your identity",
    "verify your email",
    "confirm your account",
    "confirm your identity",
    "confirm your password",
    "confirm your details",
    "update your account",
    "update your payment",
    "update your billing",
    "validate your account",
    "account has been suspended",
    "account will be suspended",
    "account will be closed",
    "account has been locked",
    "account has been limited",
    "unusual sign-in",
    "unusual activity",
    "suspicious activity",
    "sign in to your account",
    "log in to your account",
    "login to your account",
    "password will expire",
    "password expires",
    "mailbox is full",
    "mailbox quota",
    "reactivate your account",
    "re-activate your account",
    "restore your account",
    "unlock your account",
    "enter your password",
    "click here to verify",
    "アカウントを確認",
    "アカウントの確認",
    "本人確認",
    "アカウントが停止",
    "アカウントを停止",
    "アカウントがロック",
    "パスワードの有効期限",
    "パスワードを更新",
    "お支払い情報を更新",
    "お支払い方法を更新",
    "ログインして確認",
    "不正なアクセス",
    "不正アクセス",
    "異常なサインイン",
    "利用制限",
    "メールボックスの容量",
];

/// The host a link's visible text names, when the text is a URL or a bare domain.
fn shown_host(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches(['.', ',', ')', '>']);
    if text.contains(char::is_whitespace) || text.len() < 4 {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("http://") || lower.starts_with("https://") {
        lower
    } else if lower.starts_with("www.") {
        format!("http://{lower}")
    } else {
        // A bare domain: labels of letters, digits and hyphens, and a top-level label of letters.
        let host = lower.split('/').next()?;
        let tld = host.rsplit('.').next()?;
        if !host.contains('.')
            || FILE_EXTENSIONS.contains(&tld)
            || tld.len() < 2
            || !tld.chars().all(|c| c.is_ascii_alphabetic())
            || !host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return None;
        }
        format!("http://{lower}")
    };
    Url::parse(&with_scheme).ok()?.host_str().map(str::to_string)
}

/// Where a link really goes: foreign wrappers (Safe Links, URL Defense…) by their inner URL.
fn destination(href: &str) -> Option<Url> {
    let inner = crate::token::unwrap_foreign(href).map(|f| f.inner);
    let url = Url::parse(inner.as_deref().unwrap_or(href)).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(url)
}

fn has_invisible(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    text.chars().any(invisible)
        || [
            "%e2%80%8b",
            "%e2%80%8c",
            "%e2%80%8d",
            "%e2%80%8e",
            "%e2%80%8f",
            "%e2%80%ae",
            "%ef%bb%bf",
        ]
        .iter()
        .any(|encoded| lower.contains(encoded))
}

impl Stage for Phish {
    fn name(&self) -> &'static str {
        "phish"
    }

    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>) {
        let content = &context.content;
        let (mut mismatch, mut ip, mut shortener, mut userinfo, mut hidden_chars) = (None, None, None, None, None);
        for link in &content.links {
            // In the text only where it reads as an address: joiners and direction marks are
            // ordinary in emoji, Persian, Indic, Hebrew and Arabic text.
            let text_is_address = || {
                let seen: String = link.text.chars().filter(|c| !invisible(*c)).collect();
                link.text.chars().any(invisible) && shown_host(&seen).is_some()
            };
            if hidden_chars.is_none() && (has_invisible(&link.href) || (!link.plain && text_is_address())) {
                hidden_chars = Some(
                    link.href
                        .chars()
                        .filter(|c| !invisible(*c))
                        .take(80)
                        .collect::<String>(),
                );
            }
            let Some(url) = destination(&link.href) else {
                continue;
            };
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            if ip.is_none() && matches!(url.host(), Some(Host::Ipv4(_) | Host::Ipv6(_))) {
                ip = Some(host.clone());
            }
            if userinfo.is_none() && (!url.username().is_empty() || url.password().is_some()) {
                userinfo = Some(format!("{}@{host}", url.username()));
            }
            let bare = host.strip_prefix("www.").unwrap_or(&host);
            if shortener.is_none() && self.shorteners.iter().any(|s| s == bare) {
                shortener = Some(host.clone());
            }
            if mismatch.is_none()
                && !link.plain
                && let Some(shown) = shown_host(&link.text)
                && site(&shown) != site(&host)
                && !CLICK_TRACKERS.contains(&site(&host))
            {
                mismatch = Some(format!("shows {shown}, goes to {host}"));
            }
        }
        // A URL finder stops at an invisible character; a word that reads as a URL around one is
        // a URL with one inside.
        if hidden_chars.is_none() {
            hidden_chars = content
                .text
                .split_whitespace()
                .find(|word| word.chars().any(invisible) && (word.contains("://") || word.starts_with("www.")))
                .map(|word| word.chars().filter(|c| !invisible(*c)).take(80).collect());
        }
        let found = [
            (mismatch, &symbols::PHISH_LINK_TEXT_MISMATCH),
            (ip.map(|ip| format!("link to {ip}")), &symbols::URL_IP_LITERAL),
            (shortener.map(|s| format!("link through {s}")), &symbols::URL_SHORTENER),
            (userinfo.map(|u| format!("link to {u}")), &symbols::URL_USERINFO),
            (hidden_chars, &symbols::URL_INVISIBLE_CHARACTERS),
        ];
        for (detail, symbol) in found {
            if let Some(detail) = detail {
                hits.push(Hit::new(symbol, detail));
            }
        }

        if let Some(action) = content.forms.first() {
            let detail = match content.forms.len() {
                1 => format!("form posting to {}", clip(action)),
                n => format!("{n} forms, the first posting to {}", clip(action)),
            };
            hits.push(Hit::new(&symbols::PHISH_FORM, detail));
        }
        if content.password_fields > 0 {
            hits.push(Hit::new(
                &symbols::PHISH_PASSWORD_FIELD,
                format!("{} password fields", content.password_fields),
            ));
        }
        if !content.links.is_empty() {
            let text = format!("{} {}", context.subject.as_deref().unwrap_or(""), content.text).to_lowercase();
            let phrases: Vec<&str> = CREDENTIAL_PHRASES
                .iter()
                .copied()
                .filter(|phrase| text.contains(phrase))
                .collect();
            if phrases.len() >= 2 || (phrases.len() == 1 && content.links.len() <= 3) {
                hits.push(Hit::new(
                    &symbols::PHISH_CREDENTIAL_WORDING,
                    phrases
                        .iter()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
        }
        if let Some(run) = content.hidden.iter().find(|run| run.splits_word || run.in_link) {
            let place = if run.splits_word {
                "inside a word"
            } else {
                "inside a link"
            };
            hits.push(Hit::new(
                &symbols::HTML_ZERO_FONT,
                format!("hidden \"{}\" {place}", clip(run.text.trim())),
            ));
        } else if let Some(run) = content.hidden.first() {
            hits.push(Hit::new(
                &symbols::HTML_HIDDEN_TEXT,
                format!(
                    "{} hidden runs, the first \"{}\"",
                    content.hidden.len(),
                    clip(run.text.trim())
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_shown_in_link_text() {
        assert_eq!(
            shown_host("https://www.bank.example/login").as_deref(),
            Some("www.bank.example")
        );
        assert_eq!(shown_host("www.bank.example").as_deref(), Some("www.bank.example"));
        assert_eq!(shown_host("bank.example/login").as_deref(), Some("bank.example"));
        assert_eq!(shown_host("Click here"), None);
        assert_eq!(shown_host("v1.2"), None);
        assert_eq!(shown_host("e.g."), None);
        assert_eq!(shown_host("Q3-report.pdf"), None);
        assert_eq!(site("10.0.1.1"), "10.0.1.1");
        assert_ne!(site("10.0.1.1"), site("192.168.1.1"));
        assert_eq!(site("login.bank.example"), "bank.example");
    }

    #[test]
    fn invisible_characters_written_or_encoded() {
        assert!(has_invisible("https://pay\u{200B}pal.example/"));
        assert!(has_invisible("https://example.com/%E2%80%AEfdp.exe"));
        assert!(!has_invisible("https://example.com/a%20b"));
    }
}
