//! Deciding what a found link points to, as a browser would read it, and whether we rewrite it:
//! WHATWG parsing, `<base href>` resolution, skip rules and the do-not-rewrite list.

use url::Url;

/// Why a link was left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// mailto:, tel:, cid:, data:, javascript: and every other non-web scheme.
    Scheme,
    /// `#fragment` only.
    Fragment,
    /// A relative link with nothing to resolve it against.
    Relative,
    /// Does not parse as a URL.
    Invalid,
    /// Already one of our links.
    Ours,
    /// Matches the do-not-rewrite list.
    DoNotRewrite,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Scheme => "scheme",
            SkipReason::Fragment => "fragment",
            SkipReason::Relative => "relative",
            SkipReason::Invalid => "invalid",
            SkipReason::Ours => "ours",
            SkipReason::DoNotRewrite => "do-not-rewrite",
        }
    }
}

/// Parses a link the way a browser resolves an `href`: surrounding spaces and control characters
/// trimmed, tabs and newlines inside removed, backslashes as slashes, scheme case folded, `//host`
/// resolved against `https:`, and relative references resolved against `<base href>` when there is
/// one. Returns the absolute http(s) URL or why it is skipped.
pub fn resolve(raw: &str, base: Option<&Url>) -> Result<Url, SkipReason> {
    resolve_in(raw, base, None)
}

/// [`resolve`] for a link in a document whose charset is `query_encoding`: a browser sends the
/// query of such a link in the document's charset, not UTF-8 (WHATWG URL parsing with an encoding
/// override), so that is what gets signed. `None`, UTF-8 and UTF-16 documents use UTF-8.
pub fn resolve_in(
    raw: &str,
    base: Option<&Url>,
    query_encoding: Option<&'static encoding_rs::Encoding>,
) -> Result<Url, SkipReason> {
    let encoding = query_encoding.filter(|e| e.output_encoding() != encoding_rs::UTF_8);
    let parse = |text: &str, base: Option<&Url>| {
        let options = Url::options().base_url(base);
        match encoding {
            Some(encoding) => {
                let encode = query_encoder(move |query| encoding.encode(query).0);
                options.encoding_override(Some(&encode)).parse(text)
            }
            None => options.parse(text),
        }
    };
    let trimmed = raw.trim_matches(|c: char| c <= ' ');
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Err(SkipReason::Fragment);
    }
    let url = match parse(trimmed, None) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let cleaned: String = trimmed.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
            let scheme_relative = cleaned.starts_with("//")
                || cleaned.starts_with("\\\\")
                || cleaned.starts_with("/\\")
                || cleaned.starts_with("\\/");
            match base {
                Some(base) => parse(trimmed, Some(base)).map_err(|_| SkipReason::Invalid)?,
                None if scheme_relative => {
                    let https = Url::parse("https://scheme-relative.invalid/").expect("static URL");
                    parse(trimmed, Some(&https)).map_err(|_| SkipReason::Invalid)?
                }
                None => return Err(SkipReason::Relative),
            }
        }
        Err(_) => return Err(SkipReason::Invalid),
    };
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(SkipReason::Invalid),
        _ => Err(SkipReason::Scheme),
    }
}

/// Pins the closure's signature to the one `url`'s encoding override wants (for every lifetime).
fn query_encoder<F: for<'a> Fn(&'a str) -> std::borrow::Cow<'a, [u8]>>(encode: F) -> F {
    encode
}

