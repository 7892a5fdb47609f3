//! The configuration: one TOML file, typed once, every setting with a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything Portcullis reads from its configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Keys, the click log and the spool live here. Created owner-only on first use.
    pub data_dir: PathBuf,
    pub links: LinksConfig,
    pub rewrite: RewriteConfig,
    pub click: ClickConfig,
    pub admin: AdminConfig,
    pub reputation: ReputationConfig,
    pub smtp: SmtpConfig,
    pub dns: DnsConfig,
    pub pipeline: PipelineConfig,
    pub delivery: DeliveryConfig,
    pub quarantine: QuarantineConfig,
    pub attachments: crate::attachments::AttachmentsConfig,
    pub milter: crate::milter::MilterConfig,
    /// Push export to syslog collectors and files (`[[export]]`).
    pub export: Vec<crate::export::ExportConfig>,
    /// The mailbox provider that delivered messages are taken back from (`[mailbox]`).
    pub mailbox: Option<crate::mailbox::GraphConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("portcullis-data"),
            links: LinksConfig::default(),
            rewrite: RewriteConfig::default(),
            click: ClickConfig::default(),
            admin: AdminConfig::default(),
            reputation: ReputationConfig::default(),
            smtp: SmtpConfig::default(),
            dns: DnsConfig::default(),
            pipeline: PipelineConfig::default(),
            delivery: DeliveryConfig::default(),
            quarantine: QuarantineConfig::default(),
            attachments: Default::default(),
            milter: Default::default(),
            export: Vec::new(),
            mailbox: None,
        }
    }
}

/// How rewritten links look.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Public base URL of the click service; rewritten links start with `{base_url}/v1/`.
    pub base_url: String,
}

impl Default for LinksConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8025".into(),
        }
    }
}

/// What the rewriter touches and what it leaves alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewriteConfig {
    /// Destinations never rewritten: `example.com`, `*.example.com`, `*.example.com/public/*`,
    /// `https://host/path*`. `*` matches any run of characters; `*.` also matches the bare domain.
    pub do_not_rewrite: Vec<String>,
    /// Replace a foreign wrapper (Proofpoint, Safe Links) with the URL inside it instead of wrapping
    /// the foreign link as it stands. Either way the inner URL is recorded for the reputation check.
    pub unwrap_foreign: bool,
    /// Text parts larger than this (decoded) are left unrewritten and the message is flagged partial.
    pub max_part_bytes: usize,
    /// How many levels of base64/quoted-printable encoded `message/rfc822` attachments are opened.
    pub max_encoded_nesting: usize,
    /// How deep the MIME walk descends (multiparts and attached messages, encoded or not); deeper
    /// entities are left untouched and the message is flagged `too-deep`.
    pub max_depth: usize,
    /// How many MIME entities one message may have before the rest is left untouched.
    pub max_parts: usize,
}

impl Default for RewriteConfig {
    fn default() -> Self {
        Self {
            do_not_rewrite: Vec::new(),
            unwrap_foreign: false,
            max_part_bytes: 32 * 1024 * 1024,
            max_encoded_nesting: 8,
            max_depth: 100,
            max_parts: 100_000,
        }
    }
}

/// The admin listener: operators' endpoints (`/metrics`), kept off the public click listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Loopback by default; empty turns it off.
    pub listen: String,
    /// PEM certificate chain and private key: HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Mark the console's session cookie `Secure`: the default with TLS; set it when a TLS
    /// proxy sits in front of a plain-HTTP admin listener.
    pub secure_cookies: Option<bool>,
    /// The SIEM feeds answer an empty window with 204 and no body, as TAP does; some connectors
    /// (XSOAR, Elastic's cursor) need the JSON envelope with empty arrays instead: set this.
    pub siem_empty_envelope: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8026".into(),
            tls_cert: None,
            tls_key: None,
            secure_cookies: None,
            siem_empty_envelope: false,
        }
    }
}

