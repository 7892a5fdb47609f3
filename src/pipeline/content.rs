//! The message as its reader sees it: the text of every text part decoded to Unicode, the visible
//! text of HTML (scripts, style sheets and hidden elements apart), every link with the text it
//! shows, forms, password fields and images. Built once per message, bounded, for the content
//! stages and the classifier; nothing here changes the message.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use lol_html::html_content::TextType;
use lol_html::{HtmlRewriter, Settings, doc_text, element, text};

use super::malware::Parts;
use crate::rewrite::charset;
use crate::rewrite::target::decode_entities;

/// Text kept per message: enough for every detector, bounded for a hostile one.
const MAX_TEXT: usize = 256 * 1024;
/// Bytes of one part read; the rest of a huge part is not text anyone reads.
const MAX_PART: usize = 1024 * 1024;
const MAX_LINKS: usize = 1000;
const MAX_HIDDEN: usize = 200;

/// A link and what it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The destination as written, character references decoded.
    pub href: String,
    /// The visible text inside the link (empty for an image-only link; the URL itself for a link
    /// written as plain text).
    pub text: String,
    /// Found in a plain-text part (the text is the URL).
    pub plain: bool,
}

/// A stretch of text the reader does not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenRun {
    pub text: String,
    /// Visible letters touch it on both sides: it splits a word (the ZeroFont trick).
    pub splits_word: bool,
    pub in_link: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Content {
    /// The visible text of every text part, in order, at most 256 KiB.
    pub text: String,
    pub plain_parts: usize,
    pub html_parts: usize,
    pub links: Vec<Link>,
    /// Each form's action (empty when it has none).
    pub forms: Vec<String>,
    pub password_fields: usize,
    pub images: usize,
    pub hidden: Vec<HiddenRun>,
    /// A text part with 8-bit bytes that declares no charset, or US-ASCII.
    pub undeclared_8bit: bool,
}

impl Content {
    pub fn of(parts: &Parts) -> Content {
        let mut content = Content::default();
        for (body, leaf) in parts.bodies.iter().zip(&parts.leaves) {
            if leaf.attachment || content.text.len() >= MAX_TEXT {
                continue;
            }
            let is_html = match leaf.mime.as_str() {
                "text/html" => true,
                "text/plain" => false,
                _ => continue,
            };
            let body = &body[..body.len().min(MAX_PART)];
            let label = leaf.charset.as_deref();
            if !body.is_ascii() && label.is_none_or(|l| matches!(l, "us-ascii" | "ascii" | "ansi_x3.4-1968")) {
                content.undeclared_8bit = true;
            }
            let text = match charset::resolve(label, body) {
                Some(encoding) => encoding.decode_without_bom_handling(body).0.into_owned(),
                None => String::from_utf8_lossy(body).into_owned(),
            };
            if is_html {
                content.html_parts += 1;
                read_html(&text, &mut content);
            } else {
                content.plain_parts += 1;
                for link in crate::rewrite::text::find(&text) {
                    if content.links.len() < MAX_LINKS {
                        content.links.push(Link {
                            href: link.url.clone(),
                            text: link.url,
                            plain: true,
                        });
                    }
                }
                push_text(&mut content.text, &text);
            }
        }
        content
    }

    /// Visible characters other than white space.
    pub fn visible_chars(&self) -> usize {
        self.text.chars().filter(|c| !c.is_whitespace()).count()
    }
}

fn push_text(out: &mut String, text: &str) {
    if out.len() >= MAX_TEXT {
        return;
    }
    if !out.is_empty() && !out.ends_with(char::is_whitespace) {
        out.push(' ');
    }
    let room = MAX_TEXT - out.len();
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&text[..end]);
}

/// What an element's own inline style (and `hidden` attribute) does to the text inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Visibility {
    /// `display:none`, zero opacity, `hidden`: nothing inside can be seen, whatever it says.
    pub removed: bool,
    /// A zero font size, `visibility:hidden`, text the colour of its background: hidden unless
    /// an element inside sets a size, `visible` or a colour again (responsive templates put
    /// `font-size:0` on a cell and the real size on its content).
    pub hidden: bool,
    /// Sets a visible font size, `visibility:visible` or a colour: undoes `hidden` above it.
    pub reveals: bool,
}

