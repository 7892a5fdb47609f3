//! The filtering pipeline: the ordered stages every accepted message goes through, the symbols they
//! add to a shared context, the verdict, and the copies (rewritten, stamped, sealed) it produces.
//! Transport-free: the SMTP server calls [`Pipeline::analyse`] and [`Pipeline::conclude`]; the
//! milter and HTTP hooks will too. Copies are made later, by [`render`].

pub mod auth;
pub mod headers;
pub mod malware;
pub mod render;
pub mod rules;
pub mod seal;
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
pub use symbols::{Category, Scores, SymbolTable, SymbolWeight, Thresholds};

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
    /// Refuse at DATA with this reply (code, enhanced code, text).
    Reject {
        reply: String,
    },
    Discard {
        rule: String,
    },
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

/// What the stages found in one message, before anything is decided: the symbols (connection,
/// authentication, malware, transport rules, links), the transport rule that decides if one
/// does, and what rendering its copies will need. Deciding again (a reject that comes after the
/// DATA reply) reads this; nothing is looked up twice.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Set when the structure check stopped the analysis: nothing else was looked at.
    pub too_deep: Option<String>,
    pub symbols: Vec<String>,
    pub rule: Option<(String, RuleAction, Option<String>)>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub infected: bool,
    /// The `Authentication-Results` field we stamp, when authentication ran.
    pub authentication: Option<String>,
    pub seal: Option<SealPlan>,
    /// Every link's destination (foreign wrappers by their inner URL), at most 1,000.
    pub urls: Vec<String>,
}

impl Outcome {
    /// A message no stage could finish (an error, a panic, a structure too deep), held unchanged
    /// as quarantine category `damaged` with the reason, for an operator to look at.
    pub fn damaged(envelope: &Envelope, message: &[u8], reason: &str, symbol: &str) -> Outcome {
        let category = "damaged".to_string();
        let mut outcome = Outcome::refused(envelope, message, String::new(), symbol);
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
        });
        outcome
    }

    /// A message refused at DATA with `reply`, indexed with `symbol` and nothing else looked at.
    pub fn refused(envelope: &Envelope, message: &[u8], reply: String, symbol: &str) -> Outcome {
        let headers = parse_headers(message);
        Outcome {
            index: IndexEntry {
                message_ref: envelope.message_ref.clone(),
                received_at: envelope.received_at,
                message_id: headers.get("message-id").map(headers::clean),
                sender: envelope.sender.clone(),
                client_ip: envelope.client_ip.to_string(),
                helo: envelope.helo.clone(),
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
                symbols: vec![symbol.to_string()],
                verdict: "reject".into(),
                category: None,
                rule: None,
                details: format!("rule={} policy=reject", symbol.to_ascii_lowercase()),
            },
            verdict: Verdict::Reject { reply },
            deliveries: Vec::new(),
            hold: None,
            plan: None,
        }
    }
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

pub struct Pipeline {
    config: PipelineConfig,
    quarantine: QuarantineConfig,
    hostname: String,
    resolver: Option<Resolver>,
    renderer: Arc<Renderer>,
    table: SymbolTable,
}

