//! The filtering pipeline: the ordered stages every accepted message goes through, the symbols they
//! add to a shared context, the verdict, and the copies (rewritten, stamped, sealed) it produces.
//! Transport-free: the SMTP server calls [`Pipeline::analyse`] and [`Pipeline::conclude`]; the
//! milter and HTTP hooks will too. Copies are made later, by [`render`].

pub mod auth;
pub mod body;
pub mod content;
pub mod explain;
pub mod headers;
pub mod history;
pub mod malware;
pub mod phish;
pub mod render;
pub mod rules;
pub mod seal;
pub mod sender;
pub mod symbols;

use std::net::IpAddr;
use std::sync::Arc;

use mail_auth::AuthenticatedMessage;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Copies, PipelineConfig, QuarantineConfig};
use crate::rewrite::mime::parse_headers;
use crate::rewrite::{LeftReason, MessageContext, Rewriter};
use crate::store::{DeliveryBody, DeliveryKind, IndexEntry, IndexedRecipient, NewDelivery, NewHold};
use crate::token::{KeyRing, LiveKeyRing};

pub use auth::Resolver;
pub use render::{RenderPlan, Renderer, SealPlan};
pub use rules::{RuleAction, TransportRule};
pub use seal::ArcKey;
pub use symbols::{Category, Hit, Scores, Symbol, SymbolTable, SymbolWeight, Thresholds, Weight};

/// Who sent a message, to whom, from where: everything the SMTP transaction established.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub message_ref: String,
    /// Empty for the null sender.
    pub sender: String,
    pub recipients: Vec<String>,
    pub client_ip: IpAddr,
    pub helo: String,
    pub tls: bool,
    pub received_at: i64,
    /// Symbols the connection filter attached at connect time (`IP_ALLOW`, `DNSBL_<zone>`).
    pub connection_symbols: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Deliver,
    Quarantine {
        category: String,
        reason: String,
    },
    /// Refuse at DATA, for this reason (the SMTP server turns it into a reply).
    Reject {
        refusal: Refusal,
    },
    Discard {
        rule: String,
    },
}

/// Why a message is refused; transport-free (the SMTP server maps it to a reply code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A transport rule with `action = "reject"`, with its text.
    Policy { text: Option<String> },
    /// The sender domain's DMARC policy says reject.
    Dmarc,
    /// The total score passed `thresholds.reject`.
    Spam,
    /// The message's structure cannot be filtered (nesting past `pipeline.max_nesting`).
    Structure { reason: String },
    /// Malware, with `pipeline.malware = "reject"`: what was found.
    Malware { found: String },
    /// A malware engine set to fail closed could not scan the message: refused for now (451),
    /// so the sender tries again.
    Unscanned { reason: String },
}

impl Refusal {
    /// In words, for the sender and the operator.
    pub fn text(&self) -> String {
        match self {
            Refusal::Policy { text } => text
                .as_deref()
                .map(headers::clean)
                .unwrap_or_else(|| "Message refused by policy".into()),
            Refusal::Dmarc => "Rejected by the sender domain's DMARC policy".into(),
            Refusal::Spam => "Message refused as spam".into(),
            Refusal::Structure { reason } => format!("{reason}; message not accepted"),
            Refusal::Malware { found } => format!("Message refused: malware found ({})", headers::clean(found)),
            Refusal::Unscanned { reason } => format!("Message not scanned ({reason}); try again later"),
        }
    }
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Deliver => "deliver",
            Verdict::Quarantine { .. } => "quarantine",
            Verdict::Reject { .. } => "reject",
            Verdict::Discard { .. } => "discard",
        }
    }
}

/// Everything the pipeline decided about one message, ready to file in one transaction.
pub struct Outcome {
    pub verdict: Verdict,
    pub index: IndexEntry,
    /// Copies to relay; each is rendered from the stored message when it is delivered.
    pub deliveries: Vec<NewDelivery>,
    pub hold: Option<NewHold>,
    /// How copies of the message are made; `None` when nothing of it is kept (reject, discard).
    pub plan: Option<RenderPlan>,
}

/// The sender as the `From` field gives it: the address, and the display name decoded.
#[derive(Debug, Clone)]
pub struct Sender {
    pub name: Option<String>,
    pub address: String,
}

/// What every content stage reads: the message parsed once.
pub struct ScanContext<'a> {
    pub envelope: &'a Envelope,
    pub message: &'a [u8],
    pub headers: &'a crate::rewrite::mime::Headers,
    /// Decoded (RFC 2047).
    pub subject: Option<String>,
    pub from: Option<Sender>,
    pub reply_to: Option<String>,
    pub parts: &'a malware::Parts,
    /// The text, links and HTML structure as the reader sees them.
    pub content: content::Content,
}

/// A content stage: reads the scan context and the symbols so far, and only adds symbols.
pub trait Stage: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self, context: &ScanContext<'_>, hits: &mut Vec<Hit>);
    /// Whether checking a message changes what the stage will say of the next (it counts or
    /// remembers): such stages stay out of training.
    fn remembers(&self) -> bool {
        false
    }
}

/// What the stages found in one message, before anything is decided: the symbols (connection,
/// authentication, malware, transport rules, links), the transport rule that decides if one
/// does, and what rendering its copies will need. Deciding again (a reject that comes after the
/// DATA reply) reads this; nothing is looked up twice.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Set when the structure check stopped the analysis: nothing else was looked at.
    pub too_deep: Option<String>,
    /// Every symbol added, with what triggered it, in the order the stages ran.
    pub symbols: Vec<Hit>,
    pub rule: Option<(String, RuleAction, Option<String>)>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// What the malware engines found.
    pub detections: Vec<crate::attachments::engines::Detection>,
    /// Why the message could not be scanned when the configuration says to fail closed.
    pub unscanned: Option<String>,
    /// What the transport rules change besides a decision (`rule`).
    pub rule_effects: rules::RuleEffects,
    /// The `Authentication-Results` field we stamp, when authentication ran.
    pub authentication: Option<String>,
    pub seal: Option<SealPlan>,
    /// Every link's destination (foreign wrappers by their inner URL), at most 1,000.
    pub urls: Vec<String>,
    /// The header From address.
    pub from_address: Option<String>,
    /// Recipients who allow the authenticated From address for themselves: a spam or bulk hold
    /// does not keep their copies.
    pub allowed_by: Vec<String>,
}