/// Decodes the character references that appear in attribute values, including the HTML5 names
/// used to hide a scheme (`javascript&colon;`). Unknown references stay as written.
pub fn decode_entities(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains('&') {
        return value.into();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        match decode_one_entity(rest) {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

/// [`decode_entities`] with a map back: `starts[i]` is where, in `value`, the character that
/// begins at offset `i` of the decoded text came from (`starts[len]` is `value.len()`), so a link
/// found in what a reader sees can be replaced in what was written.
pub fn decode_entities_mapped(value: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(value.len());
    let mut starts = Vec::with_capacity(value.len() + 1);
    let mut at = 0;
    while at < value.len() {
        let rest = &value[at..];
        let (c, used) = match rest.starts_with('&').then(|| decode_one_entity(rest)).flatten() {
            Some(decoded) => decoded,
            None => {
                let c = rest.chars().next().expect("not at the end");
                (c, c.len_utf8())
            }
        };
        starts.extend(std::iter::repeat_n(at, c.len_utf8()));
        out.push(c);
        at += used;
    }
    starts.push(value.len());
    (out, starts)
}

fn decode_one_entity(s: &str) -> Option<(char, usize)> {
    let body = &s[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (digits, radix, skip) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 3),
            None => (num, 10, 2),
        };
        let len = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
        if len == 0 {
            return None;
        }
        let code = u32::from_str_radix(&digits[..len], radix).ok()?;
        let c = char::from_u32(code).filter(|&c| c != '\0').unwrap_or('\u{FFFD}');
        let semicolon = usize::from(digits[len..].starts_with(';'));
        return Some((c, skip + len + semicolon));
    }
    const NAMED: &[(&str, char)] = &[
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", '\u{a0}'),
        ("colon", ':'),
        ("sol", '/'),
        ("bsol", '\\'),
        ("Tab", '\t'),
        ("NewLine", '\n'),
        ("period", '.'),
        ("quest", '?'),
        ("equals", '='),
        ("num", '#'),
        ("percnt", '%'),
        ("commat", '@'),
        ("lpar", '('),
        ("rpar", ')'),
        ("excl", '!'),
        ("plus", '+'),
        ("comma", ','),
        ("semi", ';'),
        ("lowbar", '_'),
    ];
    let name_len = body.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(body.len());
    let name = &body[..name_len];
    let &(_, c) = NAMED.iter().find(|(n, _)| *n == name)?;
    if body[name_len..].starts_with(';') {
        return Some((c, 1 + name_len + 1));
    }
    // Legacy references without `;` are only honoured for the classic four.
    matches!(name, "amp" | "lt" | "gt" | "quot").then_some((c, 1 + name_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_map_back_to_what_was_written() {
        let written = "go https&#58;//x.example/?a=1&amp;b=2 now";
        let (seen, starts) = decode_entities_mapped(written);
        assert_eq!(seen, "go https://x.example/?a=1&b=2 now");
        let start = seen.find("https").unwrap();
        let end = seen.find(" now").unwrap();
        assert_eq!(
            &written[starts[start]..starts[end]],
            "https&#58;//x.example/?a=1&amp;b=2"
        );
    }

    #[test]
    fn queries_are_signed_in_the_document_charset() {
        let windows = resolve_in("https://shop.example/s?q=café#é", None, Some(encoding_rs::WINDOWS_1252)).unwrap();
        assert_eq!(windows.as_str(), "https://shop.example/s?q=caf%E9#%C3%A9");
        let utf8 = resolve_in("https://shop.example/s?q=café", None, Some(encoding_rs::UTF_8)).unwrap();
        assert_eq!(utf8.as_str(), "https://shop.example/s?q=caf%C3%A9");
        let sjis = resolve_in("https://shop.example/é/s?q=日本", None, Some(encoding_rs::SHIFT_JIS)).unwrap();
        assert_eq!(sjis.as_str(), "https://shop.example/%C3%A9/s?q=%93%FA%96{");
    }

    #[test]
    fn resolves_like_a_browser() {
        let ok = |raw: &str| resolve(raw, None).map(|u| u.to_string());
        assert_eq!(ok("HTTP://Example.COM/a").unwrap(), "http://example.com/a");
        assert_eq!(ok(" ht\ttp://ex\nample.com/p ").unwrap(), "http://example.com/p");
        assert_eq!(ok("https:\\\\evil.com\\x").unwrap(), "https://evil.com/x");
        assert_eq!(ok("//evil.com/x").unwrap(), "https://evil.com/x");
        assert_eq!(ok("mailto:a@b"), Err(SkipReason::Scheme));
        assert_eq!(ok("#top"), Err(SkipReason::Fragment));
        assert_eq!(ok("/login"), Err(SkipReason::Relative));
        let base = Url::parse("http://evil.example/").unwrap();
        assert_eq!(
            resolve("/login", Some(&base)).unwrap().as_str(),
            "http://evil.example/login"
        );
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a&amp;b&#x41;&#66;&colon;&bogus;&amp"),
            "a&bAB:&bogus;&"
        );
    }
}
