//! The connection filter, run once per connection before the greeting: the IP allow list (skips
//! spam filtering), the IP block list (refused) and DNS blocklists (refused, or scored).

use std::net::IpAddr;

use super::IpRange;
use crate::config::{DnsblAction, SmtpConfig};
use crate::pipeline::Resolver;

pub struct ConnectionFilter {
    allow: Vec<IpRange>,
    block: Vec<IpRange>,
    zones: Vec<String>,
    action: DnsblAction,
    resolver: Option<Resolver>,
}

/// What the filter decided about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Refuse with this reply and close.
    Refuse(String),
    /// Go on, with these symbols for the pipeline.
    Accept(Vec<String>),
}

impl ConnectionFilter {
    pub fn new(config: &SmtpConfig, resolver: Option<Resolver>) -> Result<Self, String> {
        let parse = |list: &[String]| list.iter().map(|r| r.parse()).collect::<Result<Vec<IpRange>, String>>();
        Ok(Self {
            allow: parse(&config.allow_ips)?,
            block: parse(&config.block_ips)?,
            zones: config
                .dnsbl_zones
                .iter()
                .map(|z| z.trim().trim_matches('.').to_ascii_lowercase())
                .filter(|z| !z.is_empty())
                .collect(),
            action: config.dnsbl_action,
            resolver,
        })
    }

    pub async fn admit(&self, ip: IpAddr) -> Admission {
        if self.allow.iter().any(|range| range.contains(ip)) {
            return Admission::Accept(vec!["IP_ALLOW".into()]);
        }
        if self.block.iter().any(|range| range.contains(ip)) {
            return Admission::Refuse(format!("554 5.7.1 Client address [{ip}] is blocked by policy"));
        }
        let mut symbols = Vec::new();
        let Some(resolver) = &self.resolver else {
            return Admission::Accept(symbols);
        };
        for zone in &self.zones {
            match resolver.ip_listed(ip, zone).await {
                Ok(true) if self.action == DnsblAction::Reject => {
                    return Admission::Refuse(format!(
                        "554 5.7.1 Service unavailable; client [{ip}] blocked using {zone}"
                    ));
                }
                Ok(true) => symbols.push(zone_symbol(zone)),
                Ok(false) => {}
                // A blocklist that cannot answer lists nobody: mail keeps flowing.
                Err(error) => tracing::warn!(%error, zone, "DNS blocklist lookup failed"),
            }
        }
        Admission::Accept(symbols)
    }
}

/// `zen.spamhaus.org` → `DNSBL_ZEN_SPAMHAUS_ORG`.
pub fn zone_symbol(zone: &str) -> String {
    let name: String = zone
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("DNSBL_{name}")
}
