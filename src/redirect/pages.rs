//! The pages users see: warning, block and error pages from `static/page.html`, embedded in the
//! binary. Every value shown is HTML-escaped.

use crate::config::ClickConfig;
use crate::escape::html as escape;

const TEMPLATE: &str = include_str!("../../static/page.html");

/// What a page says.
pub struct Page<'a> {
    /// The language the page is in.
    pub words: &'a crate::i18n::Catalog,
    pub title: &'a str,
    pub heading: &'a str,
    pub message: &'a str,
    /// The destination, shown with its domain emphasised.
    pub destination: Option<&'a url::Url>,
    /// `(label, href)`: a button that continues to the destination (click-through).
    pub proceed: Option<(&'a str, &'a str)>,
    pub accent: &'static str,
    /// "Go back" as the primary action.
    pub go_back: bool,
    /// A form posting signed fields: "report a mistake" on a block page, a confirmation on a
    /// quarantine digest page.
    pub form: Option<PageForm<'a>>,
}

/// A form of hidden fields and one submit button.
pub struct PageForm<'a> {
    /// Where it posts (`/report`, `/quarantine`).
    pub action: &'static str,
    pub fields: &'a [(&'static str, String)],
    pub label: &'a str,
    /// A button (the page's action) rather than a link-styled one (a side option).
    pub primary: bool,
}

/// The one script a page runs: "Go back" returns to the message, or closes a tab opened for the
/// link. Allowed by its hash in the pages' Content-Security-Policy, nothing else is.
pub const GO_BACK_SCRIPT: &str =
    "document.getElementById('back').onclick=function(){if(history.length>1){history.back()}else{window.close()}};";

/// The pages' Content-Security-Policy, with the hash of [`GO_BACK_SCRIPT`].
pub fn content_security_policy() -> &'static str {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(GO_BACK_SCRIPT.as_bytes()));
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; img-src https:; script-src 'sha256-{hash}'; form-action 'self'"
        )
    })
}

/// A support contact as a link: `mailto:` for an address, the URL itself for a web page.
fn support_link(contact: &str) -> String {
    let text = escape(contact);
    let lower = contact.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!(r#"<a href="{text}">{text}</a>"#)
    } else if contact.contains('@') && !contact.contains(char::is_whitespace) {
        let address = contact.trim_start_matches("mailto:");
        format!(r#"<a href="mailto:{}">{}</a>"#, escape(address), escape(address))
    } else {
        text
    }
}

/// A word with one value that is already HTML put in: the word is escaped, the value is not.
fn escape_around(words: &crate::i18n::Catalog, key: &str, name: &str, html: &str) -> String {
    // A marker no translation contains stands in for the value while the word is escaped.
    const MARK: &str = "\u{E000}";
    escape(&words.fill(key, &[(name, MARK)])).replacen(MARK, html, 1)
}

pub fn render(config: &ClickConfig, page: &Page<'_>) -> String {
    let organisation = escape(&config.organisation);
    let logo = config
        .logo_url
        .as_deref()
        .map(|u| format!(r#"<img class="logo" src="{}" alt="{organisation}">"#, escape(u)))
        .unwrap_or_default();
    let support = config
        .support_contact
        .as_deref()
        .map(|s| escape_around(page.words, "page.questions", "contact", &support_link(s)))
        .unwrap_or_default();
    let destination = page
        .destination
        .map(|url| {
            let domain = url.host_str().unwrap_or_default();
            format!(
                r#"<p>{} <span class="domain">{}</span></p><p class="destination">{}</p>"#,
                escape(page.words.word("page.destination_domain")),
                escape(domain),
                escape(url.as_str())
            )
        })
        .unwrap_or_default();
    let mut actions = String::from(r#"<div class="actions">"#);
    if page.go_back {
        actions.push_str(&format!(
            r#"<button type="button" class="button primary" id="back">{}</button>"#,
            escape(page.words.word("page.go_back"))
        ));
    }
    if let Some((label, href)) = page.proceed {
        actions.push_str(&format!(
            r#"<a class="button secondary" rel="noreferrer" href="{}">{}</a>"#,
            escape(href),
            escape(label)
        ));
    }
    actions.push_str("</div>");
    if let Some(form) = &page.form {
        let (class, button) = if form.primary {
            ("confirm", "button primary")
        } else {
            ("report", "link")
        };
        actions.push_str(&format!(
            r#"<form class="{class}" method="post" action="{}">"#,
            form.action
        ));
        for (name, value) in form.fields {
            actions.push_str(&format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                escape(value)
            ));
        }
        actions.push_str(&format!(
            r#"<button type="submit" class="{button}">{}</button></form>"#,
            escape(form.label)
        ));
    }
    if page.go_back {
        actions.push_str("<script>");
        actions.push_str(GO_BACK_SCRIPT);
        actions.push_str("</script>");
    }
    // Values are substituted in one pass so text from one value is never read as a placeholder.
    let mut out = String::with_capacity(TEMPLATE.len() + 1024);
    let mut rest = TEMPLATE;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else { break };
        let name = &rest[start + 2..start + end];
        match name {
            "title" => out.push_str(&escape(page.title)),
            "heading" => out.push_str(&escape(page.heading)),
            "message" => out.push_str(&escape(page.message)),
            "organisation" => out.push_str(&organisation),
            "logo" => out.push_str(&logo),
            "support" => out.push_str(&support),
            "destination" => out.push_str(&destination),
            "actions" => out.push_str(&actions),
            "accent" => out.push_str(page.accent),
            "lang" => out.push_str(&escape(&page.words.tag)),
            "protected_by" => out.push_str(&escape_around(
                page.words,
                "page.protected_by",
                "organisation",
                &organisation,
            )),
            _ => {}
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}