impl Pipeline {
    pub fn new(
        config: &Config,
        keys: impl Into<LiveKeyRing>,
        resolver: Option<Resolver>,
        arc: Option<ArcKey>,
    ) -> Pipeline {
        Pipeline {
            table: SymbolTable::new(&config.pipeline.symbols),
            config: config.pipeline.clone(),
            quarantine: config.quarantine.clone(),
            hostname: config.smtp.hostname.clone(),
            resolver,
            renderer: Arc::new(Renderer::new(
                Rewriter::new(keys, &config.links.base_url, config.rewrite.clone()),
                arc,
                &config.smtp.hostname,
            )),
        }
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    pub fn keys(&self) -> std::sync::Arc<KeyRing> {
        self.renderer.rewriter().keys()
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
        let header_from = headers.get("from").map(|from| address_of(from).to_string());
        let mut analysis = Analysis {
            subject: headers.get("subject").map(headers::clean),
            message_id: headers.get("message-id").map(headers::clean),
            ..Analysis::default()
        };

        // 1. Connection: what the connection filter found at connect time.
        analysis.symbols.extend(envelope.connection_symbols.iter().cloned());

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
                results: render::one_line_results(&results.to_string(), 900),
                chain_sets: arc.sets().len(),
                chain_pass: *arc.result() == mail_auth::DkimResult::Pass,
            });
        }

        // 3. Malware: the built-in EICAR detector over the raw message and every decoded part.
        analysis.infected = malware::has_eicar(message, &parts);
        if analysis.infected {
            analysis.symbols.push("EICAR".into());
        }

        // 4. Transport rules: the first matching rule with a final action decides; symbol rules add.
        let rule_input = rules::RuleInput {
            sender: &envelope.sender,
            recipients: &envelope.recipients,
            header_from: header_from.as_deref(),
            subject: analysis.subject.as_deref(),
            attachment_names: &parts.attachment_names,
            client_ip: envelope.client_ip,
        };
        for rule in self.config.rules.iter().filter(|rule| rule.matches(&rule_input)) {
            match rule.action {
                RuleAction::Symbol => {
                    if let Some(symbol) = &rule.symbol {
                        analysis.symbols.push(symbol.to_ascii_uppercase());
                    }
                }
                action => {
                    analysis.rule = Some((rule.name.clone(), action, rule.message.clone()));
                    break;
                }
            }
        }

        // 5. Links: every link the rewriter finds, weighed with the rest (the copies are
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
                        analysis.symbols.push("URL_REWRITTEN".into());
                    }
                    if report.left_unrewritten.contains_key(&LeftReason::Signed) {
                        analysis.symbols.push("URL_SKIPPED_SIGNED".into());
                    }
                    for link in report.links.iter().take(1000) {
                        analysis
                            .urls
                            .push(link.foreign.as_ref().map_or(&link.url, |f| &f.inner).clone());
                    }
                }
                Err(error) => {
                    analysis.symbols.push("URL_REWRITE_FAILED".into());
                    tracing::warn!(message_ref = %envelope.message_ref, %error, "links not rewritten");
                }
            }
        }
        analysis
    }

    /// Decides from an analysis and says what to keep: the index entry, the copies to relay or
    /// the quarantine hold, and the plan every copy is rendered by. Looks nothing up.
    pub fn conclude(&self, envelope: &Envelope, message: &[u8], analysis: &Analysis, can_reject: bool) -> Outcome {
        if let Some(reason) = &analysis.too_deep {
            return if can_reject {
                Outcome::refused(
                    envelope,
                    message,
                    format!("554 5.6.0 {reason}; message not accepted"),
                    "MIME_TOO_DEEP",
                )
            } else {
                Outcome::damaged(envelope, message, reason, "MIME_TOO_DEEP")
            };
        }
        let scores = Scores::of(&analysis.symbols, &self.table);
        let (mut verdict, rule_label) = self.decide(analysis, &scores);
        if !can_reject && let Verdict::Reject { .. } = verdict {
            let category = if scores.malware >= self.config.thresholds.malware {
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
            "rule={rule_label} policy={} score={} suspectscore={} phishscore={} bulkscore={} malwarescore={}",
            verdict.name(),
            round(scores.spam),
            round(scores.suspect),
            round(scores.phish),
            round(scores.bulk),
            round(scores.malware),
        );
        let mut stamp = Vec::new();
        if let Some(header) = &analysis.authentication {
            stamp.push(header.clone());
        }
        stamp.push(format!("X-Portcullis-Spam-Details: {details}\r\n"));
        stamp.push(format!(
            "X-Portcullis-Spam-Flag: {}\r\n",
            if spam_flag { "YES" } else { "NO" }
        ));
        stamp.push(format!(
            "X-Portcullis-Virus-Details: {}\r\n",
            if analysis.infected {
                "infected; EICAR-Test-File"
            } else {
                "clean"
            }
        ));
        stamp.push(format!("X-Portcullis-Orig-IP: {}\r\n", envelope.client_ip));
        let original_sender = match envelope.sender.as_str() {
            "" => "<>".to_string(),
            sender => headers::clean(sender),
        };
        stamp.push(format!("X-Portcullis-Orig-Sender: {original_sender}\r\n"));
        let per_recipient = self.config.copies == Copies::Recipient;
        let plan = RenderPlan {
            strip_forgeable: true,
            rewrite_links: self.config.rewrite_urls,
            stamp,
            issued_at: issued_at(envelope),
            per_recipient,
            seal: analysis.seal.clone().filter(|_| self.renderer.seals()),
        };

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
                for recipient in &envelope.recipients {
                    deliveries.push(delivery(vec![recipient.clone()], Some(recipient.clone())));
                }
            }
            Verdict::Deliver => deliveries.push(delivery(envelope.recipients.clone(), None)),
            Verdict::Quarantine { category, reason } => {
                hold = Some(NewHold {
                    message_ref: envelope.message_ref.clone(),
                    category: category.clone(),
                    reason: reason.clone(),
                    sender: envelope.sender.clone(),
                    recipients: envelope.recipients.clone(),
                    subject: analysis.subject.clone(),
                    expires_at: crate::store::now() + retention_days(category, &self.quarantine) * 86400,
                });
            }
            Verdict::Reject { .. } | Verdict::Discard { .. } => {}
        }
        let keys = self.keys();
        let recipients = envelope
            .recipients
            .iter()
            .map(|address| IndexedRecipient {
                address: address.clone(),
                reference: match (
                    per_recipient && verdict == Verdict::Deliver,
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
                subject: analysis.subject.clone(),
                recipients,
                urls: analysis.urls.clone(),
                symbols: analysis.symbols.clone(),
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

    /// Turns the rule and the scores into a verdict and the label stamped as `rule=`.
    fn decide(&self, context: &Analysis, scores: &Scores) -> (Verdict, String) {
        let thresholds = &self.config.thresholds;
        if let Some((name, action, message)) = &context.rule {
            let label = format!("transport:{name}");
            return match action {
                RuleAction::Reject => (
                    Verdict::Reject {
                        reply: format!(
                            "550 5.7.1 {}",
                            message
                                .as_deref()
                                .map(headers::clean)
                                .unwrap_or_else(|| "Message refused by policy".into())
                        ),
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
        if scores.malware >= thresholds.malware {
            return (
                Verdict::Quarantine {
                    category: "malware".into(),
                    reason: "malware: EICAR-Test-File".into(),
                },
                "malware".into(),
            );
        }
        // The allow list skips spam filtering; malware scanning above still applies.
        if context.symbols.iter().any(|s| s == "IP_ALLOW") {
            return (Verdict::Deliver, "allowlisted".into());
        }
        if scores.total() >= thresholds.reject {
            let reply = if context.symbols.iter().any(|s| s == "DMARC_POLICY_REJECT") {
                "550 5.7.1 Rejected by the sender domain's DMARC policy".to_string()
            } else {
                "550 5.7.1 Message refused as spam".to_string()
            };
            return (Verdict::Reject { reply }, "reject".into());
        }
        for (score, threshold, category) in [
            (scores.phish, thresholds.phish, "phish"),
            (scores.spam, thresholds.spam, "spam"),
            (scores.bulk, thresholds.bulk, "bulk"),
        ] {
            if score >= threshold {
                return (
                    Verdict::Quarantine {
                        category: category.into(),
                        reason: format!("{category} score {} >= {threshold}", round(score)),
                    },
                    category.into(),
                );
            }
        }
        (Verdict::Deliver, "notspam".into())
    }
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

/// The address inside a `From:` value (`Name <a@b>` or `a@b`).
fn address_of(from: &str) -> &str {
    match (from.rfind('<'), from.rfind('>')) {
        (Some(start), Some(end)) if start < end => from[start + 1..end].trim(),
        _ => from.trim(),
    }
}
