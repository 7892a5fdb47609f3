//! The URLhaus API (`POST /v1/url/`, form field `url`).

use serde::Deserialize;
use url::Url;

use super::{Category, Finding, Provider, ProviderError, ProviderFuture, Verdict};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlhausConfig {
    /// Sent as `Auth-Key`.
    #[serde(default)]
    pub auth_key: String,
    #[serde(default = "default_base")]
    pub base_url: String,
}

fn default_base() -> String {
    "https://urlhaus-api.abuse.ch".into()
}

pub struct Urlhaus {
    config: UrlhausConfig,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Response {
    query_status: String,
    #[serde(default)]
    url_status: Option<String>,
    #[serde(default)]
    threat: Option<String>,
}

impl Urlhaus {
    pub fn new(config: UrlhausConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    async fn lookup(&self, url: &Url) -> Result<Option<Finding>, ProviderError> {
        let err = |message: String| ProviderError {
            provider: "urlhaus",
            message,
        };
        let endpoint = format!("{}/v1/url/", self.config.base_url.trim_end_matches('/'));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("url", url.as_str())
            .finish();
        let mut request = self
            .client
            .post(endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        if !self.config.auth_key.is_empty() {
            request = request.header("Auth-Key", &self.config.auth_key);
        }
        let answer: Response = super::fetch_json("urlhaus", request).await?;
        match answer.query_status.as_str() {
            "no_results" => Ok(None),
            "ok" => {
                let status = answer.url_status.unwrap_or_default();
                // An offline payload URL can come back; it is still not a place to send a user.
                let verdict = if status == "online" || status == "offline" {
                    Verdict::Malicious
                } else {
                    Verdict::Suspicious
                };
                Ok(Some(Finding {
                    provider: "urlhaus",
                    verdict,
                    category: Category::Malware,
                    reason: format!(
                        "URLhaus: {} ({status})",
                        answer.threat.unwrap_or_else(|| "listed".into())
                    ),
                }))
            }
            other => Err(err(format!("query_status {other}"))),
        }
    }
}

impl Provider for Urlhaus {
    fn name(&self) -> &'static str {
        "urlhaus"
    }

    fn check<'a>(&'a self, url: &'a Url) -> ProviderFuture<'a> {
        Box::pin(self.lookup(url))
    }
}
