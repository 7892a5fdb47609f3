//! The HTTP hook API on the admin listener: `POST /api/v1/scan` (the verdict, scores and symbols
//! of a raw message, nothing changed or kept) and `POST /api/v1/rewrite` (the message as it goes
//! on, links rewritten and our headers stamped, filed like a message the gateway accepted), and
//! the OpenAPI description at `/api/v1/openapi.json`. Bearer tokens from [`crate::tokens`];
//! bodies read as they stream in and refused as soon as they pass the limit; every error is JSON
//! with a stable code.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Serialize;

use crate::inspect::{Filing, InspectError, Inspection, Inspector};
use crate::pipeline::explain::Explanation;
use crate::pipeline::{Envelope, Verdict};
use crate::redirect::Body;
use crate::tokens::Tokens;

/// The OpenAPI description, checked in and served as is.
pub const OPENAPI: &str = include_str!("../static/openapi.json");

/// Recipients one call may name, as the SMTP gateway allows per message.
const MAX_RECIPIENTS: usize = 1000;

/// The API's state: the shared inspector and the token store.
pub struct Api {
    inspector: Inspector,
    tokens: Tokens,
    max_body: usize,
    /// The domain of the default recipient when a call names none.
    default_domain: String,
}

/// The answer to a scan, and the report part of a rewrite.
#[derive(Debug, Serialize)]
pub struct Report {
    pub message_ref: String,
    #[serde(flatten)]
    pub explanation: Explanation,
    /// The SMTP reply a refusing MTA should give (`reject` only).
    pub reply: Option<String>,
    /// Who the message goes to after transport rules.
    pub recipients: Vec<String>,
    /// Whether the links carry the one recipient's reference or only the message's.
    pub per_recipient_links: bool,
}

/// An API error: HTTP status, stable code, words.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn failure(status: StatusCode, code: &'static str, message: impl Into<String>) -> Failure {
    Failure {
        status,
        code,
        message: message.into(),
    }
}

impl Api {
    pub fn new(inspector: Inspector, tokens: Tokens, max_body: usize, default_domain: &str) -> Api {
        Api {
            inspector,
            tokens,
            max_body,
            default_domain: default_domain.to_string(),
        }
    }

    /// Whether this path is the API's (everything under `/api/`).
    pub fn owns(path: &str) -> bool {
        path.starts_with("/api/")
    }

    pub async fn handle(self: Arc<Self>, request: Request<hyper::body::Incoming>) -> Response<Body> {
        match self.route(request).await {
            Ok(response) => response,
            Err(failure) => error_response(&failure),
        }
    }

