//! Messages another program hands over — an MTA's milter session, a call to the HTTP API, the
//! `portcullis filter` content filter — run through the same analyse → decide → render as the
//! SMTP gateway's and filed in the same store. The caller's MTA delivers what comes back; the
//! store gets the index entry (so clicks trace to their message) and, for a held message, the
//! quarantine record with the message as received.

use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::explain::Explanation;
use crate::pipeline::{Envelope, Outcome, Pipeline, Verdict, symbols};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// Every filtering slot (`pipeline.max_in_flight`) stayed taken for the whole wait.
    #[error("too many messages being filtered")]
    Busy,
    /// The analysis passed the caller's deadline; it was stopped and nothing was filed.
    #[error("filtering took too long")]
    TimedOut,
    #[error("cannot file the message: {0}")]
    Store(String),
    #[error("rendering failed: {0}")]
    Failed(String),
}

/// A filtering slot, held from before the message is brought into memory until it is filed.
pub struct Slot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

/// What came of one handed-over message.
pub struct Inspection {
    pub outcome: Outcome,
    pub explanation: Explanation,
    /// The message as it goes on — forged verdict headers removed, links rewritten, our headers
    /// stamped, sealed — for a message delivered or held; `None` for one refused or discarded.
    pub rendered: Option<Vec<u8>>,
    /// Who the message goes to once transport rules have had their say.
    pub recipients: Vec<String>,
    /// Whether the links carry the one recipient's reference (a message with one recipient),
    /// or only the message's.
    pub per_recipient: bool,
}

/// Whether an inspection leaves a trace in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    /// A dry run (`/api/v1/scan`): nothing is written.
    Nothing,
    /// The index entry, and the quarantine record when the message is held.
    Record,
}

/// The shared entry point for the hooks.
#[derive(Clone)]
pub struct Inspector {
    pipeline: Arc<Pipeline>,
    store: Store,
    filtering: Arc<tokio::sync::Semaphore>,
    /// How long a message waits for a filtering slot before the caller is told to try later.
    slot_wait: Duration,
}

