//! The click service: routes, the request path of a click, and its responses. A click goes, in
//! order: verify the link → policy → reputation → log durably → respond (302, warning, block).

mod pages;
mod quarantine;

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use url::Url;

use crate::clicklog::{Action, ClickEvent, ClickLog};
use crate::config::ClickConfig;
use crate::patterns::UrlPatterns;
use crate::reputation::{Assessment, Category, Finding, Reputation, Verdict};
use crate::token::{LinkError, LiveKeyRing, policy};
use std::sync::Arc;

use pages::{Page, PageForm};

pub type Body = Full<Bytes>;

/// Everything a request needs, shared by all connections.
pub struct ClickService {
    pub config: ClickConfig,
    pub keys: LiveKeyRing,
    /// Shared with the gateway's pipeline: one cache for links checked at delivery and at click.
    pub reputation: Arc<Reputation>,
    pub log: ClickLog,
    allow: UrlPatterns,
    block: UrlPatterns,
    prefetch_agents: Vec<String>,
    catalogs: crate::i18n::Catalogs,
    /// The gateway's store, for the quarantine digest's links, the delivery workers' bell, and
    /// the organisation's domains (only their recipients act from a digest).
    quarantine: Option<(crate::store::Store, Arc<tokio::sync::Notify>, Vec<String>)>,
}

const CLICK_THROUGH_PURPOSE: &str = "click-through";
const REPORT_PURPOSE: &str = "report";
/// How long the "report a mistake" form on a block page stays valid.
const REPORT_TTL_SECS: u64 = 7 * 86400;
/// The largest report form accepted.
const REPORT_MAX_BYTES: usize = 8192;
/// How long a posted form may take to arrive.
const FORM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

impl ClickService {
    pub fn new(config: ClickConfig, keys: impl Into<LiveKeyRing>, reputation: Arc<Reputation>, log: ClickLog) -> Self {
        let allow = UrlPatterns::new(&config.policy.allow_list);
        let block = UrlPatterns::new(&config.policy.block_list);
        let prefetch_agents = config
            .prefetch_user_agents
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        let catalogs = crate::i18n::Catalogs::load(config.locales_dir.as_deref(), &config.default_language)
            .unwrap_or_else(|error| {
                // The configuration check refuses this before serving; a library user gets English.
                tracing::error!(%error, "page languages not loaded; English only");
                crate::i18n::Catalogs::load(None, "en").expect("the built-in catalogs load")
            });
        Self {
            config,
            keys: keys.into(),
            reputation,
            log,
            allow,
            block,
            prefetch_agents,
            catalogs,
            quarantine: None,
        }
    }

    /// Serves the quarantine digest's links from this store (`/quarantine`) for recipients in
    /// `domains`, waking the delivery workers when a message is released.
    pub fn with_quarantine(
        mut self,
        store: crate::store::Store,
        wake: Arc<tokio::sync::Notify>,
        domains: &[String],
    ) -> Self {
        let domains = domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        self.quarantine = Some((store, wake, domains));
        self
    }

