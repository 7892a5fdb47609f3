//! The milter: Portcullis as a filter of an MTA that keeps its own queue (Postfix `smtpd_milters`,
//! Sendmail `INPUT_MAIL_FILTER`). It owns the milter listener (TCP or Unix socket), each MTA
//! connection's session — negotiation, macros, the envelope, headers and body collected (the body
//! spooled to disk past a threshold) — and the answer at end of message: accept with our edits
//! (forged fields removed, our fields stamped, links rewritten in a replaced body), hold (the
//! MTA's quarantine, and ours), discard, refuse or try later. The decision is the pipeline's, via
//! [`crate::inspect`], so it is the gateway's decision for the same message.
//!
//! Written on tokio rather than on the `miltr-server` crate: see `docs/deploy/postfix.md` for why.

pub mod edits;
pub mod protocol;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::inspect::{Filing, InspectError, Inspector};
use crate::pipeline::{Envelope, Verdict};
use edits::{Field, HeaderEdit};
use protocol::{Command, ProtocolError};

/// `[milter]`: the milter listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MilterConfig {
    /// `inet:host:port`, `host:port` or `unix:/path`; empty turns the milter off.
    pub listen: String,
    /// MTA connections at once (Postfix opens one per SMTP session); more are closed at once and
    /// the MTA applies its `milter_default_action`.
    pub max_connections: usize,
    /// Seconds an MTA connection may sit between commands (Postfix keeps it for the whole SMTP
    /// session, up to `smtpd_timeout`).
    pub idle_timeout_secs: u64,
    /// Seconds a packet, once started, may take to arrive.
    pub read_timeout_secs: u64,
    /// Seconds the decision at end of message may take before we answer "try again later". Keep
    /// it under the MTA's own (Postfix `milter_content_timeout`, 300 s).
    pub decision_timeout_secs: u64,
    /// Bodies past this many KiB are spooled to disk while they arrive, not held in memory.
    pub spool_after_kib: usize,
    /// Messages from senders who authenticated to the MTA (`{auth_authen}`) are accepted without
    /// scanning: they are outbound or internal.
    pub skip_authenticated: bool,
    /// Unix socket permissions (octal), so the MTA's user can connect.
    pub socket_mode: u32,
}

impl Default for MilterConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            max_connections: 256,
            idle_timeout_secs: 600,
            read_timeout_secs: 30,
            decision_timeout_secs: 120,
            spool_after_kib: 1024,
            skip_authenticated: true,
            socket_mode: 0o660,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MilterError {
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
}

/// The actions we ask for, of those the MTA offers.
const WANTED_ACTIONS: u32 = protocol::ACTION_ADD_HEADERS
    | protocol::ACTION_CHANGE_HEADERS
    | protocol::ACTION_CHANGE_BODY
    | protocol::ACTION_ADD_RECIPIENT
    | protocol::ACTION_DELETE_RECIPIENT
    | protocol::ACTION_QUARANTINE;

/// The steps we ask the MTA to leave unanswered (we decide once, at the end: no round trip holds
/// the session before it) or out, of those it offers.
const WANTED_STEPS: u32 = protocol::STEP_NO_REPLY_CONNECT
    | protocol::STEP_NO_REPLY_HELO
    | protocol::STEP_NO_REPLY_MAIL
    | protocol::STEP_NO_REPLY_RCPT
    | protocol::STEP_NO_REPLY_DATA
    | protocol::STEP_NO_REPLY_HEADER
    | protocol::STEP_NO_REPLY_EOH
    | protocol::STEP_NO_REPLY_BODY
    | protocol::STEP_NO_REPLY_UNKNOWN
    | protocol::STEP_NO_UNKNOWN
    | protocol::STEP_HEADER_LEADING_SPACE;

/// Macros kept per connection, and bytes per value: a bound on what an MTA can make us hold.
const MAX_MACROS: usize = 64;
const MAX_MACRO_BYTES: usize = 1024;
/// Header fields per message; more are refused (no real message has that many, and the comparison
/// of the header blocks grows with their square).
const MAX_HEADER_FIELDS: usize = 1000;
/// Bytes a header field is charged beyond its text (what keeping it costs).
const FIELD_OVERHEAD: usize = 64;
/// Bytes of a macro's name kept.
const MAX_MACRO_NAME: usize = 64;
/// Recipients per message, as the SMTP gateway allows.
const MAX_RECIPIENTS: usize = 1000;