impl Outcome {
    /// A hold with some recipients' copies delivered anyway (they allow the sender) made whole
    /// again: for an MTA that hands a message over, which can only hold or pass all of it.
    pub fn hold_whole(&mut self) {
        if let Some(hold) = &mut self.hold
            && !self.deliveries.is_empty()
        {
            for delivery in self.deliveries.drain(..) {
                for recipient in delivery.recipients {
                    if !hold.recipients.iter().any(|r| r.eq_ignore_ascii_case(&recipient)) {
                        hold.recipients.push(recipient);
                    }
                }
            }
        }
    }

    /// A message no stage could finish (an error, a panic, a structure too deep), held unchanged
    /// as quarantine category `damaged` with the reason, for an operator to look at.
    pub fn damaged(envelope: &Envelope, message: &[u8], reason: &str, symbol: &Symbol) -> Outcome {
        let category = "damaged".to_string();
        let refusal = Refusal::Structure {
            reason: reason.to_string(),
        };
        let mut outcome = Outcome::refused(envelope, message, refusal, symbol);
        outcome.verdict = Verdict::Quarantine {
            category: category.clone(),
            reason: reason.to_string(),
        };
        outcome.index.verdict = "quarantine".into();
        outcome.index.category = Some(category.clone());
        outcome.index.details = format!("rule=damaged policy=quarantine reason={}", headers::clean(reason));
        outcome.plan = Some(RenderPlan::as_received());
        outcome.hold = Some(NewHold {
            message_ref: envelope.message_ref.clone(),
            category,
            reason: reason.to_string(),
            sender: envelope.sender.clone(),
            recipients: envelope.recipients.clone(),
            subject: outcome.index.subject.clone(),
            expires_at: crate::store::now() + retention_days("damaged", &QuarantineConfig::default()) * 86400,
            self_service: false,
        });
        outcome
    }

    /// A message refused at DATA with `reply`, indexed with `symbol` and nothing else looked at.
    pub fn refused(envelope: &Envelope, message: &[u8], refusal: Refusal, symbol: &Symbol) -> Outcome {
        let headers = parse_headers(message);
        Outcome {
            index: IndexEntry {
                message_ref: envelope.message_ref.clone(),
                received_at: envelope.received_at,
                message_id: headers.get("message-id").map(headers::clean),
                sender: envelope.sender.clone(),
                client_ip: envelope.client_ip.to_string(),
                helo: envelope.helo.clone(),
                from_address: None,
                size: message.len() as i64,
                from_authenticated: false,
                subject: headers.get("subject").map(headers::clean),
                recipients: envelope
                    .recipients
                    .iter()
                    .map(|address| IndexedRecipient {
                        address: address.clone(),
                        reference: String::new(),
                    })
                    .collect(),
                urls: Vec::new(),
                symbols: vec![symbol.name.to_string()],
                weighed: Vec::new(),
                verdict: "reject".into(),
                category: None,
                rule: None,
                details: format!("rule={} policy=reject", symbol.name.to_ascii_lowercase()),
            },
            verdict: Verdict::Reject { refusal },
            deliveries: Vec::new(),
            hold: None,
            plan: None,
        }
    }
}

/// A spawned task that is aborted when the handle is dropped unfinished.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a failed pipeline task said: its panic message, or why it was cancelled.
fn describe_failure(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("panic: {text}")
}

/// Retention in days for a quarantine category (Exchange Online Protection's defaults).
pub fn retention_days(category: &str, config: &QuarantineConfig) -> i64 {
    match category {
        "spam" => config.spam_retention_days as i64,
        "bulk" => config.bulk_retention_days as i64,
        "transport" => 7,
        _ => 15,
    }
}

/// How far back near-identical messages count toward a campaign.
const CAMPAIGN_WINDOW_SECS: i64 = 86_400;

pub struct Pipeline {
    config: PipelineConfig,
    quarantine: QuarantineConfig,
    hostname: String,
    resolver: Option<Resolver>,
    renderer: Arc<Renderer>,
    table: SymbolTable,
    /// The content stages, in the order they run.
    stages: Vec<Box<dyn Stage>>,
    /// The click service's providers and cache, when the gateway runs beside it.
    reputation: Option<Arc<crate::reputation::Reputation>>,
    attachments: Arc<crate::attachments::AttachmentsConfig>,
    signatures: Arc<crate::attachments::engines::Signatures>,
    clamd: Option<(
        crate::attachments::engines::Clamd,
        crate::attachments::engines::FailMode,
    )>,
    /// Transport rules, compiled, in the order they run.
    rules: Vec<rules::CompiledRule>,
    /// The sender lists, for the recipients' own allowed senders.
    sender_policy: Option<Arc<dyn crate::senders::SenderPolicy>>,
}

impl Pipeline {
    pub fn new(
        config: &Config,
        keys: impl Into<LiveKeyRing>,
        resolver: Option<Resolver>,
        arc: Option<ArcKey>,
    ) -> Pipeline {
        Pipeline {
            // The configuration was checked when it was loaded (`Config::validate`).
            table: SymbolTable::new(&config.pipeline.symbols, &config.pipeline.custom_symbols()).unwrap_or_else(
                |error| {
                    tracing::error!(%error, "symbol weights not applied");
                    SymbolTable::built_in()
                },
            ),
            config: config.pipeline.clone(),
            quarantine: config.quarantine.clone(),
            hostname: config.smtp.hostname.clone(),
            resolver,
            renderer: Arc::new(Renderer::new(
                Rewriter::new(keys, &config.links.base_url, config.rewrite.clone()),
                arc,
                &config.smtp.hostname,
            )),
            reputation: None,
            sender_policy: None,
            attachments: Arc::new(config.attachments.clone()),
            // Checked when the configuration was loaded (`Config::validate`).
            rules: rules::compile(&config.pipeline.rules, &config.pipeline.sensitive_types).unwrap_or_else(|error| {
                tracing::error!(%error, "transport rules not applied");
                Vec::new()
            }),
            // The lists were read once when the configuration was checked (`Config::validate`).
            signatures: Arc::new(
                crate::attachments::engines::Signatures::load(&config.attachments.signature_files).unwrap_or_else(
                    |error| {
                        tracing::error!(%error, "signature lists not loaded; built-in signatures only");
                        crate::attachments::engines::Signatures::load(&[]).unwrap_or_default()
                    },
                ),
            ),
            clamd: config
                .attachments
                .clamav
                .as_ref()
                .map(|clamav| (crate::attachments::engines::Clamd::new(clamav), clamav.fail)),
            stages: vec![
                Box::new(sender::HeaderForm),
                Box::new(body::BodyForm),
                Box::new(phish::Phish::new(&config.reputation.redirects.shorteners)),
                Box::new(sender::Bulk),
                Box::new(history::Campaigns::new(CAMPAIGN_WINDOW_SECS)),
                Box::new(sender::Impostor::new(
                    &config.smtp.domains,
                    &config.reputation.protected_domains,
                    &config.pipeline.vip_names,
                )),
                // Last: it reads the symbols the stages before it added.
                Box::new(crate::classifier::Classifier::new(&config.data_dir)),
            ],
        }
    }

