//! Heuristics that need no feed: IP-literal hosts, punycode and mixed-script hosts, and lookalikes
//! of the organisation's protected domains (UTS #39 confusable skeletons and edit distance).

use unicode_security::{MixedScript, skeleton};
use url::{Host, Url};

use super::{Category, Finding, Provider, ProviderFuture, Verdict};

pub struct Heuristics {
    /// Protected domains, lowercase, with their skeletons.
    protected: Vec<(String, String)>,
}

impl Heuristics {
    pub fn new(protected_domains: &[String]) -> Self {
        let protected = protected_domains
            .iter()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .map(|d| {
                let s = skeleton(&d).collect();
                (d, s)
            })
            .collect();
        Self { protected }
    }

    fn assess(&self, url: &Url) -> Option<Finding> {
        let suspicious = |category, reason: String| {
            Some(Finding {
                provider: "heuristics",
                verdict: Verdict::Suspicious,
                category,
                reason,
            })
        };
        let host = match url.host()? {
            Host::Ipv4(ip) => return suspicious(Category::Phish, format!("IP-literal host {ip}")),
            Host::Ipv6(ip) => return suspicious(Category::Phish, format!("IP-literal host [{ip}]")),
            Host::Domain(domain) => domain.trim_end_matches('.').to_ascii_lowercase(),
        };
        // The url crate gives punycode; look at what the user is shown.
        let (unicode, _) = idna::domain_to_unicode(&host);
        if let Some(reason) = self.lookalike(&host) {
            return suspicious(Category::Phish, reason);
        }
        if host.split('.').any(|label| label.starts_with("xn--")) {
            let labels_mixed = unicode.split('.').any(|label| !label.is_single_script());
            if labels_mixed {
                return suspicious(Category::Phish, format!("mixed-script host {unicode}"));
            }
        }
        None
    }
}

impl Heuristics {
    /// Why `domain` (ASCII or punycode) looks like a protected domain without being it or under
    /// it: the same confusable skeleton, or an edit or two away.
    pub fn lookalike(&self, domain: &str) -> Option<String> {
        let host = domain.trim_end_matches('.').to_ascii_lowercase();
        let (unicode, _) = idna::domain_to_unicode(&host);
        for (protected, _) in &self.protected {
            if host == *protected || host.ends_with(&format!(".{protected}")) {
                return None;
            }
        }
        let registrable = registrable_part(&unicode);
        let candidate_skeleton: String = skeleton(registrable).collect();
        for (protected, protected_skeleton) in &self.protected {
            if candidate_skeleton == *protected_skeleton {
                return Some(format!("{unicode} looks like {protected} (confusable characters)"));
            }
            let distance = edit_distance(registrable, protected);
            if distance > 0 && distance <= 1 + usize::from(protected.len() > 12) {
                return Some(format!("{unicode} is {distance} edit(s) from {protected}"));
            }
        }
        None
    }
}

/// The organisation's domain, near enough without the public suffix list: the last two labels
/// (`login.example.com` → `example.com`), or three under the common two-level country suffixes
/// (`shop.example.co.uk` → `example.co.uk`).
pub(crate) fn registrable_part(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    let labels: Vec<(usize, &str)> = std::iter::once(0)
        .chain(host.match_indices('.').map(|(i, _)| i + 1))
        .map(|start| (start, &host[start..]))
        .collect();
    let label = |from_end: usize| {
        labels
            .len()
            .checked_sub(from_end)
            .map(|i| host[labels[i].0..].split('.').next().unwrap_or(""))
    };
    let two_level = label(1).is_some_and(|tld| tld.len() == 2)
        && label(2).is_some_and(|second| {
            [
                "co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gob", "gv", "ltd", "plc",
            ]
            .contains(&second)
        });
    let keep = if two_level { 3 } else { 2 };
    match labels.len().checked_sub(keep) {
        Some(i) => &host[labels[i].0..],
        None => host,
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            current[j + 1] = (previous[j] + usize::from(ca != cb))
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

impl Provider for Heuristics {
    fn name(&self) -> &'static str {
        "heuristics"
    }

    fn check<'a>(&'a self, url: &'a Url) -> ProviderFuture<'a> {
        Box::pin(async move { Ok(self.assess(url)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(h: &Heuristics, url: &str) -> Option<String> {
        h.assess(&Url::parse(url).unwrap()).map(|f| f.reason)
    }

    #[test]
    fn registrable_parts() {
        assert_eq!(registrable_part("login.example.com"), "example.com");
        assert_eq!(registrable_part("example.com"), "example.com");
        assert_eq!(registrable_part("localhost"), "localhost");
        assert_eq!(registrable_part("shop.example.co.uk"), "example.co.uk");
        assert_eq!(registrable_part("a.b.example.ne.jp."), "example.ne.jp");
        assert_eq!(registrable_part("www.example.de"), "example.de");
    }

    #[test]
    fn flags_lookalikes_and_literals() {
        let h = Heuristics::new(&["example.com".into(), "paypal.com".into()]);
        assert!(verdict(&h, "http://192.0.2.7/login").is_some());
        assert!(verdict(&h, "http://[2001:db8::1]/").is_some());
        assert!(verdict(&h, "https://examp1e.com/").is_some(), "edit distance 1");
        assert!(verdict(&h, "https://раураl.com/").is_some(), "Cyrillic confusables");
        assert!(verdict(&h, "https://login.example.com/").is_none());
        assert!(verdict(&h, "https://example.com/").is_none());
        assert!(verdict(&h, "https://unrelated.org/").is_none());
    }
}