/// The click service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickConfig {
    /// Address the click service listens on.
    pub listen: String,
    /// PEM certificate chain and private key: HTTPS when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `normal` (survives a process crash) or `full` (survives power loss).
    pub durability: crate::clicklog::Durability,
    /// The click log starts a new slice once the one being written has this many MiB of
    /// write-ahead log...
    pub log_slice_mib: u64,
    /// ...or is this many seconds old.
    pub log_slice_secs: u64,
    /// Shown on every page.
    pub organisation: String,
    pub logo_url: Option<String>,
    pub support_contact: Option<String>,
    /// The language of pages for people whose browser asks for none we have (`en`, `ja`, or
    /// one from `locales_dir`).
    pub default_language: String,
    /// More languages, or other words for ours: `<tag>.toml` files like `static/locales/en.toml`.
    pub locales_dir: Option<PathBuf>,
    /// How long a click-through link from a warning page stays valid.
    pub click_through_ttl_secs: u64,
    /// User agents of link scanners and prefetchers (substring, case-insensitive): answered with a
    /// page, never redirected, recorded as `prefetch`.
    pub prefetch_user_agents: Vec<String>,
    /// Structured logs as JSON lines.
    pub json_logs: bool,
    pub policy: ClickPolicy,
    /// A request's head (request line and header fields) must arrive whole within this. On a
    /// kept-alive connection it is counted from the previous response, so it is also how long an
    /// idle keep-alive connection is kept.
    pub header_timeout_ms: u64,
    /// Longest silence while reading anything else (a request body).
    pub read_timeout_ms: u64,
    /// Connections open at once; past it, new ones wait in the listen backlog. Keep it below the
    /// process's file descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// A TLS client must finish its handshake within this.
    pub tls_handshake_timeout_ms: u64,
}

impl Default for ClickConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8025".into(),
            tls_cert: None,
            tls_key: None,
            durability: crate::clicklog::Durability::Normal,
            log_slice_mib: 256,
            log_slice_secs: 3600,
            organisation: "Portcullis".into(),
            logo_url: None,
            support_contact: None,
            default_language: "en".into(),
            locales_dir: None,
            click_through_ttl_secs: 300,
            prefetch_user_agents: [
                "Microsoft Office",
                "MSOffice",
                "Safe Links",
                "BingPreview",
                "Proofpoint",
                "Mimecast",
                "Barracuda",
                "Slackbot",
                "facebookexternalhit",
                "Twitterbot",
                "LinkedInBot",
                "WhatsApp",
                "Googlebot",
                "SkypeUriPreview",
            ]
            .map(String::from)
            .to_vec(),
            json_logs: false,
            policy: ClickPolicy::default(),
            header_timeout_ms: 10_000,
            read_timeout_ms: 30_000,
            max_connections: 4096,
            tls_handshake_timeout_ms: 10_000,
        }
    }
}

/// What happens on a click, in the spirit of Safe Links policies. Flags signed into a link can
/// only make this stricter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickPolicy {
    /// Record who clicked (message and recipient references, client address, user agent).
    pub track_clicks: bool,
    /// Offer "continue anyway" on warning pages.
    pub allow_click_through: bool,
    /// When reputation cannot answer in time: true lets the click through, false blocks it.
    pub fail_open: bool,
    /// Destinations always permitted without a reputation check (same syntax as do_not_rewrite).
    pub allow_list: Vec<String>,
    /// Destinations always blocked.
    pub block_list: Vec<String>,
    /// Follow each destination's redirects at click time and check every hop
    /// (`[reputation.redirects]` sets the limits).
    pub follow_redirects: bool,
}

impl Default for ClickPolicy {
    fn default() -> Self {
        Self {
            track_clicks: true,
            allow_click_through: true,
            fail_open: true,
            allow_list: Vec::new(),
            block_list: Vec::new(),
            follow_redirects: false,
        }
    }
}

/// Reputation providers and their cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// One deadline for all providers together.
    pub deadline_ms: u64,
    /// Domains whose lookalikes are suspicious.
    pub protected_domains: Vec<String>,
    /// Local feed files.
    pub feeds: Vec<crate::reputation::FeedConfig>,
    /// How often feed files are checked for changes.
    pub feed_reload_secs: u64,
    /// When the feeds change, the links of messages delivered in this many days are checked
    /// again: one now listed is a post-delivery threat.
    pub retro_scan_days: u32,
    /// Google Safe Browsing v4 Lookup API.
    pub safe_browsing: Option<crate::reputation::SafeBrowsingConfig>,
    /// The URLhaus API.
    pub urlhaus: Option<crate::reputation::UrlhausConfig>,
    /// DNS domain blocklists.
    pub dnsbl: Option<crate::reputation::DnsblConfig>,
    /// Limits and the SSRF guard for following redirects (when `click.policy.follow_redirects`).
    pub redirects: crate::reputation::RedirectConfig,
    pub cache: crate::reputation::CacheConfig,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 1500,
            protected_domains: Vec::new(),
            feeds: Vec::new(),
            feed_reload_secs: 1,
            retro_scan_days: 14,
            safe_browsing: None,
            urlhaus: None,
            dnsbl: None,
            redirects: crate::reputation::RedirectConfig::default(),
            cache: crate::reputation::CacheConfig::default(),
        }
    }
}