    /// Adds first contact, from the correspondents `store` keeps (the gateway's own store; the
    /// command line's one-off scans go without).
    pub fn with_correspondents(mut self, correspondents: Arc<dyn history::Correspondents>) -> Pipeline {
        // Before the classifier, which stays last.
        let at = self.stages.len().saturating_sub(1);
        self.stages
            .insert(at, Box::new(history::FirstContact::new(correspondents)));
        self
    }

    /// Adds the organisation's sender lists (the gateway's own store).
    pub fn with_sender_lists(mut self, policy: Arc<dyn crate::senders::SenderPolicy>) -> Pipeline {
        // Before the classifier, which stays last.
        let at = self.stages.len().saturating_sub(1);
        self.stages
            .insert(at, Box::new(crate::senders::SenderLists::new(policy.clone())));
        self.sender_policy = Some(policy);
        self
    }

    /// Checks every link's destination with these providers (and their cache, shared with the
    /// click service) while the message is analysed.
    pub fn with_reputation(mut self, reputation: Arc<crate::reputation::Reputation>) -> Pipeline {
        self.reputation = Some(reputation);
        self
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn keys(&self) -> std::sync::Arc<KeyRing> {
        self.renderer.rewriter().keys()
    }

    /// Why `outcome` was decided from `analysis`: every symbol weighed, the scores, the verdict.
    pub fn explain(&self, analysis: &Analysis, outcome: &Outcome) -> explain::Explanation {
        explain::Explanation::new(outcome, &analysis.symbols, &self.table)
    }

    /// What makes recipients' copies from the stored message: the delivery workers share it.
    pub fn renderer(&self) -> Arc<Renderer> {
        self.renderer.clone()
    }

    /// Runs every stage on one message as received and decides. `can_reject` is false when the
    /// DATA reply has already gone out (the time budget ran out, or a crash recovery): a reject
    /// verdict then holds the message in quarantine instead, because a bounce after a 250 is
    /// backscatter.
    pub async fn run(&self, envelope: &Envelope, message: &[u8], can_reject: bool) -> Outcome {
        let analysis = self.analyse(envelope, message).await;
        self.conclude(envelope, message, &analysis, can_reject)
    }

    /// [`Pipeline::analyse`] on a task of its own, so that a panic ends only that attempt, up to
    /// `pipeline.max_attempts` times; the error says why the last one failed, for a caller that
    /// then holds the message as `damaged` instead of blocking its spool or the next start.
    pub async fn analyse_isolated(
        self: &Arc<Self>,
        envelope: &Envelope,
        message: &Arc<Vec<u8>>,
    ) -> Result<Analysis, String> {
        let attempts = self.config.max_attempts.max(1);
        let mut last_error = String::new();
        for attempt in 1..=attempts {
            let (pipeline, task_envelope, task_message) = (self.clone(), envelope.clone(), message.clone());
            // Stopped with the caller: a hook whose deadline passes leaves nothing running.
            let mut run = AbortOnDrop(tokio::spawn(async move {
                pipeline.analyse(&task_envelope, &task_message).await
            }));
            match (&mut run.0).await {
                Ok(analysis) => return Ok(analysis),
                Err(error) => {
                    last_error = describe_failure(error);
                    tracing::error!(message_ref = %envelope.message_ref, attempt, error = %last_error, "filtering failed");
                }
            }
        }
        Err(format!("filtering failed {attempts} times: {last_error}"))
    }

    /// The stages, in order; each only adds to the analysis.
    pub async fn analyse(&self, envelope: &Envelope, message: &[u8]) -> Analysis {
        // 0. Structure: the parts, opened with our own iterative walk; no stage, ours or a
        // library's, sees nesting deeper than the bound.
        let limit = self.config.max_nesting;
        let parts = malware::parts(message, limit);
        if parts.depth > limit {
            return Analysis {
                too_deep: Some(format!("MIME structure nested deeper than {limit} levels")),
                ..Analysis::default()
            };
        }
        let headers = parse_headers(message);
        let mut analysis = Analysis {
            subject: headers.get("subject").map(headers::clean),
            message_id: headers.get("message-id").map(headers::clean),
            ..Analysis::default()
        };

        // 1. Connection: what the connection filter found at connect time.
        analysis
            .symbols
            .extend(envelope.connection_symbols.iter().map(|name| Hit {
                name: name.clone(),
                detail: format!("client {}", envelope.client_ip),
            }));

        // 2. Authentication: SPF, DKIM, DMARC and ARC, before anything changes the message.
        if let (true, Some(resolver)) = (self.config.authenticate, &self.resolver)
            && let Some(parsed) = AuthenticatedMessage::parse(message)
        {
            let (verdicts, arc, results) = auth::verify(
                resolver,
                &parsed,
                &self.hostname,
                envelope.client_ip,
                &envelope.helo,
                &envelope.sender,
            )
            .await;
            analysis.symbols.extend(verdicts.symbols);
            analysis.authentication = Some(verdicts.header);
            analysis.seal = Some(SealPlan {
                // 998 bytes a line, less `ARC-Authentication-Results: i=50; `.
                results: render::one_line_results(&results.to_string(), 960),
                chain_sets: arc.sets().len(),
                chain_pass: *arc.result() == mail_auth::DkimResult::Pass,
            });
        }

        // 3. Attachments and malware: every file opened (archives to their bounds) and inspected
        // for what its type can hide, then the engines over the files.
        // Opening files is CPU work with no await in it: it runs on the blocking pool, so a
        // message full of archives never stalls the SMTP sessions and timers on the async workers.
        let sender_domain = senders(message, &headers)
            .0
            .and_then(|from| from.address.rsplit_once('@').map(|(_, domain)| domain.to_string()));
        let (config, signatures) = (self.attachments.clone(), self.signatures.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let files = crate::attachments::scan(&parts, &config, sender_domain.as_deref());
            let found = builtin_detections(&parts, &files, &signatures);
            (parts, files, found)
        })
        .await;
        let (parts, files, mut found) = match opened {
            Ok(opened) => opened,
            // A panic there is this message's failure, handled like any other (retried, then held).
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("attachment scan cancelled: {error}"),
        };
        // The raw message too (an EICAR string in a part no decoder opened): parts and files were
        // searched on the blocking pool.
        if !found.iter().any(|(symbol, _)| symbol.name == symbols::EICAR.name)
            && memchr::memmem::find(message, malware::EICAR).is_some()
        {
            found.insert(
                0,
                (
                    &symbols::EICAR,
                    crate::attachments::engines::Detection {
                        engine: "builtin",
                        signature: "EICAR-Test-File".into(),
                        file: "the message".into(),
                    },
                ),
            );
        }
        analysis.symbols.extend(files.hits.iter().cloned());
        self.find_malware(&files, found, &mut analysis).await;
        let context = scan_context(envelope, message, &headers, &parts);

        // 4. Content: the sender, the header block, the body as the reader sees it, links, bulk
        // signals, then the trained classifier over all of it.
        // Each stage sees what the stages before it found (the impostor stage reads DMARC's).
        for stage in &self.stages {
            stage.check(&context, &mut analysis.symbols);
        }
        analysis.from_address = context.from.as_ref().map(|from| from.address.clone());
        self.recipients_allowing(&context, &mut analysis);

        // 4b. Link reputation: every destination (foreign wrappers by their inner URL too), in the
        // body, inside attached files and behind QR codes, as the click service will judge it at
        // click time, through the same cache.
        if let Some(reputation) = &self.reputation {
            let body = context.content.links.iter().map(|link| (link.href.as_str(), None));
            let in_files = files
                .links
                .iter()
                .chain(&files.qr_links)
                .map(|found| (found.url.as_str(), Some(found.source.as_str())));
            // Files and QR codes first: fewer, and out of the rewriter's reach, they must not lose
            // their lookups to a body of fifty harmless links.
            analysis
                .symbols
                .extend(link_reputation(reputation, in_files.chain(body)).await);
        }

        // 5. Transport rules: the first matching rule with a final action decides; symbol rules add.
        let header_fields: Vec<(String, String)> = headers
            .fields
            .iter()
            .map(|(name, value, _)| (name.clone(), value.clone()))
            .collect();
        let scores = Scores::of(analysis.symbols.iter().map(|hit| hit.name.as_str()), &self.table);
        let rule_input = rules::RuleInput {
            sender: &envelope.sender,
            recipients: &envelope.recipients,
            header_from: context.from.as_ref().map(|from| from.address.as_str()),
            headers: &header_fields,
            subject: context.subject.as_deref(),
            attachment_names: &parts.attachment_names,
            body: &context.content.text,
            attachments: &files.files,
            symbols: &analysis.symbols,
            score: scores.total(),
            scl: self.spam_confidence(&analysis, &scores),
            bcl: bulk_level(&scores),
            client_ip: envelope.client_ip,
        };
        let mut effects = rules::apply(&self.rules, &rule_input);
        analysis.symbols.append(&mut effects.hits);
        analysis.rule = effects.decided.take();
        analysis.rule_effects = effects;

        // 6. Links: every link the rewriter finds, weighed with the rest (the copies are
        // rewritten per recipient later, from the same bytes).
        if self.config.rewrite_urls {
            let stripped = headers::strip_forgeable(message, &self.hostname);
            let link_context = MessageContext {
                message_ref: envelope.message_ref.as_bytes().to_vec(),
                recipient: None,
                issued_at: issued_at(envelope),
                flags: 0,
            };
            match self.renderer.rewriter().rewrite(&stripped, &link_context) {
                Ok(rewritten) => {
                    let report = rewritten.report;
                    if report.links_rewritten > 0 {
                        let detail = format!("{} links", report.links_rewritten);
                        analysis.symbols.push(Hit::new(&symbols::URL_REWRITTEN, detail));
                    }
                    if let Some(count) = report.left_unrewritten.get(&LeftReason::Signed) {
                        let detail = format!("{count} links in signed parts");
                        analysis.symbols.push(Hit::new(&symbols::URL_SKIPPED_SIGNED, detail));
                    }
                    for link in report.links.iter().take(1000) {
                        analysis
                            .urls
                            .push(link.foreign.as_ref().map_or(&link.url, |f| &f.inner).clone());
                    }
                }
                Err(error) => {
                    analysis
                        .symbols
                        .push(Hit::new(&symbols::URL_REWRITE_FAILED, error.to_string()));
                    tracing::warn!(message_ref = %envelope.message_ref, %error, "links not rewritten");
                }
            }
        }
        analysis
    }

