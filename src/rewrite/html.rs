//! Finding links in HTML with lol_html: `a[href]`, `area[href]`, `form[action]`, `formaction` on
//! buttons and inputs, VML `href`s in
//! Outlook conditional comments, `meta http-equiv=refresh` URLs, and `<base href>`. The scan only
//! records where each value sits in the original bytes; the caller writes the changes.

use std::cell::RefCell;
use std::ops::Range;

use encoding_rs::Encoding;
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, doc_comments, element};

use super::charset::{self, html_reads_directly};

/// A link value found in the document.
#[derive(Debug, Clone)]
pub struct FoundLink {
    /// Where the value's raw (still entity-encoded) text sits in the part's bytes.
    pub range: Range<usize>,
    /// The value as written (entities not yet decoded).
    pub raw: String,
}

/// What an HTML part links to.
#[derive(Debug, Default)]
pub struct HtmlLinks {
    pub links: Vec<FoundLink>,
    /// The first `<base href>` value, entity-encoded as written.
    pub base: Option<String>,
    /// lol_html refused the document; nothing in it was found.
    pub unparsable: bool,
}

/// Scans an HTML part given in its own charset.
pub fn scan(bytes: &[u8], encoding: &'static Encoding) -> HtmlLinks {
    if html_reads_directly(encoding) {
        return scan_ascii_compatible(bytes, encoding, 0);
    }
    // ISO-2022-JP and UTF-16: read a decoded copy, then map every range back to the original.
    let mapped = charset::decode_mapped(bytes, encoding);
    let mut found = scan_ascii_compatible(mapped.text.as_bytes(), encoding_rs::UTF_8, 0);
    for link in &mut found.links {
        link.range = mapped.original_range(link.range.start, link.range.end);
    }
    found
}

fn scan_ascii_compatible(bytes: &[u8], encoding: &'static Encoding, offset: usize) -> HtmlLinks {
    let found = RefCell::new(HtmlLinks::default());
    let conditional_comments = RefCell::new(Vec::<Range<usize>>::new());
    let record = |attribute: &lol_html::html_content::Attribute<'_>| {
        if let Some(location) = attribute.value_source_location() {
            let range = location.bytes();
            found.borrow_mut().links.push(FoundLink {
                range: range.start + offset..range.end + offset,
                raw: attribute.value(),
            });
        }
    };
    let settings = Settings {
        element_content_handlers: vec![
            element!("*[href]", |el| {
                let tag = el.tag_name();
                let Some(attribute) = el.attributes().iter().find(|a| a.name() == "href") else {
                    return Ok(());
                };
                match tag.as_str() {
                    "base" => {
                        let mut found = found.borrow_mut();
                        if found.base.is_none() {
                            found.base = Some(attribute.value());
                        }
                    }
                    // VML buttons (`v:roundrect`, `v:rect`…) live in Outlook conditional comments.
                    "a" | "area" => record(attribute),
                    t if t.starts_with("v:") => record(attribute),
                    _ => {}
                }
                Ok(())
            }),
            element!("form[action]", |el| {
                if let Some(attribute) = el.attributes().iter().find(|a| a.name() == "action") {
                    record(attribute);
                }
                Ok(())
            }),
            // A submit button can send its form somewhere else than the form's action.
            element!("button[formaction], input[formaction]", |el| {
                if let Some(attribute) = el.attributes().iter().find(|a| a.name() == "formaction") {
                    record(attribute);
                }
                Ok(())
            }),
            element!("meta[http-equiv][content]", |el| {
                let is_refresh = el
                    .get_attribute("http-equiv")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("refresh"));
                let content = el.attributes().iter().find(|a| a.name() == "content");
                if let (true, Some(attribute), Some(location)) =
                    (is_refresh, content, content.and_then(|a| a.value_source_location()))
                {
                    let value = attribute.value();
                    if let Some(url) = refresh_url(&value) {
                        let start = location.bytes().start + offset;
                        found.borrow_mut().links.push(FoundLink {
                            range: start + url.start..start + url.end,
                            raw: value[url].to_string(),
                        });
                    }
                }
                Ok(())
            }),
        ],
        document_content_handlers: vec![doc_comments!(|comment| {
            let range = comment.source_location().bytes();
            if comment.text().trim_start().starts_with("[if") && range.len() >= 7 {
                conditional_comments.borrow_mut().push(range.start + 4..range.end - 3);
            }
            Ok(())
        })],
        encoding: AsciiCompatibleEncoding::new(encoding).unwrap_or_else(AsciiCompatibleEncoding::utf_8),
        strict: false,
        ..Settings::new()
    };
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    let result = rewriter.write(bytes).and_then(|()| rewriter.end());
    let mut found = found.into_inner();
    if result.is_err() {
        found.unparsable = true;
        return found;
    }
    for inner in conditional_comments.into_inner() {
        if bytes.get(inner.clone()).is_some_and(|b| {
            b.windows(2)
                .any(|w| w.eq_ignore_ascii_case(b"<v") || w.eq_ignore_ascii_case(b"<a"))
        }) {
            let nested = scan_ascii_compatible(&bytes[inner.clone()], encoding, offset + inner.start);
            found.links.extend(nested.links);
        }
    }
    found.links.sort_by_key(|l| l.range.start);
    found
}