/// Reads an inline style.
pub fn visibility(style: &str) -> Visibility {
    let style: String = style
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let declarations: Vec<(&str, &str)> = style
        .split(';')
        .filter_map(|d| d.split_once(':'))
        .map(|(name, value)| (name, value.trim_end_matches("!important")))
        .collect();
    let value = |name: &str| declarations.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| *v);
    let zero = |v: &str| {
        let number: String = v.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
        !number.is_empty() && number.parse::<f64>().is_ok_and(|n| n == 0.0)
    };
    let colour = value("color");
    let background = value("background-color").or(value("background"));
    let hidden = value("visibility") == Some("hidden")
        || value("font-size").is_some_and(zero)
        || matches!((colour, background), (Some(c), Some(b)) if !c.is_empty() && c == b && c != "inherit");
    Visibility {
        removed: value("display") == Some("none") || value("opacity").is_some_and(zero),
        hidden,
        reveals: !hidden
            && (value("font-size").is_some_and(|v| !zero(v))
                || value("visibility") == Some("visible")
                || colour.is_some()),
    }
}

/// Tags that start a new line or cell: text on either side of them is not one word.
fn breaks_words(markup: &str) -> bool {
    const BLOCKS: &[&str] = &[
        "p",
        "div",
        "br",
        "td",
        "th",
        "tr",
        "li",
        "ul",
        "ol",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "blockquote",
        "center",
        "section",
        "article",
        "header",
        "footer",
        "img",
    ];
    let lower = markup.to_ascii_lowercase();
    lower.match_indices('<').any(|(at, _)| {
        let name: String = lower[at + 1..]
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        BLOCKS.contains(&name.as_str())
    })
}

#[derive(Default)]
struct HtmlScan {
    /// Text chunks in document order: where, and the text as written.
    chunks: Vec<(Range<usize>, String)>,
    skipped: Vec<Range<usize>>,
    removed: Vec<Range<usize>>,
    /// Elements hiding their text and elements showing it again, by start: the innermost one
    /// around a chunk decides.
    hidden: Vec<Range<usize>>,
    revealed: Vec<Range<usize>>,
    /// Each link's href and where its element spans (end unknown until its end tag).
    anchors: Vec<(String, Range<usize>)>,
    forms: Vec<String>,
    password_fields: usize,
    images: usize,
}

