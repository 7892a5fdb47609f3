//! The HTTP API on the admin listener: the hook calls ([`hooks`]: scan, rewrite), the security
//! team's calls ([`admin`]: sign-in, clicks, message trace, quarantine, audit log), the SIEM
//! feeds ([`siem`], shaped like Proofpoint TAP's), and the OpenAPI description of all of it at
//! `/api/v1/openapi.json`. This module owns routing, who a caller is (API tokens as bearer or
//! HTTP Basic, console sessions by cookie with a CSRF token), what each role may do, and the
//! JSON error shape with its stable codes.

mod admin;
mod defender;
mod hooks;
mod requests;
mod siem;
mod threats;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, Request, Response, StatusCode, header};
use subtle::ConstantTimeEq;

pub use hooks::Report;

use crate::audit::Actor;
use crate::inspect::Inspector;
use crate::redirect::Body;
use crate::store::Store;
use crate::token::LiveKeyRing;
use crate::tokens::{Role, Tokens};
use crate::users::{Session, SignInThrottle, Users};

/// The OpenAPI description, checked in and served as is.
pub const OPENAPI: &str = include_str!("../../static/openapi.json");

/// The session cookie's name: with `Secure`, the `__Host-` prefix pins it to this host and path.
const COOKIE: &str = "portcullis_session";
const SECURE_COOKIE: &str = "__Host-portcullis_session";

/// What the API is set up with besides its stores.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// The largest message the hook calls take.
    pub max_body: usize,
    /// The domain of the default recipient when a hook call names none.
    pub default_domain: String,
    /// Where the click log's slices are.
    pub data_dir: PathBuf,
    /// Mark the session cookie `Secure` (the admin listener has TLS, or sits behind a TLS proxy).
    pub secure_cookies: bool,
    /// Answer an empty SIEM window with the JSON envelope instead of 204.
    pub siem_empty_envelope: bool,
    /// What the settings page shows ([`crate::config::Config::settings_view`]).
    pub settings_view: serde_json::Value,
}

/// The API's state.
pub struct Api {
    inspector: Inspector,
    store: Store,
    tokens: Tokens,
    users: Users,
    keys: LiveKeyRing,
    throttle: SignInThrottle,
    /// Password checks running at once (argon2 is slow and large on purpose).
    password_checks: Arc<tokio::sync::Semaphore>,
    settings: ApiSettings,
    /// Where delivered messages are taken back from (`[mailbox]`).
    mailbox: Option<Arc<dyn crate::mailbox::MailboxProvider>>,
    /// Sends the quarantine digest on demand.
    digests: Option<Arc<crate::digest::Digests>>,
}

/// Sign-ins whose passwords are checked at once; more answer 503 `busy`.
const PASSWORD_CHECKS: usize = 4;

/// An API error: HTTP status, stable code, words.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for `Retry-After`, when the caller should wait.
    retry_after: Option<u64>,
}

pub(crate) fn failure(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
        retry_after: None,
    }
}

fn internal(error: impl std::fmt::Display) -> Failure {
    failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string())
}

fn store_unavailable(error: impl std::fmt::Display) -> Failure {
    failure(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error.to_string())
}

/// Who is calling, and how they proved it.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// A user name, or `token:<name>`.
    name: String,
    role: Role,
    /// The console session and its cookie value, when signed in through the console.
    session: Option<(String, Session)>,
    client_ip: IpAddr,
}

impl Principal {
    fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            via: if self.session.is_some() { "console" } else { "api" }.into(),
            client_ip: self.client_ip.to_string(),
        }
    }

    /// Refuses unless the caller's role is at least `needed` (viewer < operator < admin; `scan`
    /// tokens only reach the hook calls).
    fn require(&self, needed: Role) -> Result<(), Failure> {
        let rank = |role: Role| match role {
            Role::Scan => 0,
            Role::Viewer => 1,
            Role::Operator => 2,
            Role::Admin => 3,
        };
        if self.role != Role::Scan && rank(self.role) >= rank(needed) {
            return Ok(());
        }
        Err(failure(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} has role {}; this needs {}",
                self.name,
                self.role.as_str(),
                needed.as_str()
            ),
        ))
    }
}

