//! `portcullis serve`: builds the click service and the SMTP gateway (with its delivery workers and
//! housekeeping) from the configuration and runs them until SIGINT or SIGTERM, then drains
//! connections and flushes the click log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::Api;
use crate::clicklog::{ClickLog, ClickLogError, Slicing};
use crate::config::Config;
use crate::listen::{Gate, ReadTimeout};
use crate::redirect::ClickService;
use crate::reputation::{
    DnsBlocklists, Heuristics, LocalFeeds, Provider, RedirectFollower, Reputation, SafeBrowsing, Urlhaus,
};
use crate::token::{KeyRing, KeyRingError, LiveKeyRing};

/// Prints a listening line for whoever started us. A closed stdout (a supervisor that stopped
/// reading) must not take the server down: the line is dropped instead.
macro_rules! announce {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Keys(#[from] KeyRingError),
    #[error(transparent)]
    ClickLog(#[from] ClickLogError),
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("reputation provider: {0}")]
    Client(String),
    #[error("SMTP gateway: {0}")]
    Gateway(String),
}

/// Runs the click service and the gateway until SIGINT or SIGTERM. `config_path` is the file the
/// configuration came from, read again on SIGHUP.
/// The reputation providers the configuration names, their deadline and cache: local feeds and
/// lookalike heuristics always, the remote APIs (Safe Browsing, URLhaus, DNS blocklists) when
/// `remote`. The feeds are returned too, to be reloaded when their files change.
pub fn build_reputation(config: &Config, remote: bool) -> Result<(Reputation, Arc<LocalFeeds>), ServeError> {
    let feeds = Arc::new(LocalFeeds::new(config.reputation.feeds.clone()));
    let mut providers: Vec<Arc<dyn Provider>> = vec![
        feeds.clone(),
        Arc::new(Heuristics::new(&config.reputation.protected_domains)),
    ];
    if remote {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.reputation.deadline_ms))
            .build()
            .map_err(|e| ServeError::Client(e.to_string()))?;
        if let Some(safe_browsing) = config.reputation.safe_browsing.clone() {
            providers.push(Arc::new(SafeBrowsing::new(safe_browsing, client.clone())));
        }
        if let Some(urlhaus) = config.reputation.urlhaus.clone() {
            providers.push(Arc::new(Urlhaus::new(urlhaus, client.clone())));
        }
        if let Some(dnsbl) = &config.reputation.dnsbl {
            providers.push(Arc::new(DnsBlocklists::new(dnsbl).map_err(ServeError::Client)?));
        }
    }
    let mut reputation = Reputation::new(
        providers,
        Duration::from_millis(config.reputation.deadline_ms),
        config.reputation.cache.clone(),
    );
    if remote && config.click.policy.follow_redirects {
        reputation = reputation.with_redirects(RedirectFollower::new(config.reputation.redirects.clone()));
    }
    Ok((reputation, feeds))
}

