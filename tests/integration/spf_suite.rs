//! The SPF test suite that ships in the `mail-auth` crate's sources (`resources/spf/*.yml`: RFC 7208's
//! mechanisms, modifiers, macros, limits and errors), run through our own resolver seam
//! (`pipeline::Resolver::spf`, as the gateway calls it) against a local DNS server serving each
//! scenario's zone over the real wire protocol. Offline: nothing leaves loopback.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use mail_auth::SpfResult;
use portcullis::config::DnsConfig;
use portcullis::pipeline::Resolver;

use crate::server::{Record, dns_zone};

/// `resources/spf` of the mail-auth release we build with, in Cargo's registry.
fn suite_dir() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registry = home.join("registry/src");
    std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("{}: {e}", registry.display()))
        .flatten()
        .map(|index| index.path().join("mail-auth-0.13.3/resources/spf"))
        .find(|dir| dir.is_dir())
        .expect("mail-auth 0.13.3 sources in Cargo's registry")
}

/// The name a PTR query for `ip` asks about.
fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(ip) => {
            let nibbles: Vec<String> = ip
                .octets()
                .iter()
                .rev()
                .flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)])
                .collect();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
    }
}

fn address_record(ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(ip) => Record::A(ip.octets()),
        IpAddr::V6(ip) => Record::Aaaa(ip.octets()),
    }
}

struct Case {
    helo: String,
    sender: String,
    ip: IpAddr,
    result: SpfResult,
    explanation: String,
}

/// A zone and the cases run against it.
type Step = (Vec<(String, Record)>, Vec<Case>);

/// One part of a suite file, as steps: the zone as it stands and the cases run against it. A record
/// line replaces what its owner had of that type (as mail-auth's own harness fills its cache), and
/// cases after it see the new zone.
fn scenario(text: &str) -> (String, Vec<Step>) {
    let mut name = String::new();
    let mut zone: Vec<(String, Record)> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut changed = true;
    let (mut helo, mut sender, mut ip) = (String::new(), String::new(), IpAddr::from([127, 0, 0, 1]));
    let addresses = |data: &str| -> Vec<IpAddr> { data.split(',').map(|a| a.trim().parse().unwrap()).collect() };
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix('-').map_or(line, str::trim);
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let (owner, data) = value.split_once(' ').unwrap_or((value, ""));
        let (owner, data) = (owner.trim().to_ascii_lowercase(), data.trim());
        let mut replace = |owner: &str, qtype: u16, records: Vec<(String, Record)>| {
            zone.retain(|(n, r)| !(n == owner && r.qtype() == qtype));
            zone.extend(records);
            changed = true;
        };
        match key {
            "name" => name = value.to_string(),
            "spf" | "exp" => replace(&owner, 16, vec![(owner.clone(), Record::Text(data.to_string()))]),
            "a" | "aaaa" => {
                let records: Vec<(String, Record)> = addresses(data)
                    .into_iter()
                    .map(|ip| (owner.clone(), address_record(ip)))
                    .collect();
                replace(&owner, if key == "a" { 1 } else { 28 }, records);
            }
            "ptr" => {
                let reverse = reverse_name(owner.parse().unwrap());
                let records = data
                    .split(',')
                    .map(|target| (reverse.clone(), Record::Ptr(target.trim().to_string())))
                    .collect();
                replace(&reverse, 12, records);
            }
            "mx" => {
                let mut records = Vec::new();
                for (position, ip) in addresses(data).into_iter().enumerate() {
                    let exchange = format!("mx.{ip}.{position}").replace(':', "-");
                    replace(
                        &exchange,
                        if ip.is_ipv4() { 1 } else { 28 },
                        vec![(exchange.clone(), address_record(ip))],
                    );
                    records.push((owner.clone(), Record::Mx(position as u16 + 1, exchange)));
                }
                replace(&owner, 15, records);
            }
            "domain" => helo = value.to_string(),
            "sender" => sender = value.to_string(),
            "ip" => ip = value.parse().unwrap(),
            "expect" => {
                let (result, explanation) = value.split_once(' ').unwrap_or((value, ""));
                if changed || steps.is_empty() {
                    steps.push((zone.clone(), Vec::new()));
                    changed = false;
                }
                steps.last_mut().unwrap().1.push(Case {
                    helo: helo.clone(),
                    sender: sender.clone(),
                    ip,
                    result: SpfResult::try_from(result.trim()).unwrap_or_else(|_| panic!("result {result}")),
                    explanation: explanation.trim().to_string(),
                });
            }
            _ => {}
        }
    }
    (name, steps)
}

/// Cases that fail through a real resolver and why; each must keep failing exactly so (when
/// mail-auth fixes one, this list says to take it out).
/// Both are one defect: mail-auth compares the PTR name with the `ptr:` domain exactly, but a real
/// resolver returns the name fully qualified (`test.org.`), so an exact-domain match fails (a
/// subdomain match strips the dot and passes). Its own suite runs on a cache without the dot and
/// never sees it. `ptr` is deprecated by RFC 7208 (section 5.5, "SHOULD NOT be used").
const KNOWN_FAILURES: &[(&str, &str)] = &[
    ("ptr.yml: PTR domain match #1", "got Fail"),
    // `-include:` of a record whose `-ptr:example.com` should match: it does not, so the include
    // passes and the outer record fails.
    ("examples.yml: Multiple Requirements Example #34", "got Fail"),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_spf_test_suite_passes_through_our_resolver() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(suite_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "suite files: {files:?}");
    let (mut passed, mut failures) = (0, Vec::new());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for part in text.split("---\n") {
            let (name, steps) = scenario(part);
            let mut number = 0;
            for (zone, cases) in steps {
                // A fresh server and resolver per zone: its cache must not answer from the last one.
                let server = dns_zone(zone, Duration::ZERO).await;
                let resolver = Resolver::new(&DnsConfig {
                    nameservers: vec![server],
                    timeout_secs: 2,
                })
                .unwrap();
                for case in &cases {
                    number += 1;
                    let output = resolver.spf(case.ip, &case.helo, "localdomain.org", &case.sender).await;
                    let explanation = output.explanation().unwrap_or("");
                    if output.result() != case.result
                        || (!case.explanation.is_empty() && explanation != case.explanation)
                    {
                        failures.push(format!(
                            "{}: {name} #{number}: helo {} sender {:?} ip {}: got {:?} {explanation:?}, want {:?} {:?}",
                            file.file_name().unwrap().to_string_lossy(),
                            case.helo,
                            case.sender,
                            case.ip,
                            output.result(),
                            case.result,
                            case.explanation
                        ));
                    } else {
                        passed += 1;
                    }
                }
            }
        }
    }
    let unexpected: Vec<&String> = failures
        .iter()
        .filter(|f| {
            !KNOWN_FAILURES
                .iter()
                .any(|(case, how)| f.starts_with(case) && f.contains(how))
        })
        .collect();
    assert!(
        unexpected.is_empty() && failures.len() == KNOWN_FAILURES.len(),
        "{passed} passed, {} failed ({} known):\n{}",
        failures.len(),
        KNOWN_FAILURES.len(),
        failures.join("\n")
    );
    assert!(passed >= 100, "only {passed} cases found");
}