fn read_html(html: &str, content: &mut Content) {
    let scan = Rc::new(RefCell::new(HtmlScan::default()));
    let settings = Settings {
        element_content_handlers: vec![
            element!("*", |el| {
                let mut seen = el.get_attribute("style").map(|s| visibility(&s)).unwrap_or_default();
                seen.removed |= el.has_attribute("hidden");
                let matters = seen.removed || seen.hidden || seen.reveals;
                let start = el.source_location().bytes().start;
                let is_anchor = el.tag_name() == "a" && el.has_attribute("href");
                let anchor_index = scan.borrow().anchors.len();
                if is_anchor {
                    let href = el.get_attribute("href").unwrap_or_default();
                    scan.borrow_mut().anchors.push((href, start..usize::MAX));
                }
                if (matters || is_anchor)
                    && let Some(handlers) = el.end_tag_handlers()
                {
                    let scan = scan.clone();
                    handlers.push(lol_html::end_tag!(move |end| {
                        let end = end.source_location().bytes().end;
                        let mut scan = scan.borrow_mut();
                        let list = if seen.removed {
                            &mut scan.removed
                        } else if seen.hidden {
                            &mut scan.hidden
                        } else {
                            &mut scan.revealed
                        };
                        if matters && list.len() < 50_000 {
                            list.push(start..end);
                        }
                        if is_anchor && let Some(anchor) = scan.anchors.get_mut(anchor_index) {
                            anchor.1.end = end;
                        }
                        Ok(())
                    }));
                }
                Ok(())
            }),
            text!("script, style, title, head", |chunk| {
                scan.borrow_mut().skipped.push(chunk.source_location().bytes());
                Ok(())
            }),
            element!("form", |el| {
                scan.borrow_mut()
                    .forms
                    .push(el.get_attribute("action").unwrap_or_default());
                Ok(())
            }),
            element!("input[type]", |el| {
                if el
                    .get_attribute("type")
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("password"))
                {
                    scan.borrow_mut().password_fields += 1;
                }
                Ok(())
            }),
            element!("img", |_| {
                scan.borrow_mut().images += 1;
                Ok(())
            }),
        ],
        document_content_handlers: vec![doc_text!(|chunk| {
            if chunk.text_type() == TextType::Data && !chunk.as_str().is_empty() {
                let mut scan = scan.borrow_mut();
                if scan.chunks.len() < 100_000 {
                    scan.chunks
                        .push((chunk.source_location().bytes(), chunk.as_str().to_string()));
                }
            }
            Ok(())
        })],
        strict: false,
        ..Settings::new()
    };
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    // A document lol_html refuses part way still gave what it read before.
    if rewriter.write(html.as_bytes()).is_ok() {
        let _ = rewriter.end();
    }
    let scan = std::mem::take(&mut *scan.borrow_mut());

    content
        .forms
        .extend(scan.forms.into_iter().map(|a| decode_entities(&a).into_owned()));
    content.password_fields += scan.password_fields;
    content.images += scan.images;
    let inside = |ranges: &[Range<usize>], at: &Range<usize>| {
        let i = ranges.partition_point(|r| r.end <= at.start);
        ranges.get(i).is_some_and(|r| r.start <= at.start)
    };
    let skipped = merged(scan.skipped);
    let removed = merged(scan.removed);
    let (mut hiding, mut revealing) = (scan.hidden, scan.revealed);
    hiding.sort_by_key(|r| r.start);
    revealing.sort_by_key(|r| r.start);
    // The start of the innermost range around `at` (looking back at most 64 ranges: nesting
    // deeper than that is not how text is styled).
    let innermost = |ranges: &[Range<usize>], at: &Range<usize>| {
        let before = ranges.partition_point(|r| r.start <= at.start);
        ranges[..before]
            .iter()
            .rev()
            .take(64)
            .find(|r| r.end >= at.end)
            .map(|r| r.start)
    };
    let is_hidden = |at: &Range<usize>| {
        inside(&removed, at)
            || match (innermost(&hiding, at), innermost(&revealing, at)) {
                (Some(hidden), Some(shown)) => hidden > shown,
                (hidden, _) => hidden.is_some(),
            }
    };
    let first_link = content.links.len();
    for (href, _) in &scan.anchors {
        if content.links.len() < MAX_LINKS {
            content.links.push(Link {
                href: decode_entities(href.trim()).into_owned(),
                text: String::new(),
                plain: false,
            });
        }
    }
    let anchor_of = |at: &Range<usize>| {
        let i = scan.anchors.partition_point(|(_, r)| r.start <= at.start);
        i.checked_sub(1)
            .filter(|&i| scan.anchors[i].1.end >= at.end)
            .map(|i| first_link + i)
    };

    // Visible text, with a space wherever block markup separated two chunks; hidden runs with
    // what touches them.
    let mut visible = String::new();
    let mut previous_end = 0;
    let mut open_run: Option<(HiddenRun, usize)> = None;
    for (range, raw) in &scan.chunks {
        if inside(&skipped, range) {
            continue;
        }
        let text = decode_entities(raw);
        let separated = breaks_words(html.get(previous_end..range.start).unwrap_or(""));
        previous_end = range.end;
        let link = anchor_of(range).filter(|&i| i < content.links.len());
        if is_hidden(range) {
            let run = open_run.get_or_insert_with(|| {
                let touches = !separated && visible.chars().last().is_some_and(char::is_alphanumeric);
                (
                    HiddenRun {
                        text: String::new(),
                        splits_word: touches,
                        in_link: false,
                    },
                    0,
                )
            });
            run.0.in_link |= link.is_some();
            if run.0.text.len() < 1024 {
                run.0.text.push_str(&text);
            }
            continue;
        }
        if let Some((mut run, _)) = open_run.take() {
            run.splits_word = run.splits_word
                && !separated
                && text.chars().next().is_some_and(char::is_alphanumeric)
                && run.text.chars().any(char::is_alphanumeric);
            if !run.text.trim().is_empty() && content.hidden.len() < MAX_HIDDEN {
                content.hidden.push(run);
            }
        }
        if separated && !visible.ends_with(char::is_whitespace) && !visible.is_empty() {
            visible.push(' ');
        }
        if let Some(i) = link
            && content.links[i].text.len() < 1024
        {
            content.links[i].text.push_str(&text);
        }
        if visible.len() < MAX_TEXT {
            visible.push_str(&text);
        }
    }
    if let Some((run, _)) = open_run
        && !run.text.trim().is_empty()
        && content.hidden.len() < MAX_HIDDEN
    {
        content.hidden.push(HiddenRun {
            splits_word: false,
            ..run
        });
    }
    for link in &mut content.links[first_link..] {
        link.text = link.text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    push_text(&mut content.text, &visible);
}

