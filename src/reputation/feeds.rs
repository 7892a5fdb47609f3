//! Local feed files in the formats the public feeds publish: plain domain/URL lists, URLhaus CSV,
//! PhishTank JSON, OpenPhish text. Reloaded when a file changes, without a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Deserialize;
use url::Url;

use super::{Category, Finding, Provider, ProviderFuture, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// One domain or URL per line; `#` starts a comment. A domain also covers its subdomains.
    Plain,
    /// URLhaus CSV export (`id,dateadded,url,url_status,…`).
    UrlhausCsv,
    /// PhishTank JSON (`[{"url": …}, …]`).
    PhishtankJson,
    /// OpenPhish: one URL per line.
    Openphish,
}

/// One feed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    pub path: PathBuf,
    /// What users and logs see when this feed lists a destination (never the file's path).
    /// Defaults to the file name without its extension.
    pub name: Option<String>,
    pub format: FeedFormat,
    /// Defaults by format: URLhaus malware, PhishTank and OpenPhish phish, plain phish.
    pub category: Option<Category>,
    #[serde(default = "malicious")]
    pub verdict: Verdict,
}

fn malicious() -> Verdict {
    Verdict::Malicious
}

impl FeedConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map_or_else(|| "feed".to_string(), |stem| stem.to_string_lossy().into_owned())
        })
    }

    fn category(&self) -> Category {
        self.category.unwrap_or(match self.format {
            FeedFormat::UrlhausCsv => Category::Malware,
            _ => Category::Phish,
        })
    }
}

#[derive(Default)]
struct Index {
    /// Normalised URL → (feed index).
    urls: HashMap<String, usize>,
    /// Lowercase host → (feed index).
    domains: HashMap<String, usize>,
}

/// The loaded feeds.
pub struct LocalFeeds {
    feeds: Vec<FeedConfig>,
    index: RwLock<Arc<Index>>,
    loaded: RwLock<Vec<Option<SystemTime>>>,
    /// Counts loads, so a watcher knows the entries changed.
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("feed {path}: {message}")]
pub struct FeedError {
    pub path: PathBuf,
    pub message: String,
}

impl LocalFeeds {
    pub fn new(feeds: Vec<FeedConfig>) -> Self {
        let count = feeds.len();
        let this = Self {
            feeds,
            index: RwLock::default(),
            loaded: RwLock::new(vec![None; count]),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        this.reload_if_changed();
        this
    }

    /// Reloads every feed when any file's modification time changed. Returns whether it did.
    /// A feed that fails to parse keeps its previous entries out and is reported, never fatal.
    pub fn reload_if_changed(&self) -> bool {
        self.reload(false)
    }

    /// Reloads every feed when a file changed, or always when `force` (SIGHUP).
    pub fn reload(&self, force: bool) -> bool {
        let stamps: Vec<Option<SystemTime>> = self
            .feeds
            .iter()
            .map(|f| std::fs::metadata(&f.path).and_then(|m| m.modified()).ok())
            .collect();
        if !force && *self.loaded.read().unwrap_or_else(|e| e.into_inner()) == stamps {
            return false;
        }
        let mut index = Index::default();
        for (i, feed) in self.feeds.iter().enumerate() {
            match load(feed) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Entry::Url(url) => index.urls.insert(url, i),
                            Entry::Domain(domain) => index.domains.insert(domain, i),
                        };
                    }
                }
                Err(error) => tracing::error!(%error, "feed not loaded"),
            }
        }
        tracing::info!(
            urls = index.urls.len(),
            domains = index.domains.len(),
            "reputation feeds loaded"
        );
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = stamps;
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        true
    }

    /// How many times the feeds have been loaded: it changes whenever their entries may have.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What the feeds say of a URL, from memory.
    pub fn lookup(&self, url: &Url) -> Option<Finding> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner()).clone();
        let feed = |i: usize, reason: String| {
            let config = &self.feeds[i];
            Finding {
                provider: "feeds",
                verdict: config.verdict,
                category: config.category(),
                reason,
            }
        };
        if let Some(&i) = index.urls.get(url.as_str()) {
            return Some(feed(i, format!("{} lists {}", self.feeds[i].display_name(), url)));
        }
        let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
        let mut candidate = host.as_str();
        loop {
            if let Some(&i) = index.domains.get(candidate) {
                return Some(feed(
                    i,
                    format!("{} lists domain {candidate}", self.feeds[i].display_name()),
                ));
            }
            match candidate.split_once('.') {
                Some((_, parent)) if parent.contains('.') => candidate = parent,
                _ => return None,
            }
        }
    }
}

impl Provider for LocalFeeds {
    fn name(&self) -> &'static str {
        "feeds"
    }

    fn check<'a>(&'a self, url: &'a Url) -> ProviderFuture<'a> {
        Box::pin(async move { Ok(self.lookup(url)) })
    }
}

enum Entry {
    Url(String),
    Domain(String),
}

fn normalise_url(raw: &str) -> Option<String> {
    Url::parse(raw.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .map(String::from)
}

fn load(feed: &FeedConfig) -> Result<Vec<Entry>, FeedError> {
    let err = |message: String| FeedError {
        path: feed.path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&feed.path).map_err(|e| err(e.to_string()))?;
    let mut entries = Vec::new();
    match feed.format {
        FeedFormat::Plain | FeedFormat::Openphish => {
            for line in text.lines().map(strip_comment).filter(|l| !l.is_empty()) {
                if line.contains("://") {
                    entries.extend(normalise_url(line).map(Entry::Url));
                } else if feed.format == FeedFormat::Plain {
                    entries.push(Entry::Domain(line.trim_end_matches('.').to_ascii_lowercase()));
                }
            }
        }
        FeedFormat::UrlhausCsv => {
            for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
                let fields = csv_fields(line);
                if let Some(url) = fields.get(2).and_then(|u| normalise_url(u)) {
                    entries.push(Entry::Url(url));
                }
            }
        }
        FeedFormat::PhishtankJson => {
            #[derive(Deserialize)]
            struct Phish {
                url: String,
            }
            let phishes: Vec<Phish> = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
            entries.extend(phishes.iter().filter_map(|p| normalise_url(&p.url)).map(Entry::Url));
        }
    }
    Ok(entries)
}

/// A line without its comment: `#` at the start or after white space (URLs may hold a `#`).
fn strip_comment(line: &str) -> &str {
    let line = line.trim();
    if line.starts_with('#') {
        return "";
    }
    line.find(" #")
        .or_else(|| line.find("\t#"))
        .map_or(line, |i| line[..i].trim_end())
}

/// Splits one CSV line with double-quoted fields (`""` inside quotes is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlhaus_csv_fields() {
        let line = r#""3091398","2024-07-01 10:00:00","http://bad.example/x.exe","online","","malware_download","exe,""q""","https://urlhaus.abuse.ch/url/3091398/","anon""#;
        assert_eq!(csv_fields(line)[2], "http://bad.example/x.exe");
        assert_eq!(csv_fields(line)[6], "exe,\"q\"");
    }
}