/// The methods each path takes, for 405 answers.
fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    Some(match segments {
        ["openapi.json"]
        | ["clicks"]
        | ["messages"]
        | ["messages", _]
        | ["quarantine"]
        | ["quarantine", "requests"]
        | ["quarantine", _, "message"]
        | ["audit"]
        | ["reports", "summary"]
        | ["settings"]
        | ["export", "url-click-events"] => "GET, HEAD",
        ["quarantine", "requests", _] | ["quarantine", "digests"] => "POST",
        ["scan"] | ["rewrite"] | ["quarantine", _, "release"] | ["quarantine", _, "sender"] => "POST",
        ["recipient-senders"] => "GET, HEAD",
        ["recipient-senders", _, _] => "DELETE",
        ["senders"] | ["threats"] | ["threats", _] => "GET, HEAD, POST",
        ["threats", _, "remediate"] => "POST",
        ["senders", _] => "DELETE",
        ["session"] => "GET, HEAD, POST, DELETE",
        ["quarantine", _] => "GET, HEAD, DELETE",
        _ => return None,
    })
}

impl Api {
    pub fn new(inspector: Inspector, store: Store, keys: LiveKeyRing, settings: ApiSettings) -> Result<Api, String> {
        let tokens = Tokens::new(store.clone()).map_err(|e| e.to_string())?;
        let users = Users::new(store.clone()).map_err(|e| e.to_string())?;
        Ok(Api {
            inspector,
            store,
            tokens,
            users,
            keys,
            throttle: SignInThrottle::default(),
            password_checks: Arc::new(tokio::sync::Semaphore::new(PASSWORD_CHECKS)),
            settings,
            mailbox: None,
            digests: None,
        })
    }

    /// Takes delivered messages back through `provider` when asked to remediate a threat.
    pub fn with_mailbox(mut self, provider: Option<Arc<dyn crate::mailbox::MailboxProvider>>) -> Api {
        self.mailbox = provider;
        self
    }

    /// Sends the quarantine digest when asked (`POST /api/v1/quarantine/digests`).
    pub fn with_digests(mut self, digests: Arc<crate::digest::Digests>) -> Api {
        self.digests = Some(digests);
        self
    }

    /// Whether this path is the API's: everything under `/api/`, and the SIEM feeds.
    pub fn owns(path: &str) -> bool {
        path.starts_with("/api/") || path.starts_with("/v2/siem/")
    }

    pub async fn handle(self: Arc<Self>, request: Request<hyper::body::Incoming>, peer: SocketAddr) -> Response<Body> {
        let started = std::time::Instant::now();
        let path = request.uri().path().to_string();
        let response = match self.route(request, peer.ip()).await {
            Ok(response) => response,
            Err(failure) => error_response(&failure),
        };
        tracing::debug!(%path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "api call");
        response
    }

