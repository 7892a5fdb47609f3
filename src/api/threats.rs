//! The post-delivery threats over the API: list and show them with the delivered messages that
//! carried each link and who clicked it, declare one, and set its status.

use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use super::admin::{Params, bad, messages_of, recipient_of};
use super::{Api, Failure, Principal, blocking, failure, json_response, read_json, store_unavailable};
use crate::clicklog::{Action, ClickQuery, read_clicks};
use crate::redirect::Body;
use crate::store::Store;
use crate::threats::{NewThreat, Scope, Threat, ThreatError, ThreatQuery, ThreatStatus, recipients_of};
use crate::time::rfc3339_millis;
use crate::tokens::Role;

/// The most messages and clicks one threat lists.
const MOST_AFFECTED: usize = 500;
/// How far before a threat was found its clicks are looked for, at least.
const CLICKS_BEFORE_FOUND_MS: i64 = 30 * 86_400_000;

fn threat_failure(error: ThreatError) -> Failure {
    match error {
        ThreatError::Target(_) => failure(StatusCode::BAD_REQUEST, "bad_body", error.to_string()),
        ThreatError::Unknown(_) => failure(StatusCode::NOT_FOUND, "not_found", error.to_string()),
        other => store_unavailable(other),
    }
}

/// A threat as the API shows it: the delivered messages that carried its link, their
/// recipients, and everyone who clicked it with what happened then.
pub(super) fn threat_view(
    store: &Store,
    data_dir: &std::path::Path,
    threat: &Threat,
) -> Result<serde_json::Value, ThreatError> {
    let messages = store.threat_messages(threat, MOST_AFFECTED)?;
    // Nobody clicked a link before the oldest message carrying it arrived: the click log is
    // read from there, and at least from a month before the threat was found, not over every
    // slice it keeps.
    let since_ms = messages
        .iter()
        .map(|m| m.received_at * 1000)
        .min()
        .unwrap_or(threat.found_at_ms)
        .min(threat.found_at_ms - CLICKS_BEFORE_FOUND_MS);
    let clicks = read_clicks(
        data_dir,
        &ClickQuery {
            limit: MOST_AFFECTED,
            since_ms: Some(since_ms),
            url_prefix: (threat.scope == Scope::Url).then(|| threat.target.clone()),
            domain: (threat.scope == Scope::Domain).then(|| threat.target.clone()),
            ..ClickQuery::default()
        },
    )
    .map_err(|e| ThreatError::Clicks(e.to_string()))?;
    let clicks: Vec<_> = clicks
        .into_iter()
        .filter(|c| threat.covers(&c.url) && !matches!(c.action, Action::Prefetch | Action::Rejected))
        .collect();
    let indexed = messages_of(store, &clicks);
    let mut view = threat.fields();
    view.extend([
        (
            "messages".to_string(),
            serde_json::json!(
                messages
                    .iter()
                    .map(|m| serde_json::json!({
                        "message_ref": m.message_ref,
                        "message_id": m.message_id,
                        "subject": m.subject,
                        "sender": m.sender,
                        "received_at": crate::time::rfc3339(m.received_at),
                        "recipients": m.recipients.iter().map(|r| r.address.clone()).collect::<Vec<_>>(),
                    }))
                    .collect::<Vec<_>>()
            ),
        ),
        ("recipients".to_string(), serde_json::json!(recipients_of(&messages))),
        (
            "clicks".to_string(),
            serde_json::json!(
                clicks
                    .iter()
                    .map(|c| serde_json::json!({
                        "time": rfc3339_millis(c.at_ms),
                        "recipient": recipient_of(c, &indexed).unwrap_or_else(|| c.recipient_ref.clone()),
                        "action": c.action.as_str(),
                        "url": c.url,
                    }))
                    .collect::<Vec<_>>()
            ),
        ),
    ]);
    Ok(serde_json::Value::Object(view))
}