    /// The recipients who allow this From address for themselves, when DMARC passed (an allow
    /// entry must not let a spoof of the address through).
    fn recipients_allowing(&self, context: &ScanContext<'_>, analysis: &mut Analysis) {
        let (Some(policy), Some(from)) = (&self.sender_policy, &context.from) else {
            return;
        };
        if !analysis.symbols.iter().any(|hit| hit.name == symbols::DMARC_PASS.name) {
            return;
        }
        match policy.recipients_allowing(&from.address, &context.envelope.recipients) {
            Ok(allowing) if !allowing.is_empty() => {
                let detail = format!("{} allow {}", allowing.join(", "), from.address);
                analysis.symbols.push(Hit::new(&symbols::RECIPIENT_ALLOW, detail));
                analysis.allowed_by = allowing;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "recipients' allowed senders not read"),
        }
    }

    /// ClamAV over every attached file (clamd opens archives itself), added to what the built-in
    /// engines found (`builtin_detections`).
    async fn find_malware(
        &self,
        files: &crate::attachments::Scan,
        mut found: Vec<(&'static Symbol, crate::attachments::engines::Detection)>,
        analysis: &mut Analysis,
    ) {
        use crate::attachments::engines::{ClamdVerdict, Detection, FailMode};
        if let Some((clamd, fail)) = &self.clamd {
            let attached: Vec<&crate::attachments::File> = files.files.iter().filter(|file| file.depth == 0).collect();
            let mut failures = Vec::new();
            // Only a clamd that could not be reached makes a fail-closed gateway ask the sender to
            // try again; a file clamd refuses, or too many files, would be refused forever.
            let mut transient = false;
            if attached.len() > MAX_CLAMD_FILES {
                failures.push(format!(
                    "{} files, only the first {MAX_CLAMD_FILES} scanned",
                    attached.len()
                ));
            }
            for batch in attached.chunks(CLAMD_AT_ONCE).take(MAX_CLAMD_FILES / CLAMD_AT_ONCE) {
                let verdicts = futures_util::future::join_all(batch.iter().map(|file| clamd.scan(&file.bytes))).await;
                for (file, verdict) in batch.iter().zip(verdicts) {
                    match verdict {
                        Ok(ClamdVerdict::Found(signature)) => found.push((
                            &symbols::CLAMAV_VIRUS,
                            Detection {
                                engine: "clamav",
                                signature,
                                file: file.path.clone(),
                            },
                        )),
                        Ok(ClamdVerdict::Clean) => {}
                        Err(error) => {
                            transient |= error.is_transient();
                            failures.push(format!("{}: {error}", file.path));
                        }
                    }
                }
            }
            if let Some(first) = failures.first() {
                analysis
                    .symbols
                    .push(Hit::new(&symbols::CLAMAV_UNAVAILABLE, first.clone()));
                if *fail == FailMode::Closed && transient {
                    analysis.unscanned = Some("ClamAV unavailable".into());
                }
            }
        }
        for (symbol, detection) in found {
            let detail = format!("{}: {} in {}", detection.engine, detection.signature, detection.file);
            analysis.symbols.push(Hit::new(symbol, detail));
            analysis.detections.push(detection);
        }
    }

    /// The malware symbol that weighs most, for a quarantine reason when no engine named one.
    fn top_malware_symbol(&self, analysis: &Analysis) -> String {
        analysis
            .symbols
            .iter()
            .filter(|hit| self.table.weight(&hit.name).group == Category::Malware)
            .max_by(|a, b| {
                self.table
                    .weight(&a.name)
                    .weight
                    .total_cmp(&self.table.weight(&b.name).weight)
            })
            .map_or_else(
                || "malware score".into(),
                |hit| format!("{} ({})", hit.name, hit.detail),
            )
    }

    /// A message's classifier features as the classifier stage reads them (after the other
    /// content stages; no DNS, no links rewritten): what `portcullis train` learns from. `None`
    /// for a structure nested past `pipeline.max_nesting`.
    pub fn features(&self, envelope: &Envelope, message: &[u8]) -> Option<Vec<u32>> {
        let parts = malware::parts(message, self.config.max_nesting);
        if parts.depth > self.config.max_nesting {
            return None;
        }
        let headers = parse_headers(message);
        let context = scan_context(envelope, message, &headers, &parts);
        let mut found = Vec::new();
        for stage in self
            .stages
            .iter()
            .filter(|stage| stage.name() != "classifier" && !stage.remembers())
        {
            stage.check(&context, &mut found);
        }
        Some(crate::classifier::features(&context, &found))
    }

    /// Decides from an analysis and says what to keep: the index entry, the copies to relay or
    /// the quarantine hold, and the plan every copy is rendered by. Looks nothing up.
    pub fn conclude(&self, envelope: &Envelope, message: &[u8], analysis: &Analysis, can_reject: bool) -> Outcome {
        if let Some(reason) = &analysis.too_deep {
            return if can_reject {
                Outcome::refused(
                    envelope,
                    message,
                    Refusal::Structure { reason: reason.clone() },
                    &symbols::MIME_TOO_DEEP,
                )
            } else {
                Outcome::damaged(envelope, message, reason, &symbols::MIME_TOO_DEEP)
            };
        }
        let scores = Scores::of(analysis.symbols.iter().map(|hit| hit.name.as_str()), &self.table);
        let (mut verdict, mut rule_label) = self.decide(analysis, &scores);
        // Held by its scores alone: the recipients may act on it from their digest.
        let by_scores = matches!(rule_label.as_str(), "spam" | "bulk" | "phish" | "impostor");
        // Recipients who allow the sender for themselves get their copies of spam and bulk (held
        // by the scores, not by a rule or the organisation's block list); the rest stay held.
        let mut allowed_copies: Vec<String> = Vec::new();
        if let Verdict::Quarantine { category, .. } = &verdict
            && matches!(category.as_str(), "spam" | "bulk")
            && matches!(rule_label.as_str(), "spam" | "bulk")
            && analysis.rule_effects.redirect.is_none()
            && analysis.rule_effects.add_recipients.is_empty()
            && !analysis.allowed_by.is_empty()
        {
            allowed_copies = envelope
                .recipients
                .iter()
                .filter(|r| analysis.allowed_by.iter().any(|a| a.eq_ignore_ascii_case(r)))
                .cloned()
                .collect();
            if allowed_copies.len() == envelope.recipients.len() {
                verdict = Verdict::Deliver;
                rule_label = "recipient-allow".into();
                allowed_copies.clear();
            }
        }
        if !can_reject && let Verdict::Reject { refusal } = &verdict {
            let category = if let Refusal::Unscanned { .. } = refusal {
                "unscanned"
            } else if scores.malware >= self.config.thresholds.malware {
                "malware"
            } else if scores.phish >= scores.spam {
                "phish"
            } else {
                "spam"
            };
            verdict = Verdict::Quarantine {
                category: category.into(),
                reason: format!("{rule_label} (reject verdict after the DATA reply)"),
            };
        }

        let spam_flag = matches!(&verdict, Verdict::Quarantine { category, .. } if category != "malware" && category != "transport")
            || matches!(verdict, Verdict::Reject { .. });
        let details = format!(
            "rule={rule_label} policy={} score={} suspectscore={} phishscore={} bulkscore={} impostorscore={} malwarescore={}",
            verdict.name(),
            round(scores.spam),
            round(scores.suspect),
            round(scores.phish),
            round(scores.bulk),
            round(scores.impostor),
            round(scores.malware),
        );
        let mut stamp = Vec::new();
        if let Some(header) = &analysis.authentication {
            stamp.push(header.clone());
        }
        stamp.push(format!("X-Portcullis-Spam-Details: {details}\r\n"));
        let effects = &analysis.rule_effects;
        let scl = match (effects.scl, effects.bypass_spam) {
            (Some(scl), _) => scl,
            (None, true) => -1,
            (None, false) => self.spam_confidence(analysis, &scores),
        };
        stamp.push(format!("X-Portcullis-SCL: {scl}\r\n"));
        stamp.push(format!("X-Portcullis-BCL: {}\r\n", bulk_level(&scores)));
        stamp.push(format!(
            "X-Portcullis-Spam-Flag: {}\r\n",
            if spam_flag { "YES" } else { "NO" }
        ));
        // File names are the sender's: ASCII only and clipped, so the field stays one valid line
        // (the full names are in the quarantine reason and the index).
        let virus: String = headers::clean(&virus_details(analysis))
            .chars()
            .map(|c| if c.is_ascii() { c } else { '?' })
            .take(900)
            .collect();
        stamp.push(format!("X-Portcullis-Virus-Details: {virus}\r\n"));
        stamp.push(format!("X-Portcullis-Orig-IP: {}\r\n", envelope.client_ip));
        let original_sender = match envelope.sender.as_str() {
            "" => "<>".to_string(),
            sender => headers::clean(sender),
        };
        stamp.push(format!("X-Portcullis-Orig-Sender: {original_sender}\r\n"));
        stamp.extend(effects.add_headers.iter().cloned());
        let per_recipient = self.config.copies == Copies::Recipient;
        let plan = RenderPlan {
            strip_forgeable: true,
            rewrite_links: self.config.rewrite_urls,
            stamp,
            issued_at: issued_at(envelope),
            per_recipient,
            seal: analysis.seal.clone().filter(|_| self.renderer.seals()),
            remove_headers: effects.remove_headers.clone(),
            subject_prefix: effects.subject_prefix.clone(),
        };
        // Redirected or copied to a reviewer by a transport rule.
        let mut envelope_recipients = effects.redirect.clone().unwrap_or_else(|| envelope.recipients.clone());
        for added in &effects.add_recipients {
            if !envelope_recipients.iter().any(|r| r.eq_ignore_ascii_case(added)) {
                envelope_recipients.push(added.clone());
            }
        }

        // 6. One copy per recipient (or per message) to relay, or one hold for all of them; each
        // copy is rewritten, stamped and sealed when it is delivered.
        let delivery = |recipients: Vec<String>, recipient: Option<String>| NewDelivery {
            message_ref: envelope.message_ref.clone(),
            kind: DeliveryKind::Message,
            sender: envelope.sender.clone(),
            recipients,
            body: DeliveryBody::Rendered { recipient },
        };
        let mut deliveries = Vec::new();
        let mut hold = None;
        match &verdict {
            Verdict::Deliver if per_recipient => {
                for recipient in &envelope_recipients {
                    deliveries.push(delivery(vec![recipient.clone()], Some(recipient.clone())));
                }
            }
            Verdict::Deliver => deliveries.push(delivery(envelope_recipients.clone(), None)),
            Verdict::Quarantine { category, reason } => {
                for recipient in &allowed_copies {
                    let rendered_for = per_recipient.then(|| recipient.clone());
                    deliveries.push(delivery(vec![recipient.clone()], rendered_for));
                }
                hold = Some(NewHold {
                    message_ref: envelope.message_ref.clone(),
                    category: category.clone(),
                    reason: reason.clone(),
                    sender: envelope.sender.clone(),
                    recipients: envelope_recipients
                        .iter()
                        .filter(|r| !allowed_copies.iter().any(|a| a.eq_ignore_ascii_case(r)))
                        .cloned()
                        .collect(),
                    subject: analysis.subject.clone(),
                    expires_at: crate::store::now() + retention_days(category, &self.quarantine) * 86400,
                    self_service: by_scores,
                });
            }
            Verdict::Reject { .. } | Verdict::Discard { .. } => {}
        }
        let keys = self.keys();
        let recipients = envelope_recipients
            .iter()
            .map(|address| IndexedRecipient {
                address: address.clone(),
                reference: match (
                    per_recipient
                        && (verdict == Verdict::Deliver
                            || allowed_copies.iter().any(|a| a.eq_ignore_ascii_case(address))),
                    keys.recipient_ref(address),
                ) {
                    (true, Ok(reference)) => hex(&reference),
                    _ => String::new(),
                },
            })
            .collect();
        let (category, rule) = match &verdict {
            Verdict::Quarantine { category, .. } => {
                (Some(category.clone()), analysis.rule.as_ref().map(|r| r.0.clone()))
            }
            Verdict::Discard { rule } => (None, Some(rule.clone())),
            _ => (None, analysis.rule.as_ref().map(|r| r.0.clone())),
        };
        let keep = matches!(verdict, Verdict::Deliver | Verdict::Quarantine { .. });
        Outcome {
            index: IndexEntry {
                message_ref: envelope.message_ref.clone(),
                received_at: envelope.received_at,
                message_id: analysis.message_id.clone(),
                sender: envelope.sender.clone(),
                client_ip: envelope.client_ip.to_string(),
                helo: envelope.helo.clone(),
                from_address: analysis.from_address.clone(),
                size: message.len() as i64,
                from_authenticated: analysis.symbols.iter().any(|hit| hit.name == symbols::DMARC_PASS.name),
                subject: analysis.subject.clone(),
                recipients,
                urls: analysis.urls.clone(),
                symbols: analysis.symbols.iter().map(|hit| hit.name.clone()).collect(),
                weighed: analysis
                    .symbols
                    .iter()
                    .map(|hit| {
                        let weight = self.table.weight(&hit.name);
                        crate::store::WeighedSymbol {
                            name: hit.name.clone(),
                            group: weight.group.as_str().into(),
                            weight: weight.weight,
                            detail: hit.detail.clone(),
                        }
                    })
                    .collect(),
                verdict: verdict.name().into(),
                category,
                rule,
                details,
            },
            verdict,
            deliveries,
            hold,
            plan: keep.then_some(plan),
        }
    }

    /// A spam confidence level as Exchange Online Protection writes it: -1 allow-listed, 0 or 1
    /// not spam, 5 or 6 spam, 9 high-confidence spam (at or past the reject threshold).
    fn spam_confidence(&self, analysis: &Analysis, scores: &Scores) -> i8 {
        let thresholds = &self.config.thresholds;
        let spam = scores.spam + scores.phish + scores.impostor;
        if analysis
            .symbols
            .iter()
            .any(|hit| hit.name == symbols::IP_ALLOW.name || hit.name == symbols::SENDER_ALLOW.name)
        {
            -1
        } else if scores.total() >= thresholds.reject {
            9
        } else if scores.spam >= thresholds.spam
            || scores.phish >= thresholds.phish
            || scores.impostor >= thresholds.impostor
        {
            if spam >= (thresholds.spam + thresholds.reject) / 2.0 {
                6
            } else {
                5
            }
        } else if spam > 0.0 {
            1
        } else {
            0
        }
    }

    /// Turns the rule and the scores into a verdict and the label stamped as `rule=`.
    fn decide(&self, context: &Analysis, scores: &Scores) -> (Verdict, String) {
        let thresholds = &self.config.thresholds;
        if scores.malware >= thresholds.malware {
            let why = match context.detections.first() {
                Some(found) => format!("{}: {} in {}", found.engine, found.signature, found.file),
                None => self.top_malware_symbol(context),
            };
            if self.config.malware == crate::config::MalwareAction::Reject {
                return (
                    Verdict::Reject {
                        refusal: Refusal::Malware { found: why },
                    },
                    "malware".into(),
                );
            }
            return (
                Verdict::Quarantine {
                    category: "malware".into(),
                    reason: format!("malware: {why}"),
                },
                "malware".into(),
            );
        }
        // Malware is decided first, as Exchange Online Protection's malware filter runs before
        // mail-flow rules: a rule cannot file malware as something else.
        if let Some((name, action, message)) = &context.rule {
            let label = format!("transport:{name}");
            return match action {
                RuleAction::Reject => (
                    Verdict::Reject {
                        refusal: Refusal::Policy { text: message.clone() },
                    },
                    label,
                ),
                RuleAction::Discard => (Verdict::Discard { rule: name.clone() }, label),
                _ => (
                    Verdict::Quarantine {
                        category: "transport".into(),
                        reason: format!("transport rule {name}"),
                    },
                    label,
                ),
            };
        }
        if let Some(reason) = &context.unscanned {
            return (
                Verdict::Reject {
                    refusal: Refusal::Unscanned { reason: reason.clone() },
                },
                "unscanned".into(),
            );
        }
        // A transport rule's bypass or SCL replaces spam filtering; malware still applied above.
        let effects = &context.rule_effects;
        let dmarc_reject = context
            .symbols
            .iter()
            .any(|hit| hit.name == symbols::DMARC_POLICY_REJECT.name);
        match effects.scl {
            Some(scl @ 5..) => {
                return (
                    Verdict::Quarantine {
                        category: "spam".into(),
                        reason: format!("SCL {scl} set by a transport rule"),
                    },
                    "transport:scl".into(),
                );
            }
            // Neither lifts a domain's own DMARC reject: a rule for a partner's domain must not
            // let anyone spoofing that domain through.
            _ if dmarc_reject => {}
            Some(_) => return (Verdict::Deliver, "transport:scl".into()),
            None if effects.bypass_spam => return (Verdict::Deliver, "transport:bypass".into()),
            None => {}
        }
        if context.symbols.iter().any(|hit| hit.name == symbols::SENDER_BLOCK.name) {
            return (
                Verdict::Quarantine {
                    category: "spam".into(),
                    reason: "the sender is on the organisation's block list".into(),
                },
                "sender-list:block".into(),
            );
        }
        // The allow lists skip spam filtering; malware scanning above still applies.
        if context.symbols.iter().any(|hit| hit.name == symbols::IP_ALLOW.name) {
            return (Verdict::Deliver, "allowlisted".into());
        }
        if context.symbols.iter().any(|hit| hit.name == symbols::SENDER_ALLOW.name) {
            return (Verdict::Deliver, "sender-list:allow".into());
        }
        if scores.total() >= thresholds.reject {
            let refusal = if context
                .symbols
                .iter()
                .any(|hit| hit.name == symbols::DMARC_POLICY_REJECT.name)
            {
                Refusal::Dmarc
            } else {
                Refusal::Spam
            };
            return (Verdict::Reject { refusal }, "reject".into());
        }
        // Impersonation is held as phish (as Exchange Online Protection does), labelled `impostor`.
        for (score, threshold, category, label) in [
            (scores.phish, thresholds.phish, "phish", "phish"),
            (scores.impostor, thresholds.impostor, "phish", "impostor"),
            (scores.spam, thresholds.spam, "spam", "spam"),
            (scores.bulk, thresholds.bulk, "bulk", "bulk"),
        ] {
            if score >= threshold {
                return (
                    Verdict::Quarantine {
                        category: category.into(),
                        reason: format!("{label} score {} >= {threshold}", round(score)),
                    },
                    label.into(),
                );
            }
        }
        (Verdict::Deliver, "notspam".into())
    }
}

/// The built-in engines over the opened files: the EICAR string (decoded parts, archive members)
/// and the SHA-256 signature lists.
fn builtin_detections(
    parts: &malware::Parts,
    files: &crate::attachments::Scan,
    signatures: &crate::attachments::engines::Signatures,
) -> Vec<(&'static Symbol, crate::attachments::engines::Detection)> {
    use crate::attachments::engines::Detection;
    let mut found = Vec::new();
    let finder = memchr::memmem::Finder::new(malware::EICAR);
    let eicar_file = files.files.iter().find(|file| finder.find(&file.bytes).is_some());
    if eicar_file.is_some() || parts.bodies.iter().any(|body| finder.find(body).is_some()) {
        found.push((
            &symbols::EICAR,
            Detection {
                engine: "builtin",
                signature: "EICAR-Test-File".into(),
                file: eicar_file.map_or_else(|| "the message".to_string(), |file| file.path.clone()),
            },
        ));
    }
    for file in &files.files {
        if let Some(signature) = signatures.check(&file.bytes)
            && !found.iter().any(|(_, d)| d.signature == signature)
        {
            found.push((
                &symbols::MALWARE_SIGNATURE,
                Detection {
                    engine: "builtin",
                    signature: signature.to_string(),
                    file: file.path.clone(),
                },
            ));
        }
    }
    found
}

/// The bulk complaint level, 0 to 9, as stamped in `X-Portcullis-BCL`.
fn bulk_level(scores: &Scores) -> u8 {
    scores.bulk.round().clamp(0.0, 9.0) as u8
}

/// What `X-Portcullis-Virus-Details` says: each engine's finding, that a file could not be
/// scanned, or `clean`.
fn virus_details(analysis: &Analysis) -> String {
    if !analysis.detections.is_empty() {
        let found: Vec<String> = analysis
            .detections
            .iter()
            .take(5)
            .map(|d| format!("{}: {} ({})", d.engine, d.signature, d.file))
            .collect();
        return format!("infected; {}", found.join(", "));
    }
    let unscannable: Vec<&str> = analysis
        .symbols
        .iter()
        .filter(|hit| {
            [
                symbols::CLAMAV_UNAVAILABLE.name,
                symbols::ARCHIVE_ENCRYPTED.name,
                symbols::PDF_ENCRYPTED.name,
                symbols::OFFICE_ENCRYPTED.name,
                symbols::ARCHIVE_BOMB.name,
                symbols::ARCHIVE_LIMIT.name,
                symbols::ARCHIVE_UNOPENED.name,
            ]
            .contains(&hit.name.as_str())
        })
        .map(|hit| hit.detail.as_str())
        .take(3)
        .collect();
    if unscannable.is_empty() {
        "clean".into()
    } else {
        format!("unscanned; {}", unscannable.join(", "))
    }
}

/// Files sent to clamd per message, and at once.
const MAX_CLAMD_FILES: usize = 100;
const CLAMD_AT_ONCE: usize = 4;

/// Distinct link destinations checked per message: a message with more is judged by its first.
const MAX_REPUTATION_LOOKUPS: usize = 50;

/// The reputation of every distinct http(s) destination among `links`, the worst of each kind as
/// a symbol.
/// `links` are each a URL and, for one found in a file or a QR code, where.
async fn link_reputation<'a>(
    reputation: &crate::reputation::Reputation,
    links: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> Vec<Hit> {
    use crate::reputation::{Category as Kind, Verdict as Judged};
    let mut urls: Vec<(url::Url, Option<&str>)> = Vec::new();
    for (link, source) in links {
        if urls.len() >= MAX_REPUTATION_LOOKUPS {
            break;
        }
        if let Ok(url) = url::Url::parse(link.trim())
            && matches!(url.scheme(), "http" | "https")
            && !urls.iter().any(|(seen, _)| *seen == url)
        {
            urls.push((url, source));
        }
    }
    let lookups = futures_util::future::join_all(urls.iter().map(|(url, _)| reputation.assess_for_delivery(url))).await;
    let mut hits: Vec<Hit> = Vec::new();
    for ((url, source), lookup) in urls.iter().zip(lookups) {
        let assessment = &lookup.assessment;
        let symbol = match (assessment.verdict, assessment.category) {
            (Judged::Malicious, Kind::Spam) => &symbols::URL_REPUTATION_SPAM,
            (Judged::Malicious, _) => &symbols::URL_REPUTATION_MALICIOUS,
            (Judged::Suspicious, _) => &symbols::URL_REPUTATION_SUSPICIOUS,
            _ => continue,
        };
        if hits.iter().any(|hit| hit.name == symbol.name) {
            continue;
        }
        let why = assessment
            .findings
            .iter()
            .max_by_key(|finding| finding.verdict)
            .map(|finding| format!("{}: {}", finding.provider, finding.reason))
            .unwrap_or_default();
        let shown: String = url.as_str().chars().take(100).collect();
        let place = source.map(|source| format!(" in {source}")).unwrap_or_default();
        hits.push(Hit::new(symbol, format!("{shown}{place} ({why})")));
    }
    hits
}

/// The message parsed once for the content stages.
fn scan_context<'a>(
    envelope: &'a Envelope,
    message: &'a [u8],
    headers: &'a crate::rewrite::mime::Headers,
    parts: &'a malware::Parts,
) -> ScanContext<'a> {
    let (from, reply_to, subject) = senders(message, headers);
    ScanContext {
        envelope,
        message,
        headers,
        subject,
        from,
        reply_to,
        parts,
        content: content::Content::of(parts),
    }
}