impl Inspector {
    /// `filtering` is shared with the SMTP gateway, so `pipeline.max_in_flight` bounds every
    /// message being filtered, whichever way it came in.
    pub fn new(pipeline: Arc<Pipeline>, store: Store, filtering: Arc<tokio::sync::Semaphore>) -> Inspector {
        Inspector {
            pipeline,
            store,
            filtering,
            slot_wait: Duration::from_secs(10),
        }
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Waits (at most 10 seconds) for one of the `pipeline.max_in_flight` filtering slots.
    pub async fn slot(&self) -> Result<Slot, InspectError> {
        match tokio::time::timeout(self.slot_wait, self.filtering.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            _ => Err(InspectError::Busy),
        }
    }

    /// Analyses, decides and renders one message. `can_reject` is false when the message was
    /// already accepted (an after-queue content filter): a reject is then held instead, as the
    /// gateway does once its reply has gone out. A message whose analysis fails on every attempt
    /// is held as `damaged`, never passed on unfiltered. `deadline` bounds the analysis only:
    /// past it the analysis is stopped and nothing is filed, so the MTA's retry is the only
    /// record; once decided, the message is filed whatever the time.
    pub async fn inspect(
        &self,
        slot: Slot,
        envelope: &Envelope,
        message: &Arc<Vec<u8>>,
        can_reject: bool,
        filing: Filing,
        deadline: Option<Duration>,
    ) -> Result<Inspection, InspectError> {
        let _slot = slot;
        let started = std::time::Instant::now();
        let analysis = self.pipeline.analyse_isolated(envelope, message);
        let analysis = match deadline {
            Some(deadline) => tokio::time::timeout(deadline, analysis)
                .await
                .map_err(|_| InspectError::TimedOut)?,
            None => analysis.await,
        };
        // Deciding and rendering (rewriting a large body, two RSA signatures) is CPU work: off the
        // async workers.
        let (pipeline, task_envelope, task_message) = (self.pipeline.clone(), envelope.clone(), message.clone());
        let (outcome, explanation, rendered, recipients) = tokio::task::spawn_blocking(move || {
            let (envelope, message) = (&task_envelope, &task_message);
            let (mut outcome, explanation) = match analysis {
                Ok(analysis) => {
                    let mut outcome = pipeline.conclude(envelope, message, &analysis, can_reject);
                    outcome.hold_whole();
                    let explanation = pipeline.explain(&analysis, &outcome);
                    (outcome, explanation)
                }
                Err(reason) => {
                    let outcome = Outcome::damaged(envelope, message, &reason, &symbols::PROCESSING_FAILED);
                    let explanation = pipeline.explain(&Default::default(), &outcome);
                    (outcome, explanation)
                }
            };
            let recipients = final_recipients(envelope, &outcome);
            let rendered = match (&outcome.verdict, &outcome.plan) {
                (Verdict::Deliver | Verdict::Quarantine { .. }, Some(plan)) => {
                    let recipient = (recipients.len() == 1).then(|| recipients[0].as_str());
                    Some(
                        pipeline
                            .renderer()
                            .render(message, plan, &envelope.message_ref, recipient),
                    )
                }
                _ => None,
            };
            if recipients.len() == 1 && rendered.is_some() && plan_rewrites(&outcome) {
                // The copy's links carry this recipient's reference: the index says so, for the
                // click log.
                let keys = pipeline.keys();
                for indexed in &mut outcome.index.recipients {
                    if let Ok(reference) = keys.recipient_ref(&indexed.address) {
                        indexed.reference = crate::pipeline::hex(&reference);
                    }
                }
            }
            (outcome, explanation, rendered, recipients)
        })
        .await
        .map_err(|e| InspectError::Failed(e.to_string()))?;
        let per_recipient = recipients.len() == 1;
        tracing::info!(
            message_ref = %outcome.index.message_ref,
            client_ip = %outcome.index.client_ip,
            sender = %if envelope.sender.is_empty() { "<>" } else { envelope.sender.as_str() },
            recipients = recipients.len(),
            verdict = %outcome.index.verdict,
            category = %outcome.index.category.as_deref().unwrap_or("-"),
            symbols = %outcome.index.symbols.iter().take(6).cloned().collect::<Vec<_>>().join(","),
            ms = started.elapsed().as_millis() as u64,
            "message handed over"
        );
        if filing == Filing::Record {
            self.file(&outcome, message).await?;
        }
        Ok(Inspection {
            outcome,
            explanation,
            rendered,
            recipients,
            per_recipient,
        })
    }

    /// The index entry, and for a held message the message as received with its quarantine
    /// record. No delivery is queued: the MTA that handed the message over delivers it.
    async fn file(&self, outcome: &Outcome, message: &Arc<Vec<u8>>) -> Result<(), InspectError> {
        let store = self.store.clone();
        let index = outcome.index.clone();
        let hold = outcome.hold.clone();
        let plan = match (&hold, &outcome.plan) {
            (Some(_), Some(plan)) => Some(serde_json::to_string(plan).map_err(|e| InspectError::Store(e.to_string()))?),
            _ => None,
        };
        let message = message.clone();
        tokio::task::spawn_blocking(move || {
            let stored = plan.as_deref().map(|plan| (message.as_slice(), plan));
            store.file(&index, stored, &[], hold.as_ref())
        })
        .await
        .map_err(|e| InspectError::Store(e.to_string()))?
        .map_err(|e| InspectError::Store(e.to_string()))
    }
}

fn plan_rewrites(outcome: &Outcome) -> bool {
    outcome.plan.as_ref().is_some_and(|plan| plan.rewrite_links)
}

/// The recipients the decided copies go to (transport rules may redirect or add some); the
/// envelope's for a message held, refused or discarded.
fn final_recipients(envelope: &Envelope, outcome: &Outcome) -> Vec<String> {
    if outcome.deliveries.is_empty() {
        return envelope.recipients.clone();
    }
    let mut recipients: Vec<String> = Vec::new();
    for delivery in &outcome.deliveries {
        for recipient in &delivery.recipients {
            if !recipients.iter().any(|known| known.eq_ignore_ascii_case(recipient)) {
                recipients.push(recipient.clone());
            }
        }
    }
    recipients
}