pub async fn serve(config: Config, config_path: Option<PathBuf>) -> Result<(), ServeError> {
    announce_data_dir(&config.data_dir);
    let keys = LiveKeyRing::new(KeyRing::open_or_create(&config.data_dir)?);
    let slicing = Slicing {
        wal_bytes: config.click.log_slice_mib.max(1) * 1024 * 1024,
        age: Duration::from_secs(config.click.log_slice_secs.max(1)),
    };
    let (log, writer) = ClickLog::open(&config.data_dir, config.click.durability, slicing)?;
    let (reputation, feeds) = build_reputation(&config, true)?;
    let reputation = Arc::new(reputation);
    let tls = crate::tls::acceptor(&config.click).map_err(ServeError::Tls)?;
    let mail = start_mail(&config, keys.clone(), reputation.clone(), feeds.clone()).await?;
    let service = Arc::new(
        ClickService::new(config.click.clone(), keys.clone(), reputation, log).with_quarantine(
            mail.store.clone(),
            mail.wake.clone(),
            &config.smtp.domains,
        ),
    );

    // Feed files and the key ring are watched; SIGHUP reloads them at once and reads the
    // configuration file again.
    let reload_every = Duration::from_secs(config.reputation.feed_reload_secs.max(1));
    let watcher = {
        let (feeds, service, keys) = (feeds.clone(), service.clone(), keys.clone());
        let running = config.clone();
        // Installed now, not when the task first runs: an early SIGHUP must not kill the server.
        let mut hangup = hangup_signal();
        tokio::spawn(async move {
            // The key file is looked at every second; feed files every `feed_reload_secs`.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut since_feeds = Duration::ZERO;
            loop {
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = hangup.recv() => true,
                };
                since_feeds += Duration::from_secs(1);
                if forced {
                    tracing::info!("SIGHUP: reloading keys, feeds and configuration");
                    report_config_changes(&running, config_path.as_deref());
                }
                match keys.reload_if_changed(forced) {
                    Ok(Some(changes)) => tracing::warn!(%changes, "key ring reloaded"),
                    Ok(None) => {}
                    Err(error) => tracing::error!(%error, "key ring not reloaded; the running keys stay"),
                }
                if forced || since_feeds >= reload_every {
                    since_feeds = Duration::ZERO;
                    let feeds = feeds.clone();
                    if tokio::task::spawn_blocking(move || feeds.reload(forced))
                        .await
                        .unwrap_or(false)
                    {
                        service.reputation.invalidate();
                    }
                }
            }
        })
    };

    let mut shutdown = std::pin::pin!(shutdown_signal());
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(config.click.header_timeout_ms.max(1)));
    let limits = ConnectionLimits {
        http,
        read_timeout: Duration::from_millis(config.click.read_timeout_ms.max(1)),
        handshake_timeout: Duration::from_millis(config.click.tls_handshake_timeout_ms.max(1)),
    };
    let admin = if config.admin.listen.is_empty() || config.admin.listen == "off" {
        None
    } else {
        let gate = bind(&config.admin.listen, ADMIN_CONNECTIONS, "admin").await?;
        let admin_tls = crate::tls::acceptor_for(
            "admin",
            config.admin.tls_cert.as_deref(),
            config.admin.tls_key.as_deref(),
            &[b"http/1.1"],
        )
        .map_err(ServeError::Tls)?;
        announce!(
            "portcullis: admin listening on {}://{}",
            if admin_tls.is_some() { "https" } else { "http" },
            local_address(&gate, &config.admin.listen)?
        );
        // While an API call is being answered hyper keeps a read open to notice a client that
        // hangs up; silence then is the call working, not a slow client (the body has its own
        // deadline in the API, the request head hyper's).
        let limits = ConnectionLimits {
            read_timeout: limits.read_timeout.max(ADMIN_CALL_SILENCE),
            ..limits.clone()
        };
        let api = mail.api.clone();
        Some(tokio::spawn(async move {
            loop {
                let (stream, peer, slot) = gate.accept().await;
                let api = api.clone();
                let handler = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let api = api.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(if Api::owns(request.uri().path()) {
                            api.handle(request, peer).await
                        } else {
                            admin_response(&request)
                        })
                    }
                });
                // Not drained at shutdown: a scrape is answered in one go, and an API call that
                // is cut off is retried by its client (nothing it asked for is half-done).
                limits.serve(stream, slot, admin_tls.clone(), handler, None);
            }
        }))
    };

    let gate = bind(&config.click.listen, config.click.max_connections, "click").await?;
    let local = local_address(&gate, &config.click.listen)?;
    // Tests and operators read this line to learn the bound port.
    announce!(
        "portcullis: click service listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );
    tracing::info!(%local, "click service listening");

    loop {
        tokio::select! {
            (stream, peer, slot) = gate.accept() => {
                let service = service.clone();
                let handler = service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, std::convert::Infallible>(service.handle(request, peer).await) }
                });
                limits.serve(stream, slot, tls.clone(), handler, Some(graceful.watcher()));
            }
            () = &mut shutdown => break,
        }
    }
    if let Some(admin) = admin {
        admin.abort();
    }
    drop(gate);
    for task in mail.tasks {
        task.abort();
    }
    tracing::info!("shutting down: draining connections");
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    watcher.abort();
    drop(service);
    tokio::task::spawn_blocking(move || writer.join()).await.ok();
    tracing::info!("click log flushed; bye");
    Ok(())
}

