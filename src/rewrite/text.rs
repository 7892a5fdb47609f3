//! Finding links in plain text the way mail clients make them clickable: `scheme://` URLs (any
//! scheme; only http(s) is rewritten later) and bare `www.` links, with IPv6 literals, IDN and CJK
//! host names, `_` in labels, ports, user info, fragments and backslashes (a browser reads `\` as
//! `/`) kept whole. A URL ends at white space, control characters, `<`, `>`, `"`, U+FFFD, and at
//! CJK text, typographic punctuation or full-width brackets in its path; trailing punctuation and
//! unbalanced closing brackets are left out, as readers expect.

use std::ops::Range;

/// A link in decoded text: its range and the URL it stands for (`www.` links get `http://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLink {
    pub range: Range<usize>,
    pub url: String,
}

/// Characters that end a URL path even without a space: CJK scripts and punctuation, full-width
/// forms, typographic quotes, zero-width and bidi controls, and spaces.
fn ends_url(c: char) -> bool {
    matches!(c,
        '\u{00A0}' | '\u{2000}'..='\u{206F}' | '\u{2E80}'..='\u{2FFF}' | '\u{3000}'..='\u{30FF}'
        | '\u{3100}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}' | '\u{FF00}'..='\u{FFEF}' | '\u{FFFD}')
}

/// Of the characters that end a path, the ones that may still stand in a host name (IDN labels in
/// CJK scripts): letters, not punctuation, spaces or full-width forms.
fn host_letter(c: char) -> bool {
    matches!(c,
        '\u{2E80}'..='\u{2FFF}' | '\u{3040}'..='\u{30FF}' | '\u{3100}'..='\u{9FFF}'
        | '\u{AC00}'..='\u{D7AF}' | '\u{F900}'..='\u{FAFF}')
}

fn stops(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '`')
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

pub fn find(text: &str) -> Vec<TextLink> {
    let bytes = text.as_bytes();
    let mut links = Vec::new();
    // No link starts inside the previous one.
    let mut taken = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (start, authority, has_scheme) = if bytes[i..].starts_with(b"://") {
            let mut start = i;
            while start > taken && is_scheme_byte(bytes[start - 1]) {
                start -= 1;
            }
            // A scheme starts with a letter; `1http://` or `.http://` start at the letter.
            while start < i && !bytes[start].is_ascii_alphabetic() {
                start += 1;
            }
            // `xhttps://host`: some clients see `https://host` in it; take that part, never less.
            let scheme = &text[start..i];
            let lower = scheme.to_ascii_lowercase();
            for web in ["https", "http"] {
                if lower.ends_with(web) && lower != web {
                    start = i - web.len();
                    break;
                }
            }
            if start == i {
                i += 3;
                continue;
            }
            (start, i + 3, true)
        } else if bytes[i].eq_ignore_ascii_case(&b'w')
            && bytes.len() > i + 4
            && bytes[i..i + 4].eq_ignore_ascii_case(b"www.")
            && !text[..i].chars().next_back().is_some_and(joins_www)
        {
            (i, i, false)
        } else {
            i += 1;
            continue;
        };
        let end = url_end(text, authority);
        if end > authority {
            let found = &text[start..end];
            let url = if has_scheme {
                found.to_string()
            } else {
                format!("http://{found}")
            };
            links.push(TextLink { range: start..end, url });
            taken = end;
            i = end;
        } else {
            i = authority.max(i + 1);
        }
    }
    links
}

/// Characters before `www.` that make it part of something else (`a.www.`, `me@www.`, `x/www.`).
fn joins_www(c: char) -> bool {
    // CJK text runs straight into links without a space (`詳しくはwww.example.jp`): it never joins.
    (c.is_alphanumeric() && !ends_url(c)) || matches!(c, '.' | '-' | '_' | '@' | '/' | ':' | '%' | '=' | '&' | '+')
}