/// The URL inside a refresh `content` value (`5; url=https://…`, `0;URL='…'`, `3, https://…`), as
/// a range of `value`. Works on the raw value: its bytes are what we replace.
fn refresh_url(value: &str) -> Option<Range<usize>> {
    let separator = value.find([';', ','])?;
    let mut start = separator + 1;
    let rest = &value[start..];
    start += rest.len() - rest.trim_start().len();
    let rest = &value[start..];
    if rest.len() >= 3 && rest.as_bytes()[..3].eq_ignore_ascii_case(b"url") {
        let after = rest[3..].trim_start();
        if let Some(after_eq) = after.strip_prefix('=') {
            start = value.len() - after_eq.trim_start().len();
        }
    }
    let mut end = value.len();
    if let Some(quote @ ('"' | '\'')) = value[start..].chars().next() {
        start += 1;
        end = value[start..].find(quote).map_or(value.len(), |i| start + i);
    }
    let trimmed_end = start + value[start..end].trim_end().len();
    (trimmed_end > start).then_some(start..trimmed_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(html: &str) -> Vec<String> {
        let found = scan(html.as_bytes(), encoding_rs::UTF_8);
        found.links.iter().map(|l| html[l.range.clone()].to_string()).collect()
    }

    #[test]
    fn finds_every_kind_of_link() {
        let html = r#"<base href="http://b/"><a href='https://a/?x=1&amp;y=2'>a</a><area href=http://c/>
<form action="https://f/"><button formaction="https://b/">b</button></form><meta http-equiv="Refresh" content="0; URL='https://m/'">
<!--[if mso]><v:roundrect href="https://v/" arcsize="10%"><![endif]--><img src="https://i/">"#;
        assert_eq!(
            urls(html),
            [
                "https://a/?x=1&amp;y=2",
                "http://c/",
                "https://f/",
                "https://b/",
                "https://m/",
                "https://v/"
            ]
        );
        assert_eq!(
            scan(html.as_bytes(), encoding_rs::UTF_8).base.as_deref(),
            Some("http://b/")
        );
    }

    #[test]
    fn refresh_forms() {
        let get = |v: &str| refresh_url(v).map(|r| v[r].to_string());
        assert_eq!(get("5; url=https://x/").as_deref(), Some("https://x/"));
        assert_eq!(get("0;URL = \"https://x/\" ").as_deref(), Some("https://x/"));
        assert_eq!(get("3, https://x/").as_deref(), Some("https://x/"));
        assert_eq!(get("10"), None);
    }
}
