//! DNS domain blocklists (Spamhaus DBL and SURBL style): the URL's host, and its registrable
//! domain, looked up as `<domain>.<zone>` A records through a real resolver.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Resolver, TokioResolver};
use serde::Deserialize;
use url::{Host, Url};

use super::{Category, Finding, Provider, ProviderError, ProviderFuture, Verdict};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblConfig {
    /// Zones such as `dbl.spamhaus.org` or `multi.surbl.org`.
    pub zones: Vec<String>,
    /// `address:port` of the resolvers to ask; empty uses the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<String>,
}

pub struct DnsBlocklists {
    zones: Vec<String>,
    resolver: TokioResolver,
}

impl DnsBlocklists {
    pub fn new(config: &DnsblConfig) -> Result<Self, String> {
        let mut options = ResolverOpts::default();
        options.attempts = 1;
        let resolver = if config.nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| e.to_string())?
                .with_options(options)
                .build()
        } else {
            let mut resolvers = ResolverConfig::new();
            for server in &config.nameservers {
                let address: SocketAddr = server.parse().map_err(|e| format!("nameserver {server}: {e}"))?;
                resolvers.add_name_server(NameServerConfig::new(address, Protocol::Udp));
            }
            Resolver::builder_with_config(resolvers, TokioConnectionProvider::default())
                .with_options(options)
                .build()
        };
        let zones = config
            .zones
            .iter()
            .map(|z| z.trim().trim_matches('.').to_ascii_lowercase())
            .filter(|z| !z.is_empty())
            .collect();
        Ok(Self { zones, resolver })
    }

    async fn lookup(&self, url: &Url) -> Result<Option<Finding>, ProviderError> {
        let Some(Host::Domain(host)) = url.host() else {
            return Ok(None);
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut candidates = vec![host.clone()];
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() > 2 {
            candidates.push(labels[labels.len() - 2..].join("."));
        }
        let mut worst: Option<Finding> = None;
        for zone in &self.zones {
            for candidate in &candidates {
                let query = format!("{candidate}.{zone}.");
                let answers = match self.resolver.ipv4_lookup(query.as_str()).await {
                    Ok(answers) => answers,
                    Err(error) if error.is_nx_domain() || error.is_no_records_found() => continue,
                    Err(error) => {
                        return Err(ProviderError {
                            provider: "dnsbl",
                            message: format!("{query}: {error}"),
                        });
                    }
                };
                for answer in answers.iter() {
                    let finding = classify(answer.0, zone, candidate).map_err(|message| ProviderError {
                        provider: "dnsbl",
                        message,
                    })?;
                    if worst.as_ref().is_none_or(|w| finding.verdict > w.verdict) {
                        worst = Some(finding);
                    }
                }
            }
        }
        Ok(worst)
    }
}

/// Reads a return code. Spamhaus DBL answers 127.0.1.x (2 spam, 4 phish, 5 malware, 6 botnet;
/// 102–106 the same for abused legitimate domains); SURBL answers 127.0.0.x as a bit mask (8 phish,
/// 16 malware, 64 abuse, 128 cracked). 127.0.1.255, 127.0.0.1 and 127.255.255.x are refusals.
fn classify(code: Ipv4Addr, zone: &str, domain: &str) -> Result<Finding, String> {
    let [a, b, c, d] = code.octets();
    if a != 127 || (b == 255 && c == 255) || (b == 0 && c == 1 && d == 255) || (b == 0 && c == 0 && d == 1) {
        return Err(format!("{zone} refused the query for {domain} ({code})"));
    }
    let (verdict, category) = match (c, d) {
        (1, 4 | 104) => (Verdict::Malicious, Category::Phish),
        (1, 5 | 6 | 105 | 106) => (Verdict::Malicious, Category::Malware),
        (1, _) => (Verdict::Suspicious, Category::Spam),
        (0, bits) if bits & 8 != 0 => (Verdict::Malicious, Category::Phish),
        (0, bits) if bits & 16 != 0 => (Verdict::Malicious, Category::Malware),
        _ => (Verdict::Suspicious, Category::Spam),
    };
    Ok(Finding {
        provider: "dnsbl",
        verdict,
        category,
        reason: format!("{domain} is listed on {zone} ({code})"),
    })
}

impl Provider for DnsBlocklists {
    fn name(&self) -> &'static str {
        "dnsbl"
    }

    fn check<'a>(&'a self, url: &'a Url) -> ProviderFuture<'a> {
        Box::pin(self.lookup(url))
    }
}
