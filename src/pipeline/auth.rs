//! The authentication stage: SPF, DKIM, DMARC (and the ARC chain a message arrives with), verified
//! with mail-auth on the message exactly as received, through one real resolver whose cache is
//! shared by every message. Results become symbols and the `Authentication-Results` header.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};

use crate::config::DnsConfig;
use crate::pipeline::symbols::{self, Hit, Symbol};

/// The gateway's resolver: SPF, DKIM, DMARC and IP blocklist lookups all go through it, so its
/// cache serves them all.
#[derive(Clone)]
pub struct Resolver {
    pub authenticator: MessageAuthenticator,
}

impl Resolver {
    pub fn new(config: &DnsConfig) -> Result<Self, String> {
        let mut options = ResolverOpts::default();
        if config.timeout_secs > 0 {
            options.timeout = Duration::from_secs(config.timeout_secs);
        }
        options.attempts = 2;
        options.edns0 = true;
        let authenticator = if config.nameservers.is_empty() {
            MessageAuthenticator::new_system_conf()
                .or_else(|_| MessageAuthenticator::new(ResolverConfig::default(), options.clone()))
                .map_err(|e| format!("resolver: {e}"))?
        } else {
            let mut servers = Vec::new();
            for server in &config.nameservers {
                let address: SocketAddr = server.parse().map_err(|e| format!("nameserver {server}: {e}"))?;
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = address.port();
                servers.push(NameServerConfig::new(address.ip(), true, vec![udp, tcp]));
            }
            MessageAuthenticator::new(ResolverConfig::from_name_servers(servers), options)
                .map_err(|e| format!("resolver: {e}"))?
        };
        Ok(Resolver { authenticator })
    }

    /// SPF (RFC 7208) for a client, as section 2.3 recommends: the HELO identity first, and when
    /// it does not fail, MAIL FROM (for the null sender, `postmaster@<helo>`). A HELO name whose
    /// own record says fail makes the message fail. `hostname` is ours, for the explanation macros.
    pub async fn spf(&self, client_ip: IpAddr, helo: &str, hostname: &str, sender: &str) -> SpfOutput {
        self.authenticator
            .verify_spf(SpfParameters::verify(client_ip, helo, hostname, sender))
            .await
    }

    /// Whether `ip` is listed in the IP blocklist `zone` (`d.c.b.a.zone` has an A record in 127/8).
    pub async fn ip_listed(&self, ip: IpAddr, zone: &str) -> Result<bool, String> {
        let name = format!("{}.{}.", reversed(ip), zone.trim_end_matches('.'));
        match self.authenticator.resolver().ipv4_lookup(name.as_str()).await {
            Ok(answers) => Ok(answers
                .answers()
                .iter()
                .any(|record| matches!(&record.data, mail_auth::hickory_resolver::proto::rr::RData::A(a) if a.0.octets()[0] == 127))),
            Err(error) if error.is_nx_domain() || error.is_no_records_found() => Ok(false),
            Err(error) => Err(format!("{name}: {error}")),
        }
    }
}

/// The address in blocklist order: reversed octets, or reversed nibbles for IPv6.
fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0xf));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

/// What the authentication stage found.
pub struct Verdicts {
    pub symbols: Vec<Hit>,
    /// The `Authentication-Results` field (with its name and CRLF).
    pub header: String,
}

