//! The inbound SMTP server: sessions on smtp-proto's command parser, the limits, recipient
//! validation, and the hand-off of a complete message to the spool and the pipeline before the
//! final reply.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtp_proto::{Error as ParseError, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio_rustls::TlsAcceptor;

use super::client::{Client, ClientSettings};
use super::data::{DataReader, Flaws, normalize_chunked};
use super::filter::{Admission, ConnectionFilter};
use super::spool::Spool;
use super::{domain_of, rfc5322_date};
use crate::config::{NewlinePolicy, NulPolicy, SmtpConfig};
use crate::pipeline::{Analysis, Envelope, Outcome, Pipeline, Refusal, Verdict, headers, symbols};
use crate::store::Store;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Longest command line accepted (RFC 5321 asks for at least 512; extensions make lines longer).
const MAX_COMMAND_LINE: usize = 4096;

/// Whether an address may receive mail through us.
pub struct Recipients {
    domains: HashSet<String>,
    addresses: HashSet<String>,
    callout: Option<(Vec<String>, ClientSettings)>,
    cache: moka::future::Cache<String, bool>,
}

enum RecipientCheck {
    Accept,
    NotOurDomain,
    Unknown,
    Unverifiable,
}

impl Recipients {
    pub fn new(config: &SmtpConfig, callout: Option<(Vec<String>, ClientSettings)>) -> Self {
        Self {
            domains: config
                .domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            addresses: config.recipients.iter().map(|a| a.to_ascii_lowercase()).collect(),
            callout: if config.recipient_callout { callout } else { None },
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(config.callout_cache_secs.max(1)))
                .build(),
        }
    }

    async fn check(&self, address: &str) -> RecipientCheck {
        let Some(domain) = domain_of(address) else {
            return RecipientCheck::NotOurDomain;
        };
        if !self.domains.contains(&domain) {
            return RecipientCheck::NotOurDomain;
        }
        let lowered = address.to_ascii_lowercase();
        if !self.addresses.is_empty() && !self.addresses.contains(&lowered) {
            return RecipientCheck::Unknown;
        }
        let Some((relays, settings)) = &self.callout else {
            return RecipientCheck::Accept;
        };
        if let Some(exists) = self.cache.get(&lowered).await {
            return if exists {
                RecipientCheck::Accept
            } else {
                RecipientCheck::Unknown
            };
        }
        for relay in relays {
            let Ok(mut client) = Client::connect(relay, settings).await else {
                continue;
            };
            let answer = client.verify(address).await;
            client.quit().await;
            match answer {
                Ok(reply) if reply.is_positive() => {
                    self.cache.insert(lowered, true).await;
                    return RecipientCheck::Accept;
                }
                Ok(reply) if reply.is_permanent() => {
                    self.cache.insert(lowered, false).await;
                    return RecipientCheck::Unknown;
                }
                _ => {}
            }
        }
        RecipientCheck::Unverifiable
    }
}

/// The gateway: everything a session needs, shared.
pub struct Gateway {
    config: SmtpConfig,
    budget: Duration,
    pipeline: Arc<Pipeline>,
    store: Store,
    spool: Spool,
    filter: ConnectionFilter,
    recipients: Recipients,
    tls: Option<TlsAcceptor>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    open: AtomicUsize,
    in_flight: Mutex<HashSet<String>>,
    /// One permit per message being filtered (`pipeline.max_in_flight`), shared with the hooks.
    filtering: Arc<tokio::sync::Semaphore>,
    /// Woken whenever new copies are queued for delivery.
    pub queued: Arc<Notify>,
}

/// Removes a connection from the counts when the session ends, however it ends.
struct Slot<'a> {
    gateway: &'a Gateway,
    ip: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.gateway.open.fetch_sub(1, Ordering::SeqCst);
        let mut per_ip = self.gateway.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Late,
    Answered,
}

