//! Reputation at click time: verdicts, the provider trait, the providers, and the cache in front of
//! them. Providers are queried concurrently under one deadline and their verdicts merged
//! (malicious > suspicious > clean > unknown); a moka cache keeps answers for a TTL that depends on
//! the verdict and makes concurrent lookups of one URL share a single upstream query.

mod dnsbl;
mod feeds;
pub mod heuristics;
mod redirects;
mod safebrowsing;
mod urlhaus;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use serde::{Deserialize, Serialize};
use url::Url;

pub use dnsbl::{DnsBlocklists, DnsblConfig};
pub use feeds::{FeedConfig, FeedFormat, LocalFeeds};
pub use heuristics::Heuristics;
pub use redirects::{Hop, RedirectConfig, RedirectFollower};
pub use safebrowsing::{SafeBrowsing, SafeBrowsingConfig};
pub use urlhaus::{Urlhaus, UrlhausConfig};

/// How bad a destination is. Ordered: a merge keeps the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nobody knows anything about it.
    #[default]
    Unknown,
    Clean,
    Suspicious,
    Malicious,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Clean => "clean",
            Verdict::Suspicious => "suspicious",
            Verdict::Malicious => "malicious",
        }
    }
}

/// What kind of bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    #[default]
    None,
    Phish,
    Malware,
    Spam,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::None => "",
            Category::Phish => "phish",
            Category::Malware => "malware",
            Category::Spam => "spam",
        }
    }
}

/// One provider's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub provider: &'static str,
    pub verdict: Verdict,
    pub category: Category,
    /// Why, in words an analyst can check (the feed entry, the heuristic).
    pub reason: String,
}

/// The merged answer for one URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Assessment {
    pub verdict: Verdict,
    pub category: Category,
    pub findings: Vec<Finding>,
    /// No provider answered within the deadline: policy decides (fail open or closed).
    pub unavailable: bool,
}

impl Assessment {
    /// Keeps the worst finding. When a provider failed to answer and nobody found anything bad,
    /// the answer is "unavailable": a clean word from the others does not vouch for what the
    /// silent provider might have said, so policy (fail open or closed) decides.
    fn merge(findings: Vec<Finding>, failed: usize) -> Self {
        let worst = findings.iter().max_by_key(|f| f.verdict);
        let verdict = worst.map_or(Verdict::Unknown, |f| f.verdict);
        Assessment {
            verdict,
            category: worst.map_or(Category::None, |f| f.category),
            unavailable: failed > 0 && verdict < Verdict::Suspicious,
            findings,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{provider}: {message}")]
pub struct ProviderError {
    pub provider: &'static str,
    pub message: String,
}

pub type ProviderFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Finding>, ProviderError>> + Send + 'a>>;

/// A source of reputation. `Ok(None)` means "I know nothing about this URL".
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;
    fn check<'a>(&'a self, url: &'a Url) -> ProviderFuture<'a>;
}

/// TTLs by verdict class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub malicious_secs: u64,
    pub suspicious_secs: u64,
    pub clean_secs: u64,
    pub unknown_secs: u64,
    /// Answers where no provider replied in time are kept only briefly.
    pub unavailable_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            malicious_secs: 3600,
            suspicious_secs: 600,
            clean_secs: 600,
            unknown_secs: 120,
            unavailable_secs: 5,
        }
    }
}

struct VerdictExpiry(CacheConfig);

impl Expiry<String, Arc<Assessment>> for VerdictExpiry {
    fn expire_after_create(&self, _: &String, value: &Arc<Assessment>, _: Instant) -> Option<Duration> {
        let c = &self.0;
        let secs = if value.unavailable {
            c.unavailable_secs
        } else {
            match value.verdict {
                Verdict::Malicious => c.malicious_secs,
                Verdict::Suspicious => c.suspicious_secs,
                Verdict::Clean => c.clean_secs,
                Verdict::Unknown => c.unknown_secs,
            }
        };
        Some(Duration::from_secs(secs))
    }
}

/// The providers, their deadline and the cache.
pub struct Reputation {
    providers: Vec<Arc<dyn Provider>>,
    deadline: Duration,
    cache: moka::future::Cache<String, Arc<Assessment>>,
    redirects: Option<RedirectFollower>,
}

/// An assessment and whether it came from the cache.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub assessment: Arc<Assessment>,
    pub cache_hit: bool,
}