    async fn route(
        &self,
        request: Request<hyper::body::Incoming>,
        client_ip: IpAddr,
    ) -> Result<Response<Body>, Failure> {
        let path = request.uri().path().to_string();
        if let Some(feed) = path.strip_prefix("/v2/siem/") {
            return self.siem(request, feed, client_ip).await;
        }
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return Err(not_found(&path));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let Some(allow) = allowed_methods(&segments) else {
            return Err(not_found(&path));
        };
        let method = request.method().clone();
        let takes = |m: &Method| allow.split(", ").any(|a| a == m.as_str());
        if !takes(&method) {
            let mut response = error_response(&failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} takes {allow}"),
            ));
            response
                .headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static(allow));
            return Ok(response);
        }
        match (&method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, ["openapi.json"]) => {
                return Ok(respond(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from_static(OPENAPI.as_bytes()),
                ));
            }
            (&Method::POST, ["session"]) => return self.sign_in(request, client_ip).await,
            _ => {}
        }
        let principal = self.authenticate(request.headers(), &method, client_ip, false).await?;
        let query = request.uri().query().unwrap_or("").to_string();
        match (&method, segments.as_slice()) {
            (&Method::POST, ["scan" | "rewrite"]) => {
                if !principal.role.may_inspect() {
                    return Err(failure(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        format!(
                            "{} has role {} and may not hand messages over",
                            principal.name,
                            principal.role.as_str()
                        ),
                    ));
                }
                self.scan_or_rewrite(request, segments[0] == "rewrite").await
            }
            (_, ["session"]) if method == Method::DELETE => self.sign_out(&principal).await,
            (_, ["session"]) => admin::session_response(&principal),
            (_, ["clicks"]) => {
                principal.require(Role::Viewer)?;
                self.clicks(&query).await
            }
            (_, ["messages"]) => {
                principal.require(Role::Viewer)?;
                self.messages(&query).await
            }
            (_, ["messages", message_ref]) => {
                principal.require(Role::Viewer)?;
                self.message(message_ref).await
            }
            (_, ["quarantine"]) => {
                principal.require(Role::Viewer)?;
                self.quarantine_list(&query).await
            }
            (_, ["quarantine", "requests"]) => {
                principal.require(Role::Viewer)?;
                self.release_requests(&query).await
            }
            (_, ["quarantine", "requests", id]) => {
                let id = id.to_string();
                self.decide_request(&principal, &id, request).await
            }
            (_, ["quarantine", "digests"]) => self.send_digests(&principal, request).await,
            (_, ["recipient-senders"]) => {
                principal.require(Role::Viewer)?;
                self.recipient_senders(&query).await
            }
            (_, ["recipient-senders", recipient, sender]) => {
                self.remove_recipient_sender(&principal, recipient, sender).await
            }
            (&Method::DELETE, ["quarantine", id]) => self.quarantine_delete(&principal, id).await,
            (_, ["quarantine", id]) => {
                principal.require(Role::Viewer)?;
                self.quarantine_show(id).await
            }
            (_, ["quarantine", id, "message"]) => {
                principal.require(Role::Admin)?;
                self.quarantine_raw(&principal, id).await
            }
            (_, ["quarantine", id, "release"]) => self.quarantine_release(&principal, id).await,
            (_, ["quarantine", id, "sender"]) => {
                let id = id.to_string();
                self.quarantine_sender(&principal, &id, request).await
            }
            (&Method::POST, ["senders"]) => self.add_sender(&principal, request).await,
            (_, ["senders"]) => {
                principal.require(Role::Viewer)?;
                self.senders().await
            }
            (_, ["senders", pattern]) => self.remove_sender(&principal, pattern).await,
            (_, ["audit"]) => {
                principal.require(Role::Operator)?;
                self.audit(&query).await
            }
            (_, ["reports", "summary"]) => {
                principal.require(Role::Viewer)?;
                self.summary(&query).await
            }
            (_, ["settings"]) => {
                principal.require(Role::Viewer)?;
                self.settings(&principal).await
            }
            (&Method::POST, ["threats"]) => self.add_threat(&principal, request).await,
            (_, ["threats"]) => {
                principal.require(Role::Viewer)?;
                self.threats(&query).await
            }
            (&Method::POST, ["threats", id]) => self.set_threat(&principal, id, request).await,
            (_, ["threats", id]) => {
                principal.require(Role::Viewer)?;
                self.threat(id).await
            }
            (_, ["threats", id, "remediate"]) => self.remediate_threat(&principal, id).await,
            (_, ["export", "url-click-events"]) => {
                principal.require(Role::Viewer)?;
                self.url_click_events(&query).await
            }
            _ => Err(not_found(&path)),
        }
    }

    /// Who the caller is: `Authorization: Bearer <token>`, `Authorization: Basic` with a token's
    /// principal and secret, or the console's session cookie. A session's changes (anything but
    /// GET and HEAD) must also carry its CSRF token and, when the browser sends one, a
    /// same-origin `Origin`.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        method: &Method,
        client_ip: IpAddr,
        basic_allowed: bool,
    ) -> Result<Principal, Failure> {
        if let Some(credentials) = presented_credentials(headers) {
            let presented = match credentials {
                Credentials::Bearer(token) => token,
                Credentials::Basic(token) if basic_allowed => token,
                Credentials::Basic(_) => {
                    return Err(failure(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "HTTP Basic is taken by the SIEM API only: send Authorization: Bearer <token>",
                    ));
                }
                Credentials::Unusable => String::new(),
            };
            let tokens = self.tokens.clone();
            let verified = blocking(move || tokens.verify(&presented)).await?;
            return match verified {
                Ok(Some((name, role))) => Ok(Principal {
                    name: format!("token:{name}"),
                    role,
                    session: None,
                    client_ip,
                }),
                Ok(None) => Err(failure(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "the token is unknown or revoked",
                )),
                Err(error) => Err(store_unavailable(error)),
            };
        }
        let Some(cookie) = session_cookie(headers, self.settings.secure_cookies) else {
            return Err(failure(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>, or sign in (POST /api/v1/session)",
            ));
        };
        let users = self.users.clone();
        let token = cookie.clone();
        let session = match blocking(move || users.session(&token)).await? {
            Ok(Some(session)) => session,
            Ok(None) => {
                return Err(failure(
                    StatusCode::UNAUTHORIZED,
                    "session_expired",
                    "the session has ended; sign in again",
                ));
            }
            Err(error) => return Err(store_unavailable(error)),
        };
        if !matches!(*method, Method::GET | Method::HEAD) {
            let presented = headers
                .get("x-csrf-token")
                .map(|value| value.as_bytes())
                .unwrap_or_default();
            let same_origin = headers.get(header::ORIGIN).is_none_or(|origin| {
                let host = headers.get(header::HOST).map(|h| h.as_bytes()).unwrap_or_default();
                let origin = origin.as_bytes();
                [b"http://".as_slice(), b"https://"]
                    .iter()
                    .any(|scheme| origin.strip_prefix(*scheme).is_some_and(|rest| rest == host))
            });
            if !bool::from(presented.ct_eq(session.csrf.as_bytes())) || !same_origin {
                return Err(failure(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "a change from the console needs its X-CSRF-Token and a same-origin request",
                ));
            }
        }
        Ok(Principal {
            name: session.user.clone(),
            role: session.role,
            session: Some((cookie, session)),
            client_ip,
        })
    }
}