/// The address of the message's `From` field, as the pipeline reads it.
pub fn from_address(message: &[u8]) -> Option<String> {
    senders(message, &parse_headers(message)).0.map(|from| from.address)
}

/// The `From` sender (display name decoded, RFC 2047), the `Reply-To` address and the decoded
/// subject, read from the top-level header block only.
fn senders(
    message: &[u8],
    headers: &crate::rewrite::mime::Headers,
) -> (Option<Sender>, Option<String>, Option<String>) {
    let block = &message[..headers.body_start.min(message.len())];
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(block) else {
        return (None, None, None);
    };
    let from = parsed.from().and_then(|from| from.first()).and_then(|first| {
        Some(Sender {
            name: first.name().map(str::to_string),
            address: first.address()?.to_string(),
        })
    });
    let reply_to = parsed
        .reply_to()
        .and_then(|reply_to| reply_to.first())
        .and_then(|first| first.address())
        .map(str::to_string);
    (from, reply_to, parsed.subject().map(str::to_string))
}

/// The time signed into a message's links: when it arrived.
fn issued_at(envelope: &Envelope) -> u32 {
    envelope.received_at.clamp(0, u32::MAX as i64) as u32
}

fn round(score: f64) -> String {
    let rounded = (score * 100.0).round() / 100.0;
    if rounded == 0.0 {
        "0".into()
    } else {
        format!("{rounded}")
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        // The symbols a transport rule adds, weighed as spam and phish.
        let config = Config::parse(
            "[[pipeline.rules]]\nname = \"s\"\nsubject_matches = \"^s\"\naction = \"symbol\"\nsymbol = \"TEST_SPAMMY\"\n\
             [[pipeline.rules]]\nname = \"p\"\nsubject_matches = \"^p\"\naction = \"symbol\"\nsymbol = \"TEST_PHISHY\"\n\
             [pipeline.symbols]\nTEST_SPAMMY = { weight = 8.0, group = \"spam\" }\n\
             TEST_PHISHY = { weight = 9.0, group = \"phish\" }\n",
        )
        .unwrap();
        config.validate().unwrap();
        Pipeline::new(&config, KeyRing::ephemeral(), None, None)
    }

    fn envelope(recipients: &[&str]) -> Envelope {
        Envelope {
            message_ref: "m1".into(),
            sender: "ann@partner.test".into(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "mx.partner.test".into(),
            tls: false,
            received_at: 0,
            connection_symbols: Vec::new(),
        }
    }

    fn analysis(symbol: &str, allowed_by: &[&str]) -> Analysis {
        Analysis {
            symbols: vec![Hit {
                name: symbol.into(),
                detail: String::new(),
            }],
            allowed_by: allowed_by.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn recipients_who_allow_the_sender_get_spam_the_others_keep_held() {
        let pipeline = pipeline();
        let envelope = envelope(&["bob@example.com", "carol@example.com"]);
        let message = b"Subject: x\r\n\r\nbody\r\n";

        let mut split = pipeline.conclude(&envelope, message, &analysis("TEST_SPAMMY", &["BOB@example.com"]), true);
        assert!(
            matches!(&split.verdict, Verdict::Quarantine { category, .. } if category == "spam"),
            "{:?}",
            split.verdict
        );
        let delivered: Vec<&Vec<String>> = split.deliveries.iter().map(|d| &d.recipients).collect();
        assert_eq!(delivered, [&vec!["bob@example.com".to_string()]]);
        assert_eq!(split.hold.as_ref().unwrap().recipients, ["carol@example.com"]);
        // An MTA that handed the message over can only hold all of it.
        split.hold_whole();
        assert!(split.deliveries.is_empty());
        assert_eq!(
            split.hold.as_ref().unwrap().recipients,
            ["carol@example.com", "bob@example.com"]
        );

        let everyone = pipeline.conclude(
            &envelope,
            message,
            &analysis("TEST_SPAMMY", &["bob@example.com", "carol@example.com"]),
            true,
        );
        assert_eq!(everyone.verdict, Verdict::Deliver);
        assert!(everyone.hold.is_none());

        // Phish is not theirs to let through.
        let phish = pipeline.conclude(
            &envelope,
            message,
            &analysis("TEST_PHISHY", &["bob@example.com", "carol@example.com"]),
            true,
        );
        assert!(phish.deliveries.is_empty());
        assert_eq!(phish.hold.unwrap().recipients.len(), 2);
    }
}