/// Everything sessions share.
pub struct Milter {
    config: MilterConfig,
    inspector: Inspector,
    spool_dir: PathBuf,
    max_message_bytes: usize,
    connections: Arc<tokio::sync::Semaphore>,
}

/// A bound listener, TCP or Unix.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, PathBuf),
}

impl Listener {
    /// Binds `inet:host:port`, `host:port` or `unix:/path` (a stale socket file is replaced).
    pub async fn bind(address: &str, socket_mode: u32) -> Result<Listener, MilterError> {
        let error = |source| MilterError::Listen {
            address: address.to_string(),
            source,
        };
        #[cfg(unix)]
        if let Some(path) = address.strip_prefix("unix:").or_else(|| address.strip_prefix("local:")) {
            use std::os::unix::fs::PermissionsExt;
            let path = PathBuf::from(path);
            if std::fs::symlink_metadata(&path).is_ok_and(|meta| {
                use std::os::unix::fs::FileTypeExt;
                meta.file_type().is_socket()
            }) {
                std::fs::remove_file(&path).map_err(error)?;
            }
            let listener = tokio::net::UnixListener::bind(&path).map_err(error)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(socket_mode)).map_err(error)?;
            return Ok(Listener::Unix(listener, path));
        }
        let _ = socket_mode;
        let address = address.strip_prefix("inet:").unwrap_or(address);
        // Postfix writes `inet:host:port`; so do we, but `host:port` works too.
        Ok(Listener::Tcp(
            tokio::net::TcpListener::bind(address).await.map_err(error)?,
        ))
    }

    /// Where it listens, as an MTA would be told (`inet:127.0.0.1:8890`, `unix:/run/…`).
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(listener) => listener
                .local_addr()
                .map(|address| format!("inet:{address}"))
                .unwrap_or_else(|_| "inet:?".into()),
            #[cfg(unix)]
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

impl Milter {
    pub fn new(config: MilterConfig, inspector: Inspector, data_dir: &Path, max_message_bytes: usize) -> Milter {
        let connections = Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1)));
        Milter {
            config,
            inspector,
            spool_dir: data_dir.join("milter-spool"),
            max_message_bytes,
            connections,
        }
    }

    /// Serves MTA connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: Listener) {
        // Bodies a crash left behind belong to sessions that no longer exist.
        let _ = std::fs::remove_dir_all(&self.spool_dir);
        let mut pause = Duration::from_millis(5);
        loop {
            let accepted: std::io::Result<(Box<dyn Stream>, String)> = match &listener {
                Listener::Tcp(tcp) => tcp.accept().await.map(|(stream, peer)| {
                    let _ = stream.set_nodelay(true);
                    (Box::new(QuickAck(stream)) as Box<dyn Stream>, peer.to_string())
                }),
                #[cfg(unix)]
                Listener::Unix(unix, _) => unix
                    .accept()
                    .await
                    .map(|(stream, _)| (Box::new(stream) as Box<dyn Stream>, "unix".to_string())),
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    pause = Duration::from_millis(5);
                    accepted
                }
                Err(error) => {
                    tracing::warn!(%error, "milter accept failed");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let Ok(slot) = self.connections.clone().try_acquire_owned() else {
                // Closing at once lets the MTA apply its milter_default_action now, not after its
                // connect timeout.
                tracing::warn!(%peer, "milter connection refused: max_connections reached");
                continue;
            };
            let milter = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let mut session = Session::new(&milter);
                if let Err(error) = session.run(stream).await {
                    tracing::debug!(%peer, %error, "milter connection ended");
                }
            });
        }
    }
}