/// What an `Authorization` header presents.
enum Credentials {
    Bearer(String),
    /// HTTP Basic `principal:secret` as the SIEM connectors send it: a token `pc_<id>_<secret>`
    /// is principal `<id>` with secret `<secret>`. Browsers replay Basic credentials on their
    /// own, so they are taken by the SIEM feeds (reads only), never by calls that change things.
    Basic(String),
    /// Another scheme, or Basic that does not decode.
    Unusable,
}

fn presented_credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(header::AUTHORIZATION)?;
    let Some((scheme, credentials)) = value.to_str().ok().and_then(|value| value.split_once(' ')) else {
        return Some(Credentials::Unusable);
    };
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Credentials::Bearer(credentials.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|decoded| String::from_utf8(decoded).ok());
        return Some(match decoded.as_deref().and_then(|text| text.split_once(':')) {
            Some((principal, secret)) => {
                let principal = principal.strip_prefix("pc_").unwrap_or(principal);
                Credentials::Basic(format!("pc_{principal}_{secret}"))
            }
            None => Credentials::Unusable,
        });
    }
    Some(Credentials::Unusable)
}

/// The session cookie, by the one name this listener sets: with `Secure` only the `__Host-`
/// name, which a sibling host or a plain-HTTP answer cannot plant.
fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<String> {
    let wanted = if secure { SECURE_COOKIE } else { COOKIE };
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_string())
}

/// Runs store work off the async workers (SQLite behind a lock, argon2).
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work).await.map_err(internal)
}

fn not_found(path: &str) -> Failure {
    failure(StatusCode::NOT_FOUND, "not_found", format!("no such endpoint: {path}"))
}

/// Seconds a request body may stay silent before the call is refused (`body_timeout`).
const BODY_SILENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes past the limit read and thrown away before answering 413: a client still sending its
/// body when the answer comes would see the connection reset instead of the answer.
const DRAIN_PAST_LIMIT: usize = 16 * 1024 * 1024;

/// A JSON body of at most `limit` bytes as `T`; `what` names it in the error.
async fn read_json<T: serde::de::DeserializeOwned>(
    request: Request<hyper::body::Incoming>,
    limit: usize,
    what: &str,
) -> Result<T, Failure> {
    let body = read_body(request, limit).await?;
    serde_json::from_slice(&body).map_err(|e| failure(StatusCode::BAD_REQUEST, "bad_body", format!("{what}: {e}")))
}