/// Connections the admin listener holds at once: it is for a scraper, an operator and API clients.
const ADMIN_CONNECTIONS: usize = 64;

/// How long an admin connection may be silent: longer than any API call takes to answer.
const ADMIN_CALL_SILENCE: Duration = Duration::from_secs(600);

async fn bind(address: &str, max_connections: usize, name: &'static str) -> Result<Gate, ServeError> {
    let listener = TcpListener::bind(address).await.map_err(|source| ServeError::Listen {
        address: address.to_string(),
        source,
    })?;
    Ok(Gate::new(listener, max_connections, name))
}

fn local_address(gate: &Gate, address: &str) -> Result<std::net::SocketAddr, ServeError> {
    gate.local_addr().map_err(|source| ServeError::Listen {
        address: address.to_string(),
        source,
    })
}

/// Whether a running server answers: `GET /healthz` on the admin listener gets a 200 and, when
/// `smtp` is given, the gateway greets with 220 (the probe then says QUIT). Plain blocking I/O with
/// a deadline on every step: it runs as its own short-lived process.
pub fn check_health(admin: &str, smtp: Option<&str>, timeout: std::time::Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    let connect = |address: &str| -> Result<std::net::TcpStream, String> {
        let target = std::net::ToSocketAddrs::to_socket_addrs(address)
            .map_err(|e| format!("{address}: {e}"))?
            .next()
            .ok_or_else(|| format!("{address}: no address"))?;
        let stream = std::net::TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("{address}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        Ok(stream)
    };
    let mut http = connect(admin)?;
    http.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("{admin}: {e}"))?;
    let mut answer = Vec::new();
    let _ = (&mut http).take(4096).read_to_end(&mut answer);
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if !status.starts_with("HTTP/1.1 200") && !status.starts_with("HTTP/1.0 200") {
        return Err(format!("{admin}/healthz answered {status:?}"));
    }
    if let Some(smtp) = smtp {
        let mut session = connect(smtp)?;
        let mut greeting = [0u8; 512];
        let read = session.read(&mut greeting).map_err(|e| format!("{smtp}: {e}"))?;
        let greeting = String::from_utf8_lossy(&greeting[..read]).to_string();
        let _ = session.write_all(b"QUIT\r\n");
        if !greeting.starts_with("220") {
            return Err(format!("{smtp} greeted {:?}", greeting.trim()));
        }
    }
    Ok(())
}