impl Reputation {
    pub fn new(providers: Vec<Arc<dyn Provider>>, deadline: Duration, cache: CacheConfig) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(cache.max_entries)
            .expire_after(VerdictExpiry(cache))
            .build();
        Self {
            providers,
            deadline,
            cache,
            redirects: None,
        }
    }

    /// Also follow each destination's redirect chain and check every hop.
    pub fn with_redirects(mut self, follower: RedirectFollower) -> Self {
        self.redirects = Some(follower);
        self
    }

    /// The assessment of `url`, from the cache or from the providers. Concurrent calls for one URL
    /// wait for a single upstream lookup.
    pub async fn assess(&self, url: &Url) -> Lookup {
        // Hits take the cheap path; only misses go through the coalescing entry API.
        if let Some(assessment) = self.cache.get(url.as_str()).await {
            return Lookup {
                assessment,
                cache_hit: true,
            };
        }
        let mut computed = false;
        let assessment = self
            .cache
            .get_with(url.as_str().to_string(), async {
                computed = true;
                Arc::new(self.query(url).await)
            })
            .await;
        Lookup {
            assessment,
            cache_hit: !computed,
        }
    }

    /// Forgets every cached answer (a feed changed).
    pub fn invalidate(&self) {
        self.cache.invalidate_all();
    }

    /// The assessment of a link in a message being delivered: from the cache when a click (or an
    /// earlier message) put it there; otherwise from the providers **without following
    /// redirects** (a request to the destination at delivery could use up a one-time sign-in link
    /// or tell a spammer the address is read). Only a verdict of suspicious or worse goes into the
    /// shared cache: a clean one made without the redirect chain must not stand in for the
    /// click-time check.
    pub async fn assess_for_delivery(&self, url: &Url) -> Lookup {
        if let Some(assessment) = self.cache.get(url.as_str()).await {
            return Lookup {
                assessment,
                cache_hit: true,
            };
        }
        let assessment = Arc::new(self.query_without_redirects(url).await);
        if assessment.verdict >= Verdict::Suspicious || self.redirects.is_none() {
            self.cache.insert(url.as_str().to_string(), assessment.clone()).await;
        }
        Lookup {
            assessment,
            cache_hit: false,
        }
    }

    async fn query(&self, url: &Url) -> Assessment {
        let (findings, failed) = self.ask_about(url).await;
        self.with_redirect_chain(url, findings, failed).await
    }

    async fn query_without_redirects(&self, url: &Url) -> Assessment {
        let (findings, failed) = self.ask_about(url).await;
        Assessment::merge(findings, failed)
    }

    /// What the providers say of `url` and, for a foreign wrapper, of the URL inside it.
    async fn ask_about(&self, url: &Url) -> (Vec<Finding>, usize) {
        crate::metrics::increment("portcullis_reputation_lookups_total", &[]);
        let (mut findings, mut failed) = self.ask_providers(url).await;
        // A foreign wrapper (Proofpoint, Safe Links) is judged by the URL inside it as well.
        if let Some(inner) = crate::token::unwrap_foreign(url.as_str()).and_then(|f| Url::parse(&f.inner).ok()) {
            let (inner_findings, inner_failed) = self.ask_providers(&inner).await;
            findings.extend(inner_findings.into_iter().map(|f| Finding {
                reason: format!("wrapped URL {inner}: {}", f.reason),
                ..f
            }));
            failed += inner_failed;
        }
        (findings, failed)
    }

    /// Follows `url`'s redirects (when configured and nothing condemned it already) and asks
    /// about every hop.
    async fn with_redirect_chain(&self, url: &Url, mut findings: Vec<Finding>, mut failed: usize) -> Assessment {
        let worst = findings.iter().map(|f| f.verdict).max().unwrap_or_default();
        if let Some(follower) = self.redirects.as_ref().filter(|_| worst < Verdict::Malicious) {
            let chain = tokio::time::timeout(self.deadline, follower.follow(url))
                .await
                .unwrap_or_default();
            for hop in chain {
                match hop {
                    Hop::Redirect(next) => {
                        let (hop_findings, hop_failed) = self.ask_providers(&next).await;
                        findings.extend(hop_findings.into_iter().map(|f| Finding {
                            reason: format!("redirects to {next}: {}", f.reason),
                            ..f
                        }));
                        failed += hop_failed;
                    }
                    Hop::Blocked { url: next, address } => findings.push(Finding {
                        provider: "redirects",
                        verdict: Verdict::Suspicious,
                        category: Category::Phish,
                        reason: format!("redirects to {next}, an internal address ({address})"),
                    }),
                }
            }
        }
        Assessment::merge(findings, failed)
    }

    /// Every provider at once under the deadline: the findings, and how many failed to answer.
    async fn ask_providers(&self, url: &Url) -> (Vec<Finding>, usize) {
        let checks = self.providers.iter().map(|p| {
            let provider = p.clone();
            async move {
                let started = Instant::now();
                let result = tokio::time::timeout(self.deadline, provider.check(url)).await;
                crate::metrics::provider_latency(provider.name(), started.elapsed());
                match result {
                    Ok(Ok(finding)) => Some(finding),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "reputation provider failed");
                        crate::metrics::provider_error(provider.name());
                        None
                    }
                    Err(_) => {
                        tracing::warn!(provider = provider.name(), "reputation provider timed out");
                        crate::metrics::provider_error(provider.name());
                        None
                    }
                }
            }
        });
        let results = futures_util::future::join_all(checks).await;
        let failed = results.iter().filter(|r| r.is_none()).count();
        (results.into_iter().flatten().flatten().collect(), failed)
    }
}

/// Sends a request to a provider's HTTP API and reads its JSON answer; any failure is the provider's.
async fn fetch_json<T: serde::de::DeserializeOwned>(
    provider: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<T, ProviderError> {
    let err = |message: String| ProviderError { provider, message };
    let response = request.send().await.map_err(|e| err(e.to_string()))?;
    if !response.status().is_success() {
        return Err(err(format!("HTTP {}", response.status())));
    }
    response.json().await.map_err(|e| err(e.to_string()))
}