#[allow(clippy::too_many_arguments)]
impl Gateway {
    pub fn new(
        config: SmtpConfig,
        budget: Duration,
        pipeline: Arc<Pipeline>,
        store: Store,
        spool: Spool,
        filter: ConnectionFilter,
        recipients: Recipients,
        queued: Arc<Notify>,
        filtering: Arc<tokio::sync::Semaphore>,
    ) -> Result<Self, String> {
        let tls = crate::tls::acceptor_for("smtp", config.tls_cert.as_deref(), config.tls_key.as_deref(), &[])?;
        // No session runs yet: whatever is half-written was never answered with 250.
        spool.clear_incoming();
        Ok(Self {
            config,
            budget,
            pipeline,
            store,
            spool,
            filter,
            recipients,
            tls,
            per_ip: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            in_flight: Mutex::new(HashSet::new()),
            filtering,
            queued,
        })
    }

    /// Accepts connections until the listener is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            tokio::spawn(async move { gateway.connection(stream, peer).await });
        }
    }

    async fn connection(self: Arc<Self>, mut stream: TcpStream, peer: SocketAddr) {
        let ip = peer.ip();
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        let per_ip = {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            *count += 1;
            *count
        };
        let _slot = Slot { gateway: &self, ip };
        if open > self.config.max_connections {
            let _ = stream
                .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                .await;
            return;
        }
        if per_ip > self.config.max_connections_per_ip {
            let _ = stream
                .write_all(b"421 4.7.0 Too many connections from your address, try again later\r\n")
                .await;
            return;
        }
        let symbols = match self.filter.admit(ip).await {
            Admission::Refuse(reply) => {
                let _ = stream.write_all(format!("{reply}\r\n").as_bytes()).await;
                return;
            }
            Admission::Accept(symbols) => symbols,
        };
        let mut session = Session {
            gateway: &self,
            stream: Box::new(stream),
            input: Vec::with_capacity(8192),
            output: Vec::with_capacity(1024),
            peer: ip,
            symbols,
            helo: None,
            esmtp: false,
            tls: false,
            smtputf8: false,
            sender: None,
            recipients: Vec::new(),
            commands: 0,
            errors: 0,
            started: Instant::now(),
            bdat: None,
        };
        if let Err(error) = session.run().await {
            tracing::debug!(%peer, %error, "session ended");
        }
    }

    /// Files a message's outcome and wakes delivery; logs the message's one line (reference, client,
    /// sender, recipient count, verdict, leading symbols, milliseconds since filtering started).
    async fn file(&self, outcome: Outcome, message: &Arc<Vec<u8>>, started: Instant) -> Result<(), String> {
        let store = self.store.clone();
        let message_ref = outcome.index.message_ref.clone();
        let index = &outcome.index;
        tracing::info!(
            message_ref = %index.message_ref,
            client_ip = %index.client_ip,
            sender = %if index.sender.is_empty() { "<>" } else { index.sender.as_str() },
            recipients = index.recipients.len(),
            verdict = %index.verdict,
            category = %index.category.as_deref().unwrap_or("-"),
            symbols = %index.symbols.iter().take(6).cloned().collect::<Vec<_>>().join(","),
            ms = started.elapsed().as_millis() as u64,
            "message"
        );
        let message = message.clone();
        tokio::task::spawn_blocking(move || {
            let plan = outcome.plan.as_ref().map(serde_json::to_string).transpose()?;
            let stored = plan.as_deref().map(|plan| (message.as_slice(), plan));
            store.file(&outcome.index, stored, &outcome.deliveries, outcome.hold.as_ref())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        self.spool.remove(&message_ref);
        self.queued.notify_waiters();
        Ok(())
    }

    /// Finishes every spooled message nobody is working on: at start (crash recovery) and
    /// periodically (a store that failed earlier). Messages already filed are only removed.
    pub async fn sweep_spool(&self) -> usize {
        let spool = self.spool.clone();
        let pending = match tokio::task::spawn_blocking(move || spool.pending()).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the spool");
                return 0;
            }
            Err(_) => return 0,
        };
        let mut finished = 0;
        for (envelope, message) in pending {
            if !self.claim(&envelope.message_ref) {
                continue;
            }
            let done = match self.store.is_indexed(&envelope.message_ref) {
                Ok(true) => {
                    self.spool.remove(&envelope.message_ref);
                    Ok(())
                }
                Ok(false) => {
                    let started = Instant::now();
                    let message = Arc::new(message);
                    let outcome = self.filter(&envelope, &message, false).await;
                    self.file(outcome, &message, started).await
                }
                Err(error) => Err(error.to_string()),
            };
            self.release(&envelope.message_ref);
            match done {
                Ok(()) => finished += 1,
                Err(error) => {
                    tracing::error!(message_ref = %envelope.message_ref, %error, "spooled message not filed yet")
                }
            }
        }
        finished
    }

    fn claim(&self, message_ref: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(message_ref.to_string())
    }

    fn release(&self, message_ref: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(message_ref);
    }

    /// Analyses and decides; see [`Gateway::analyse`].
    async fn filter(&self, envelope: &Envelope, message: &Arc<Vec<u8>>, can_reject: bool) -> Outcome {
        match self.analyse(envelope, message).await {
            Ok(analysis) => self.pipeline.conclude(envelope, message, &analysis, can_reject),
            Err(reason) => Outcome::damaged(envelope, message, &reason, &symbols::PROCESSING_FAILED),
        }
    }

    async fn analyse(&self, envelope: &Envelope, message: &Arc<Vec<u8>>) -> Result<Analysis, String> {
        self.pipeline.analyse_isolated(envelope, message).await
    }

    /// Spools the message, runs the pipeline within the time budget, and returns the DATA reply.
    async fn accept(self: &Arc<Self>, envelope: Envelope, message: Vec<u8>) -> String {
        let Ok(permit) = self.filtering.clone().try_acquire_owned() else {
            tracing::warn!(message_ref = %envelope.message_ref, "too many messages being filtered; 451");
            return "451 4.3.2 Too busy to take this message now, try again later".into();
        };
        let spool = self.spool.clone();
        let message = Arc::new(message);
        let (spooled_envelope, spooled_message) = (envelope.clone(), message.clone());
        // Claimed before it is on disk, so a concurrent sweep never runs it a second time.
        self.claim(&envelope.message_ref);
        let written = tokio::task::spawn_blocking(move || spool.write(&spooled_envelope, &spooled_message)).await;
        if !matches!(written, Ok(Ok(()))) {
            if let Ok(Err(error)) = written {
                tracing::error!(%error, "cannot spool a message");
            }
            self.release(&envelope.message_ref);
            return "451 4.3.0 Temporary failure storing the message, try again later".into();
        }
        let phase = Arc::new(Mutex::new(Phase::Waiting));
        let (answer, answered) = oneshot::channel::<String>();
        let gateway = self.clone();
        let task_phase = phase.clone();
        let message_ref = envelope.message_ref.clone();
        let task_ref = message_ref.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let message_ref = task_ref;
            let analysis = gateway.analyse(&envelope, &message).await;
            let decide = |can_reject| match &analysis {
                Ok(analysis) => gateway.pipeline.conclude(&envelope, &message, analysis, can_reject),
                Err(reason) => Outcome::damaged(&envelope, &message, reason, &symbols::PROCESSING_FAILED),
            };
            let mut outcome = decide(true);
            let late = {
                let mut phase = task_phase.lock().unwrap_or_else(|p| p.into_inner());
                if *phase == Phase::Late {
                    true
                } else {
                    *phase = Phase::Answered;
                    false
                }
            };
            if late && matches!(outcome.verdict, Verdict::Reject { .. }) {
                // The sender already has its 250: decide again from the same analysis.
                outcome = decide(false);
            }
            let reply = match &outcome.verdict {
                Verdict::Reject { refusal } => reply_for(refusal),
                _ => format!("250 2.0.0 Ok: queued as {}", envelope.message_ref),
            };
            let rejected = matches!(outcome.verdict, Verdict::Reject { .. });
            let reply = match gateway.file(outcome, &message, started).await {
                Ok(()) => reply,
                Err(error) if late => {
                    // The sender has its 250; the spool keeps the message for the next sweep.
                    tracing::error!(%error, %message_ref, "filing failed after the reply; left in the spool");
                    reply
                }
                Err(error) if rejected => {
                    tracing::error!(%error, %message_ref, "index entry for a rejected message not written");
                    gateway.spool.remove(&message_ref);
                    reply
                }
                Err(error) => {
                    tracing::error!(%error, %message_ref, "filing failed; asking the sender to retry");
                    gateway.spool.remove(&message_ref);
                    "451 4.3.0 Temporary failure storing the message, try again later".into()
                }
            };
            gateway.release(&message_ref);
            let _ = answer.send(reply);
        });
        let mut answered = answered;
        match tokio::time::timeout(self.budget, &mut answered).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => "451 4.3.0 Temporary failure filtering the message, try again later".into(),
            Err(_) => {
                let late = {
                    let mut phase = phase.lock().unwrap_or_else(|p| p.into_inner());
                    if *phase == Phase::Waiting {
                        *phase = Phase::Late;
                        true
                    } else {
                        false
                    }
                };
                if late {
                    tracing::info!(message_ref = %message_ref, "time budget spent; accepted, filtering goes on");
                    format!("250 2.0.0 Ok: queued as {message_ref}")
                } else {
                    answered
                        .await
                        .unwrap_or_else(|_| "451 4.3.0 Temporary failure filtering the message".into())
                }
            }
        }
    }
}