/// The admin listener's routes besides the API's.
fn admin_response(request: &hyper::Request<hyper::body::Incoming>) -> hyper::Response<crate::redirect::Body> {
    use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
    let respond = |status: hyper::StatusCode, body: &str| {
        let mut response = hyper::Response::new(crate::redirect::Body::new(bytes::Bytes::copy_from_slice(
            body.as_bytes(),
        )));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    };
    if let Some(response) = crate::console::response(request.method(), request.uri().path()) {
        return response;
    }
    match (request.method(), request.uri().path()) {
        (&hyper::Method::GET | &hyper::Method::HEAD, "/metrics") => crate::redirect::metrics_response(),
        (&hyper::Method::GET | &hyper::Method::HEAD, "/healthz") => respond(hyper::StatusCode::OK, "ok\n"),
        (_, "/metrics" | "/healthz") => {
            let mut response = respond(hyper::StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        _ => respond(hyper::StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// How every HTTP connection is served: hyper's header timeout, a read-silence timeout, a TLS
/// handshake deadline, and the connection's slot held until it closes.
#[derive(Clone)]
struct ConnectionLimits {
    http: http1::Builder,
    read_timeout: Duration,
    handshake_timeout: Duration,
}

impl ConnectionLimits {
    fn serve<S>(
        &self,
        stream: tokio::net::TcpStream,
        slot: crate::listen::Slot,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: S,
        watcher: Option<hyper_util::server::graceful::Watcher>,
    ) where
        S: hyper::service::HttpService<hyper::body::Incoming, ResBody = crate::redirect::Body> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (http, handshake_timeout) = (self.http.clone(), self.handshake_timeout);
        let stream = ReadTimeout::new(stream, self.read_timeout);
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_http(stream, http, handler, watcher).await,
                Some(acceptor) => {
                    if let Ok(Ok(stream)) = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        serve_http(stream, http, handler, watcher).await;
                    }
                }
            }
        });
    }
}

async fn serve_http<I, S>(
    io: I,
    http: http1::Builder,
    handler: S,
    watcher: Option<hyper_util::server::graceful::Watcher>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = crate::redirect::Body> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = http.serve_connection(TokioIo::new(io), handler);
    match watcher {
        Some(watcher) => {
            let _ = watcher.watch(connection).await;
        }
        None => {
            let _ = connection.await;
        }
    }
}

/// Says where state lives. A relative data directory resolves against the working directory, so
/// starting from another directory silently makes a new key ring: say so loudly.
fn announce_data_dir(data_dir: &Path) {
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let fresh = !data_dir.join("keys.json").exists();
    if fresh {
        tracing::warn!(
            data_dir = %absolute.display(),
            relative = data_dir.is_relative(),
            "no key ring here: generating new keys. Links signed with keys from another data \
             directory will not verify; set data_dir to an absolute path"
        );
    } else {
        tracing::info!(data_dir = %absolute.display(), "data directory");
    }
}

/// SIGHUP as a stream; never fires where there is no such signal.
fn hangup_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let _ = sender.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(sender);
    receiver
}

/// Reads the configuration file again and logs every section that differs from the running one.
/// Keys and feed files reload live; other settings take effect at the next start, and the log
/// says which.
fn report_config_changes(running: &Config, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::info!("no configuration file: only keys and feeds reloaded");
        return;
    };
    let mut new = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "configuration not reloaded: the running one stays");
            return;
        }
    };
    // Command-line overrides stay what they were.
    new.data_dir.clone_from(&running.data_dir);
    new.click.listen.clone_from(&running.click.listen);
    new.smtp.listen.clone_from(&running.smtp.listen);
    new.admin.listen.clone_from(&running.admin.listen);
    let sections: [(&str, String, String); 10] = [
        ("admin", format!("{:?}", running.admin), format!("{:?}", new.admin)),
        ("links", format!("{:?}", running.links), format!("{:?}", new.links)),
        (
            "rewrite",
            format!("{:?}", running.rewrite),
            format!("{:?}", new.rewrite),
        ),
        ("click", format!("{:?}", running.click), format!("{:?}", new.click)),
        (
            "reputation",
            format!("{:?}", running.reputation),
            format!("{:?}", new.reputation),
        ),
        ("smtp", format!("{:?}", running.smtp), format!("{:?}", new.smtp)),
        ("dns", format!("{:?}", running.dns), format!("{:?}", new.dns)),
        (
            "pipeline",
            format!("{:?}", running.pipeline),
            format!("{:?}", new.pipeline),
        ),
        (
            "delivery",
            format!("{:?}", running.delivery),
            format!("{:?}", new.delivery),
        ),
        (
            "quarantine",
            format!("{:?}", running.quarantine),
            format!("{:?}", new.quarantine),
        ),
    ];
    let changed: Vec<&str> = sections
        .iter()
        .filter(|(_, old, new)| old != new)
        .map(|(name, _, _)| *name)
        .collect();
    if changed.is_empty() {
        tracing::info!(path = %path.display(), "configuration unchanged");
    } else {
        tracing::warn!(
            path = %path.display(),
            sections = %changed.join(","),
            "configuration changed; these sections take effect at the next start (keys and feed files reload live)"
        );
    }
}

