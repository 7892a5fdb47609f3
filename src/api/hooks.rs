//! The hook calls: `POST /api/v1/scan` (the verdict, scores and symbols of a raw message,
//! nothing changed or kept) and `POST /api/v1/rewrite` (the message as it goes on, links
//! rewritten and our headers stamped, filed like a message the gateway accepted).

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::{Request, Response, StatusCode, header};
use serde::Serialize;

use super::{Api, Failure, failure, read_body, respond};
use crate::inspect::{Filing, InspectError, Inspection};
use crate::pipeline::explain::Explanation;
use crate::pipeline::{Envelope, Verdict};
use crate::redirect::Body;

/// Recipients one call may name, as the SMTP gateway allows per message.
const MAX_RECIPIENTS: usize = 1000;

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

impl Api {
    pub(super) async fn scan_or_rewrite(
        &self,
        request: Request<hyper::body::Incoming>,
        rewrite: bool,
    ) -> Result<Response<Body>, Failure> {
        let query = Query::parse(request.uri().query().unwrap_or(""))?;
        let wants_multipart = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("multipart/mixed"));
        let message = read_body(request, self.settings.max_body).await?;
        if crate::rewrite::mime::parse_headers(&message).fields.is_empty() {
            return Err(failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_a_message",
                "the body has no header fields: send the raw message (RFC 5322) as the body",
            ));
        }
        let envelope = query.envelope(&message, &self.settings.default_domain);
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
