//! The security team's calls: sign-in and sessions, click search, message trace, quarantine
//! review and actions, and the audit log. Lists are newest first with an opaque `next_cursor`
//! to pass back as `cursor`; times are RFC 3339 (UTC) out and RFC 3339 or Unix seconds in.

use std::collections::HashMap;
use std::net::IpAddr;

use bytes::Bytes;
use hyper::{Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Api, Failure, Principal, blocking, failure, json_response, read_json, respond, store_unavailable};
use crate::audit::AuditQuery;
use crate::clicklog::{ClickEvent, ClickQuery, read_clicks};
use crate::pipeline::symbols::Scores;
use crate::quarantine::Held;
use crate::redirect::Body;
use crate::store::{IndexEntry, StoreError};
use crate::time::{parse_rfc3339_millis, rfc3339, rfc3339_millis};
use crate::tokens::Role;
use crate::trace::MessageQuery;

/// A page when the caller names no limit, and the most one call returns.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// The most of a held message's text shown as its preview.
const PREVIEW_CHARS: usize = 4000;

/// The query string, checked: each name at most once and known to the call.
pub(super) struct Params(HashMap<String, String>);

pub(super) fn bad(name: &str, why: impl std::fmt::Display) -> Failure {
    failure(StatusCode::BAD_REQUEST, "bad_parameter", format!("{name}: {why}"))
}

impl Params {
    pub(super) fn parse(query: &str, known: &[&str]) -> Result<Params, Failure> {
        let mut values = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !known.contains(&name.as_ref()) {
                return Err(bad(&name, format!("unknown parameter (known: {})", known.join(", "))));
            }
            if value.len() > 2048 || value.contains(['\r', '\n', '\0']) {
                return Err(bad(&name, "too long or has line breaks"));
            }
            if values.insert(name.to_string(), value.trim().to_string()).is_some() {
                return Err(bad(&name, "given twice"));
            }
        }
        Ok(Params(values))
    }

    pub(super) fn text(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|value| !value.is_empty()).cloned()
    }

    /// A time as Unix milliseconds (RFC 3339 or Unix seconds).
    pub(super) fn time_ms(&self, name: &str) -> Result<Option<i64>, Failure> {
        self.text(name)
            .map(|text| parse_rfc3339_millis(&text).ok_or_else(|| bad(name, "expected RFC 3339 or Unix seconds")))
            .transpose()
    }

    pub(super) fn limit(&self) -> Result<usize, Failure> {
        match self.text("limit") {
            None => Ok(DEFAULT_PAGE),
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (1..=MAX_PAGE).contains(&limit) => Ok(limit),
                _ => Err(bad("limit", format!("expected 1 to {MAX_PAGE}"))),
            },
        }
    }

    pub(super) fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Failure> {
        // Given but empty is not one of them either.
        match self.0.get(name).cloned() {
            Some(value) if !allowed.contains(&value.as_str()) => {
                Err(bad(name, format!("expected one of {}", allowed.join(", "))))
            }
            value => Ok(value),
        }
    }
}

/// Click actions, as the click log names them.
const ACTIONS: &[&str] = &[
    "permitted",
    "blocked",
    "warned",
    "clicked-through",
    "prefetch",
    "rejected",
    "expired",
    "reported",
];

const VERDICTS: &[&str] = &["deliver", "quarantine", "reject", "discard", "released"];

/// One click as the API shows it.
#[derive(Debug, Serialize)]
struct ClickView {
    id: String,
    time: String,
    url: String,
    action: &'static str,
    verdict: String,
    category: String,
    /// The recipient's address, when the link named one and the message index knows it.
    recipient: Option<String>,
    recipient_ref: String,
    message_ref: String,
    client_ip: String,
    user_agent: String,
    cache_hit: bool,
    latency_us: i64,
}

#[derive(Debug, Serialize)]
struct MessageSummary {
    message_ref: String,
    received_at: String,
    message_id: Option<String>,
    sender: String,
    from: Option<String>,
    subject: Option<String>,
    recipients: Vec<String>,
    verdict: String,
    category: Option<String>,
    rule: Option<String>,
    scores: Scores,
}