    async fn route(&self, request: Request<hyper::body::Incoming>) -> Result<Response<Body>, Failure> {
        let path = request.uri().path().to_string();
        match (request.method(), path.as_str()) {
            (&Method::GET | &Method::HEAD, "/api/v1/openapi.json") => Ok(respond(
                StatusCode::OK,
                "application/json",
                Bytes::from_static(OPENAPI.as_bytes()),
            )),
            (&Method::POST, "/api/v1/scan") => self.scan_or_rewrite(request, false).await,
            (&Method::POST, "/api/v1/rewrite") => self.scan_or_rewrite(request, true).await,
            (_, "/api/v1/scan" | "/api/v1/rewrite") => {
                let mut response = error_response(&failure(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{path} takes POST"),
                ));
                response
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
                Ok(response)
            }
            (_, "/api/v1/openapi.json") => Err(failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "the description takes GET",
            )),
            _ => Err(failure(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such endpoint: {path}"),
            )),
        }
    }

    async fn scan_or_rewrite(
        &self,
        request: Request<hyper::body::Incoming>,
        rewrite: bool,
    ) -> Result<Response<Body>, Failure> {
        self.authorize(&request).await?;
        let query = Query::parse(request.uri().query().unwrap_or(""))?;
        let wants_multipart = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("multipart/mixed"));
        let message = read_body(request, self.max_body).await?;
        if crate::rewrite::mime::parse_headers(&message).fields.is_empty() {
            return Err(failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_message",
                "the body has no header fields: send the raw message (RFC 5322) as the body",
            ));
        }
        let envelope = query.envelope(&message, &self.default_domain);
        let message = Arc::new(message);
        let filing = if rewrite { Filing::Record } else { Filing::Nothing };
        let refused = |error| match error {
            InspectError::Busy | InspectError::TimedOut => failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many messages being filtered; try again shortly",
            ),
            InspectError::Store(reason) => failure(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", reason),
            InspectError::Failed(reason) => failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason),
        };
        let slot = self.inspector.slot().await.map_err(refused)?;
        // A client that hangs up drops this call, and with it the analysis.
        let inspection = self
            .inspector
            .inspect(slot, &envelope, &message, !query.after_queue, filing, None)
            .await
            .map_err(refused)?;
        let report = report(&envelope, &inspection);
        let json = serde_json::to_vec(&report)
            .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        if !rewrite {
            return Ok(respond(StatusCode::OK, "application/json", Bytes::from(json)));
        }
        let message = inspection.rendered.unwrap_or_default();
        let mut response = if wants_multipart {
            let boundary = format!("portcullis-{}", crate::pipeline::hex(&rand::random::<[u8; 12]>()));
            let mut body = Vec::with_capacity(json.len() + message.len() + 256);
            body.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/json\r\n\r\n").as_bytes());
            body.extend_from_slice(&json);
            if !message.is_empty() {
                body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes());
                body.extend_from_slice(&message);
            }
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            respond(
                StatusCode::OK,
                &format!("multipart/mixed; boundary=\"{boundary}\""),
                Bytes::from(body),
            )
        } else {
            respond(StatusCode::OK, "message/rfc822", Bytes::from(message))
        };
        let headers = response.headers_mut();
        let mut put = |name: &'static str, value: &str| {
            if let Ok(value) = header::HeaderValue::from_str(&crate::pipeline::headers::clean(value)) {
                headers.insert(name, value);
            }
        };
        put("portcullis-verdict", report.explanation.verdict);
        put("portcullis-message-ref", &report.message_ref);
        if let Some(category) = &report.explanation.category {
            put("portcullis-category", category);
        }
        if let Some(reply) = &report.reply {
            put("portcullis-reply", reply);
        }
        let scores = &report.explanation.scores;
        put(
            "portcullis-scores",
            &format!(
                "spam={} phish={} bulk={} impostor={} malware={} suspect={}",
                scores.spam, scores.phish, scores.bulk, scores.impostor, scores.malware, scores.suspect
            ),
        );
        Ok(response)
    }

    async fn authorize(&self, request: &Request<hyper::body::Incoming>) -> Result<(), Failure> {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_string())
            .ok_or_else(|| {
                failure(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send Authorization: Bearer <token>",
                )
            })?;
        // The store is SQLite behind a lock: off the async workers.
        let tokens = self.tokens.clone();
        let verified = tokio::task::spawn_blocking(move || tokens.verify(&presented))
            .await
            .map_err(|e| failure(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        match verified {
            Ok(Some((_, role))) if role.may_inspect() => Ok(()),
            Ok(Some((name, role))) => Err(failure(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "token {name:?} has role {} and may not hand messages over",
                    role.as_str()
                ),
            )),
            Ok(None) => Err(failure(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the token is unknown or revoked",
            )),
            Err(error) => Err(failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                error.to_string(),
            )),
        }
    }
}

fn report(envelope: &Envelope, inspection: &Inspection) -> Report {
    Report {
        message_ref: envelope.message_ref.clone(),
        explanation: inspection.explanation.clone(),
        reply: match &inspection.outcome.verdict {
            Verdict::Reject { refusal } => Some(crate::smtp::server::reply_for(refusal)),
            _ => None,
        },
        recipients: inspection.recipients.clone(),
        per_recipient_links: inspection.per_recipient,
    }
}