struct Bdat {
    body: Vec<u8>,
    too_big: bool,
}

struct Session<'a> {
    gateway: &'a Arc<Gateway>,
    stream: Box<dyn Io>,
    input: Vec<u8>,
    output: Vec<u8>,
    peer: IpAddr,
    symbols: Vec<String>,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    smtputf8: bool,
    sender: Option<String>,
    recipients: Vec<String>,
    commands: usize,
    errors: usize,
    started: Instant,
    bdat: Option<Bdat>,
}

enum Flow {
    Continue,
    Close,
    StartTls,
    Data,
    Bdat { size: usize, last: bool },
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("idle timeout")]
    Idle,
    #[error("session timeout")]
    Session,
    #[error("client closed the connection")]
    Closed,
}

impl Session<'_> {
    fn config(&self) -> &SmtpConfig {
        &self.gateway.config
    }

    fn reply(&mut self, text: &str) {
        self.output.extend_from_slice(text.as_bytes());
        self.output.extend_from_slice(b"\r\n");
        if text.starts_with('5') {
            self.errors += 1;
        }
    }

    async fn flush(&mut self) -> Result<(), SessionError> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Reads more input, within the idle and the session timeouts.
    async fn fill(&mut self) -> Result<(), SessionError> {
        let idle = Duration::from_secs(self.config().idle_timeout_secs.max(1));
        let session_left = Duration::from_secs(self.config().session_timeout_secs.max(1))
            .checked_sub(self.started.elapsed())
            .ok_or(SessionError::Session)?;
        let (wait, error) = if session_left < idle {
            (session_left, SessionError::Session)
        } else {
            (idle, SessionError::Idle)
        };
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => Err(error),
            Ok(Ok(0)) => Err(SessionError::Closed),
            Ok(Ok(read)) => {
                self.input.extend_from_slice(&chunk[..read]);
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    async fn run(&mut self) -> Result<(), SessionError> {
        let greeting = format!("220 {} ESMTP Portcullis", self.config().hostname);
        self.reply(&greeting);
        self.flush().await?;
        let result = self.commands_loop().await;
        match &result {
            Err(SessionError::Idle) => {
                self.reply("421 4.4.2 Idle too long, closing connection");
                let _ = self.flush().await;
            }
            Err(SessionError::Session) => {
                self.reply("421 4.4.2 Session too long, closing connection");
                let _ = self.flush().await;
            }
            _ => {}
        }
        result
    }

    async fn commands_loop(&mut self) -> Result<(), SessionError> {
        let mut discarding = false;
        loop {
            let Some(newline) = memchr::memchr(b'\n', &self.input) else {
                if self.input.len() > MAX_COMMAND_LINE {
                    self.input.clear();
                    if !discarding {
                        self.reply("500 5.5.2 Line too long");
                        discarding = true;
                    }
                }
                self.flush().await?;
                self.fill().await?;
                continue;
            };
            let line: Vec<u8> = self.input.drain(..=newline).collect();
            if std::mem::take(&mut discarding) {
                continue;
            }
            if line.len() > MAX_COMMAND_LINE {
                self.reply("500 5.5.2 Line too long");
                continue;
            }
            self.commands += 1;
            if self.commands > self.config().max_commands {
                self.reply("421 4.7.0 Too many commands, closing connection");
                self.flush().await?;
                return Ok(());
            }
            let flow = self.command(&line).await;
            if self.errors >= self.config().max_errors {
                self.reply("421 4.7.0 Too many errors, closing connection");
                self.flush().await?;
                return Ok(());
            }
            match flow {
                Flow::Continue => {}
                Flow::Close => {
                    self.flush().await?;
                    return Ok(());
                }
                Flow::StartTls => {
                    self.flush().await?;
                    // Anything the client pipelined after STARTTLS is discarded (RFC 3207 section 4.2).
                    self.input.clear();
                    let Some(acceptor) = self.gateway.tls.clone() else {
                        return Ok(());
                    };
                    let plain = std::mem::replace(&mut self.stream, Box::new(tokio::io::duplex(1).0));
                    let tls = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain))
                        .await
                        .map_err(|_| SessionError::Idle)??;
                    self.stream = Box::new(tls);
                    self.tls = true;
                    self.helo = None;
                    self.reset();
                }
                Flow::Data => self.data().await?,
                Flow::Bdat { size, last } => self.bdat_chunk(size, last).await?,
            }
        }
    }

    fn reset(&mut self) {
        self.sender = None;
        self.recipients.clear();
        self.smtputf8 = false;
        self.bdat = None;
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let parsed = Request::parse(&mut line.iter()).map(Request::into_owned);
        let request = match parsed {
            Ok(request) => request,
            Err(ParseError::UnknownCommand) => {
                self.reply("500 5.5.2 Command unrecognized");
                return Flow::Continue;
            }
            Err(ParseError::InvalidSenderAddress) => {
                self.reply("501 5.1.7 Bad sender address syntax");
                return Flow::Continue;
            }
            Err(ParseError::InvalidRecipientAddress) => {
                self.reply("501 5.1.3 Bad recipient address syntax");
                return Flow::Continue;
            }
            Err(ParseError::SyntaxError { syntax }) => {
                self.reply(&format!("501 5.5.4 Syntax: {syntax}"));
                return Flow::Continue;
            }
            Err(ParseError::InvalidParameter { param }) => {
                self.reply(&format!("501 5.5.4 Invalid parameter {param}"));
                return Flow::Continue;
            }
            Err(ParseError::UnsupportedParameter { param }) => {
                self.reply(&format!("555 5.5.4 Unsupported parameter {}", headers::clean(&param)));
                return Flow::Continue;
            }
            Err(_) => {
                self.reply("500 5.5.2 Syntax error");
                return Flow::Continue;
            }
        };
        if self.bdat.is_some()
            && !matches!(
                request,
                Request::Bdat { .. } | Request::Rset | Request::Quit | Request::Noop { .. }
            )
        {
            self.reply("503 5.5.1 BDAT LAST expected");
            return Flow::Continue;
        }
        match request {
            Request::Ehlo { host } => {
                self.reset();
                self.helo = Some(headers::clean(&host));
                self.esmtp = true;
                let mut lines = vec![
                    self.config().hostname.clone(),
                    "PIPELINING".into(),
                    format!("SIZE {}", self.config().max_message_bytes),
                    "8BITMIME".into(),
                    "SMTPUTF8".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "CHUNKING".into(),
                ];
                if self.gateway.tls.is_some() && !self.tls {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                for (index, line) in lines.iter().enumerate() {
                    let separator = if index == last { ' ' } else { '-' };
                    self.output
                        .extend_from_slice(format!("250{separator}{line}\r\n").as_bytes());
                }
            }
            Request::Helo { host } => {
                self.reset();
                self.helo = Some(headers::clean(&host));
                self.esmtp = false;
                let reply = format!("250 {}", self.config().hostname);
                self.reply(&reply);
            }
            Request::Lhlo { .. } => self.reply("500 5.5.1 LHLO is for LMTP"),
            Request::StartTls => {
                if self.tls {
                    self.reply("503 5.5.1 TLS already active");
                } else if self.gateway.tls.is_none() {
                    self.reply("502 5.5.1 STARTTLS not available");
                } else {
                    self.reply("220 2.0.0 Ready to start TLS");
                    return Flow::StartTls;
                }
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    self.reply("503 5.5.1 Send EHLO or HELO first");
                } else if self.sender.is_some() {
                    self.reply("503 5.5.1 Sender already specified");
                } else if from.size > self.config().max_message_bytes {
                    self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
                } else if from.flags & smtp_proto::MAIL_SMTPUTF8 != 0 && !self.esmtp {
                    self.reply("555 5.5.4 SMTPUTF8 needs EHLO");
                } else if !from.address.is_ascii() && from.flags & smtp_proto::MAIL_SMTPUTF8 == 0 {
                    self.reply("553 5.6.7 Non-ASCII address needs SMTPUTF8");
                } else {
                    self.smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
                    self.sender = Some(headers::clean(&from.address));
                    self.reply("250 2.1.0 Sender OK");
                }
            }
            Request::Rcpt { to } => self.rcpt(&to.address).await,
            Request::Data => {
                if let Some(reply) = self.transaction_ready() {
                    self.reply(reply);
                } else {
                    self.reply("354 End data with <CR><LF>.<CR><LF>");
                    return Flow::Data;
                }
            }
            Request::Bdat { chunk_size, is_last } => {
                if let Some(reply) = self.transaction_ready() {
                    // The chunk still arrives and must be read past.
                    self.reply(reply);
                    return Flow::Bdat {
                        size: chunk_size,
                        last: is_last,
                    };
                }
                if self.bdat.is_none() {
                    self.bdat = Some(Bdat {
                        body: Vec::new(),
                        too_big: false,
                    });
                }
                return Flow::Bdat {
                    size: chunk_size,
                    last: is_last,
                };
            }
            Request::Rset => {
                self.reset();
                self.reply("250 2.0.0 Ok");
            }
            Request::Noop { .. } => self.reply("250 2.0.0 Ok"),
            Request::Quit => {
                self.reply("221 2.0.0 Bye");
                return Flow::Close;
            }
            Request::Vrfy { .. } | Request::Expn { .. } => self.reply("502 5.5.1 VRFY and EXPN are disabled"),
            Request::Help { .. } => self.reply("214 2.0.0 See RFC 5321"),
            Request::Auth { .. } => self.reply("502 5.5.1 AUTH not available on this port"),
            _ => self.reply("502 5.5.1 Command not implemented"),
        }
        Flow::Continue
    }

    /// Why DATA or BDAT cannot start now, if it cannot.
    fn transaction_ready(&self) -> Option<&'static str> {
        if self.sender.is_none() {
            Some("503 5.5.1 MAIL first")
        } else if self.recipients.is_empty() {
            Some("554 5.5.1 No valid recipients")
        } else {
            None
        }
    }

    async fn rcpt(&mut self, address: &str) {
        if self.sender.is_none() {
            return self.reply("503 5.5.1 MAIL first");
        }
        if self.recipients.len() >= self.config().max_recipients {
            return self.reply("452 4.5.3 Too many recipients");
        }
        if !address.is_ascii() && !self.smtputf8 {
            return self.reply("553 5.6.7 Non-ASCII address needs SMTPUTF8");
        }
        let address = headers::clean(address);
        if address.is_empty() || !address.contains('@') {
            return self.reply("501 5.1.3 Bad recipient address syntax");
        }
        match self.gateway.recipients.check(&address).await {
            RecipientCheck::Accept => {
                if !self.recipients.iter().any(|r| r.eq_ignore_ascii_case(&address)) {
                    self.recipients.push(address);
                }
                self.reply("250 2.1.5 Recipient OK");
            }
            RecipientCheck::NotOurDomain => self.reply("550 5.7.1 Relaying denied"),
            RecipientCheck::Unknown => self.reply("550 5.1.1 Recipient address rejected: user unknown"),
            RecipientCheck::Unverifiable => {
                self.reply("450 4.4.1 Recipient address verification unavailable, try again later")
            }
        }
    }

    async fn data(&mut self) -> Result<(), SessionError> {
        self.flush().await?;
        let mut reader = DataReader::new(self.config().max_message_bytes);
        let mut body = Vec::with_capacity(64 * 1024);
        loop {
            let (used, done) = reader.ingest(&self.input, &mut body);
            self.input.drain(..used);
            if done {
                break;
            }
            self.fill().await?;
        }
        let flaws = reader.flaws;
        let reply = self.finish(body, flaws).await;
        self.reply(&reply);
        Ok(())
    }

    async fn bdat_chunk(&mut self, size: usize, last: bool) -> Result<(), SessionError> {
        let limit = self.config().max_message_bytes;
        let mut left = size;
        while left > 0 {
            if self.input.is_empty() {
                self.fill().await?;
            }
            let take = left.min(self.input.len());
            if let Some(bdat) = self.bdat.as_mut() {
                if bdat.body.len() + take > limit {
                    bdat.too_big = true;
                } else if !bdat.too_big {
                    bdat.body.extend_from_slice(&self.input[..take]);
                }
            }
            self.input.drain(..take);
            left -= take;
        }
        let Some(bdat) = self.bdat.as_ref() else {
            // A refused transaction: the chunk was read and thrown away, the reply already queued.
            return Ok(());
        };
        if !last {
            if bdat.too_big {
                self.bdat = None;
                self.reset();
                self.reply("552 5.3.4 Message size exceeds fixed maximum message size");
            } else {
                self.reply(&format!("250 2.0.0 {size} octets received"));
            }
            return Ok(());
        }
        let Some(bdat) = self.bdat.take() else { return Ok(()) };
        let (body, mut flaws) = normalize_chunked(&bdat.body);
        flaws.too_big = bdat.too_big;
        self.flush().await?;
        let reply = self.finish(body, flaws).await;
        self.reply(&reply);
        Ok(())
    }

    /// The end of a message: policy checks, the `Received:` header, then spool and pipeline.
    async fn finish(&mut self, body: Vec<u8>, flaws: Flaws) -> String {
        let sender = self.sender.take().unwrap_or_default();
        let recipients = std::mem::take(&mut self.recipients);
        self.smtputf8 = false;
        if flaws.too_big {
            return "552 5.3.4 Message size exceeds fixed maximum message size".into();
        }
        if (flaws.bare_lf || flaws.bare_cr) && self.config().bare_newline == NewlinePolicy::Reject {
            return "550 5.5.2 Bare <LF> or <CR> in message text is not allowed".into();
        }
        if flaws.nul && self.config().nul == NulPolicy::Reject {
            return "550 5.6.0 NUL characters in message text are not allowed".into();
        }
        if headers::hop_count(&body) >= self.config().max_hops {
            return "554 5.4.6 Too many hops: mail loop detected".into();
        }
        let received_at = crate::store::now();
        let message_ref = new_message_ref();
        let protocol = match (self.esmtp, self.tls, self.smtputf8_used(&sender, &recipients)) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "UTF8SMTP",
            (true, true, true) => "UTF8SMTPS",
        };
        let helo = self.helo.clone().unwrap_or_default();
        let mut received = format!(
            "Received: from {} ([{}])\r\n\tby {} (Portcullis) with {protocol} id {message_ref}",
            if helo.is_empty() { "unknown" } else { &helo },
            self.peer,
            self.config().hostname,
        );
        if let [only] = recipients.as_slice() {
            received.push_str(&format!("\r\n\tfor <{only}>"));
        }
        received.push_str(&format!(";\r\n\t{}\r\n", rfc5322_date(received_at)));
        let message = headers::prepend(&body, &[received]);
        drop(body);
        let envelope = Envelope {
            message_ref,
            sender,
            recipients,
            client_ip: self.peer,
            helo,
            tls: self.tls,
            received_at,
            connection_symbols: self.symbols.clone(),
        };
        self.gateway.accept(envelope, message).await
    }

    fn smtputf8_used(&self, sender: &str, recipients: &[String]) -> bool {
        !sender.is_ascii() || recipients.iter().any(|r| !r.is_ascii())
    }
}

/// The DATA reply for a refusal: 554 5.6.0 for a structure we cannot filter, 451 4.7.1 for a
/// message a fail-closed engine could not scan (the sender tries again), 550 5.7.1 for policy.
pub fn reply_for(refusal: &Refusal) -> String {
    match refusal {
        Refusal::Structure { .. } => format!("554 5.6.0 {}", refusal.text()),
        Refusal::Unscanned { .. } => format!("451 4.7.1 {}", refusal.text()),
        _ => format!("550 5.7.1 {}", refusal.text()),
    }
}

/// A message reference: time-ordered and unguessable (seconds, then 64 random bits), 24 hex digits.
pub fn new_message_ref() -> String {
    format!("{:08x}{:016x}", crate::store::now() as u32, rand::random::<u64>())
}