impl Api {
    pub(super) async fn threats(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(query, &["status", "since", "until", "limit", "cursor"])?;
        let status = params
            .one_of("status", &["active", "cleared", "falsePositive"])?
            .and_then(|s| ThreatStatus::parse(&s));
        let before_id = params
            .text("cursor")
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| bad("cursor", "not a cursor this API gave"))
            })
            .transpose()?;
        let limit = params.limit()?.min(100);
        let query = ThreatQuery {
            status,
            since_ms: params.time_ms("since")?,
            until_ms: params.time_ms("until")?,
            before_id,
            after_id: None,
            limit,
        };
        let (store, data_dir) = (self.store.clone(), self.settings.data_dir.clone());
        let (views, next_cursor) = blocking(move || -> Result<_, ThreatError> {
            let threats = store.threats(&query)?;
            let next = (threats.len() == limit)
                .then(|| threats.last().map(|t| t.id.to_string()))
                .flatten();
            let views = threats
                .iter()
                .map(|t| threat_view(&store, &data_dir, t))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((views, next))
        })
        .await?
        .map_err(threat_failure)?;
        json_response(
            StatusCode::OK,
            &serde_json::json!({"threats": views, "next_cursor": next_cursor}),
        )
    }

    pub(super) async fn threat(&self, id: &str) -> Result<Response<Body>, Failure> {
        let id = super::admin::entry_id(id, "threat")?;
        let (store, data_dir) = (self.store.clone(), self.settings.data_dir.clone());
        let view = blocking(move || threat_view(&store, &data_dir, &store.threat(id)?))
            .await?
            .map_err(threat_failure)?;
        json_response(StatusCode::OK, &view)
    }

    /// An analyst declares a URL or a domain bad (operator).
    pub(super) async fn add_threat(
        &self,
        principal: &Principal,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Declared {
            url: Option<String>,
            domain: Option<String>,
            #[serde(default)]
            category: String,
            #[serde(default)]
            reason: String,
        }
        let declared: Declared = read_json(request, 8192, "the threat").await?;
        let (target, scope) = match (declared.url, declared.domain) {
            (Some(url), None) => (url, Scope::Url),
            (None, Some(domain)) => (domain, Scope::Domain),
            _ => {
                return Err(failure(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "give exactly one of url and domain",
                ));
            }
        };
        if !matches!(
            declared.category.as_str(),
            "" | "phish" | "malware" | "spam" | "impostor"
        ) {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "category: phish, malware, spam or impostor",
            ));
        }
        let new = NewThreat::declared(&target, scope, &declared.category, &declared.reason).map_err(threat_failure)?;
        let (store, data_dir, actor) = (self.store.clone(), self.settings.data_dir.clone(), principal.actor());
        let (created, view) = blocking(move || -> Result<_, ThreatError> {
            let created = store.record_threat(&new, Some(&actor))?;
            let threat = match &created {
                Some(threat) => threat.clone(),
                None => store
                    .threats_covering_target(&new)?
                    .ok_or_else(|| ThreatError::Target(new.target.clone()))?,
            };
            Ok((created.is_some(), threat_view(&store, &data_dir, &threat)?))
        })
        .await?
        .map_err(threat_failure)?;
        json_response(if created { StatusCode::CREATED } else { StatusCode::OK }, &view)
    }

    /// Sets a threat's status (operator).
    pub(super) async fn set_threat(
        &self,
        principal: &Principal,
        id: &str,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let id = super::admin::entry_id(id, "threat")?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Change {
            status: String,
        }
        let change: Change = read_json(request, 1024, "the change").await?;
        let status = ThreatStatus::parse(&change.status).ok_or_else(|| {
            failure(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "status: active, cleared or falsePositive",
            )
        })?;
        let (store, data_dir, actor) = (self.store.clone(), self.settings.data_dir.clone(), principal.actor());
        let view = blocking(move || -> Result<_, ThreatError> {
            let threat = store.set_threat_status(id, status, &actor)?;
            threat_view(&store, &data_dir, &threat)
        })
        .await?
        .map_err(threat_failure)?;
        json_response(StatusCode::OK, &view)
    }
}

impl Api {
    /// Moves every delivered copy of the threat's messages out of its recipients' mailboxes
    /// through the mailbox provider (operator), and says what became of each.
    pub(super) async fn remediate_threat(&self, principal: &Principal, id: &str) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let id = super::admin::entry_id(id, "threat")?;
        let Some(mailbox) = self.mailbox.clone() else {
            return Err(failure(
                StatusCode::CONFLICT,
                "not_configured",
                "no mailbox provider is configured ([mailbox] in docs/config.md)",
            ));
        };
        let store = self.store.clone();
        let (threat, messages) = blocking(move || -> Result<_, ThreatError> {
            let threat = store.threat(id)?;
            let messages = store.threat_messages(&threat, MOST_AFFECTED)?;
            Ok((threat, messages))
        })
        .await?
        .map_err(threat_failure)?;
        let mut results = Vec::new();
        let (mut moved, mut failed) = (0usize, 0usize);
        for message in &messages {
            let Some(message_id) = &message.message_id else {
                results.push(
                    serde_json::json!({"message_ref": message.message_ref, "recipient": null,
                    "outcome": "failed", "detail": "the message has no Message-ID to find it by"}),
                );
                failed += 1;
                continue;
            };
            for recipient in &message.recipients {
                let (outcome, detail) = match mailbox.remove(&recipient.address, message_id).await {
                    Ok(crate::mailbox::Removal::Moved(count)) => {
                        moved += 1;
                        ("moved", format!("{count} moved"))
                    }
                    Ok(crate::mailbox::Removal::NotFound) => ("not_found", "not in the mailbox".to_string()),
                    Err(error) => {
                        failed += 1;
                        ("failed", error.to_string())
                    }
                };
                results.push(
                    serde_json::json!({"message_ref": message.message_ref, "recipient": recipient.address,
                    "outcome": outcome, "detail": detail}),
                );
            }
        }
        let (store, actor, target) = (self.store.clone(), principal.actor(), threat.target.clone());
        let detail = serde_json::json!({"id": id, "provider": mailbox.name(), "moved": moved, "failed": failed});
        blocking(move || store.audit(&actor, "threat.remediate", &target, &detail))
            .await?
            .map_err(store_unavailable)?;
        json_response(StatusCode::OK, &serde_json::json!({"threat": id, "results": results}))
    }
}
