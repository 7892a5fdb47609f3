//! The pages users see: warning, block and error pages from `static/page.html`, embedded in the
//! binary. Every value shown is HTML-escaped.

use crate::config::ClickConfig;
use crate::escape::html as escape;

const TEMPLATE: &str = include_str!("../../static/page.html");

/// What a page says.
pub struct Page<'a> {
    pub title: &'a str,
    pub heading: &'a str,
    pub message: &'a str,
    /// The destination, shown with its domain emphasised.
    pub destination: Option<&'a url::Url>,
    /// `(label, href)`: a button that continues to the destination (click-through).
    pub proceed: Option<(&'a str, &'a str)>,
    pub accent: &'static str,
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
        .map(|s| format!("Questions? Contact {}.", escape(s)))
        .unwrap_or_default();
    let destination = page
        .destination
        .map(|url| {
            let domain = url.host_str().unwrap_or_default();
            format!(
                r#"<p>Destination domain: <span class="domain">{}</span></p><p class="destination">{}</p>"#,
                escape(domain),
                escape(url.as_str())
            )
        })
        .unwrap_or_default();
    let mut actions = String::from(r#"<div class="actions">"#);
    if let Some((label, href)) = page.proceed {
        actions.push_str(&format!(
            r#"<a class="button secondary" rel="noreferrer" href="{}">{}</a>"#,
            escape(href),
            escape(label)
        ));
    }
    actions.push_str("</div>");
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
            _ => {}
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}