/// A TCP stream that acknowledges at once what it reads. The MTA writes each command as its own
/// small segment without waiting for an answer (the no-reply steps), so its Nagle algorithm holds
/// every segment after the first until that one is acknowledged; with Linux's delayed
/// acknowledgements that is up to 40 ms per message. Measured with `bench/milter.sh`: about 400
/// messages a second without this, as over a Unix socket with it.
struct QuickAck(tokio::net::TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // Not permanent in the kernel: set again before each read.
        #[cfg(target_os = "linux")]
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        std::pin::Pin::new(&mut self.0).poll_read(context, buffer)
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(context, buffer)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(context)
    }
}

/// A stream the milter speaks over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("{0} before option negotiation")]
    NotNegotiated(char),
    #[error("the MTA offers protocol version {0}; 2 to 6 are spoken")]
    Version(u32),
}

/// One MTA connection: what was negotiated and the message being collected.
struct Session<'a> {
    milter: &'a Milter,
    negotiated: Option<(u32, u32, u32)>,
    macros: HashMap<String, String>,
    client_ip: Option<IpAddr>,
    helo: String,
    message: Message,
}

/// The message being collected.
#[derive(Default)]
struct Message {
    sender: Option<String>,
    recipients: Vec<String>,
    headers: Vec<Field>,
    body: Option<Spooled>,
    size: usize,
    too_big: bool,
    too_many_fields: bool,
    /// The sender authenticated and is let through unscanned.
    skipped: bool,
}

