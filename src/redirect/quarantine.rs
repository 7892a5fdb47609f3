//! The quarantine digest's links on the click service. `GET /quarantine` only says what the link
//! would do, with a button: mail scanners and link previews fetch every URL and must not release
//! anything. The button's `POST /quarantine` carries the same signed fields and acts: releases
//! the recipient's copy, also allows the sender for them, or files a release request.

use std::net::SocketAddr;

use hyper::{Method, Request, Response, StatusCode};

use super::pages::{Page, PageForm};
use super::{Body, ClickService, unix_now};
use crate::audit::Actor;
use crate::digest::{Action, ActionLink, DigestTarget};
use crate::i18n::Catalog;
use crate::store::{Store, StoreError};

/// The largest confirmation form accepted.
const FORM_MAX_BYTES: usize = 4096;

/// What the store had to say about a link's hold.
enum Looked {
    Found(Box<DigestTarget>),
    Gone,
    Unavailable,
}

impl ClickService {
    pub(super) async fn quarantine(&self, request: Request<hyper::body::Incoming>, peer: SocketAddr) -> Response<Body> {
        let words = self.words(&request);
        let Some((store, wake, domains)) = self.quarantine.clone() else {
            return self.error_page(
                words,
                StatusCode::NOT_FOUND,
                "error.not_found_heading",
                words.word("error.not_found"),
            );
        };
        let post = request.method() == Method::POST;
        let encoded = if post {
            match super::read_form(request, FORM_MAX_BYTES).await {
                Ok(body) => body.to_vec(),
                Err(refused) => return refused,
            }
        } else {
            request.uri().query().unwrap_or_default().as_bytes().to_vec()
        };
        let Some(link) = ActionLink::parse(&encoded) else {
            return self.error_page(
                words,
                StatusCode::BAD_REQUEST,
                "error.invalid_heading",
                words.word("error.invalid"),
            );
        };
        if link.expires < unix_now() as i64 {
            return self.error_page(
                words,
                StatusCode::GONE,
                "error.expired_heading",
                words.word("error.expired"),
            );
        }
        let held = match look_up(&store, link.hold_id).await {
            Looked::Found(held) => held,
            Looked::Gone => return self.digest_page(words, StatusCode::GONE, "gone", words.word("quarantine.gone")),
            Looked::Unavailable => return self.try_again(words),
        };
        if !link.verify(&self.keys.current(), &held.message_ref) {
            return self.error_page(
                words,
                StatusCode::BAD_REQUEST,
                "error.invalid_heading",
                words.word("error.invalid"),
            );
        }
        if !held.recipients.iter().any(|r| r.eq_ignore_ascii_case(&link.recipient)) {
            return self.digest_page(words, StatusCode::GONE, "gone", words.word("quarantine.gone"));
        }
        if !crate::digest::is_local(&link.recipient, &domains) || !held.permits(link.action, &link.recipient) {
            return self.digest_page(
                words,
                StatusCode::FORBIDDEN,
                "not_permitted",
                words.word("quarantine.not_permitted"),
            );
        }
        let from = held.allowable.clone().unwrap_or_else(|| held.sender.clone());
        let subject = crate::digest::one_line(held.subject.as_deref().unwrap_or_default(), 200);
        if !post {
            return self.confirmation(words, &link, &from, &subject);
        }

        let actor = Actor {
            name: format!("digest:{}", link.recipient),
            via: "digest".into(),
            client_ip: peer.ip().to_string(),
        };
        let (action, recipient, tag) = (link.action, link.recipient.clone(), words.tag.clone());
        let (task_store, task_from) = (store.clone(), from.clone());
        let done = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let store = task_store;
            match action {
                Action::Release => {
                    store.release_to(link.hold_id, &recipient, &actor)?;
                }
                Action::Allow => {
                    store.release_copies(link.hold_id, Some(&recipient), &actor, |transaction| {
                        let pattern = crate::senders::allow_for_recipient(transaction, &recipient, &task_from)
                            .map_err(|error| match error {
                                crate::senders::SenderError::Store(error) => error,
                                other => StoreError::Conflict(other.to_string()),
                            })?;
                        let detail = serde_json::json!({"recipient": recipient, "hold_id": link.hold_id});
                        Ok(crate::audit::record(
                            transaction,
                            &actor,
                            "sender.recipient.allow",
                            &pattern,
                            &detail,
                        )?)
                    })?;
                }
                Action::Request => {
                    store.request_release(link.hold_id, &recipient, &actor)?;
                }
            }
            // Their browser's language is the one their next digest is written in.
            store.remember_language(&recipient, &tag)
        })
        .await;
        match done {
            Ok(Ok(())) => {
                wake.notify_one();
                crate::metrics::increment("portcullis_digest_actions_total", &[("action", action.as_str())]);
                let (title, message) = match action {
                    Action::Release => ("released", words.word("quarantine.released").to_string()),
                    Action::Allow => ("released", words.fill("quarantine.allowed", &[("sender", &from)])),
                    Action::Request => ("requested", words.word("quarantine.requested").to_string()),
                };
                self.digest_page(words, StatusCode::OK, title, &message)
            }
            Ok(Err(StoreError::NotFound(_))) => {
                self.digest_page(words, StatusCode::GONE, "gone", words.word("quarantine.gone"))
            }
            Ok(Err(StoreError::Conflict(why))) => {
                tracing::info!(%why, "digest action refused");
                self.digest_page(
                    words,
                    StatusCode::CONFLICT,
                    "not_permitted",
                    words.word("quarantine.not_permitted"),
                )
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "digest action failed");
                self.try_again(words)
            }
            Err(error) => {
                tracing::error!(%error, "digest action task failed");
                self.try_again(words)
            }
        }
    }

    /// What the link would do, and the button that does it.
    fn confirmation(&self, words: &Catalog, link: &ActionLink, from: &str, subject: &str) -> Response<Body> {
        let action = link.action.as_str();
        let title = words.word(&format!("quarantine.{action}_title")).to_string();
        let message = words.fill(
            &format!("quarantine.{action}_message"),
            &[("sender", from), ("subject", subject)],
        );
        let label = words.word(&format!("quarantine.{action}_button")).to_string();
        let fields = link.fields();
        self.page(
            StatusCode::OK,
            &Page {
                words,
                title: &title,
                heading: &title,
                message: &message,
                destination: None,
                proceed: None,
                accent: "#1d4ed8",
                go_back: false,
                form: Some(PageForm {
                    action: "/quarantine",
                    fields: &fields,
                    label: &label,
                    primary: true,
                }),
            },
        )
    }

    /// A page titled by `quarantine.<title>_title`.
    fn digest_page(&self, words: &Catalog, status: StatusCode, title: &str, message: &str) -> Response<Body> {
        let heading = words.word(&format!("quarantine.{title}_title")).to_string();
        self.page(
            status,
            &Page {
                words,
                title: &heading,
                heading: &heading,
                message,
                destination: None,
                proceed: None,
                accent: if status.is_success() { "#15803d" } else { "#6b7280" },
                go_back: false,
                form: None,
            },
        )
    }

    fn try_again(&self, words: &Catalog) -> Response<Body> {
        self.error_page(
            words,
            StatusCode::SERVICE_UNAVAILABLE,
            "error.try_again_heading",
            words.word("quarantine.try_again"),
        )
    }
}

async fn look_up(store: &Store, hold_id: i64) -> Looked {
    let store = store.clone();
    let found = tokio::task::spawn_blocking(move || store.digest_target(hold_id)).await;
    match found {
        Ok(Ok(held)) => Looked::Found(Box::new(held)),
        Ok(Err(StoreError::NotFound(_))) => Looked::Gone,
        Ok(Err(error)) => {
            tracing::error!(%error, "quarantine not readable for a digest link");
            Looked::Unavailable
        }
        Err(_) => Looked::Unavailable,
    }
}