    /// The words for this request's `Accept-Language`.
    fn words(&self, request: &Request<hyper::body::Incoming>) -> &crate::i18n::Catalog {
        self.catalogs.negotiate(
            request
                .headers()
                .get(hyper::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// Routes one request.
    pub async fn handle(&self, request: Request<hyper::body::Incoming>, peer: SocketAddr) -> Response<Body> {
        let path = request.uri().path();
        let response = match (request.method(), path) {
            (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
            (&Method::GET | &Method::HEAD, "/readyz") => text(StatusCode::OK, "ready\n"),
            (&Method::GET | &Method::HEAD, p) if p.starts_with("/v1/") => self.click(&request, peer, false).await,
            (&Method::GET | &Method::HEAD, "/continue") => self.click(&request, peer, true).await,
            (&Method::POST, "/report") => self.report(request, peer).await,
            (&Method::GET | &Method::HEAD | &Method::POST, "/quarantine") => self.quarantine(request, peer).await,
            (&Method::GET | &Method::HEAD, _) => {
                let words = self.words(&request);
                self.error_page(
                    words,
                    StatusCode::NOT_FOUND,
                    "error.not_found_heading",
                    words.word("error.not_found"),
                )
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        };
        crate::metrics::increment(
            "portcullis_http_responses_total",
            &[("status", response.status().as_str())],
        );
        response
    }

    async fn click(&self, request: &Request<hyper::body::Incoming>, peer: SocketAddr, through: bool) -> Response<Body> {
        let started = Instant::now();
        let words = self.words(request);
        let user_agent = header(request, hyper::header::USER_AGENT);
        let mut event = new_event(peer, &user_agent);

        // 1. Verify the link (constant-time MAC); a continuation also needs its own fresh token.
        let target = match through {
            false => request.uri().path_and_query().map_or("", |p| p.as_str()).to_string(),
            true => match self.verify_continuation(request) {
                Some(target) => target,
                None => {
                    return self
                        .reject(
                            words,
                            event,
                            started,
                            "click-through link invalid or expired",
                            LinkError::BadSignature,
                        )
                        .await;
                }
            },
        };
        let verified = match self.keys.current().verify(&target) {
            Ok(verified) => verified,
            Err(error) => {
                event.url = target.chars().take(2048).collect();
                return self.reject(words, event, started, "", error).await;
            }
        };
        event.key_id.clone_from(&verified.key_id);
        event.url.clone_from(&verified.url);
        if self.config.policy.track_clicks {
            event.message_ref = String::from_utf8_lossy(&verified.context.message_ref).into_owned();
            event.recipient_ref = hex(&verified.context.recipient_ref);
        } else {
            event.client_ip.clear();
            event.user_agent.clear();
        }
        // Only http(s) is ever a Location; anything else was never ours to sign.
        let destination = match Url::parse(&verified.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
            _ => {
                return self
                    .reject(words, event, started, "", LinkError::Malformed("destination"))
                    .await;
            }
        };

        // 2. Policy: admin lists first; signed flags can only add strictness.
        let flags = verified.context.flags;
        let (assessment, cache_hit) = if self.block.matches(&destination) {
            (
                policy_assessment(Verdict::Malicious, "it is on the organisation's block list"),
                false,
            )
        } else if self.allow.matches(&destination) {
            (
                policy_assessment(Verdict::Clean, "it is on the organisation's allow list"),
                false,
            )
        } else {
            // 3. Reputation at click time, cached.
            let lookup = self.reputation.assess(&destination).await;
            ((*lookup.assessment).clone(), lookup.cache_hit)
        };
        event.cache_hit = cache_hit;
        event.verdict = if assessment.unavailable {
            "unavailable".into()
        } else {
            assessment.verdict.as_str().into()
        };
        event.category = assessment.category.as_str().into();
        let prefetch = request.method() == Method::HEAD || self.is_prefetcher(&user_agent);
        let fail_closed = !self.config.policy.fail_open || flags & policy::FAIL_CLOSED != 0;
        event.action = match () {
            _ if prefetch => Action::Prefetch,
            _ if assessment.verdict == Verdict::Malicious => Action::Blocked,
            _ if assessment.unavailable && fail_closed => Action::Blocked,
            _ if through => Action::ClickedThrough,
            _ if assessment.verdict == Verdict::Suspicious || flags & policy::FORCE_WARN != 0 => Action::Warned,
            _ => Action::Permitted,
        };

        // 4. Log durably before answering.
        event.latency_us = started.elapsed().as_micros() as i64;
        let action = event.action;
        if let Err(error) = self.log.record(event).await {
            tracing::error!(%error, "click could not be recorded");
            return self.error_page(
                words,
                StatusCode::SERVICE_UNAVAILABLE,
                "error.try_again_heading",
                words.word("error.try_again_click"),
            );
        }
        crate::metrics::increment(
            "portcullis_clicks_total",
            &[("action", action.as_str()), ("verdict", assessment.verdict.as_str())],
        );
        crate::metrics::increment(
            "portcullis_reputation_cache_total",
            &[("result", if cache_hit { "hit" } else { "miss" })],
        );
        crate::metrics::observe("portcullis_click_seconds", &[], started.elapsed());

        // 5. Respond.
        match action {
            Action::Permitted | Action::ClickedThrough => redirect(&destination),
            Action::Prefetch => self.page(
                StatusCode::OK,
                &Page {
                    words,
                    title: words.word("protected.title"),
                    heading: words.word("protected.heading"),
                    message: words.word("protected.message"),
                    destination: Some(&destination),
                    proceed: None,
                    accent: "#1d4ed8",
                    go_back: false,
                    form: None,
                },
            ),
            Action::Warned => {
                let can_continue = self.config.policy.allow_click_through && flags & policy::NO_CLICK_THROUGH == 0;
                let continuation = can_continue.then(|| self.continuation(&target)).flatten();
                self.page(
                    StatusCode::OK,
                    &Page {
                        words,
                        title: words.word("warned.title"),
                        heading: words.word("warned.heading"),
                        message: &warning_message(words, &assessment),
                        destination: Some(&destination),
                        proceed: continuation.as_deref().map(|href| (words.word("page.continue"), href)),
                        accent: "#d97706",
                        go_back: true,
                        form: None,
                    },
                )
            }
            _ => {
                let report = self.report_fields(&target, assessment.verdict.as_str());
                self.page(
                    StatusCode::FORBIDDEN,
                    &Page {
                        words,
                        title: words.word("blocked.title"),
                        heading: words.word("blocked.heading"),
                        message: &block_message(words, &assessment),
                        destination: Some(&destination),
                        proceed: None,
                        accent: "#b91c1c",
                        go_back: true,
                        form: report.as_deref().map(|fields| PageForm {
                            action: "/report",
                            fields,
                            label: words.word("page.report"),
                            primary: false,
                        }),
                    },
                )
            }
        }
    }

    async fn reject(
        &self,
        words: &crate::i18n::Catalog,
        mut event: ClickEvent,
        started: Instant,
        detail: &str,
        error: LinkError,
    ) -> Response<Body> {
        let expired = matches!(error, LinkError::Expired(_));
        event.action = if expired { Action::Expired } else { Action::Rejected };
        event.verdict = "invalid".into();
        event.latency_us = started.elapsed().as_micros() as i64;
        let action = event.action;
        if let Err(log_error) = self.log.record(event).await {
            tracing::error!(%log_error, "rejected click could not be recorded");
        }
        crate::metrics::increment(
            "portcullis_clicks_total",
            &[("action", action.as_str()), ("verdict", "invalid")],
        );
        tracing::info!(%error, "link rejected");
        if expired {
            return self.error_page(
                words,
                StatusCode::GONE,
                "error.expired_heading",
                words.word("error.expired"),
            );
        }
        let message = if detail.is_empty() {
            words.word("error.invalid")
        } else {
            detail
        };
        self.error_page(words, StatusCode::BAD_REQUEST, "error.invalid_heading", message)
    }

    fn is_prefetcher(&self, user_agent: &str) -> bool {
        let agent = user_agent.to_ascii_lowercase();
        self.prefetch_agents.iter().any(|a| agent.contains(a.as_str()))
    }

    /// A short-lived, signed link that continues past the warning page.
    fn continuation(&self, target: &str) -> Option<String> {
        let expires = unix_now() + self.config.click_through_ttl_secs;
        let data = format!("{expires}\0{target}");
        let token = self.keys.current().sign_token(CLICK_THROUGH_PURPOSE, data.as_bytes())?;
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("l", target)
            .append_pair("e", &expires.to_string())
            .append_pair("t", &token)
            .finish();
        Some(format!("/continue?{query}"))
    }

    fn verify_continuation(&self, request: &Request<hyper::body::Incoming>) -> Option<String> {
        let query = request.uri().query()?;
        let mut target = None;
        let mut expires = None;
        let mut token = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "l" => target = Some(value.into_owned()),
                "e" => expires = value.parse::<u64>().ok(),
                "t" => token = Some(value.into_owned()),
                _ => {}
            }
        }
        let (target, expires, token) = (target?, expires?, token?);
        let data = format!("{expires}\0{target}");
        (expires >= unix_now()
            && self
                .keys
                .current()
                .verify_token(CLICK_THROUGH_PURPOSE, data.as_bytes(), &token))
        .then_some(target)
    }

    /// The signed fields of a block page's "report a mistake" form.
    fn report_fields(&self, target: &str, verdict: &str) -> Option<Vec<(&'static str, String)>> {
        let expires = unix_now() + REPORT_TTL_SECS;
        let data = format!("{expires}\0{verdict}\0{target}");
        let token = self.keys.current().sign_token(REPORT_PURPOSE, data.as_bytes())?;
        Some(vec![
            ("l", target.to_string()),
            ("v", verdict.to_string()),
            ("e", expires.to_string()),
            ("t", token),
        ])
    }

    /// A user says a block was a mistake: the report is recorded in the click log as action
    /// `reported` (with the message, recipient and destination of the blocked link) for the
    /// security team to review. Only a form this service signed is accepted.
    async fn report(&self, request: Request<hyper::body::Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let words = self.words(&request);
        let user_agent = header(&request, hyper::header::USER_AGENT);
        let body = match read_form(request, REPORT_MAX_BYTES).await {
            Ok(body) => body,
            Err(refused) => return refused,
        };
        let (mut target, mut verdict, mut expires, mut token) = (None, None, None, None);
        for (key, value) in url::form_urlencoded::parse(&body) {
            match &*key {
                "l" => target = Some(value.into_owned()),
                "v" => verdict = Some(value.into_owned()),
                "e" => expires = value.parse::<u64>().ok(),
                "t" => token = Some(value.into_owned()),
                _ => {}
            }
        }
        let keys = self.keys.current();
        let verified = match (target, verdict, expires, token) {
            (Some(target), Some(verdict), Some(expires), Some(token))
                if expires >= unix_now()
                    && keys.verify_token(
                        REPORT_PURPOSE,
                        format!("{expires}\0{verdict}\0{target}").as_bytes(),
                        &token,
                    ) =>
            {
                keys.verify(&target).ok().map(|link| (link, verdict))
            }
            _ => None,
        };
        let Some((link, verdict)) = verified else {
            return self.error_page(
                words,
                StatusCode::BAD_REQUEST,
                "error.report_invalid_heading",
                words.word("error.report_invalid"),
            );
        };
        let mut event = new_event(peer, &user_agent);
        event.action = Action::Reported;
        event.url = link.url;
        event.verdict = verdict;
        event.key_id = link.key_id;
        event.message_ref = String::from_utf8_lossy(&link.context.message_ref).into_owned();
        event.recipient_ref = hex(&link.context.recipient_ref);
        if !self.config.policy.track_clicks {
            event.message_ref.clear();
            event.recipient_ref.clear();
            event.client_ip.clear();
            event.user_agent.clear();
        }
        event.latency_us = started.elapsed().as_micros() as i64;
        if let Err(error) = self.log.record(event).await {
            tracing::error!(%error, "report could not be recorded");
            return self.error_page(
                words,
                StatusCode::SERVICE_UNAVAILABLE,
                "error.try_again_heading",
                words.word("error.try_again_report"),
            );
        }
        crate::metrics::increment("portcullis_reports_total", &[]);
        self.error_page(
            words,
            StatusCode::OK,
            "error.thanks_heading",
            words.word("error.thanks"),
        )
    }

    fn page(&self, status: StatusCode, page: &Page<'_>) -> Response<Body> {
        html(status, pages::render(&self.config, page))
    }

    /// A page with only a heading (the catalog key `heading`) and a message.
    fn error_page(
        &self,
        words: &crate::i18n::Catalog,
        status: StatusCode,
        heading: &str,
        message: &str,
    ) -> Response<Body> {
        let heading = words.word(heading);
        self.page(
            status,
            &Page {
                words,
                title: heading,
                heading,
                message,
                destination: None,
                proceed: None,
                accent: "#6b7280",
                go_back: false,
                form: None,
            },
        )
    }
}

fn warning_message(words: &crate::i18n::Catalog, assessment: &Assessment) -> String {
    let why = assessment
        .findings
        .iter()
        .filter(|f| f.verdict >= Verdict::Suspicious)
        .map(|f| f.reason.as_str())
        .collect::<Vec<_>>();
    if why.is_empty() {
        words.word("warned.message_plain").to_string()
    } else {
        words.fill("warned.message", &[("reasons", &why.join("; "))])
    }
}

fn block_message(words: &crate::i18n::Catalog, assessment: &Assessment) -> String {
    if assessment.unavailable {
        return words.word("blocked.unavailable").to_string();
    }
    let kind = words.word(match assessment.category {
        Category::Phish => "blocked.kind_phish",
        Category::Malware => "blocked.kind_malware",
        Category::Spam => "blocked.kind_spam",
        Category::None => "blocked.kind_other",
    });
    let why = assessment
        .findings
        .iter()
        .filter(|f| f.verdict == Verdict::Malicious)
        .map(|f| f.reason.as_str())
        .collect::<Vec<_>>();
    if why.is_empty() {
        words.fill("blocked.message", &[("kind", kind)])
    } else {
        words.fill(
            "blocked.message_with_reasons",
            &[("kind", kind), ("reasons", &why.join("; "))],
        )
    }
}

/// A posted form of at most `max` bytes, whole within [`FORM_DEADLINE`] (a body dripped in a
/// byte at a time cannot hold a connection slot); else the answer to give.
async fn read_form(request: Request<hyper::body::Incoming>, max: usize) -> Result<Bytes, Response<Body>> {
    use http_body_util::BodyExt;
    let collect = http_body_util::Limited::new(request.into_body(), max).collect();
    match tokio::time::timeout(FORM_DEADLINE, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(text(StatusCode::PAYLOAD_TOO_LARGE, "form too large\n")),
        Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, "form too slow\n")),
    }
}

fn redirect(destination: &Url) -> Response<Body> {
    // The Location comes from the verified, re-serialised URL only: never from request input.
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(destination.as_str()) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(hyper::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn new_event(peer: SocketAddr, user_agent: &str) -> ClickEvent {
    ClickEvent {
        id: ClickEvent::new_id(),
        at_ms: now_ms(),
        message_ref: String::new(),
        recipient_ref: String::new(),
        url: String::new(),
        verdict: String::new(),
        category: String::new(),
        action: Action::Rejected,
        client_ip: peer.ip().to_string(),
        user_agent: user_agent.chars().take(512).collect(),
        cache_hit: false,
        latency_us: 0,
        key_id: String::new(),
    }
}

/// `/metrics` in the Prometheus text format: served on the admin listener only.
pub fn metrics_response() -> Response<Body> {
    let mut response = text(StatusCode::OK, &crate::metrics::render());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(pages::content_security_policy()) {
        headers.insert("content-security-policy", policy);
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(hyper::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn header(request: &Request<hyper::body::Incoming>, name: hyper::header::HeaderName) -> String {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn policy_assessment(verdict: Verdict, reason: &str) -> Assessment {
    let finding = Finding {
        provider: "policy",
        verdict,
        category: Category::None,
        reason: reason.into(),
    };
    Assessment {
        verdict,
        category: Category::None,
        findings: vec![finding],
        unavailable: false,
    }
}
