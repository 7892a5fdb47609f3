//! Symbols, their weights and categories, and the thresholds that turn scores into a verdict.
//! Weights are data: the built-in table below is merged with `[pipeline.symbols]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Spam,
    Phish,
    Bulk,
    Malware,
    /// Suspicious but not yet spam: reported as `suspectscore`, never decides alone.
    Suspect,
    /// Informational: recorded and stamped, weight ignored.
    Info,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Spam => "spam",
            Category::Phish => "phish",
            Category::Bulk => "bulk",
            Category::Malware => "malware",
            Category::Suspect => "suspect",
            Category::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolWeight {
    pub weight: f64,
    pub category: Category,
}

/// Score at or above which each verdict applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Spam + phish + bulk at or above this is refused at DATA with a 5xx.
    pub reject: f64,
    pub spam: f64,
    pub phish: f64,
    pub bulk: f64,
    pub malware: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            reject: 15.0,
            spam: 6.0,
            phish: 6.0,
            bulk: 7.0,
            malware: 1.0,
        }
    }
}

/// The built-in weights. A name ending in `*` matches every symbol with that prefix.
const BUILT_IN: &[(&str, f64, Category)] = &[
    ("IP_ALLOW", 0.0, Category::Info),
    ("IP_BLOCK", 100.0, Category::Spam),
    ("DNSBL_*", 10.0, Category::Spam),
    ("SPF_PASS", -0.5, Category::Spam),
    ("SPF_FAIL", 3.0, Category::Spam),
    ("SPF_SOFTFAIL", 1.0, Category::Spam),
    ("SPF_NEUTRAL", 0.0, Category::Spam),
    ("SPF_NONE", 0.5, Category::Spam),
    ("SPF_TEMPERROR", 0.0, Category::Info),
    ("SPF_PERMERROR", 0.5, Category::Spam),
    ("DKIM_PASS", -0.5, Category::Spam),
    ("DKIM_FAIL", 1.0, Category::Spam),
    ("DKIM_NEUTRAL", 0.0, Category::Info),
    ("DKIM_NONE", 0.0, Category::Info),
    ("DKIM_TEMPERROR", 0.0, Category::Info),
    ("DKIM_PERMERROR", 0.5, Category::Spam),
    ("DMARC_PASS", -1.0, Category::Phish),
    ("DMARC_NONE", 0.0, Category::Info),
    ("DMARC_POLICY_NONE", 1.0, Category::Phish),
    ("DMARC_POLICY_QUARANTINE", 6.0, Category::Phish),
    ("DMARC_POLICY_REJECT", 15.0, Category::Phish),
    ("DMARC_TEMPERROR", 0.0, Category::Info),
    ("DMARC_PERMERROR", 0.0, Category::Info),
    ("ARC_PASS", 0.0, Category::Info),
    ("ARC_FAIL", 0.0, Category::Info),
    ("EICAR", 100.0, Category::Malware),
    ("URL_REWRITTEN", 0.0, Category::Info),
    ("URL_SKIPPED_SIGNED", 0.0, Category::Info),
];

/// Weights looked up by symbol name.
#[derive(Debug, Clone)]
pub struct SymbolTable {
    exact: BTreeMap<String, SymbolWeight>,
    prefixes: Vec<(String, SymbolWeight)>,
}

impl SymbolTable {
    pub fn new(overrides: &BTreeMap<String, SymbolWeight>) -> Self {
        let mut all: BTreeMap<String, SymbolWeight> = BUILT_IN
            .iter()
            .map(|&(name, weight, category)| (name.to_string(), SymbolWeight { weight, category }))
            .collect();
        all.extend(overrides.iter().map(|(k, v)| (k.to_ascii_uppercase(), *v)));
        let mut table = SymbolTable {
            exact: BTreeMap::new(),
            prefixes: Vec::new(),
        };
        for (name, weight) in all {
            match name.strip_suffix('*') {
                Some(prefix) => table.prefixes.push((prefix.to_string(), weight)),
                None => {
                    table.exact.insert(name, weight);
                }
            }
        }
        // Longest prefix first, so a specific `DNSBL_ZEN_*` beats `DNSBL_*`.
        table
            .prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        table
    }

    /// The weight of a symbol; symbols nobody weighed are informational.
    pub fn weight(&self, symbol: &str) -> SymbolWeight {
        if let Some(weight) = self.exact.get(symbol) {
            return *weight;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| symbol.starts_with(prefix.as_str()))
            .map(|(_, weight)| *weight)
            .unwrap_or(SymbolWeight {
                weight: 0.0,
                category: Category::Info,
            })
    }
}

/// The summed score of each category.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub spam: f64,
    pub phish: f64,
    pub bulk: f64,
    pub malware: f64,
    pub suspect: f64,
}

impl Scores {
    pub fn of(symbols: &[String], table: &SymbolTable) -> Scores {
        let mut scores = Scores::default();
        for symbol in symbols {
            let SymbolWeight { weight, category } = table.weight(symbol);
            match category {
                Category::Spam => scores.spam += weight,
                Category::Phish => scores.phish += weight,
                Category::Bulk => scores.bulk += weight,
                Category::Malware => scores.malware += weight,
                Category::Suspect => scores.suspect += weight,
                Category::Info => {}
            }
        }
        scores
    }

    /// Spam, phish and bulk together: what the reject threshold is compared with.
    pub fn total(&self) -> f64 {
        self.spam + self.phish + self.bulk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_prefixes() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "dnsbl_zen_spamhaus_org".to_string(),
            SymbolWeight {
                weight: 20.0,
                category: Category::Spam,
            },
        );
        let table = SymbolTable::new(&overrides);
        assert_eq!(table.weight("DNSBL_ZEN_SPAMHAUS_ORG").weight, 20.0);
        assert_eq!(table.weight("DNSBL_OTHER").weight, 10.0);
        assert_eq!(table.weight("NOBODY_KNOWS").category, Category::Info);
        let scores = Scores::of(
            &["SPF_FAIL".into(), "DMARC_POLICY_REJECT".into(), "EICAR".into()],
            &table,
        );
        assert_eq!(scores.spam, 3.0);
        assert_eq!(scores.phish, 15.0);
        assert_eq!(scores.malware, 100.0);
        assert_eq!(scores.total(), 18.0);
    }
}
