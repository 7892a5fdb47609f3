//! The Google Safe Browsing v4 Lookup API (`POST /v4/threatMatches:find`).

use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::{Category, Finding, Provider, ProviderError, ProviderFuture, Verdict};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafeBrowsingConfig {
    pub api_key: String,
    /// The API's base URL; a local server in tests.
    #[serde(default = "default_base")]
    pub base_url: String,
}

fn default_base() -> String {
    "https://safebrowsing.googleapis.com".into()
}

pub struct SafeBrowsing {
    config: SafeBrowsingConfig,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    matches: Vec<Match>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Match {
    threat_type: String,
}

impl SafeBrowsing {
    pub fn new(config: SafeBrowsingConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn lookup(&self, url: &Url) -> Result<Option<Finding>, ProviderError> {
        let err = |message: String| ProviderError {
            provider: "safe-browsing",
            message,
        };
        let mut endpoint = Url::parse(&format!(
            "{}/v4/threatMatches:find",
            self.config.base_url.trim_end_matches('/')
        ))
        .map_err(|e| err(format!("base URL: {e}")))?;
        endpoint.query_pairs_mut().append_pair("key", &self.config.api_key);
        let body = json!({
            "client": {"clientId": "portcullis", "clientVersion": env!("CARGO_PKG_VERSION")},
            "threatInfo": {
                "threatTypes": ["MALWARE", "SOCIAL_ENGINEERING", "UNWANTED_SOFTWARE", "POTENTIALLY_HARMFUL_APPLICATION"],
                "platformTypes": ["ANY_PLATFORM"],
                "threatEntryTypes": ["URL"],
                "threatEntries": [{"url": url.as_str()}]
            }
        });
        let parsed: Response = super::fetch_json("safe-browsing", self.client.post(endpoint).json(&body)).await?;
        let Some(worst) = parsed.matches.first() else {
            return Ok(Some(Finding {
                provider: "safe-browsing",
                verdict: Verdict::Clean,
                category: Category::None,
                reason: "no Safe Browsing match".into(),
            }));
        };
        let category = if parsed.matches.iter().any(|m| m.threat_type == "SOCIAL_ENGINEERING") {
            Category::Phish
        } else {
            Category::Malware
        };
        Ok(Some(Finding {
            provider: "safe-browsing",
            verdict: Verdict::Malicious,
            category,
            reason: format!("Safe Browsing: {}", worst.threat_type),
        }))
    }
}

impl Provider for SafeBrowsing {
    fn name(&self) -> &'static str {
        "safe-browsing"
    }

    fn check<'a>(&'a self, url: &'a Url) -> ProviderFuture<'a> {
        Box::pin(self.lookup(url))
    }
}