/// The envelope a call may give in its query string.
#[derive(Default)]
struct Query {
    sender: Option<String>,
    recipients: Vec<String>,
    client_ip: Option<IpAddr>,
    helo: Option<String>,
    tls: bool,
    /// The message was already accepted: a reject is held instead (a content filter).
    after_queue: bool,
}

impl Query {
    fn parse(query: &str) -> Result<Query, Failure> {
        let bad = |name: &str, why: &str| failure(StatusCode::BAD_REQUEST, "bad_parameter", format!("{name}: {why}"));
        let mut parsed = Query::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if value.len() > 998 || value.contains(['\r', '\n', '\0']) {
                return Err(bad(&name, "too long or has line breaks"));
            }
            let flag = |value: &str| match value {
                "" | "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(bad(&name, "expected true or false")),
            };
            match name.as_ref() {
                "sender" => parsed.sender = Some(value.trim_matches(['<', '>']).to_string()),
                "recipient" => {
                    let recipient = value.trim_matches(['<', '>']).to_string();
                    if !recipient.contains('@') {
                        return Err(bad(&name, "not an address"));
                    }
                    parsed.recipients.push(recipient);
                    if parsed.recipients.len() > MAX_RECIPIENTS {
                        return Err(bad(&name, "too many recipients"));
                    }
                }
                "client_ip" => parsed.client_ip = Some(value.parse().map_err(|_| bad(&name, "not an IP address"))?),
                "helo" => parsed.helo = Some(value.into_owned()),
                "tls" => parsed.tls = flag(&value)?,
                "after_queue" => parsed.after_queue = flag(&value)?,
                _ => return Err(bad(&name, "unknown parameter")),
            }
        }
        Ok(parsed)
    }

    fn envelope(&self, message: &[u8], default_domain: &str) -> Envelope {
        Envelope {
            message_ref: crate::smtp::server::new_message_ref(),
            sender: self
                .sender
                .clone()
                .or_else(|| crate::pipeline::from_address(message))
                .unwrap_or_default(),
            recipients: if self.recipients.is_empty() {
                vec![format!("recipient@{default_domain}")]
            } else {
                self.recipients.clone()
            },
            client_ip: self.client_ip.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            helo: self.helo.clone().unwrap_or_else(|| "localhost".into()),
            tls: self.tls,
            received_at: crate::store::now(),
            connection_symbols: Vec::new(),
        }
    }
}

/// Seconds a request body may stay silent before the call is refused (`body_timeout`).
const BODY_SILENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Bytes past the limit read and thrown away before answering 413: a client still sending its
/// body when the answer comes would see the connection reset instead of the answer.
const DRAIN_PAST_LIMIT: usize = 16 * 1024 * 1024;

/// The body, read frame by frame: never buffered past `limit`; past it the rest is read and
/// dropped (up to [`DRAIN_PAST_LIMIT`]) so the client gets its 413.
async fn read_body(request: Request<hyper::body::Incoming>, limit: usize) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("messages are limited to {limit} bytes"),
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
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "empty_body",
            "send the raw message as the body",
        ));
    }
    Ok(message)
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

fn error_response(failure: &Failure) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": failure.code, "message": failure.message}});
    let mut response = respond(failure.status, "application/json", Bytes::from(body.to_string()));
    if failure.status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    if failure.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    response
}

/// The codes this module answers with, for the description's test.
pub const ERROR_CODES: &[&str] = &[
    "unauthorized",
    "invalid_token",
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

    /// The checked-in description names every error code the API answers with, and no other.
    #[test]
    fn the_description_lists_exactly_the_error_codes() {
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
        for path in ["/api/v1/scan", "/api/v1/rewrite", "/api/v1/openapi.json"] {
            assert!(description["paths"][path].is_object(), "{path}");
        }
    }
}
