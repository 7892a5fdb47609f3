//! The quarantine's self-service side as the security team sees it: recipients' release
//! requests (approved or denied here), digests sent on demand, and the senders recipients allow
//! for themselves.

use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::admin::{HeldView, Params, bad, entry_id, held_view, path_segment, sender_failure, store_failure};
use super::{Api, Failure, Principal, blocking, failure, json_response, read_json};
use crate::quarantine::{Decision, ReleaseRequest};
use crate::redirect::Body;
use crate::time::rfc3339;
use crate::tokens::Role;

#[derive(Debug, Serialize)]
struct RequestView {
    id: i64,
    hold_id: i64,
    recipient: String,
    requested_at: String,
    status: String,
    decided_by: Option<String>,
    decided_at: Option<String>,
    held: Option<HeldView>,
}

fn request_view(request: &ReleaseRequest) -> RequestView {
    RequestView {
        id: request.id,
        hold_id: request.hold_id,
        recipient: request.recipient.clone(),
        requested_at: rfc3339(request.requested_at),
        status: request.status.clone(),
        decided_by: request.decided_by.clone(),
        decided_at: request.decided_at.map(rfc3339),
        held: request.held.as_ref().map(held_view),
    }
}

const STATUSES: &[&str] = &["pending", "approved", "denied", "gone"];

impl Api {
    /// Release requests, newest first (viewer).
    pub(super) async fn release_requests(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(query, &["status", "limit"])?;
        let status = params.text("status");
        if let Some(status) = &status
            && !STATUSES.contains(&status.as_str())
        {
            return Err(bad("status", format!("expected one of {}", STATUSES.join(", "))));
        }
        let (store, limit) = (self.store.clone(), params.limit()?);
        let requests = blocking(move || store.release_requests(status.as_deref(), limit))
            .await?
            .map_err(store_failure)?;
        json_response(
            StatusCode::OK,
            &serde_json::json!({"requests": requests.iter().map(request_view).collect::<Vec<_>>()}),
        )
    }

    /// Approves (the recipient's copy is delivered) or denies a request (operator; malware,
    /// which no recipient can ask for, would need an admin).
    pub(super) async fn decide_request(
        &self,
        principal: &Principal,
        id: &str,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Decide {
            decision: Decision,
        }
        let id = entry_id(id, "release request")?;
        let Decide { decision } = read_json(request, 1024, "the decision").await?;
        let (store, actor, role) = (self.store.clone(), principal.actor(), principal.role);
        let decided = blocking(
            move || -> Result<Result<ReleaseRequest, Failure>, crate::store::StoreError> {
                let asked = store.release_request(id)?;
                if asked.held.as_ref().is_some_and(|held| held.category == "malware") && role != Role::Admin {
                    return Ok(Err(failure(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "malware is released by an admin only",
                    )));
                }
                Ok(Ok(store.decide_release_request(id, decision, &actor)?))
            },
        )
        .await?
        .map_err(store_failure)??;
        json_response(StatusCode::OK, &serde_json::json!({"request": request_view(&decided)}))
    }

    /// Queues the quarantine digest now, for everyone with newly held messages or one recipient
    /// (operator).
    pub(super) async fn send_digests(
        &self,
        principal: &Principal,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Send {
            recipient: Option<String>,
        }
        let Some(digests) = self.digests.clone() else {
            return Err(failure(
                StatusCode::CONFLICT,
                "not_configured",
                "this server sends no digests",
            ));
        };
        let Send { recipient } = read_json(request, 1024, "the request").await?;
        if recipient.as_ref().is_some_and(|r| r.chars().count() > 320) {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "recipient: an address is at most 320 characters",
            ));
        }
        let run = blocking(move || digests.send(recipient.as_deref()))
            .await?
            .map_err(store_failure)?;
        json_response(StatusCode::OK, &serde_json::json!({"queued": run}))
    }

    /// The senders recipients allow for themselves (viewer), optionally one recipient's.
    pub(super) async fn recipient_senders(&self, query: &str) -> Result<Response<Body>, Failure> {
        let params = Params::parse(query, &["recipient"])?;
        let (store, recipient) = (self.store.clone(), params.text("recipient"));
        let entries = blocking(move || store.recipient_senders(recipient.as_deref()))
            .await?
            .map_err(sender_failure)?;
        let entries: Vec<serde_json::Value> = entries
            .into_iter()
            .map(|entry| {
                serde_json::json!({
                    "recipient": entry.recipient,
                    "sender": entry.pattern,
                    "added_at": rfc3339(entry.added_at),
                })
            })
            .collect();
        json_response(StatusCode::OK, &serde_json::json!({"entries": entries}))
    }

    /// Takes a sender off a recipient's own list (operator).
    pub(super) async fn remove_recipient_sender(
        &self,
        principal: &Principal,
        recipient: &str,
        sender: &str,
    ) -> Result<Response<Body>, Failure> {
        principal.require(Role::Operator)?;
        let (store, actor) = (self.store.clone(), principal.actor());
        let (recipient, sender) = (path_segment(recipient), path_segment(sender));
        blocking(move || store.remove_recipient_sender(&recipient, &sender, &actor))
            .await?
            .map_err(sender_failure)?;
        Ok(super::respond(
            StatusCode::NO_CONTENT,
            "application/json",
            bytes::Bytes::new(),
        ))
    }
}