/// Verifies SPF (MAIL FROM, or HELO for the null sender), DKIM, ARC and DMARC, and returns the
/// symbols, the header, and the ARC result the seal needs.
pub async fn verify<'x>(
    resolver: &Resolver,
    message: &'x AuthenticatedMessage<'x>,
    hostname: &'x str,
    client_ip: IpAddr,
    helo: &str,
    sender: &str,
) -> (Verdicts, ArcOutput<'x>, AuthenticationResults<'x>) {
    let authenticator = &resolver.authenticator;
    let helo_domain = if helo.is_empty() { "unknown" } else { helo };
    let spf = resolver.spf(client_ip, helo_domain, hostname, sender).await;
    let dkim = authenticator.verify_dkim(message).await;
    let arc = authenticator.verify_arc(message).await;
    let mail_from_domain = sender.rsplit_once('@').map_or(helo_domain, |(_, domain)| domain);
    let dmarc = authenticator
        .verify_dmarc(DmarcParameters::new(message, &dkim, mail_from_domain, &spf))
        .await;

    let header_from = message.from();
    let spf_identity = if sender.is_empty() {
        format!("HELO {helo_domain}")
    } else {
        sender.to_string()
    };
    let mut symbols = vec![Hit::new(spf_symbol(&spf), format!("{spf_identity} from {client_ip}"))];
    let signers: Vec<String> = dkim
        .iter()
        .filter_map(|d| d.signature().map(|s| format!("d={} s={}", s.d, s.s)))
        .collect();
    symbols.push(Hit::new(
        dkim_symbol(dkim.iter().map(|d| d.result())),
        if signers.is_empty() {
            "no signature".to_string()
        } else {
            signers.join(", ")
        },
    ));
    if !arc.sets().is_empty() {
        let symbol = match arc.result() {
            DkimResult::Pass => &symbols::ARC_PASS,
            _ => &symbols::ARC_FAIL,
        };
        symbols.push(Hit::new(symbol, format!("{} ARC sets", arc.sets().len())));
    }
    symbols.push(Hit::new(dmarc_symbol(&dmarc), format!("header.from={header_from}")));

    let results = AuthenticationResults::new(hostname)
        .with_spf_mailfrom_result(&spf, client_ip, sender, helo_domain)
        .with_dkim_results(&dkim, header_from)
        .with_arc_result(&arc, client_ip)
        .with_dmarc_result(&dmarc);
    use mail_auth::common::headers::HeaderWriter;
    let header = results.to_header();
    (Verdicts { symbols, header }, arc, results)
}

fn spf_symbol(spf: &SpfOutput) -> &'static Symbol {
    match spf.result() {
        SpfResult::Pass => &symbols::SPF_PASS,
        SpfResult::Fail => &symbols::SPF_FAIL,
        SpfResult::SoftFail => &symbols::SPF_SOFTFAIL,
        SpfResult::Neutral => &symbols::SPF_NEUTRAL,
        SpfResult::TempError => &symbols::SPF_TEMPERROR,
        SpfResult::PermError => &symbols::SPF_PERMERROR,
        SpfResult::None => &symbols::SPF_NONE,
    }
}

/// The best DKIM result among the signatures: one passing signature is enough.
fn dkim_symbol<'a>(results: impl Iterator<Item = &'a DkimResult>) -> &'static Symbol {
    let rank = |result: &DkimResult| match result {
        DkimResult::Pass => 0,
        DkimResult::Fail(_) => 1,
        DkimResult::PermError(_) => 2,
        DkimResult::TempError(_) => 3,
        DkimResult::Neutral(_) => 4,
        DkimResult::None => 5,
    };
    const BY_RANK: [&Symbol; 6] = [
        &symbols::DKIM_PASS,
        &symbols::DKIM_FAIL,
        &symbols::DKIM_PERMERROR,
        &symbols::DKIM_TEMPERROR,
        &symbols::DKIM_NEUTRAL,
        &symbols::DKIM_NONE,
    ];
    BY_RANK[results.map(rank).min().unwrap_or(5)]
}

/// DMARC passes when SPF or DKIM passes aligned; a failure carries the domain's published policy.
fn dmarc_symbol(dmarc: &DmarcOutput) -> &'static Symbol {
    let (spf, dkim) = (dmarc.spf_result(), dmarc.dkim_result());
    if *spf == DmarcResult::Pass || *dkim == DmarcResult::Pass {
        return &symbols::DMARC_PASS;
    }
    if dmarc.dmarc_record().is_none() {
        return match (spf, dkim) {
            (DmarcResult::TempError(_), _) | (_, DmarcResult::TempError(_)) => &symbols::DMARC_TEMPERROR,
            (DmarcResult::PermError(_), _) | (_, DmarcResult::PermError(_)) => &symbols::DMARC_PERMERROR,
            _ => &symbols::DMARC_NONE,
        };
    }
    match dmarc.policy() {
        Policy::Reject => &symbols::DMARC_POLICY_REJECT,
        Policy::Quarantine => &symbols::DMARC_POLICY_QUARANTINE,
        Policy::None | Policy::Unspecified => &symbols::DMARC_POLICY_NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::reversed;

    #[test]
    fn blocklist_names() {
        assert_eq!(reversed("127.0.0.2".parse().unwrap()), "2.0.0.127");
        assert!(reversed("2001:db8::1".parse().unwrap()).starts_with("1.0.0.0."));
        assert!(reversed("2001:db8::1".parse().unwrap()).ends_with(".8.b.d.0.1.0.0.2"));
    }
}