/// Where the URL whose authority starts at `authority` ends in `text`.
fn url_end(text: &str, authority: usize) -> usize {
    let mut chars = text[authority..].char_indices().map(|(o, c)| (authority + o, c));
    // The authority: user info, host (any script, `[v6]`), port.
    let mut host_start = authority;
    let mut authority_end = text.len();
    let mut in_path = false;
    for (at, c) in chars.by_ref() {
        if stops(c) || (ends_url(c) && !host_letter(c)) {
            authority_end = at;
            break;
        }
        if matches!(c, '/' | '?' | '#' | '\\') {
            authority_end = at;
            in_path = true;
            break;
        }
        if c == '@' {
            host_start = at + 1;
        }
    }
    let host_end = cut_host(text, host_start, authority_end);
    if host_end < authority_end || !in_path {
        return trim_trailing(text, authority, host_end.min(authority_end));
    }
    let mut end = text.len();
    for (at, c) in chars {
        if stops(c) || ends_url(c) {
            end = at;
            break;
        }
    }
    trim_trailing(text, authority, end)
}

/// A host written in CJK is a host (`例え.テスト`), but CJK text straight after an ASCII host
/// (`example.jpをご覧ください`) is the sentence going on: the last label ends where the script
/// changes, and every CJK character in the host must come before its last dot or fill its last label.
fn cut_host(text: &str, start: usize, end: usize) -> usize {
    let host = &text[start..end];
    let trimmed = host.trim_end_matches('.');
    let last_label_start = trimmed.rfind('.').map_or(0, |d| d + 1);
    let last = &trimmed[last_label_start..];
    let has_ascii = last.chars().any(|c| c.is_ascii_alphanumeric());
    match last.char_indices().find(|(_, c)| host_letter(*c)) {
        Some((offset, _)) if has_ascii => start + last_label_start + offset,
        _ => {
            // CJK elsewhere in the host (before the last label) is taken as an IDN label.
            if host.chars().any(host_letter) && !trimmed.contains('.') && !has_ascii {
                // A bare run of CJK after `://` with no dot is not a host anyone links to.
                start
            } else {
                end
            }
        }
    }
}

/// Drops trailing punctuation and closing brackets without an opening one inside the URL. The
/// brackets are counted once: a URL followed by a million `)` costs a million steps, not a trillion.
fn trim_trailing(text: &str, start: usize, mut end: usize) -> usize {
    let url = &text[start..end];
    let count = |c: char| url.bytes().filter(|&b| b == c as u8).count();
    let open = [count('('), count('['), count('{')];
    let mut close = [count(')'), count(']'), count('}')];
    while let Some(last) = text[start..end].chars().next_back() {
        let bracket = match last {
            ')' => Some(0),
            ']' => Some(1),
            '}' => Some(2),
            _ => None,
        };
        let drop = match (last, bracket) {
            ('.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*', _) => true,
            (_, Some(kind)) => close[kind] > open[kind],
            _ => false,
        };
        if !drop {
            return end;
        }
        if let Some(kind) = bracket {
            close[kind] -= 1;
        }
        end -= last.len_utf8();
    }
    end
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

    #[test]
    fn links_clients_make_clickable_are_whole() {
        for (text, expected) in [
            ("at http://[2001:db8::1]/x now", "http://[2001:db8::1]/x"),
            ("idn http://пример.рф/ ok", "http://пример.рф/"),
            ("cjk http://例え.テスト/パス ok", "http://例え.テスト/"),
            ("under http://my_host.example.com/x", "http://my_host.example.com/x"),
            ("decimal http://3232235777/x", "http://3232235777/x"),
            ("single http://x.y/z", "http://x.y/z"),
            ("frag https://example.com#frag.", "https://example.com#frag"),
            ("dot http://example.com./x", "http://example.com./x"),
            ("slash https://example.com\\path", "https://example.com\\path"),
            ("port https://example.com:8443/a?b=c;", "https://example.com:8443/a?b=c"),
            ("user https://u:p@example.com/a", "https://u:p@example.com/a"),
            ("jp https://example.jpをご覧ください", "https://example.jp"),
            ("glued xhttps://evil.example/", "https://evil.example/"),
            ("bad https://example.com/a\u{FFFD} next", "https://example.com/a"),
            ("zw https://example.com/a\u{200B}b", "https://example.com/a"),
        ] {
            assert_eq!(urls(text), [expected], "{text}");
        }
        assert_eq!(urls("ftp://files.example/x"), ["ftp://files.example/x"]);
        assert_eq!(urls("詳しくはwww.evil.example/をご覧"), ["http://www.evil.example/"]);
        let many = format!("https://a.example/{}", ")".repeat(200_000));
        assert_eq!(urls(&many), ["https://a.example/"]);
        assert_eq!(urls("me@www.example.com a.www.example.com"), Vec::<String>::new());
    }
}
