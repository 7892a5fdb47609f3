//! Following a destination's redirect chain at click time: bounded hops and time, HEAD only (a GET
//! can consume a one-time login or approval link before the user gets there) except for known URL
//! shorteners, and never to private, loopback, link-local, CGNAT or multicast addresses. The guard
//! runs on the addresses a hop resolves to, and the connection is pinned to exactly those, so DNS
//! cannot answer one address to the check and another to the connection.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::{Host, Url};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedirectConfig {
    pub max_hops: usize,
    /// Time for the whole chain (the reputation deadline still applies on top).
    pub timeout_ms: u64,
    /// Hosts fetched with GET, because they answer HEAD badly.
    pub shorteners: Vec<String>,
    /// Address ranges never connected to (CIDR).
    pub blocked_ranges: Vec<String>,
    /// Exact `address:port` exceptions to `blocked_ranges`.
    pub allowed_addresses: Vec<String>,
}

impl Default for RedirectConfig {
    fn default() -> Self {
        Self {
            max_hops: 5,
            timeout_ms: 3000,
            shorteners: [
                "bit.ly",
                "t.co",
                "tinyurl.com",
                "goo.gl",
                "ow.ly",
                "is.gd",
                "buff.ly",
                "rebrand.ly",
                "cutt.ly",
                "t.ly",
                "lnkd.in",
                "bitly.com",
                "shorturl.at",
                "rb.gy",
                "tiny.cc",
                "s.id",
                "v.gd",
                "bl.ink",
                "soo.gd",
                "qrco.de",
                "urlz.fr",
            ]
            .map(String::from)
            .to_vec(),
            blocked_ranges: [
                "0.0.0.0/8",
                "10.0.0.0/8",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "172.16.0.0/12",
                "192.0.0.0/24",
                "192.168.0.0/16",
                "198.18.0.0/15",
                "224.0.0.0/4",
                "240.0.0.0/4",
                "::/128",
                "::1/128",
                "fc00::/7",
                "fe80::/10",
                "ff00::/8",
            ]
            .map(String::from)
            .to_vec(),
            allowed_addresses: Vec::new(),
        }
    }
}

/// One CIDR range.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = text.trim().split_once('/')?;
        let network: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Where a chain went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// A redirect to this URL (already resolved against the previous one).
    Redirect(Url),
    /// The next hop would connect to a blocked address.
    Blocked { url: Url, address: String },
}

pub struct RedirectFollower {
    config: RedirectConfig,
    blocked: Vec<Cidr>,
    allowed: Vec<SocketAddr>,
}

impl RedirectFollower {
    pub fn new(config: RedirectConfig) -> Self {
        let blocked = config.blocked_ranges.iter().filter_map(|r| Cidr::parse(r)).collect();
        let allowed = config.allowed_addresses.iter().filter_map(|a| a.parse().ok()).collect();
        Self {
            config,
            blocked,
            allowed,
        }
    }

    fn permitted(&self, address: SocketAddr) -> bool {
        // IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
        let ip = match address.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.allowed.contains(&SocketAddr::new(ip, address.port())) || !self.blocked.iter().any(|c| c.contains(ip))
    }

    /// Follows `start`'s redirects and returns every hop after it, in order.
    pub async fn follow(&self, start: &Url) -> Vec<Hop> {
        let deadline = Instant::now() + Duration::from_millis(self.config.timeout_ms);
        let mut hops = Vec::new();
        let mut current = start.clone();
        for _ in 0..self.config.max_hops {
            let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            let (host, port) = match (current.host(), current.port_or_known_default()) {
                (Some(host), Some(port)) => (host.to_owned(), port),
                _ => break,
            };
            let addresses: Vec<SocketAddr> = match &host {
                Host::Ipv4(ip) => vec![SocketAddr::new((*ip).into(), port)],
                Host::Ipv6(ip) => vec![SocketAddr::new((*ip).into(), port)],
                Host::Domain(name) => {
                    match tokio::time::timeout(remaining, tokio::net::lookup_host((name.as_str(), port))).await {
                        Ok(Ok(found)) => found.collect(),
                        _ => break,
                    }
                }
            };
            let permitted: Vec<SocketAddr> = addresses.iter().copied().filter(|a| self.permitted(*a)).collect();
            if permitted.is_empty() {
                // A redirect into a blocked address: that hop (recorded as a redirect when it was
                // found) becomes a blocked one. The start itself is the user's own choice.
                if let Some(last) = hops.last_mut() {
                    let address = addresses.first().map_or_else(String::new, ToString::to_string);
                    *last = Hop::Blocked { url: current, address };
                }
                break;
            }
            let Some(next) = self.hop(&current, &host, &permitted, remaining).await else {
                break;
            };
            hops.push(Hop::Redirect(next.clone()));
            current = next;
        }
        hops
    }

    /// One request, pinned to the checked addresses; the next URL when the answer is a redirect.
    async fn hop(&self, url: &Url, host: &Host, addresses: &[SocketAddr], remaining: Duration) -> Option<Url> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(remaining);
        if let Host::Domain(name) = host {
            builder = builder.resolve_to_addrs(name, addresses);
        }
        let client = builder.build().ok()?;
        let name = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let shortener = self
            .config
            .shorteners
            .iter()
            .any(|s| name == *s || name.ends_with(&format!(".{s}")));
        let request = if shortener {
            client.get(url.clone())
        } else {
            client.head(url.clone())
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(%error, %url, "redirect hop failed");
                return None;
            }
        };
        if !response.status().is_redirection() {
            return None;
        }
        let location = response.headers().get(reqwest::header::LOCATION)?.to_str().ok()?;
        url.join(location)
            .ok()
            .filter(|next| matches!(next.scheme(), "http" | "https"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ranges_block_internal_addresses() {
        let follower = RedirectFollower::new(RedirectConfig {
            allowed_addresses: vec!["127.0.0.1:8080".into()],
            ..Default::default()
        });
        let blocked = |a: &str| !follower.permitted(a.parse().unwrap());
        for address in [
            "127.0.0.1:80",
            "10.1.2.3:443",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "192.168.1.1:80",
            "224.0.0.1:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fc00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "0.0.0.0:80",
        ] {
            assert!(blocked(address), "{address}");
        }
        for address in ["93.184.216.34:443", "[2606:2800:220:1::1]:443", "127.0.0.1:8080"] {
            assert!(!blocked(address), "{address}");
        }
    }
}
