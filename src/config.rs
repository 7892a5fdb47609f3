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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("portcullis-data"),
            links: LinksConfig::default(),
            rewrite: RewriteConfig::default(),
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