/// The mail side of a running server: its tasks, and the HTTP API the admin listener serves.
struct Mail {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    api: Arc<Api>,
    store: crate::store::Store,
    /// Rings the delivery workers.
    wake: Arc<tokio::sync::Notify>,
}

/// Opens the gateway's store and spool, finishes what a crash left in the spool, then starts what
/// the configuration turns on: the SMTP listener, the milter; and always the delivery workers
/// (releases from quarantine), the housekeeping (spool sweep, quarantine expiry) and the hook API.
async fn start_mail(
    config: &Config,
    keys: LiveKeyRing,
    reputation: Arc<Reputation>,
    feeds: Arc<LocalFeeds>,
) -> Result<Mail, ServeError> {
    use crate::pipeline::{ArcKey, Pipeline, Resolver};
    use crate::smtp::client::ClientSettings;
    use crate::smtp::server::Recipients;
    use crate::smtp::{ConnectionFilter, Gateway, Spool};
    let gateway_error = |e: String| ServeError::Gateway(e);
    let store = crate::store::Store::open(&config.data_dir).map_err(|e| gateway_error(e.to_string()))?;
    store.release_leases().map_err(|e| gateway_error(e.to_string()))?;
    let spool = Spool::open(&config.data_dir).map_err(|e| gateway_error(e.to_string()))?;
    let resolver = match Resolver::new(&config.dns) {
        Ok(resolver) => Some(resolver),
        Err(error) => {
            tracing::error!(%error, "no DNS resolver: authentication and blocklists are off");
            None
        }
    };
    let arc = if config.pipeline.arc_seal {
        Some(ArcKey::for_config(config).map_err(|e| gateway_error(e.to_string()))?)
    } else {
        None
    };
    let pipeline = Arc::new(
        Pipeline::new(config, keys.clone(), resolver.clone(), arc)
            .with_correspondents(Arc::new(store.clone()))
            .with_sender_lists(Arc::new(store.clone()))
            .with_reputation(reputation),
    );
    // One bound on messages being filtered, whichever way they came in.
    let filtering = Arc::new(tokio::sync::Semaphore::new(pipeline.config().max_in_flight.max(1)));
    let inspector = crate::inspect::Inspector::new(pipeline.clone(), store.clone(), filtering.clone());
    let settings = crate::api::ApiSettings {
        max_body: config.smtp.max_message_bytes,
        default_domain: config
            .smtp
            .domains
            .first()
            .map_or("localhost", String::as_str)
            .to_string(),
        data_dir: config.data_dir.clone(),
        secure_cookies: config.admin.secure_cookies.unwrap_or(config.admin.tls_cert.is_some()),
        siem_empty_envelope: config.admin.siem_empty_envelope,
        settings_view: config.settings_view(),
    };
    let mailbox = match &config.mailbox {
        Some(graph) => Some(Arc::new(
            crate::mailbox::Graph::new(graph.clone()).map_err(|e| gateway_error(e.to_string()))?,
        ) as Arc<dyn crate::mailbox::MailboxProvider>),
        None => None,
    };
    let wake = Arc::new(tokio::sync::Notify::new());
    let digests = Arc::new(
        crate::digest::Digests::new(config, store.clone(), keys.clone())
            .map_err(gateway_error)?
            .with_wake(wake.clone()),
    );
    let api = Arc::new(
        Api::new(inspector.clone(), store.clone(), keys.clone(), settings)
            .map_err(gateway_error)?
            .with_mailbox(mailbox)
            .with_digests(digests.clone()),
    );
    let delivery = Arc::new(
        crate::delivery::Delivery::new(
            store.clone(),
            pipeline.renderer(),
            &config.delivery,
            &config.smtp.hostname,
            wake.clone(),
        )
        .map_err(gateway_error)?,
    );
    let watcher = crate::threats::ThreatWatcher {
        store: store.clone(),
        data_dir: config.data_dir.clone(),
        feeds,
        lookback_secs: i64::from(config.reputation.retro_scan_days) * 86_400,
    };
    let mut tasks = vec![tokio::spawn(delivery.run()), tokio::spawn(watcher.run())];
    if config.quarantine.digest.enabled {
        tasks.push(tokio::spawn(digests.run()));
    }
    tasks.extend(crate::export::start(
        &config.export,
        &config.smtp.hostname,
        &store,
        &config.data_dir,
    ));
    if !config.milter.listen.is_empty() {
        let listener = crate::milter::Listener::bind(&config.milter.listen, config.milter.socket_mode)
            .await
            .map_err(|e| gateway_error(e.to_string()))?;
        // Tests and operators read this line to learn the bound address.
        announce!("portcullis: milter listening on {}", listener.describe());
        tracing::info!(address = %listener.describe(), "milter listening");
        let milter = Arc::new(crate::milter::Milter::new(
            config.milter.clone(),
            inspector,
            &config.data_dir,
            config.smtp.max_message_bytes,
        ));
        tasks.push(tokio::spawn(milter.serve(listener)));
    }
    let gateway = if config.smtp.listen.is_empty() {
        None
    } else {
        let filter = ConnectionFilter::new(&config.smtp, resolver).map_err(gateway_error)?;
        let callout = ClientSettings::new(&config.delivery, &config.smtp.hostname).map_err(gateway_error)?;
        let recipients = Recipients::new(&config.smtp, Some((config.delivery.relay.clone(), callout)));
        let gateway = Arc::new(
            Gateway::new(
                config.smtp.clone(),
                Duration::from_millis(config.pipeline.time_budget_ms.max(1)),
                pipeline,
                store.clone(),
                spool,
                filter,
                recipients,
                wake.clone(),
                filtering,
            )
            .map_err(gateway_error)?,
        );
        let recovered = gateway.sweep_spool().await;
        if recovered > 0 {
            tracing::info!(recovered, "finished messages a crash left in the spool");
        }
        let listener = TcpListener::bind(&config.smtp.listen)
            .await
            .map_err(|source| ServeError::Listen {
                address: config.smtp.listen.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| ServeError::Listen {
            address: config.smtp.listen.clone(),
            source,
        })?;
        announce!("portcullis: smtp gateway listening on {local}");
        tracing::info!(%local, "smtp gateway listening");
        tasks.push(tokio::spawn(gateway.clone().serve(listener)));
        Some(gateway)
    };
    let (mail_store, mail_wake) = (store.clone(), wake.clone());
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(gateway) = &gateway {
                gateway.sweep_spool().await;
            }
            let store = store.clone();
            if let Ok(Ok(expired)) = tokio::task::spawn_blocking(move || store.expire_held(crate::store::now())).await
                && expired > 0
            {
                tracing::info!(expired, "quarantined messages past their retention deleted");
            }
        }
    }));
    Ok(Mail {
        tasks,
        api,
        store: mail_store,
        wake: mail_wake,
    })
}

/// SIGINT or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives as soon as the listening line is out must not kill the
/// process without draining.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        if let Some(mut terminate) = terminate {
            tokio::select! {
                _ = interrupt => {}
                _ = terminate.recv() => {}
            }
            let _ = sender.send(());
            return;
        }
        let _ = interrupt.await;
        let _ = sender.send(());
    });
    async move {
        let _ = receiver.await;
    }
}
