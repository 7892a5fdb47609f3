//! Finding links in HTML with lol_html: `a[href]`, `area[href]`, SVG `a[xlink:href]`,
//! `form[action]`, `formaction` on buttons and inputs, VML `href`s in Outlook conditional comments,
//! `meta http-equiv=refresh` URLs, `<base href>`, absolute `url(…)`s in `style` attributes and
//! `<style>` elements, and URLs written as text outside links (mail clients make those clickable;
//! they are rewritten in place, as in plain text). The scan only records where each value sits in
//! the original bytes; the caller writes the changes.

use std::cell::RefCell;
use std::ops::Range;

use encoding_rs::Encoding;
use lol_html::html_content::TextType;
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, Settings, doc_comments, doc_text, element, text};

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
    // Text outside links (merged runs of adjacent chunks), text inside links, and style sheets.
    let text_runs = RefCell::new(Vec::<Range<usize>>::new());
    let anchor_text = RefCell::new(Vec::<Range<usize>>::new());
    let style_sheets = RefCell::new(Vec::<Range<usize>>::new());
    let css_values = RefCell::new(Vec::<Range<usize>>::new());
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
            // SVG links: `<a xlink:href>` (SVG 2 uses plain `href`, handled above).
            element!("a", |el| {
                if let Some(attribute) = el.attributes().iter().find(|a| a.name() == "xlink:href") {
                    record(attribute);
                }
                Ok(())
            }),
            element!("*[style]", |el| {
                if let Some(location) = el
                    .attributes()
                    .iter()
                    .find(|a| a.name() == "style")
                    .and_then(|a| a.value_source_location())
                {
                    css_values.borrow_mut().push(location.bytes());
                }
                Ok(())
            }),
            text!("a[href]", |chunk| {
                anchor_text.borrow_mut().push(chunk.source_location().bytes());
                Ok(())
            }),
            text!("style", |chunk| {
                style_sheets.borrow_mut().push(chunk.source_location().bytes());
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
        document_content_handlers: vec![
            doc_comments!(|comment| {
                let range = comment.source_location().bytes();
                if comment.text().trim_start().starts_with("[if") && range.len() >= 7 {
                    conditional_comments.borrow_mut().push(range.start + 4..range.end - 3);
                }
                Ok(())
            }),
            doc_text!(|chunk| {
                if chunk.text_type() == TextType::Data {
                    push_merged(&mut text_runs.borrow_mut(), chunk.source_location().bytes());
                }
                Ok(())
            }),
        ],
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
    // URLs written as text outside links, found as in plain text (entities stay as written: the
    // caller decodes them before deciding, and the link replaces the text in place).
    // Text inside links and style sheets (SVG `<style>` also reaches the text handler) is not text
    // a client links. Both lists are in document order: walk them beside the runs, never nested.
    let mut excluded = Vec::new();
    for chunk in anchor_text.into_inner() {
        push_merged(&mut excluded, chunk);
    }
    let sheets = style_sheets.into_inner();
    excluded.extend(sheets.iter().cloned());
    excluded.sort_by_key(|r| r.start);
    let mut next_excluded = 0;
    for run in text_runs.into_inner() {
        while next_excluded < excluded.len() && excluded[next_excluded].end <= run.start {
            next_excluded += 1;
        }
        if excluded.get(next_excluded).is_some_and(|x| x.start < run.end) {
            continue;
        }
        let mapped = charset::decode_mapped(&bytes[run.clone()], encoding);
        // Links are found in what the reader sees (`https&#58;//` shows as `https://`) and replaced
        // in what was written.
        let (seen, starts) = super::target::decode_entities_mapped(&mapped.text);
        for link in super::text::find(&seen) {
            let (start, end) = (starts[link.range.start], starts[link.range.end]);
            let range = mapped.original_range(start, end);
            // `www.` links come back with `http://` in front; the written text keeps its entities.
            let prefix = &link.url[..link.url.len() - (link.range.end - link.range.start)];
            found.links.push(FoundLink {
                range: run.start + range.start + offset..run.start + range.end + offset,
                raw: format!("{prefix}{}", &mapped.text[start..end]),
            });
        }
    }
    // `url(…)` in style sheets and style attributes: only absolute web URLs are links.
    for range in sheets.into_iter().chain(css_values.into_inner()) {
        let css = String::from_utf8_lossy(&bytes[range.clone()]);
        if css.len() != range.len() {
            continue; // Not ASCII-clean: offsets would not map; such CSS holds no url() we can sign.
        }
        for url in css_urls(&css) {
            found.links.push(FoundLink {
                range: range.start + url.start + offset..range.start + url.end + offset,
                raw: css[url].to_string(),
            });
        }
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

/// Adds `range` to `runs`, joining it to the last run when they touch (one text node often comes in
/// several chunks).
fn push_merged(runs: &mut Vec<Range<usize>>, range: Range<usize>) {
    match runs.last_mut() {
        Some(last) if last.end == range.start => last.end = range.end,
        _ => runs.push(range),
    }
}

/// The absolute web URLs in `url(…)` values of a style sheet or style attribute, as ranges of `css`
/// (inside the quotes when quoted; `&quot;` counts as a quote in an attribute).
fn css_urls(css: &str) -> Vec<Range<usize>> {
    let lower = css.to_ascii_lowercase();
    let mut urls = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("url(") {
        let mut start = from + found + 4;
        from = start;
        start += css[start..].len() - css[start..].trim_start().len();
        let rest = &css[start..];
        let (start, end) = if let Some(quote) = ["\"", "'", "&quot;", "&#39;"].iter().find(|q| rest.starts_with(**q)) {
            let inner = start + quote.len();
            match css[inner..].find(*quote) {
                Some(close) => (inner, inner + close),
                None => continue,
            }
        } else {
            match rest.find(')') {
                Some(close) => (start, start + rest[..close].trim_end().len()),
                None => continue,
            }
        };
        let value = lower[start..end].trim_start();
        if value.starts_with("http:") || value.starts_with("https:") || value.starts_with("//") {
            urls.push(start..end);
        }
        from = end;
    }
    urls
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
    fn text_urls_svg_links_and_css() {
        let html = r#"<p>Go to https://t.example/a?x=1&amp;y=2 or www.w.example.</p><a href="https://a.example/">https://shown.example/</a>
<svg><a xlink:href="https://svg.example/"><text>x</text></a></svg><div style="background:url(&quot;https://css.example/i.png&quot;)">d</div>
<style>p { background: url( 'https://sheet.example/b.png' ) } q { background: url(/relative.png) }</style><script>var u = "https://script.example/";</script>"#;
        assert_eq!(
            urls(html),
            [
                "https://t.example/a?x=1&amp;y=2",
                "www.w.example",
                "https://a.example/",
                "https://svg.example/",
                "https://css.example/i.png",
                "https://sheet.example/b.png",
            ]
        );
    }

    #[test]
    fn svg_style_and_unlinked_anchors() {
        // SVG `<style>` reaches both the text and the style handlers: one link, not two.
        assert_eq!(
            urls("<svg><style>p{background:url(https://e.example/x)}</style></svg>"),
            ["https://e.example/x"]
        );
        // A scheme hidden behind a character reference still shows as a link.
        assert_eq!(
            urls("<p>see https&#58;//hidden.example/x now"),
            ["https&#58;//hidden.example/x"]
        );
        // An `<a name>` without href does not hide the text in it.
        assert_eq!(urls("<a name=top>see https://t.example/ now"), ["https://t.example/"]);
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