/// The inbound SMTP server: where it listens, what it accepts, its limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Address the SMTP gateway listens on; empty turns the gateway off.
    pub listen: String,
    /// Name in the greeting, EHLO reply, `Received:` and `Authentication-Results` headers.
    pub hostname: String,
    /// PEM certificate chain and private key: STARTTLS is offered when both are set.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Recipient domains accepted (case-insensitive). Mail for any other domain is refused at RCPT
    /// (`550 5.7.1 relaying denied`): the gateway is never an open relay.
    pub domains: Vec<String>,
    /// A static list of valid addresses; when non-empty only these are accepted.
    pub recipients: Vec<String>,
    /// Ask the downstream host (`RCPT TO` without sending) whether an address exists, cached.
    pub recipient_callout: bool,
    pub callout_cache_secs: u64,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    /// Commands per connection before it is closed (`421 4.7.0`).
    pub max_commands: usize,
    /// Syntax errors and refused commands per connection before it is closed.
    pub max_errors: usize,
    /// Seconds without a complete command (or DATA progress) before the connection is closed.
    pub idle_timeout_secs: u64,
    /// Seconds a whole connection may last.
    pub session_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Messages with more `Received:` headers than this are refused as a mail loop.
    pub max_hops: usize,
    /// What a bare LF (or bare CR) in DATA does: `reject` or `normalize` (to CRLF). It never ends DATA.
    pub bare_newline: NewlinePolicy,
    /// What a NUL byte in DATA does: `reject` or `strip`.
    pub nul: NulPolicy,
    /// Client addresses or CIDR ranges that skip spam filtering (malware scanning still runs).
    pub allow_ips: Vec<String>,
    /// Client addresses or CIDR ranges refused at connect.
    pub block_ips: Vec<String>,
    /// IP blocklist zones (Spamhaus ZEN style) asked at connect for the client's address.
    pub dnsbl_zones: Vec<String>,
    /// `reject`: a listed client is refused at connect; `score`: it gets a `DNSBL_<zone>` symbol.
    pub dnsbl_action: DnsblAction,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            hostname: "portcullis.localhost".into(),
            tls_cert: None,
            tls_key: None,
            domains: vec!["example.com".into()],
            recipients: Vec::new(),
            recipient_callout: false,
            callout_cache_secs: 3600,
            max_message_bytes: 36_700_160,
            max_recipients: 100,
            max_commands: 1000,
            max_errors: 10,
            idle_timeout_secs: 300,
            session_timeout_secs: 1800,
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_hops: 50,
            bare_newline: NewlinePolicy::Reject,
            nul: NulPolicy::Reject,
            allow_ips: Vec::new(),
            block_ips: Vec::new(),
            dnsbl_zones: Vec::new(),
            dnsbl_action: DnsblAction::Reject,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewlinePolicy {
    Reject,
    Normalize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NulPolicy {
    Reject,
    Strip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsblAction {
    Reject,
    Score,
}

/// The resolver the gateway uses for IP blocklists and SPF/DKIM/DMARC.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `address:port` of the resolvers to ask; empty uses the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<String>,
    /// Seconds a DNS query may take.
    pub timeout_secs: u64,
}

/// The filtering pipeline: its time budget, symbol weights, thresholds and transport rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Milliseconds the pipeline may take before the DATA reply. Past it the message is accepted
    /// (250) and finishes filtering from the spool; a reject verdict then becomes a quarantine.
    pub time_budget_ms: u64,
    /// `recipient`: one rewritten copy per recipient, so every click is attributed; `message`: one
    /// copy for all recipients, links carry only the message reference.
    pub copies: Copies,
    /// Verify SPF, DKIM and DMARC.
    pub authenticate: bool,
    /// Rewrite links (URL Defense).
    pub rewrite_urls: bool,
    /// Symbol weights and categories; merged over the built-in table. A name ending in `*` is a prefix.
    pub symbols: std::collections::BTreeMap<String, crate::pipeline::SymbolWeight>,
    pub thresholds: crate::pipeline::Thresholds,
    /// Transport rules, run by priority; the first that matches with a final action decides.
    pub rules: Vec<crate::pipeline::TransportRule>,
    /// The operator's own sensitive-information types, for transport rules' `sensitive`.
    pub sensitive_types: Vec<crate::pipeline::rules::SensitiveType>,
    /// Seal every copy with an ARC set (two RSA signatures a message): what lets Exchange Online
    /// trust our authentication results when we sit in front of it. Off where no next hop reads ARC.
    pub arc_seal: bool,
    /// `d=` and `s=` of the gateway's ARC seal; the domain defaults to `smtp.hostname`.
    pub arc_domain: Option<String>,
    pub arc_selector: String,
    /// Deepest MIME nesting (multiparts and attached messages) any stage gets to see. A deeper
    /// message is refused at DATA (554 5.6.0), or held as `damaged` when it can no longer be.
    pub max_nesting: usize,
    /// Messages filtered at once; past it the DATA reply is `451 4.3.2` and nothing is accepted.
    pub max_in_flight: usize,
    /// Attempts at filtering one message before it is held as `damaged` with the error.
    pub max_attempts: u32,
    /// What malware gets: `quarantine` (admins only may release it, as Exchange Online Protection
    /// does) or `reject` (refused at DATA with 550 5.7.1; held instead when the reply has gone).
    pub malware: MalwareAction,
    /// People whose name on mail from outside our domains is impersonation (`FROM_VIP_NAME_OUTSIDE`):
    /// "Jane Smith", matched whatever the order of the words, case and punctuation.
    pub vip_names: Vec<String>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            time_budget_ms: 30_000,
            copies: Copies::Recipient,
            authenticate: true,
            rewrite_urls: true,
            symbols: Default::default(),
            thresholds: Default::default(),
            rules: Vec::new(),
            sensitive_types: Vec::new(),
            arc_domain: None,
            arc_seal: true,
            arc_selector: "portcullis".into(),
            max_nesting: 64,
            max_in_flight: 64,
            max_attempts: 3,
            malware: MalwareAction::Quarantine,
            vip_names: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MalwareAction {
    Quarantine,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Copies {
    Recipient,
    Message,
}

/// Relaying accepted mail to the downstream mailbox host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// `host:port` of the downstream hosts, tried in order.
    pub relay: Vec<String>,
    /// `required`: never send without STARTTLS; `opportunistic`: use it when offered; `off`.
    pub tls: TlsMode,
    /// Check the downstream certificate and name. Only turn off for a lab.
    pub verify_certificates: bool,
    /// Extra PEM trust anchors for the downstream certificate (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Name checked in the downstream certificate (default: the host part of the relay address).
    pub tls_name: Option<String>,
    /// Concurrent delivery connections.
    pub workers: usize,
    /// Seconds between attempts after a temporary failure; the last value repeats.
    pub retry_secs: Vec<u64>,
    /// Seconds after which a message still undelivered is given up and bounced with a DSN.
    pub max_age_secs: u64,
    pub connect_timeout_secs: u64,
    /// Seconds a reply from the downstream may take.
    pub command_timeout_secs: u64,
    /// Where delivery status notifications go (`host:port`); empty uses `relay`.
    pub dsn_relay: Vec<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            relay: vec!["127.0.0.1:25".into()],
            tls: TlsMode::Opportunistic,
            verify_certificates: true,
            ca_file: None,
            tls_name: None,
            workers: 4,
            retry_secs: vec![60, 300, 900, 1800, 3600],
            max_age_secs: 5 * 86400,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            dsn_relay: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Required,
    Opportunistic,
    Off,
}

/// How long held messages are kept, per category (Exchange Online Protection's defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// Spam and bulk: 1 to 30 days. Malware and phish are kept 15 days, transport rules 7: fixed.
    pub spam_retention_days: u32,
    pub bulk_retention_days: u32,
    /// The recipients' periodic digest of what is held for them (`[quarantine.digest]`).
    pub digest: crate::digest::DigestConfig,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            spam_retention_days: 15,
            bulk_retention_days: 15,
            digest: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl PipelineConfig {
    /// The symbols transport rules add that are not in the registry: the operator's own.
    pub fn custom_symbols(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter_map(|rule| rule.symbol.as_ref())
            .filter(|symbol| crate::pipeline::symbols::registered(&symbol.to_ascii_uppercase()).is_none())
            .cloned()
            .collect()
    }
}

impl Config {
    /// What the console's settings page shows: every listener, limit and policy, and which
    /// providers and feeds are on. Key material and provider credentials are not in it (keys
    /// live in files under the data directory; API keys are named, not shown).
    pub fn settings_view(&self) -> serde_json::Value {
        let word = |value: &dyn std::fmt::Debug| format!("{value:?}").to_lowercase();
        let providers: Vec<&str> = [
            self.reputation.safe_browsing.as_ref().map(|_| "safe_browsing"),
            self.reputation.urlhaus.as_ref().map(|_| "urlhaus"),
            self.reputation.dnsbl.as_ref().map(|_| "dnsbl"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let policy = &self.click.policy;
        serde_json::json!({
            "smtp": {
                "listen": self.smtp.listen,
                "hostname": self.smtp.hostname,
                "domains": self.smtp.domains,
                "starttls": self.smtp.tls_cert.is_some(),
                "max_message_bytes": self.smtp.max_message_bytes,
                "max_recipients": self.smtp.max_recipients,
                "max_connections": self.smtp.max_connections,
                "max_connections_per_ip": self.smtp.max_connections_per_ip,
                "dnsbl_zones": self.smtp.dnsbl_zones,
                "dnsbl_action": word(&self.smtp.dnsbl_action),
            },
            "click_service": {
                "listen": self.click.listen,
                "link_base": self.links.base_url,
                "https": self.click.tls_cert.is_some(),
                "durability": word(&self.click.durability),
                "organisation": self.click.organisation,
                "support_contact": self.click.support_contact,
                "default_language": self.click.default_language,
                "track_clicks": policy.track_clicks,
                "allow_click_through": policy.allow_click_through,
                "fail_open": policy.fail_open,
                "follow_redirects": policy.follow_redirects,
                "allow_list": policy.allow_list,
                "block_list": policy.block_list,
            },
            "reputation": {
                "deadline_ms": self.reputation.deadline_ms,
                "providers": providers,
                "feeds": self.reputation.feeds.iter().map(|feed| feed.name.clone().unwrap_or_else(|| feed.path.display().to_string())).collect::<Vec<_>>(),
                "protected_domains": self.reputation.protected_domains,
                "cache_entries": self.reputation.cache.max_entries,
            },
            "pipeline": {
                "authenticate": self.pipeline.authenticate,
                "rewrite_urls": self.pipeline.rewrite_urls,
                "thresholds": self.pipeline.thresholds,
                "transport_rules": self.pipeline.rules.iter().map(|rule| rule.name.clone()).collect::<Vec<_>>(),
                "malware": word(&self.pipeline.malware),
                "time_budget_ms": self.pipeline.time_budget_ms,
            },
            "delivery": {
                "relay": self.delivery.relay,
                "tls": word(&self.delivery.tls),
                "verify_certificates": self.delivery.verify_certificates,
                "retry_secs": self.delivery.retry_secs,
                "max_age_secs": self.delivery.max_age_secs,
            },
            "quarantine": {
                "spam_retention_days": self.quarantine.spam_retention_days,
                "bulk_retention_days": self.quarantine.bulk_retention_days,
                "digest": {
                    "enabled": self.quarantine.digest.enabled,
                    "every_hours": self.quarantine.digest.every_hours,
                    "categories": self.quarantine.digest.categories,
                    "link_days": self.quarantine.digest.link_days,
                    "from": self.quarantine.digest.from_address(&self.smtp.hostname),
                },
            },
            "admin": {
                "listen": self.admin.listen,
                "https": self.admin.tls_cert.is_some(),
                "secure_cookies": self.admin.secure_cookies.unwrap_or(self.admin.tls_cert.is_some()),
            },
            "data_dir": self.data_dir.display().to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.into(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what the types cannot say.
    pub fn validate(&self) -> Result<(), String> {
        for (name, days) in [
            ("spam_retention_days", self.quarantine.spam_retention_days),
            ("bulk_retention_days", self.quarantine.bulk_retention_days),
        ] {
            if !(1..=30).contains(&days) {
                return Err(format!("quarantine.{name} must be 1 to 30 days, not {days}"));
            }
        }
        self.quarantine.digest.check()?;
        if self.delivery.retry_secs.is_empty() {
            return Err("delivery.retry_secs needs at least one value".into());
        }
        let catalogs = crate::i18n::Catalogs::load(self.click.locales_dir.as_deref(), &self.click.default_language)
            .map_err(|e| format!("click: {e}"))?;
        if let Some((who, tag)) = self
            .quarantine
            .digest
            .languages
            .iter()
            .find(|(_, tag)| !catalogs.has(tag))
        {
            return Err(format!(
                "quarantine.digest.languages: {who} asks for {tag:?}, which has no catalog"
            ));
        }
        for (i, export) in self.export.iter().enumerate() {
            export.check()?;
            if self.export[..i].iter().any(|other| other.name == export.name) {
                return Err(format!("export {}: two exports have this name", export.name));
            }
        }
        for range in self.smtp.allow_ips.iter().chain(&self.smtp.block_ips) {
            range.parse::<crate::smtp::IpRange>()?;
        }
        crate::pipeline::SymbolTable::new(&self.pipeline.symbols, &self.pipeline.custom_symbols())?;
        if self.attachments.max_files == 0 || self.attachments.max_expanded_mib == 0 {
            return Err("attachments.max_files and attachments.max_expanded_mib must be at least 1".into());
        }
        if self
            .attachments
            .clamav
            .as_ref()
            .is_some_and(|clamav| clamav.timeout_ms == 0)
        {
            return Err("attachments.clamav.timeout_ms must be at least 1".into());
        }
        crate::pipeline::rules::compile(&self.pipeline.rules, &self.pipeline.sensitive_types)
            .map_err(|e| e.to_string())?;
        crate::attachments::engines::Signatures::load(&self.attachments.signature_files).map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference in docs/config.md is a real configuration: it must parse and match the defaults.
    #[test]
    fn documented_configuration_parses() {
        let doc = include_str!("../docs/config.md");
        let start = doc.find("```toml\n").expect("toml block") + "```toml\n".len();
        let end = start + doc[start..].find("```").expect("closing fence");
        let config = Config::parse(&doc[start..end]).expect("docs/config.md parses");
        let defaults = Config::default();
        assert_eq!(config.click.listen, defaults.click.listen);
        assert_eq!(
            config.reputation.redirects.blocked_ranges,
            defaults.reputation.redirects.blocked_ranges
        );
        assert_eq!(config.click.prefetch_user_agents, defaults.click.prefetch_user_agents);
        assert_eq!(config.rewrite.max_parts, defaults.rewrite.max_parts);
        assert_eq!(config.smtp.listen, defaults.smtp.listen);
        assert_eq!(config.smtp.max_message_bytes, defaults.smtp.max_message_bytes);
        assert_eq!(config.delivery.retry_secs, defaults.delivery.retry_secs);
        assert_eq!(config.delivery.max_age_secs, defaults.delivery.max_age_secs);
        assert_eq!(config.pipeline.thresholds.reject, defaults.pipeline.thresholds.reject);
        assert_eq!(config.pipeline.time_budget_ms, defaults.pipeline.time_budget_ms);
        assert_eq!(config.attachments.blocked_types, defaults.attachments.blocked_types);
        assert_eq!(
            config.attachments.max_expanded_mib,
            defaults.attachments.max_expanded_mib
        );
        assert_eq!(config.attachments.qr_codes, defaults.attachments.qr_codes);
        assert_eq!(format!("{:?}", config.milter), format!("{:?}", defaults.milter));
        assert_eq!(config.pipeline.malware, defaults.pipeline.malware);
        config.validate().expect("documented configuration is valid");
    }

    /// The production configuration shipped in `deploy/` is real too: it parses and validates.
    #[test]
    fn shipped_production_configuration_is_valid() {
        let config = Config::parse(include_str!("../deploy/portcullis.toml")).expect("deploy/portcullis.toml parses");
        config.validate().expect("deploy/portcullis.toml is valid");
        assert_eq!(config.smtp.listen, "0.0.0.0:25");
        assert_eq!(config.delivery.tls, TlsMode::Required);
        assert!(config.attachments.clamav.is_some());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::parse("[click]\nlisten_on = \"x\"\n").is_err());
    }
}
