//! URL patterns as operators write them (`example.com`, `*.example.com/*`, `https://host/path*`):
//! the rewriter's do-not-rewrite list and the click service's allow and block lists.

use url::Url;

/// A list of URL patterns, compiled once.
#[derive(Debug, Clone, Default)]
pub struct UrlPatterns {
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

impl UrlPatterns {
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
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_hosts_and_paths() {
        let list = UrlPatterns::new(&[
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
}