/// Sorted, overlapping ranges joined.
fn merged(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(body: &str) -> Content {
        let mut content = Content::default();
        read_html(body, &mut content);
        content
    }

    #[test]
    fn visible_text_links_and_hidden_runs() {
        let c = html(
            "<html><head><title>T</title><style>p{}</style></head><body><p>Dear <b>cust</b>omer,</p>\
             <p>Sign in to Mic<span style=\"font-size: 0px\">zz</span>rosoft</p>\
             <a href=\"https://evil.example/a?x=1&amp;y=2\">https://www.bank.example/login</a>\
             <div style=\"display:none\">preview text</div><p>Bye</p>\
             <form action=\"https://evil.example/post\"><input type=\"Password\"></form><img src=x></body></html>",
        );
        assert_eq!(
            c.text,
            "Dear customer, Sign in to Microsoft https://www.bank.example/login Bye"
        );
        assert_eq!(c.links.len(), 1);
        assert_eq!(c.links[0].href, "https://evil.example/a?x=1&y=2");
        assert_eq!(c.links[0].text, "https://www.bank.example/login");
        assert_eq!(c.hidden.len(), 2);
        assert!(c.hidden[0].splits_word && c.hidden[0].text == "zz");
        assert!(!c.hidden[1].splits_word && c.hidden[1].text == "preview text");
        assert_eq!(c.forms, vec!["https://evil.example/post".to_string()]);
        assert_eq!((c.password_fields, c.images), (1, 1));
    }

    #[test]
    fn a_zero_font_cell_with_sized_content_is_visible() {
        // MJML and hybrid templates: font-size:0 on the cell, the real size on its content.
        let c = html(
            "<table><tr><td style=\"font-size:0px;padding:10px\"><div style=\"font-size:16px;color:#333\">\
             Your order has shipped. <a href=\"https://shop.example/track\">Track it</a></div></td></tr></table>\
             <div style=\"font-size:14px\">Hi<span style=\"font-size:0\">zz</span>there</div>",
        );
        assert_eq!(c.text, "Your order has shipped. Track it Hithere");
        assert_eq!(c.links[0].text, "Track it");
        assert_eq!(c.hidden.len(), 1);
        assert!(c.hidden[0].splits_word && c.hidden[0].text == "zz");
    }

    /// Whether a style hides what it applies to, before anything inside it speaks.
    fn hides(style: &str) -> bool {
        let v = visibility(style);
        v.removed || v.hidden
    }

    #[test]
    fn styles_that_hide() {
        assert!(hides("display : none"));
        assert!(hides("font-size:0"));
        assert!(hides("FONT-SIZE: 0.0pt; color: red"));
        assert!(hides("color:#fff;background-color:#fff"));
        assert!(hides("opacity:0"));
        assert!(!hides("font-size:10px"));
        assert!(!hides("opacity:0.5"));
        assert!(!hides("display:block"));
        assert!(!hides("color:#fff;background-color:#000"));
    }

    #[test]
    fn unclosed_and_broken_markup_never_panics() {
        for body in [
            "<a href=x>never closed",
            "<span style='display:none'>x",
            "</a></span><<>>&amp",
            "",
        ] {
            let _ = html(body);
        }
    }
}