impl<'a> Session<'a> {
    fn new(milter: &'a Milter) -> Session<'a> {
        Session {
            milter,
            negotiated: None,
            macros: HashMap::new(),
            client_ip: None,
            helo: String::new(),
            message: Message::default(),
        }
    }

    fn steps(&self) -> u32 {
        self.negotiated.map_or(0, |(_, _, steps)| steps)
    }

    fn actions(&self) -> u32 {
        self.negotiated.map_or(0, |(_, actions, _)| actions)
    }

    async fn run(&mut self, stream: Box<dyn Stream>) -> Result<(), SessionError> {
        // The MTA sends a message's commands back to back without waiting (no-reply steps): one
        // read takes many packets.
        let mut stream = tokio::io::BufReader::with_capacity(16 * 1024, stream);
        let mut packet = Vec::new();
        let idle = Duration::from_secs(self.milter.config.idle_timeout_secs.max(1));
        let read = Duration::from_secs(self.milter.config.read_timeout_secs.max(1));
        loop {
            // Until it negotiates, a peer gets no more time than a packet may take.
            let wait = if self.negotiated.is_some() { idle } else { read };
            match protocol::read_packet(&mut stream, &mut packet, wait, read).await? {
                None => return Ok(()),
                Some(Err(error)) => return Err(error.into()),
                Some(Ok(())) => {}
            }
            let command = protocol::parse(&packet)?;
            let code = command.code();
            if self.negotiated.is_none() && !matches!(command, Command::Negotiate { .. } | Command::Quit) {
                return Err(SessionError::NotNegotiated(code as char));
            }
            let replies = match command {
                Command::Quit => return Ok(()),
                Command::QuitKeepConnection => {
                    self.message = Message::default();
                    self.macros.clear();
                    self.client_ip = None;
                    self.helo.clear();
                    continue;
                }
                command => self.handle(command).await?,
            };
            if !replies.is_empty() {
                let write = Duration::from_secs(self.milter.config.read_timeout_secs.max(1));
                tokio::time::timeout(write, stream.write_all(&replies))
                    .await
                    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write"))??;
            }
        }
    }

    /// The replies to one command (empty when the MTA agreed not to wait for one).
    async fn handle(&mut self, command: Command<'_>) -> Result<Vec<u8>, SessionError> {
        let steps = self.steps();
        let no_reply = |flag: u32| steps & flag != 0;
        let cont = || protocol::packet(protocol::REPLY_CONTINUE, b"");
        // Continue, unless the MTA agreed not to wait for an answer to this step.
        let answer = |step: u32| if no_reply(step) { Vec::new() } else { cont() };
        Ok(match command {
            Command::Negotiate {
                version,
                actions,
                steps,
            } => {
                if !(2..=protocol::VERSION).contains(&version) {
                    return Err(SessionError::Version(version));
                }
                let version = version.min(protocol::VERSION);
                let (actions, steps) = (actions & WANTED_ACTIONS, steps & WANTED_STEPS);
                if actions & protocol::ACTION_CHANGE_BODY == 0 {
                    tracing::warn!("the MTA does not let the milter replace bodies: links will not be rewritten");
                }
                self.negotiated = Some((version, actions, steps));
                protocol::negotiate_reply(version, actions, steps)
            }
            Command::Macros { pairs, .. } => {
                for (name, value) in pairs {
                    let name = String::from_utf8_lossy(&name[..name.len().min(MAX_MACRO_NAME)])
                        .trim_matches(['{', '}'])
                        .to_string();
                    if self.macros.len() >= MAX_MACROS && !self.macros.contains_key(&name) {
                        continue;
                    }
                    let value = &value[..value.len().min(MAX_MACRO_BYTES)];
                    self.macros.insert(name, String::from_utf8_lossy(value).into_owned());
                }
                Vec::new()
            }
            Command::Connect { family, address, .. } => {
                self.client_ip = match family {
                    b'4' | b'6' => std::str::from_utf8(address)
                        .ok()
                        .map(|a| a.trim_start_matches("IPv6:"))
                        .and_then(|a| a.parse().ok()),
                    _ => None,
                };
                answer(protocol::STEP_NO_REPLY_CONNECT)
            }
            Command::Helo(name) => {
                self.helo = String::from_utf8_lossy(&name[..name.len().min(255)]).into_owned();
                answer(protocol::STEP_NO_REPLY_HELO)
            }
            Command::Mail(arguments) => {
                // A new message: whatever an earlier one left (no ABORT seen) goes.
                self.message = Message {
                    sender: Some(address(arguments[0])),
                    ..Message::default()
                };
                let authenticated = self.macros.get("auth_authen").is_some_and(|user| !user.is_empty());
                self.message.skipped = authenticated && self.milter.config.skip_authenticated;
                if no_reply(protocol::STEP_NO_REPLY_MAIL) {
                    // Accepted at the end of the message; its body is not kept meanwhile.
                    Vec::new()
                } else if self.message.skipped {
                    // Accept: the MTA sends nothing more of this message.
                    protocol::packet(protocol::REPLY_ACCEPT, b"")
                } else {
                    cont()
                }
            }
            Command::Rcpt(arguments) => {
                if self.message.recipients.len() < MAX_RECIPIENTS {
                    self.message.recipients.push(address(arguments[0]));
                }
                answer(protocol::STEP_NO_REPLY_RCPT)
            }
            Command::Data => answer(protocol::STEP_NO_REPLY_DATA),
            Command::Header { name, value } => {
                // What a field costs us, not only its bytes: a block of tiny fields is bounded too.
                self.message.size += name.len() + value.len() + FIELD_OVERHEAD;
                if self.message.headers.len() >= MAX_HEADER_FIELDS {
                    self.message.too_many_fields = true;
                } else if self.message.size > self.milter.max_message_bytes {
                    self.message.too_big = true;
                } else {
                    let leading_space = steps & protocol::STEP_HEADER_LEADING_SPACE != 0;
                    self.message.headers.push(Field {
                        name: name.to_vec(),
                        value: from_mta_value(value, leading_space),
                    });
                }
                answer(protocol::STEP_NO_REPLY_HEADER)
            }
            Command::EndOfHeaders => answer(protocol::STEP_NO_REPLY_EOH),
            Command::Body(chunk) => {
                self.collect_body(chunk).await;
                answer(protocol::STEP_NO_REPLY_BODY)
            }
            Command::EndOfBody(chunk) => {
                self.collect_body(chunk).await;
                let message = std::mem::take(&mut self.message);
                self.decide(message).await
            }
            Command::Abort => {
                self.message = Message::default();
                Vec::new()
            }
            Command::Unknown(_) => answer(protocol::STEP_NO_REPLY_UNKNOWN),
            Command::Quit | Command::QuitKeepConnection => Vec::new(),
        })
    }

    async fn collect_body(&mut self, chunk: &[u8]) {
        if chunk.is_empty() || self.message.too_big || self.message.skipped {
            return;
        }
        self.message.size += chunk.len();
        if self.message.size > self.milter.max_message_bytes {
            self.message.too_big = true;
            self.message.body = None;
            return;
        }
        let spool_after = self.milter.config.spool_after_kib.saturating_mul(1024);
        let body = self
            .message
            .body
            .get_or_insert_with(|| Spooled::new(self.milter.spool_dir.clone(), spool_after));
        if let Err(error) = body.push(chunk).await {
            // Refused at the end, as an MTA would a message it cannot store.
            tracing::error!(%error, "milter: cannot spool a body");
            self.message.too_big = true;
            self.message.body = None;
        }
    }

    /// The answer at end of message.
    async fn decide(&mut self, message: Message) -> Vec<u8> {
        let refuse = |text: &str| protocol::string_packet(protocol::REPLY_CODE, &[reply_text(text).as_bytes()]);
        if message.skipped {
            return protocol::packet(protocol::REPLY_ACCEPT, b"");
        }
        if message.too_many_fields {
            return refuse(&format!(
                "552 5.3.4 Message has more than {MAX_HEADER_FIELDS} header fields"
            ));
        }
        if message.too_big {
            return refuse(&format!(
                "552 5.3.4 Message larger than the filter's limit of {} bytes",
                self.milter.max_message_bytes
            ));
        }
        // The slot first: a large body comes back into memory only when it can be filtered.
        let slot = match self.milter.inspector.slot().await {
            Ok(slot) => slot,
            Err(_) => return refuse("451 4.3.2 Too busy to filter this message now, try again later"),
        };
        let leading_space = self.steps() & protocol::STEP_HEADER_LEADING_SPACE != 0;
        let mut raw = Vec::with_capacity(message.size + 2);
        for field in &message.headers {
            raw.extend_from_slice(&field.name);
            raw.push(b':');
            raw.extend_from_slice(&field.value);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        let body_at = raw.len();
        if let Some(body) = message.body
            && let Err(error) = body.append_to(&mut raw).await
        {
            tracing::error!(%error, "milter: cannot read a spooled body");
            return refuse("451 4.3.0 Temporary failure reading the message, try again later");
        }
        let envelope = Envelope {
            message_ref: crate::smtp::server::new_message_ref(),
            sender: message.sender.unwrap_or_default(),
            recipients: message.recipients.clone(),
            client_ip: self
                .client_ip
                .or_else(|| self.macros.get("client_addr").and_then(|a| a.parse().ok()))
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            helo: if self.helo.is_empty() {
                self.macros.get("client_name").cloned().unwrap_or_default()
            } else {
                self.helo.clone()
            },
            tls: self.macros.get("tls_version").is_some_and(|v| !v.is_empty()),
            received_at: crate::store::now(),
            connection_symbols: Vec::new(),
        };
        let queue_id = self.macros.get("i").cloned().unwrap_or_default();
        let raw = Arc::new(raw);
        let deadline = Duration::from_secs(self.milter.config.decision_timeout_secs.max(1));
        let inspection = match self
            .milter
            .inspector
            .inspect(slot, &envelope, &raw, true, Filing::Record, Some(deadline))
            .await
        {
            Ok(inspection) => inspection,
            Err(InspectError::Busy) => {
                return refuse("451 4.3.2 Too busy to filter this message now, try again later");
            }
            Err(InspectError::TimedOut) => {
                tracing::warn!(message_ref = %envelope.message_ref, "milter: analysis past decision_timeout_secs");
                return refuse("451 4.3.0 Filtering took too long, try again later");
            }
            Err(error @ (InspectError::Store(_) | InspectError::Failed(_))) => {
                tracing::error!(%error, message_ref = %envelope.message_ref, "milter: not filed");
                return refuse("451 4.3.0 Temporary failure filtering the message, try again later");
            }
        };
        tracing::info!(
            message_ref = %envelope.message_ref,
            queue_id = %queue_id,
            verdict = %inspection.outcome.verdict.name(),
            "milter decision"
        );
        let final_reply = match &inspection.outcome.verdict {
            Verdict::Reject { refusal } => return refuse(&crate::smtp::server::reply_for(refusal)),
            Verdict::Discard { .. } => return protocol::packet(protocol::REPLY_DISCARD, b""),
            Verdict::Deliver | Verdict::Quarantine { .. } => protocol::packet(protocol::REPLY_CONTINUE, b""),
        };
        let actions = self.actions();
        let mut replies = match inspection.rendered {
            Some(rendered) => {
                // Comparing the header blocks and cutting the body is CPU work: off the workers.
                let (headers, raw) = (message.headers, raw.clone());
                tokio::task::spawn_blocking(move || {
                    edits_to(actions, &headers, &raw[body_at..], &rendered, leading_space)
                })
                .await
                .unwrap_or_default()
            }
            None => Vec::new(),
        };
        if actions & protocol::ACTION_ADD_RECIPIENT != 0 && actions & protocol::ACTION_DELETE_RECIPIENT != 0 {
            for gone in message
                .recipients
                .iter()
                .filter(|r| !inspection.recipients.iter().any(|f| f.eq_ignore_ascii_case(r)))
            {
                replies.extend(protocol::string_packet(
                    protocol::REPLY_DELETE_RECIPIENT,
                    &[format!("<{gone}>").as_bytes()],
                ));
            }
            for added in inspection
                .recipients
                .iter()
                .filter(|f| !message.recipients.iter().any(|r| r.eq_ignore_ascii_case(f)))
            {
                replies.extend(protocol::string_packet(
                    protocol::REPLY_ADD_RECIPIENT,
                    &[format!("<{added}>").as_bytes()],
                ));
            }
        }
        if let Verdict::Quarantine { category, reason } = &inspection.outcome.verdict {
            if actions & protocol::ACTION_QUARANTINE != 0 {
                let reason = reply_text(&format!("Portcullis {category} {}: {reason}", envelope.message_ref));
                replies.extend(protocol::string_packet(
                    protocol::REPLY_QUARANTINE,
                    &[reason.as_bytes()],
                ));
            } else {
                // Without the MTA's hold the message is ours alone to keep: it does not go on.
                return protocol::packet(protocol::REPLY_DISCARD, b"");
            }
        }
        replies.extend(final_reply);
        replies
    }
}

/// The header and body edits from the message as the MTA holds it (`original` fields, `body`) to
/// `rendered`, as reply packets, within what the MTA allows (`actions`).
fn edits_to(actions: u32, original: &[Field], body: &[u8], rendered: &[u8], leading_space: bool) -> Vec<u8> {
    let mut replies = Vec::new();
    let (rendered_head, rendered_body) = edits::split_message(rendered);
    let rendered_fields = edits::fields(rendered_head);
    let to_mta = |value: &[u8]| to_mta_value(value, leading_space);
    for edit in edits::header_edits(original, &rendered_fields) {
        match edit {
            HeaderEdit::Change {
                name,
                occurrence,
                value,
            } if actions & protocol::ACTION_CHANGE_HEADERS != 0 => {
                let value = if value.is_empty() { Vec::new() } else { to_mta(&value) };
                replies.extend(protocol::indexed_packet(
                    protocol::REPLY_CHANGE_HEADER,
                    occurrence,
                    &[&name, &value],
                ));
            }
            HeaderEdit::Insert { index, name, value } if actions & protocol::ACTION_ADD_HEADERS != 0 => {
                replies.extend(protocol::indexed_packet(
                    protocol::REPLY_INSERT_HEADER,
                    index,
                    &[&name, &to_mta(&value)],
                ));
            }
            HeaderEdit::Append { name, value } if actions & protocol::ACTION_ADD_HEADERS != 0 => {
                replies.extend(protocol::string_packet(
                    protocol::REPLY_ADD_HEADER,
                    &[&name, &to_mta(&value)],
                ));
            }
            _ => {}
        }
    }
    if rendered_body != body && actions & protocol::ACTION_CHANGE_BODY != 0 {
        for chunk in rendered_body.chunks(protocol::MAX_BODY_CHUNK) {
            replies.extend(protocol::packet(protocol::REPLY_REPLACE_BODY, chunk));
        }
        if rendered_body.is_empty() {
            replies.extend(protocol::packet(protocol::REPLY_REPLACE_BODY, b""));
        }
    }
    replies
}

/// Text for an SMTP reply or a quarantine reason given to the MTA: printable ASCII only, `%`
/// doubled (Postfix and Sendmail read it as an escape), at most 400 bytes.
fn reply_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(420));
    for c in text.chars() {
        if out.len() >= 400 {
            break;
        }
        match c {
            '%' => out.push_str("%%"),
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// An address from a MAIL or RCPT argument: brackets off.
fn address(argument: &[u8]) -> String {
    let text = String::from_utf8_lossy(argument);
    text.trim().trim_start_matches('<').trim_end_matches('>').to_string()
}

/// A header value as the MTA sent it, in the form we rebuild the message in: continuation lines
/// end in CRLF, and the space after the colon is there (the MTA strips it unless we asked for
/// leading space).
fn from_mta_value(value: &[u8], leading_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 8);
    if !leading_space {
        out.push(b' ');
    }
    let mut previous = 0u8;
    for &byte in value {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}

/// A value in our form as the MTA takes it: continuation lines joined with LF (libmilter's
/// convention), and without the space after the colon unless leading space was agreed.
fn to_mta_value(value: &[u8], leading_space: bool) -> Vec<u8> {
    let value = if leading_space {
        value
    } else {
        value.strip_prefix(b" ").unwrap_or(value)
    };
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.iter().peekable();
    while let Some(&byte) = bytes.next() {
        if byte == b'\r' && bytes.peek() == Some(&&b'\n') {
            continue;
        }
        out.push(byte);
    }
    out
}

/// A body arriving in chunks: in memory up to a threshold, then in a file of the milter spool
/// directory, removed when the value is dropped (however the session ends).
struct Spooled {
    memory: Vec<u8>,
    file: Option<tokio::fs::File>,
    /// Set before the file is created, so a failure halfway still removes it.
    path: Option<PathBuf>,
    dir: PathBuf,
    threshold: usize,
}

impl Spooled {
    fn new(dir: PathBuf, threshold: usize) -> Spooled {
        Spooled {
            memory: Vec::new(),
            file: None,
            path: None,
            dir,
            threshold,
        }
    }

    async fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        if self.file.is_none() && self.memory.len() + chunk.len() > self.threshold {
            crate::token::create_private_dir(&self.dir)?;
            let path = self.dir.join(crate::pipeline::hex(&rand::random::<[u8; 12]>()));
            self.path = Some(path.clone());
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await?;
            file.write_all(&std::mem::take(&mut self.memory)).await?;
            self.file = Some(file);
        }
        match &mut self.file {
            Some(file) => file.write_all(chunk).await,
            None => {
                self.memory.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    /// Appends the body to `out` (read straight from the spool file when it went to disk).
    async fn append_to(mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match (self.file.take(), &self.path) {
            (Some(mut file), Some(path)) => {
                file.flush().await?;
                drop(file);
                let mut file = tokio::fs::File::open(path).await?;
                tokio::io::AsyncReadExt::read_to_end(&mut file, out).await?;
                Ok(())
            }
            _ => {
                out.extend_from_slice(&self.memory);
                Ok(())
            }
        }
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip_between_the_mta_and_our_form() {
        for leading_space in [false, true] {
            let sent: &[u8] = if leading_space { b" one\n\ttwo" } else { b"one\n\ttwo" };
            let ours = from_mta_value(sent, leading_space);
            assert_eq!(ours, b" one\r\n\ttwo");
            assert_eq!(to_mta_value(&ours, leading_space), sent);
        }
    }

    #[tokio::test]
    async fn a_large_body_goes_to_disk_and_the_file_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut body = Spooled::new(spool.clone(), 10);
        body.push(b"12345").await.unwrap();
        assert!(body.file.is_none());
        body.push(b"6789012345").await.unwrap();
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1);
        let mut out = b"head:".to_vec();
        body.append_to(&mut out).await.unwrap();
        assert_eq!(out, b"head:123456789012345");
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
        let mut dropped = Spooled::new(spool.clone(), 1);
        dropped.push(b"abc").await.unwrap();
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1);
        drop(dropped);
        assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    }
}