fn summary(entry: &IndexEntry) -> MessageSummary {
    MessageSummary {
        message_ref: entry.message_ref.clone(),
        received_at: rfc3339(entry.received_at),
        message_id: entry.message_id.clone(),
        sender: entry.sender.clone(),
        from: entry.from_address.clone(),
        subject: entry.subject.clone(),
        recipients: entry.recipients.iter().map(|r| r.address.clone()).collect(),
        verdict: entry.verdict.clone(),
        category: entry.category.clone(),
        rule: entry.rule.clone(),
        scores: Scores::of_weighed(&entry.weighed),
    }
}

#[derive(Debug, Serialize)]
pub(super) struct HeldView {
    id: i64,
    message_ref: String,
    category: String,
    reason: String,
    sender: String,
    recipients: Vec<String>,
    subject: Option<String>,
    size: i64,
    held_at: String,
    expires_at: String,
    /// Its recipients may act on it from their quarantine digest.
    self_service: bool,
}

pub(super) fn held_view(held: &Held) -> HeldView {
    HeldView {
        id: held.id,
        message_ref: held.message_ref.clone(),
        category: held.category.clone(),
        reason: held.reason.clone(),
        sender: held.sender.clone(),
        recipients: held.recipients.clone(),
        subject: held.subject.clone(),
        size: held.size,
        held_at: rfc3339(held.held_at),
        expires_at: rfc3339(held.expires_at),
        self_service: held.self_service,
    }
}

#[derive(Debug, Serialize)]
struct AttachmentView {
    name: Option<String>,
    declared_type: String,
    detected_type: &'static str,
    size: usize,
    sha256: String,
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
    password: String,
}

/// What a user or token is, as `GET /api/v1/session` tells the console.
pub(super) fn session_response(principal: &Principal) -> Result<Response<Body>, Failure> {
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "user": principal.name,
            "role": principal.role.as_str(),
            "csrf": principal.session.as_ref().map(|(_, session)| session.csrf.clone()),
        }),
    )
}

