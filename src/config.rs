//! The configuration: one TOML file, typed once, every setting with a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything Portcullis reads from its configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Keys, the click log and the spool live here. Created owner-only on first use.
    pub data_dir: PathBuf,
    pub links: LinksConfig,
    pub rewrite: RewriteConfig,
    pub click: ClickConfig,
    pub reputation: ReputationConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("portcullis-data"),
            links: LinksConfig::default(),
            rewrite: RewriteConfig::default(),
            click: ClickConfig::default(),
            reputation: ReputationConfig::default(),
        }
    }
}

/// How rewritten links look.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Public base URL of the click service; rewritten links start with `{base_url}/v1/`.
    pub base_url: String,
}

impl Default for LinksConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8025".into(),
        }
    }
}

/// What the rewriter touches and what it leaves alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteConfig {
    /// Destinations never rewritten: `example.com`, `*.example.com`, `*.example.com/public/*`,
    /// `https://host/path*`. `*` matches any run of characters; `*.` also matches the bare domain.
    pub do_not_rewrite: Vec<String>,
    /// Replace a foreign wrapper (Proofpoint, Safe Links) with the URL inside it instead of wrapping
    /// the foreign link as it stands. Either way the inner URL is recorded for the reputation check.
    pub unwrap_foreign: bool,
    /// Text parts larger than this (decoded) are left unrewritten and the message is flagged partial.
    pub max_part_bytes: usize,
    /// How many levels of base64/quoted-printable encoded `message/rfc822` attachments are opened.
    pub max_encoded_nesting: usize,
    /// How many MIME entities one message may have before the rest is left untouched.
    pub max_parts: usize,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        Self {
            do_not_rewrite: Vec::new(),
            unwrap_foreign: false,
            max_part_bytes: 32 * 1024 * 1024,
            max_encoded_nesting: 8,
            max_parts: 100_000,
        }
    }
}

/// The click service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickConfig {
    /// Address the click service listens on.
    pub listen: String,
    /// PEM certificate chain and private key: HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `normal` (survives a process crash) or `full` (survives power loss).
    pub durability: crate::clicklog::Durability,
    /// Shown on every page.
    pub organisation: String,
    pub logo_url: Option<String>,
    pub support_contact: Option<String>,
    /// How long a click-through link from a warning page stays valid.
    pub click_through_ttl_secs: u64,
    /// User agents of link scanners and prefetchers (substring, case-insensitive): answered with a
    /// page, never redirected, recorded as `prefetch`.
    pub prefetch_user_agents: Vec<String>,
    /// Structured logs as JSON lines.
    pub json_logs: bool,
    pub policy: ClickPolicy,
}

impl Default for ClickConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".into(),
            tls_cert: None,
            tls_key: None,
            durability: crate::clicklog::Durability::Normal,
            organisation: "Portcullis".into(),
            logo_url: None,
            support_contact: None,
            click_through_ttl_secs: 300,
            prefetch_user_agents: [
                "Microsoft Office",
                "MSOffice",
                "Safe Links",
                "BingPreview",
                "Proofpoint",
                "Mimecast",
                "Barracuda",
                "Slackbot",
                "facebookexternalhit",
                "Twitterbot",
                "LinkedInBot",
                "WhatsApp",
                "Googlebot",
                "SkypeUriPreview",
            ]
            .map(String::from)
            .to_vec(),
            json_logs: false,
            policy: ClickPolicy::default(),
        }
    }
}

/// What happens on a click, in the spirit of Safe Links policies. Flags signed into a link can
/// only make this stricter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickPolicy {
    /// Record who clicked (message and recipient references, client address, user agent).
    pub track_clicks: bool,
    /// Offer "continue anyway" on warning pages.
    pub allow_click_through: bool,
    /// When reputation cannot answer in time: true lets the click through, false blocks it.
    pub fail_open: bool,
    /// Destinations always permitted without a reputation check (same syntax as do_not_rewrite).
    pub allow_list: Vec<String>,
    /// Destinations always blocked.
    pub block_list: Vec<String>,
    /// Follow each destination's redirects at click time and check every hop
    /// (`[reputation.redirects]` sets the limits).
    pub follow_redirects: bool,
}

impl Default for ClickPolicy {
    fn default() -> Self {
        Self {
            track_clicks: true,
            allow_click_through: true,
            fail_open: true,
            allow_list: Vec::new(),
            block_list: Vec::new(),
            follow_redirects: false,
        }
    }
}

/// Reputation providers and their cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// One deadline for all providers together.
    pub deadline_ms: u64,
    /// Domains whose lookalikes are suspicious.
    pub protected_domains: Vec<String>,
    /// Local feed files.
    pub feeds: Vec<crate::reputation::FeedConfig>,
    /// How often feed files are checked for changes.
    pub feed_reload_secs: u64,
    /// Google Safe Browsing v4 Lookup API.
    pub safe_browsing: Option<crate::reputation::SafeBrowsingConfig>,
    /// The URLhaus API.
    pub urlhaus: Option<crate::reputation::UrlhausConfig>,
    /// DNS domain blocklists.
    pub dnsbl: Option<crate::reputation::DnsblConfig>,
    /// Limits and the SSRF guard for following redirects (when `click.policy.follow_redirects`).
    pub redirects: crate::reputation::RedirectConfig,
    pub cache: crate::reputation::CacheConfig,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 1500,
            protected_domains: Vec::new(),
            feeds: Vec::new(),
            feed_reload_secs: 1,
            safe_browsing: None,
            urlhaus: None,
            dnsbl: None,
            redirects: crate::reputation::RedirectConfig::default(),
            cache: crate::reputation::CacheConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference in docs/config.md is a real configuration: it must parse and match the defaults.
    #[test]
    fn documented_configuration_parses() {
        let doc = include_str!("../docs/config.md");
        let start = doc.find("```toml\n").expect("toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("closing fence");
        let config = Config::parse(&doc[start..end]).expect("docs/config.md parses");
        let defaults = Config::default();
        assert_eq!(config.click.listen, defaults.click.listen);
        assert_eq!(
            config.reputation.redirects.blocked_ranges,
            defaults.reputation.redirects.blocked_ranges
        );
        assert_eq!(config.click.prefetch_user_agents, defaults.click.prefetch_user_agents);
        assert_eq!(config.rewrite.max_parts, defaults.rewrite.max_parts);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::parse("[click]\nlisten_on = \"x\"\n").is_err());
    }
}
