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
    let trimmed = raw.trim_matches(|c: char| c <= ' ');
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Err(SkipReason::Fragment);
    }
    let url = match Url::parse(trimmed) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let cleaned: String = trimmed.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
            let scheme_relative = cleaned.starts_with("//")
                || cleaned.starts_with("\\\\")
                || cleaned.starts_with("/\\")
                || cleaned.starts_with("\\/");
            match base {
                Some(base) => base.join(trimmed).map_err(|_| SkipReason::Invalid)?,
                None if scheme_relative => {
                    let https = Url::parse("https://scheme-relative.invalid/").expect("static URL");
                    https.join(trimmed).map_err(|_| SkipReason::Invalid)?
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

/// The do-not-rewrite list, compiled once.
#[derive(Debug, Clone, Default)]
pub struct DoNotRewrite {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// `Some` when the pattern names a scheme.
    scheme: Option<String>,
    host: String,
    /// `None`: any path.
    path: Option<String>,
}

impl DoNotRewrite {
    pub fn new(patterns: &[String]) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (scheme, rest) = match p.split_once("://") {
                    Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
                    None => (None, p),
                };
                let (host, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], Some(rest[i..].to_string())),
                    None => (rest, None),
                };
                Pattern {
                    scheme,
                    host: host.to_ascii_lowercase(),
                    path,
                }
            })
            .collect();
        Self { patterns }
    }

    pub fn matches(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let path_and_query = &url[url::Position::BeforePath..url::Position::AfterQuery];
        self.patterns.iter().any(|p| {
            p.scheme.as_deref().is_none_or(|s| s == url.scheme())
                && host_matches(&p.host, &host)
                && p.path
                    .as_deref()
                    .is_none_or(|pattern| glob(pattern.as_bytes(), path_and_query.as_bytes()))
        })
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    if let Some(apex) = pattern.strip_prefix("*.")
        && host == apex
    {
        return true;
    }
    glob(pattern.as_bytes(), host.as_bytes())
}

/// `*` matches any run of bytes; everything else matches itself.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
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

/// Escapes a value for an HTML attribute, whatever its quoting.
pub fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 16);
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn do_not_rewrite_patterns() {
        let list = DoNotRewrite::new(&[
            "*.example.com/*".into(),
            "docs.org/public/*".into(),
            "https://x.net".into(),
        ]);
        let m = |u: &str| list.matches(&Url::parse(u).unwrap());
        assert!(m("https://a.b.example.com/x"));
        assert!(m("http://example.com/"));
        assert!(!m("https://example.com.evil.net/"));
        assert!(m("https://docs.org/public/a?b"));
        assert!(!m("https://docs.org/private"));
        assert!(m("https://x.net/any"));
        assert!(!m("http://x.net/any"));
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a&amp;b&#x41;&#66;&colon;&bogus;&amp"),
            "a&bAB:&bogus;&"
        );
    }
}
