//! Why a message got its verdict: every symbol with its group, weight and what triggered it, the
//! scores and the decision. What `portcullis scan` prints; the admin API will serve the same.

use serde::Serialize;

use crate::pipeline::symbols::{self, Hit, Scores, SymbolTable};
use crate::pipeline::{Outcome, Verdict};

/// One symbol as weighed.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub name: String,
    pub group: &'static str,
    pub weight: f64,
    /// What in this message triggered it.
    pub detail: String,
    /// What the symbol means (empty for the operator's own and `DNSBL_<ZONE>`).
    pub about: &'static str,
}

/// The decision and everything it was made from.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub verdict: &'static str,
    pub category: Option<String>,
    /// Why, in words: the quarantine reason, the reply text of a refusal, the discarding rule.
    pub reason: String,
    /// The `X-Portcullis-Spam-Details` value.
    pub details: String,
    pub scores: Scores,
    pub symbols: Vec<Explained>,
}

impl Explanation {
    pub fn new(outcome: &Outcome, hits: &[Hit], table: &SymbolTable) -> Explanation {
        let (category, reason) = match &outcome.verdict {
            Verdict::Deliver => (None, String::new()),
            Verdict::Quarantine { category, reason } => (Some(category.clone()), reason.clone()),
            Verdict::Reject { refusal } => (None, refusal.text()),
            Verdict::Discard { rule } => (None, format!("transport rule {rule}")),
        };
        Explanation {
            verdict: outcome.verdict.name(),
            category,
            reason,
            details: outcome.index.details.clone(),
            scores: Scores::of(hits.iter().map(|hit| hit.name.as_str()), table),
            symbols: hits
                .iter()
                .map(|hit| {
                    let weight = table.weight(&hit.name);
                    Explained {
                        name: hit.name.clone(),
                        group: weight.group.as_str(),
                        weight: weight.weight,
                        detail: hit.detail.clone(),
                        about: symbols::registered(&hit.name).map_or("", |symbol| symbol.about),
                    }
                })
                .collect(),
        }
    }

    /// The human-readable form: the verdict, the scores, one line per symbol.
    pub fn to_text(&self) -> String {
        let mut text = format!("verdict: {}", self.verdict);
        if let Some(category) = &self.category {
            text.push_str(&format!(" ({category})"));
        }
        if !self.reason.is_empty() {
            text.push_str(&format!(": {}", self.reason));
        }
        let s = &self.scores;
        text.push_str(&format!(
            "\nscores: spam {} phish {} bulk {} impostor {} malware {} suspect {}\n{}\n",
            s.spam, s.phish, s.bulk, s.impostor, s.malware, s.suspect, self.details
        ));
        for symbol in &self.symbols {
            text.push_str(&format!(
                "  {:<26} {:>+7.2} {:<8} {}\n",
                symbol.name, symbol.weight, symbol.group, symbol.detail
            ));
        }
        text
    }
}