fn not_found(what: impl std::fmt::Display) -> Failure {
    failure(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

pub(super) fn store_failure(error: StoreError) -> Failure {
    match error {
        StoreError::NotFound(what) => not_found(what),
        StoreError::Conflict(what) => failure(StatusCode::CONFLICT, "conflict", what),
        other => store_unavailable(other),
    }
}

/// A path segment percent-decoded: `+` is itself (only a query string spells a space so).
pub(super) fn path_segment(segment: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

pub(super) fn sender_failure(error: crate::senders::SenderError) -> Failure {
    match error {
        crate::senders::SenderError::Pattern(_) => failure(StatusCode::BAD_REQUEST, "bad_body", error.to_string()),
        crate::senders::SenderError::Unknown(what) => not_found(format!("sender entry {what}")),
        crate::senders::SenderError::Store(error) => store_unavailable(error),
    }
}

/// A path's numeric id of a `what` (a hold, a threat, a request); anything else is not found.
pub(super) fn entry_id(text: &str, what: &str) -> Result<i64, Failure> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| not_found(format!("{what} {text}")))
}

impl Api {
    pub(super) async fn sign_in(
        &self,
        request: Request<hyper::body::Incoming>,
        client_ip: IpAddr,
    ) -> Result<Response<Body>, Failure> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("application/json"));
        if !json {
            // A form another site posts cannot set this type without asking first.
            return Err(failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_body",
                "send {\"name\": …, \"password\": …} as application/json",
            ));
        }
        let SignIn { name, password } = read_json(request, 4096, "the sign-in").await?;
        let client = client_ip.to_string();
        // A few password checks at once: each argon2 run takes ~19 MiB and a core.
        let Ok(_checking) = self.password_checks.clone().try_acquire_owned() else {
            return Err(failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many sign-ins being checked; try again shortly",
            ));
        };
        if let Err(wait) = self.throttle.attempt(&client, &name) {
            let mut refused = failure(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed sign-ins; try again in {wait} s"),
            );
            refused.retry_after = Some(wait);
            return Err(refused);
        }
        let users = self.users.clone();
        let (who, from) = (name.clone(), client.clone());
        let opened = blocking(move || users.sign_in(&who, &password, &from))
            .await?
            .map_err(store_unavailable)?;
        let Some(opened) = opened else {
            return Err(failure(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong user name or password",
            ));
        };
        self.throttle.succeeded(&client, &name);
        let mut response = json_response(
            StatusCode::OK,
            &serde_json::json!({
                "user": opened.session.user,
                "role": opened.session.role.as_str(),
                "csrf": opened.session.csrf,
            }),
        )?;
        self.set_cookie(&mut response, &opened.token, crate::users::SESSION_MAX_SECS);
        Ok(response)
    }

    fn set_cookie(&self, response: &mut Response<Body>, value: &str, max_age: i64) {
        let cookie = if self.settings.secure_cookies {
            format!(
                "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict; Secure",
                super::SECURE_COOKIE
            )
        } else {
            format!(
                "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict",
                super::COOKIE
            )
        };
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }

    pub(super) async fn sign_out(&self, principal: &Principal) -> Result<Response<Body>, Failure> {
        if let Some((token, _)) = &principal.session {
            let (users, token, actor) = (self.users.clone(), token.clone(), principal.actor());
            blocking(move || users.sign_out(&token, &actor))
                .await?
                .map_err(store_unavailable)?;
        }
        let mut response = respond(StatusCode::NO_CONTENT, "application/json", Bytes::new());
        self.set_cookie(&mut response, "", 0);
        Ok(response)
    }

    pub(super) async fn clicks(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(
            query,
            &[
                "since",
                "until",
                "recipient",
                "url",
                "domain",
                "verdict",
                "action",
                "message",
                "limit",
                "cursor",
            ],
        )?;
        let limit = params.limit()?;
        let cursor = params.text("cursor");
        if let Some(cursor) = &cursor
            && (cursor.len() != 32 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(bad("cursor", "not a cursor this API gave"));
        }
        let recipient_refs = params.text("recipient").map(|address| {
            self.keys
                .current()
                .recipient_refs(&address)
                .iter()
                .map(|reference| crate::pipeline::hex(reference))
                .collect()
        });
        let url_prefix = params.text("url");
        if let Some(url) = &url_prefix
            && crate::clicklog::reversed_host(url).is_empty()
        {
            return Err(bad("url", "expected an absolute URL (a prefix of the clicked URLs)"));
        }
        let click_query = ClickQuery {
            limit,
            message_ref: params.text("message"),
            action: params.one_of("action", ACTIONS)?,
            verdict: params.text("verdict"),
            recipient_refs,
            domain: params.text("domain"),
            url_prefix,
            since_ms: params.time_ms("since")?,
            until_ms: params.time_ms("until")?,
            before_id: cursor,
            threats_only: false,
        };
        let data_dir = self.settings.data_dir.clone();
        let store = self.store.clone();
        let (clicks, recipients) = blocking(move || {
            let clicks = read_clicks(&data_dir, &click_query)?;
            let recipients = messages_of(&store, &clicks);
            Ok::<_, crate::clicklog::ClickLogError>((clicks, recipients))
        })
        .await?
        .map_err(store_unavailable)?;
        let next_cursor = (clicks.len() == limit)
            .then(|| clicks.last().map(|c| c.id.clone()))
            .flatten();
        let views: Vec<ClickView> = clicks.into_iter().map(|click| click_view(click, &recipients)).collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({"clicks": views, "next_cursor": next_cursor}),
        )
    }

    pub(super) async fn messages(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(
            query,
            &[
                "since",
                "until",
                "message_id",
                "sender",
                "recipient",
                "subject",
                "verdict",
                "category",
                "limit",
                "cursor",
            ],
        )?;
        let limit = params.limit()?;
        let before = params
            .text("cursor")
            .map(|cursor| {
                cursor
                    .split_once('.')
                    .and_then(|(at, message_ref)| Some((at.parse::<i64>().ok()?, message_ref.to_string())))
                    .ok_or_else(|| bad("cursor", "not a cursor this API gave"))
            })
            .transpose()?;
        let message_query = MessageQuery {
            limit,
            before,
            since: params.time_ms("since")?.map(|ms| ms.div_euclid(1000)),
            until: params.time_ms("until")?.map(|ms| ms.div_euclid(1000)),
            message_id: params.text("message_id"),
            sender: params.text("sender"),
            recipient: params.text("recipient"),
            subject: params.text("subject"),
            verdict: params.one_of("verdict", VERDICTS)?,
            category: params.text("category"),
        };
        let store = self.store.clone();
        let entries = blocking(move || store.trace(&message_query))
            .await?
            .map_err(store_failure)?;
        let next_cursor = (entries.len() == limit)
            .then(|| entries.last().map(|e| format!("{}.{}", e.received_at, e.message_ref)))
            .flatten();
        let messages: Vec<MessageSummary> = entries.iter().map(summary).collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({"messages": messages, "next_cursor": next_cursor}),
        )
    }

    /// One message: what arrived, every symbol with its weight and what triggered it, the
    /// verdict, its quarantine holds, its delivery attempts, and the clicks on its links.
    pub(super) async fn message(&self, message_ref: &str) -> Result<Response<Body>, Failure> {
        let (store, data_dir, wanted) = (
            self.store.clone(),
            self.settings.data_dir.clone(),
            message_ref.to_string(),
        );
        let found = blocking(move || -> Result<_, StoreError> {
            let Some(entry) = store.index(1, Some(&wanted))?.into_iter().next() else {
                return Err(StoreError::NotFound(format!("message {wanted}")));
            };
            let attempts = store.delivery_attempts(&wanted)?;
            let holds: Vec<Held> = store.holds_of(&wanted)?;
            let clicks = read_clicks(
                &data_dir,
                &ClickQuery {
                    limit: DEFAULT_PAGE,
                    message_ref: Some(wanted.clone()),
                    ..ClickQuery::default()
                },
            )
            .unwrap_or_default();
            let recipients = messages_of(&store, &clicks);
            Ok((entry, attempts, holds, clicks, recipients))
        })
        .await?
        .map_err(store_failure)?;
        let (entry, attempts, holds, clicks, recipients) = found;
        let attempts: Vec<serde_json::Value> = attempts
            .iter()
            .map(|a| serde_json::json!({"time": rfc3339(a.at), "recipient": a.recipient, "outcome": a.outcome, "reply": a.reply}))
            .collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "message": summary(&entry),
                "client_ip": entry.client_ip,
                "helo": entry.helo,
                "details": entry.details,
                "urls": entry.urls,
                "symbols": entry.weighed,
                "quarantine": holds.iter().map(held_view).collect::<Vec<_>>(),
                "delivery_attempts": attempts,
                "clicks": clicks.into_iter().map(|c| click_view(c, &recipients)).collect::<Vec<_>>(),
            }),
        )
    }

    pub(super) async fn quarantine_list(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(query, &["category", "limit", "cursor"])?;
        let limit = params.limit()?;
        let before = params
            .text("cursor")
            .map(|text| {
                text.parse::<i64>()
                    .map_err(|_| bad("cursor", "not a cursor this API gave"))
            })
            .transpose()?;
        let (store, category) = (self.store.clone(), params.text("category"));
        let held = blocking(move || store.held(category.as_deref(), before, limit))
            .await?
            .map_err(store_failure)?;
        let next_cursor = (held.len() == limit)
            .then(|| held.last().map(|h| h.id.to_string()))
            .flatten();
        json_response(
            StatusCode::OK,
            &serde_json::json!({"held": held.iter().map(held_view).collect::<Vec<_>>(), "next_cursor": next_cursor}),
        )
    }

    /// A held message for review: its header fields, a text preview (visible text only, as the
    /// content detectors read it), and its attachments by name, type and hash. Nothing of it is
    /// rendered, fetched or run.
    pub(super) async fn quarantine_show(&self, id: &str) -> Result<Response<Body>, Failure> {
        let id = entry_id(id, "quarantine")?;
        let store = self.store.clone();
        let (held, copy) = blocking(move || store.held_message(id)).await?.map_err(store_failure)?;
        let bytes = copy.into_bytes();
        let review = blocking(move || review_of(&bytes)).await?;
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "held": held_view(&held),
                "headers": review.headers,
                "preview": review.preview,
                "attachments": review.attachments,
            }),
        )
    }

    /// The held message exactly as it arrived, as a download (admins only, for analysis).
    pub(super) async fn quarantine_raw(&self, principal: &Principal, id: &str) -> Result<Response<Body>, Failure> {
        let id = entry_id(id, "quarantine")?;
        let store = self.store.clone();
        let (_, copy) = blocking(move || store.held_message(id)).await?.map_err(store_failure)?;
        let bytes = copy.into_bytes();
        tracing::info!(id, by = %principal.name, "held message downloaded");
        let mut response = respond(StatusCode::OK, "application/octet-stream", Bytes::from(bytes));
        let headers = response.headers_mut();
        if let Ok(value) = header::HeaderValue::from_str(&format!("attachment; filename=\"held-{id}.eml\"")) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("sandbox; default-src 'none'"),
        );
        Ok(response)
    }

    /// Releases a held message into delivery. Malware is released by admins only.
    pub(super) async fn quarantine_release(&self, principal: &Principal, id: &str) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let id = entry_id(id, "quarantine")?;
        let (store, actor) = (self.store.clone(), principal.actor());
        let role = principal.role;
        let released = blocking(move || -> Result<Result<Held, Failure>, StoreError> {
            let held = store.hold(id)?;
            if held.category == "malware" && role != Role::Admin {
                return Ok(Err(failure(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "malware is released by an admin only",
                )));
            }
            Ok(Ok(store.release(id, &actor)?))
        })
        .await?
        .map_err(store_failure)??;
        json_response(StatusCode::OK, &serde_json::json!({"released": held_view(&released)}))
    }

    pub(super) async fn quarantine_delete(&self, principal: &Principal, id: &str) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let id = entry_id(id, "quarantine")?;
        let (store, actor) = (self.store.clone(), principal.actor());
        blocking(move || store.delete_held(id, &actor))
            .await?
            .map_err(store_failure)?;
        Ok(respond(StatusCode::NO_CONTENT, "application/json", Bytes::new()))
    }

    /// What the gateway runs with; admins also get the people and the API tokens.
    pub(super) async fn settings(&self, principal: &Principal) -> Result<Response<Body>, Failure> {
        let mut answer = serde_json::json!({"config": self.settings.settings_view});
        if principal.require(Role::Admin).is_ok() {
            let (users, tokens) = (self.users.clone(), self.tokens.clone());
            let (people, keys) = blocking(move || (users.list(), tokens.list())).await?;
            let time = |at: Option<i64>| at.map(rfc3339);
            answer["users"] = people
                .map_err(store_unavailable)?
                .into_iter()
                .map(|u| serde_json::json!({"name": u.name, "role": u.role.as_str(), "created": rfc3339(u.created_at), "last_login": time(u.last_login_at)}))
                .collect();
            answer["tokens"] = keys
                .map_err(store_unavailable)?
                .into_iter()
                .map(|t| serde_json::json!({"name": t.name, "role": t.role.as_str(), "created": rfc3339(t.created_at), "last_used": time(t.last_used_at)}))
                .collect();
        }
        json_response(StatusCode::OK, &answer)
    }

    pub(super) async fn senders(&self) -> Result<Response<Body>, Failure> {
        let store = self.store.clone();
        let entries = blocking(move || store.senders()).await?.map_err(store_unavailable)?;
        json_response(StatusCode::OK, &serde_json::json!({"senders": entries}))
    }

    /// Puts an address or domain on the allow or block list (operator).
    pub(super) async fn add_sender(
        &self,
        principal: &Principal,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        #[derive(Deserialize)]
        struct NewSender {
            sender: String,
            list: crate::senders::List,
            #[serde(default)]
            note: String,
        }
        let NewSender { sender, list, note } = read_json(request, 4096, "the entry").await?;
        self.put_sender(principal, sender, list, note).await
    }

    async fn put_sender(
        &self,
        principal: &Principal,
        sender: String,
        list: crate::senders::List,
        note: String,
    ) -> Result<Response<Body>, Failure> {
        let (store, actor) = (self.store.clone(), principal.actor());
        let entry = blocking(move || store.add_sender(&sender, list, &note, &actor))
            .await?
            .map_err(sender_failure)?;
        json_response(StatusCode::OK, &entry)
    }

    pub(super) async fn remove_sender(&self, principal: &Principal, pattern: &str) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let pattern = path_segment(pattern);
        let (store, actor) = (self.store.clone(), principal.actor());
        blocking(move || store.remove_sender(&pattern, &actor))
            .await?
            .map_err(sender_failure)?;
        Ok(respond(StatusCode::NO_CONTENT, "application/json", Bytes::new()))
    }

    /// Allows or blocks a held message's sender: its From address (the one the allow list is
    /// checked against), or the envelope sender when the index has none.
    pub(super) async fn quarantine_sender(
        &self,
        principal: &Principal,
        id: &str,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let id = entry_id(id, "quarantine")?;
        #[derive(Deserialize)]
        struct Choice {
            list: crate::senders::List,
        }
        let Choice { list } = read_json(request, 1024, "the choice").await?;
        let store = self.store.clone();
        let sender = blocking(move || -> Result<String, StoreError> {
            let held = store.hold(id)?;
            let from = store
                .index(1, Some(&held.message_ref))?
                .into_iter()
                .next()
                .and_then(|entry| entry.from_address);
            Ok(from.unwrap_or(held.sender))
        })
        .await?
        .map_err(store_failure)?;
        if sender.is_empty() {
            return Err(failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_body",
                "the held message has no sender address (a bounce)",
            ));
        }
        self.put_sender(principal, sender, list, format!("from quarantine {id}"))
            .await
    }

    /// The dashboard over a period (default: the last 7 days; at most 90).
    pub(super) async fn summary(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(query, &["since", "until", "top"])?;
        let now_ms = crate::store::now() * 1000;
        let until_ms = params.time_ms("until")?.unwrap_or(now_ms);
        let since_ms = params.time_ms("since")?.unwrap_or(until_ms - 7 * 86_400_000);
        if since_ms >= until_ms || until_ms - since_ms > 90 * 86_400_000 {
            return Err(bad("since", "since must be before until, at most 90 days apart"));
        }
        let top = match params.text("top") {
            None => 10,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=crate::reports::MAX_TOP).contains(n))
                .ok_or_else(|| bad("top", format!("1 to {}", crate::reports::MAX_TOP)))?,
        };
        let (store, data_dir) = (self.store.clone(), self.settings.data_dir.clone());
        let summary = blocking(move || crate::reports::summary(&store, &data_dir, since_ms, until_ms, top))
            .await?
            .map_err(store_unavailable)?;
        json_response(StatusCode::OK, &summary)
    }

    pub(super) async fn audit(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(query, &["since", "until", "actor", "action", "limit", "cursor"])?;
        let limit = params.limit()?;
        let audit_query = AuditQuery {
            limit,
            before: params
                .text("cursor")
                .map(|text| {
                    text.parse::<i64>()
                        .map_err(|_| bad("cursor", "not a cursor this API gave"))
                })
                .transpose()?,
            actor: params.text("actor"),
            action: params.text("action"),
            since: params.time_ms("since")?.map(|ms| ms.div_euclid(1000)),
            until: params.time_ms("until")?.map(|ms| ms.div_euclid(1000)),
        };
        let store = self.store.clone();
        let entries = blocking(move || store.audit_log(&audit_query))
            .await?
            .map_err(store_failure)?;
        let next_cursor = (entries.len() == limit)
            .then(|| entries.last().map(|e| e.id.to_string()))
            .flatten();
        let entries: Vec<serde_json::Value> = entries
            .into_iter()
            .map(|entry| {
                serde_json::json!({
                    "id": entry.id,
                    "time": rfc3339(entry.at),
                    "actor": entry.actor,
                    "via": entry.via,
                    "client_ip": entry.client_ip,
                    "action": entry.action,
                    "target": entry.target,
                    "detail": serde_json::from_str::<serde_json::Value>(&entry.detail).unwrap_or(serde_json::Value::String(entry.detail)),
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({"entries": entries, "next_cursor": next_cursor}),
        )
    }
}

/// The index entries of the messages clicks were on, each looked up once.
pub(super) fn messages_of(store: &crate::store::Store, clicks: &[ClickEvent]) -> HashMap<String, IndexEntry> {
    let mut found = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for click in clicks {
        if click.message_ref.is_empty() || !seen.insert(click.message_ref.as_str()) {
            continue;
        }
        if let Ok(Some(entry)) = store.index(1, Some(&click.message_ref)).map(|e| e.into_iter().next()) {
            found.insert(click.message_ref.clone(), entry);
        }
    }
    found
}

/// The address a click's link named, when the message index knows it.
pub(super) fn recipient_of(click: &ClickEvent, messages: &HashMap<String, IndexEntry>) -> Option<String> {
    if click.recipient_ref.is_empty() {
        return None;
    }
    messages
        .get(&click.message_ref)?
        .recipients
        .iter()
        .find(|recipient| recipient.reference == click.recipient_ref)
        .map(|recipient| recipient.address.clone())
}

fn click_view(click: ClickEvent, messages: &HashMap<String, IndexEntry>) -> ClickView {
    let recipient = recipient_of(&click, messages);
    ClickView {
        time: rfc3339_millis(click.at_ms),
        action: click.action.as_str(),
        recipient,
        id: click.id,
        url: click.url,
        verdict: click.verdict,
        category: click.category,
        recipient_ref: click.recipient_ref,
        message_ref: click.message_ref,
        client_ip: click.client_ip,
        user_agent: click.user_agent,
        cache_hit: click.cache_hit,
        latency_us: click.latency_us,
    }
}

struct Review {
    headers: Vec<(String, String)>,
    preview: String,
    attachments: Vec<AttachmentView>,
}

/// The most header fields a review lists.
const REVIEW_FIELDS: usize = 200;

/// How deep a review opens nested parts (the pipeline's default nesting bound).
const REVIEW_DEPTH: usize = 64;

fn review_of(message: &[u8]) -> Review {
    let parsed = crate::rewrite::mime::parse_headers(message);
    let headers = parsed
        .fields
        .iter()
        .take(REVIEW_FIELDS)
        .map(|(name, value, range)| {
            // The name as written (the parser keeps it lowercased).
            let raw = &message[range.clone()];
            let written = raw
                .get(..name.len())
                .map(String::from_utf8_lossy)
                .filter(|written| written.eq_ignore_ascii_case(name))
                .map_or_else(|| name.clone(), |written| written.into_owned());
            let value: String = crate::pipeline::headers::clean(value)
                .trim()
                .chars()
                .take(2000)
                .collect();
            (written, value)
        })
        .collect();
    let parts = crate::pipeline::malware::parts(message, REVIEW_DEPTH);
    let content = crate::pipeline::content::Content::of(&parts);
    let preview: String = content.text.chars().take(PREVIEW_CHARS).collect();
    let attachments = parts
        .bodies
        .iter()
        .zip(&parts.leaves)
        .filter(|(_, leaf)| leaf.attachment)
        .map(|(body, leaf)| AttachmentView {
            name: leaf.name.clone(),
            declared_type: leaf.mime.clone(),
            detected_type: crate::attachments::kind::detect(body).name(),
            size: body.len(),
            sha256: crate::pipeline::hex(&Sha256::digest(body)),
        })
        .collect();
    Review {
        headers,
        preview,
        attachments,
    }
}
