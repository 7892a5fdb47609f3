//! HTML and SVG attachments: opened locally by the recipient's browser, outside the gateway's link
//! rewriting, which is why phishing kits ship as them. Scripts, event handlers, SVG
//! `foreignObject` and embedded frames are active content; a form posting off the page or a
//! password field is a credential form; every link target is kept for the reputation check.

use std::cell::RefCell;

use lol_html::{HtmlRewriter, Settings, element};

#[derive(Debug, Default)]
pub struct Report {
    pub active: Option<String>,
    pub form: Option<String>,
    pub links: Vec<String>,
}

const MAX_LINKS: usize = 200;

pub fn inspect(bytes: &[u8]) -> Report {
    let report = RefCell::new(Report::default());
    let active = |report: &RefCell<Report>, what: String| {
        let mut report = report.borrow_mut();
        if report.active.is_none() {
            report.active = Some(what);
        }
    };
    let settings = Settings {
        element_content_handlers: vec![element!("*", |el| {
            let tag = el.tag_name().to_ascii_lowercase();
            if matches!(tag.as_str(), "script" | "foreignobject" | "iframe" | "embed" | "object") {
                active(&report, format!("<{tag}>"));
            }
            for attribute in el.attributes() {
                let name = attribute.name().to_ascii_lowercase();
                let value = attribute.value();
                if name.starts_with("on") && name.len() > 2 {
                    active(&report, format!("{name} handler on <{tag}>"));
                }
                let is_target = matches!(
                    name.as_str(),
                    "href" | "xlink:href" | "action" | "formaction" | "src" | "data"
                );
                if !is_target {
                    continue;
                }
                let target = value.trim();
                if target.to_ascii_lowercase().starts_with("javascript:") {
                    active(&report, format!("javascript: {name} on <{tag}>"));
                } else if (target.starts_with("http://") || target.starts_with("https://") || target.starts_with("//"))
                    && matches!(name.as_str(), "href" | "xlink:href" | "action" | "formaction")
                {
                    let mut report = report.borrow_mut();
                    let url = if target.starts_with("//") {
                        format!("https:{target}")
                    } else {
                        target.to_string()
                    };
                    if report.links.len() < MAX_LINKS && !report.links.contains(&url) {
                        report.links.push(url);
                    }
                }
            }
            if tag == "form" {
                let action = el.get_attribute("action").unwrap_or_default();
                let action = action.trim();
                if action.starts_with("http://") || action.starts_with("https://") || action.starts_with("//") {
                    let shown: String = action.chars().take(100).collect();
                    report.borrow_mut().form.get_or_insert(format!("form posts to {shown}"));
                }
            }
            if tag == "input"
                && el
                    .get_attribute("type")
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("password"))
            {
                report.borrow_mut().form.get_or_insert("password field".into());
            }
            if tag == "meta"
                && el
                    .get_attribute("http-equiv")
                    .is_some_and(|h| h.trim().eq_ignore_ascii_case("refresh"))
                && let Some(content) = el.get_attribute("content")
                && let Some(at) = content.to_ascii_lowercase().find("url=")
            {
                let url = content[at + 4..].trim().trim_matches(['\'', '"']).to_string();
                let mut report = report.borrow_mut();
                if report.links.len() < MAX_LINKS && !url.is_empty() {
                    report.links.push(url);
                }
            }
            Ok(())
        })],
        strict: false,
        ..Settings::new()
    };
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    // Whatever lol_html read before refusing the rest still counts.
    match rewriter.write(bytes) {
        Ok(()) => {
            let _ = rewriter.end();
        }
        Err(_) => drop(rewriter),
    }
    report.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_scripts_and_links() {
        let report = inspect(
            br#"<html><body><form action="https://collector.test/post"><input type="password"></form>
            <a href="https://feed-listed.test/x">go</a></body></html>"#,
        );
        assert_eq!(
            report.form.as_deref(),
            Some("form posts to https://collector.test/post")
        );
        assert_eq!(
            report.links,
            vec!["https://collector.test/post", "https://feed-listed.test/x"]
        );
        assert!(report.active.is_none());

        let svg = inspect(br#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><p>x</p></foreignObject></svg>"#);
        assert_eq!(svg.active.as_deref(), Some("<foreignobject>"));
        let svg = inspect(br#"<svg onload="fetch('//x')"></svg>"#);
        assert!(svg.active.unwrap().contains("onload"));
        let clean = inspect(b"<html><p>Minutes of the meeting</p></html>");
        assert!(clean.active.is_none() && clean.form.is_none() && clean.links.is_empty());
    }
}
