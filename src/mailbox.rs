//! The mailbox provider seam: taking a delivered message back out of a recipient's mailbox when
//! it turns out to carry a threat. [`MailboxProvider`] is what the threats need; [`Graph`] does
//! it through Microsoft Graph (Exchange Online): an app-only token by the OAuth 2.0 client
//! credentials grant, the message found by its Internet Message-ID, then moved to a folder.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Deserialize;

/// What became of one mailbox's copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// This many copies were moved.
    Moved(usize),
    /// The mailbox has no message with that Message-ID (deleted already, or never there).
    NotFound,
}

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("mailbox provider: {0}")]
    Provider(String),
    #[error("mailbox provider credentials: {0}")]
    Credentials(String),
}

/// A mailbox platform that can move a delivered message out of a mailbox.
pub trait MailboxProvider: Send + Sync {
    fn name(&self) -> &'static str;
    /// Moves every copy of the message with `message_id` out of `mailbox`'s folders.
    fn remove<'a>(&'a self, mailbox: &'a str, message_id: &'a str) -> BoxFuture<'a, Result<Removal, MailboxError>>;
}

/// `[mailbox]`: Microsoft Graph with an app registration granted `Mail.ReadWrite` (application).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphConfig {
    pub tenant_id: String,
    pub client_id: String,
    /// A file holding the client secret (kept out of the configuration file).
    pub client_secret_file: PathBuf,
    /// Where messages go: a well-known folder name (`junkemail`, `deleteditems`,
    /// `recoverableitemsdeletions`) or a folder id.
    #[serde(default = "junk")]
    pub folder: String,
    #[serde(default = "login")]
    pub login_url: String,
    #[serde(default = "graph")]
    pub graph_url: String,
}

fn junk() -> String {
    "junkemail".into()
}

fn login() -> String {
    "https://login.microsoftonline.com".into()
}

fn graph() -> String {
    "https://graph.microsoft.com".into()
}

/// The Microsoft Graph provider.
pub struct Graph {
    config: GraphConfig,
    secret: String,
    client: reqwest::Client,
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Deserialize)]
struct Messages {
    value: Vec<MessageId>,
}

#[derive(Deserialize)]
struct MessageId {
    id: String,
}

impl Graph {
    pub fn new(config: GraphConfig) -> Result<Graph, MailboxError> {
        let secret = std::fs::read_to_string(&config.client_secret_file)
            .map_err(|e| MailboxError::Credentials(format!("{}: {e}", config.client_secret_file.display())))?
            .trim()
            .to_string();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MailboxError::Provider(e.to_string()))?;
        Ok(Graph {
            config,
            secret,
            client,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// An app-only token, fetched again a minute before it expires.
    async fn token(&self) -> Result<String, MailboxError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.config.login_url.trim_end_matches('/'),
            urlencode(&self.config.tenant_id)
        );
        let answer = self
            .client
            .post(&url)
            .form(&[
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", self.secret.as_str()),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .map_err(|e| MailboxError::Credentials(e.without_url().to_string()))?;
        if !answer.status().is_success() {
            return Err(MailboxError::Credentials(format!(
                "the token endpoint answered {}",
                answer.status()
            )));
        }
        let token: TokenAnswer = answer
            .json()
            .await
            .map_err(|e| MailboxError::Credentials(e.without_url().to_string()))?;
        let lifetime = Duration::from_secs(token.expires_in.saturating_sub(60).max(60));
        *cached = Some((token.access_token.clone(), Instant::now() + lifetime));
        Ok(token.access_token)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, MailboxError> {
        let token = self.token().await?;
        let answer = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| MailboxError::Provider(e.without_url().to_string()))?;
        if answer.status() == reqwest::StatusCode::UNAUTHORIZED {
            *self.token.lock().await = None;
        }
        if !answer.status().is_success() {
            let status = answer.status();
            let retry = answer
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (retry after {v} s)"))
                .unwrap_or_default();
            return Err(MailboxError::Provider(format!("Graph answered {status}{retry}")));
        }
        Ok(answer)
    }
}

/// Percent-encodes a path segment.
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl MailboxProvider for Graph {
    fn name(&self) -> &'static str {
        "graph"
    }

    fn remove<'a>(&'a self, mailbox: &'a str, message_id: &'a str) -> BoxFuture<'a, Result<Removal, MailboxError>> {
        Box::pin(async move {
            let base = format!(
                "{}/v1.0/users/{}/messages",
                self.config.graph_url.trim_end_matches('/'),
                urlencode(mailbox)
            );
            // An OData string literal doubles its quotes.
            let filter = format!("internetMessageId eq '{}'", message_id.replace('\'', "''"));
            let found: Messages = self
                .call(
                    self.client
                        .get(&base)
                        .query(&[("$filter", filter.as_str()), ("$select", "id")]),
                )
                .await?
                .json()
                .await
                .map_err(|e| MailboxError::Provider(e.without_url().to_string()))?;
            if found.value.is_empty() {
                return Ok(Removal::NotFound);
            }
            for message in &found.value {
                let url = format!("{base}/{}/move", urlencode(&message.id));
                self.call(
                    self.client
                        .post(&url)
                        .json(&serde_json::json!({ "destinationId": self.config.folder })),
                )
                .await?;
            }
            Ok(Removal::Moved(found.value.len()))
        })
    }
}