/// The body, read frame by frame: never buffered past `limit`; past it the rest is read and
/// dropped (up to [`DRAIN_PAST_LIMIT`]) so the client gets its 413.
async fn read_body(request: Request<hyper::body::Incoming>, limit: usize) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is limited to {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let mut body = request.into_body();
    if declared.is_some_and(|length| length > (limit + DRAIN_PAST_LIMIT) as u64) {
        // Too big to be worth reading: answer now; the connection closes after.
        return Err(too_large());
    }
    let mut message = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut seen = 0usize;
    loop {
        let frame = match tokio::time::timeout(BODY_SILENCE, body.frame()).await {
            Err(_) => {
                return Err(failure(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("the body stopped arriving for {} s", BODY_SILENCE.as_secs()),
                ));
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let frame =
            frame.map_err(|e| failure(StatusCode::BAD_REQUEST, "bad_body", format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > limit + DRAIN_PAST_LIMIT {
                return Err(too_large());
            }
            if seen <= limit {
                message.extend_from_slice(&data);
            } else if !message.is_empty() {
                message = Vec::new();
            }
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    if message.is_empty() {
        return Err(failure(StatusCode::BAD_REQUEST, "empty_body", "the call needs a body"));
    }
    Ok(message)
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Result<Response<Body>, Failure> {
    let body = serde_json::to_vec(value).map_err(internal)?;
    Ok(respond(status, "application/json", Bytes::from(body)))
}

fn error_response(failure: &Failure) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": failure.code, "message": failure.message}});
    let mut response = respond(failure.status, "application/json", Bytes::from(body.to_string()));
    if failure.status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer, Basic realm=\"portcullis\""),
        );
    }
    let retry_after = failure
        .retry_after
        .or((failure.status == StatusCode::SERVICE_UNAVAILABLE).then_some(5));
    if let Some(seconds) = retry_after
        && let Ok(value) = header::HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The codes this module answers with, for the description's test.
pub const ERROR_CODES: &[&str] = &[
    "not_configured",
    "conflict",
    "unauthorized",
    "invalid_token",
    "invalid_credentials",
    "too_many_attempts",
    "session_expired",
    "csrf",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "bad_parameter",
    "bad_body",
    "empty_body",
    "body_too_large",
    "body_timeout",
    "not_a_message",
    "busy",
    "store_unavailable",
    "internal",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in description names every error code the API answers with, and no other,
    /// and every path the router takes.
    #[test]
    fn the_description_lists_exactly_the_error_codes_and_paths() {
        let description: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        let mut documented: Vec<&str> =
            description["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
                .as_array()
                .expect("code enum")
                .iter()
                .map(|code| code.as_str().unwrap())
                .collect();
        let mut answered = ERROR_CODES.to_vec();
        documented.sort_unstable();
        answered.sort_unstable();
        assert_eq!(documented, answered);
        let paths = description["paths"].as_object().expect("paths");
        for (path, operations) in paths {
            if let Some(rest) = path.strip_prefix("/api/v1/") {
                let segments: Vec<&str> = rest.split('/').collect();
                let allow = allowed_methods(&segments).unwrap_or_else(|| panic!("{path} is not routed"));
                for method in operations.as_object().unwrap().keys().filter(|k| *k != "parameters") {
                    assert!(
                        allow.split(", ").any(|a| a.eq_ignore_ascii_case(method)),
                        "{method} {path} is documented but not routed"
                    );
                }
            } else {
                assert!(
                    path.starts_with("/v2/siem/") || path == "/healthz" || path == "/metrics",
                    "{path}"
                );
            }
        }
        for segments in [
            &["scan"][..],
            &["rewrite"],
            &["session"],
            &["clicks"],
            &["messages"],
            &["messages", "{message_ref}"],
            &["quarantine"],
            &["quarantine", "{id}"],
            &["quarantine", "{id}", "release"],
            &["quarantine", "{id}", "message"],
            &["audit"],
            &["reports", "summary"],
            &["export", "url-click-events"],
            &["senders"],
            &["senders", "{sender}"],
            &["quarantine", "{id}", "sender"],
            &["settings"],
            &["threats"],
            &["threats", "{id}"],
            &["threats", "{id}", "remediate"],
            &["quarantine", "requests"],
            &["quarantine", "requests", "{id}"],
            &["quarantine", "digests"],
            &["recipient-senders"],
            &["recipient-senders", "{recipient}", "{sender}"],
        ] {
            let path = format!("/api/v1/{}", segments.join("/"));
            assert!(paths.contains_key(&path), "{path} is routed but not documented");
        }
    }
}
