//! Finding links in plain text with linkify: URLs with a scheme, bare `www.` links, URLs in angle
//! brackets, without trailing punctuation or an unbalanced closing parenthesis, and stopping at
//! CJK text and full-width brackets that follow a URL without a space.

use std::ops::Range;

use linkify::{LinkFinder, LinkKind};

/// A link in decoded text: its range and the URL it stands for (`www.` links get `http://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLink {
    pub range: Range<usize>,
    pub url: String,
}

/// Characters that end a URL even without a space: CJK scripts and punctuation, full-width forms,
/// typographic quotes and spaces.
fn ends_url(c: char) -> bool {
    matches!(c,
        '\u{00A0}' | '\u{2000}'..='\u{206F}' | '\u{2E80}'..='\u{2FFF}' | '\u{3000}'..='\u{30FF}'
        | '\u{3100}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}' | '\u{FF00}'..='\u{FFEF}')
}

pub fn find(text: &str) -> Vec<TextLink> {
    // linkify would take CJK letters as part of an IRI; blank them out byte for byte so every
    // offset stays valid for the original text.
    let masked;
    let scan_text = if text.is_ascii() || !text.chars().any(ends_url) {
        text
    } else {
        let mut blanked = String::with_capacity(text.len());
        for c in text.chars() {
            if ends_url(c) {
                blanked.extend(std::iter::repeat_n(' ', c.len_utf8()));
            } else {
                blanked.push(c);
            }
        }
        masked = blanked;
        &masked
    };
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]).url_must_have_scheme(false);
    finder
        .links(scan_text)
        .filter_map(|link| {
            let found = &text[link.start()..link.end()];
            let has_scheme = found.contains("://")
                || found
                    .split_once(':')
                    .is_some_and(|(s, _)| s.bytes().all(|b| b.is_ascii_alphabetic()));
            let url = if has_scheme {
                found.to_string()
            } else if found.len() > 4 && found.as_bytes()[..4].eq_ignore_ascii_case(b"www.") {
                format!("http://{found}")
            } else {
                return None;
            };
            Some(TextLink {
                range: link.start()..link.end(),
                url,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<String> {
        find(text).into_iter().map(|l| l.url).collect()
    }

    #[test]
    fn plain_text_links() {
        assert_eq!(
            urls("see www.example.com/a, or (https://x.org/b_(c)) and <http://y.net/>."),
            ["http://www.example.com/a", "https://x.org/b_(c)", "http://y.net/"]
        );
        assert_eq!(
            urls("詳細はhttps://example.jp/pathをご覧ください（https://example.jp/q）"),
            ["https://example.jp/path", "https://example.jp/q"]
        );
        assert_eq!(urls("mail me: a@example.com or example.com"), Vec::<String>::new());
    }
}
