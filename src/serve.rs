//! `portcullis serve`: builds the click service from the configuration and runs it until SIGINT or
//! SIGTERM, then drains connections and flushes the click log.

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::clicklog::{ClickLog, ClickLogError};
use crate::config::Config;
use crate::redirect::ClickService;
use crate::reputation::{
    DnsBlocklists, Heuristics, LocalFeeds, Provider, RedirectFollower, Reputation, SafeBrowsing, Urlhaus,
};
use crate::token::{KeyRing, KeyRingError};

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
}

/// Runs the click service until a shutdown signal.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    let keys = KeyRing::open_or_create(&config.data_dir)?;
    let (log, writer) = ClickLog::open(&config.data_dir, config.click.durability)?;
    let feeds = Arc::new(LocalFeeds::new(config.reputation.feeds.clone()));
    let mut providers: Vec<Arc<dyn Provider>> = vec![
        feeds.clone(),
        Arc::new(Heuristics::new(&config.reputation.protected_domains)),
    ];
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
    let mut reputation = Reputation::new(
        providers,
        Duration::from_millis(config.reputation.deadline_ms),
        config.reputation.cache.clone(),
    );
    if config.click.policy.follow_redirects {
        reputation = reputation.with_redirects(RedirectFollower::new(config.reputation.redirects.clone()));
    }
    let tls = crate::tls::acceptor(&config.click).map_err(ServeError::Tls)?;
    let service = Arc::new(ClickService::new(config.click.clone(), keys, reputation, log));

    // Feed files are watched; a change reloads them and drops cached verdicts.
    let reload_every = Duration::from_secs(config.reputation.feed_reload_secs.max(1));
    let watcher = {
        let (feeds, service) = (feeds.clone(), service.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(reload_every);
            loop {
                tick.tick().await;
                let feeds = feeds.clone();
                if tokio::task::spawn_blocking(move || feeds.reload_if_changed())
                    .await
                    .unwrap_or(false)
                {
                    service.reputation.invalidate();
                }
            }
        })
    };

    let listener = TcpListener::bind(&config.click.listen)
        .await
        .map_err(|source| ServeError::Listen {
            address: config.click.listen.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        address: config.click.listen.clone(),
        source,
    })?;
    // Tests and operators read this line to learn the bound port.
    println!(
        "portcullis: click service listening on {}://{local}",
        if tls.is_some() { "https" } else { "http" }
    );
    tracing::info!(%local, "click service listening");

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let handler = service_fn(move |request| {
                    let service = service.clone();
                    async move { Ok::<_, std::convert::Infallible>(service.handle(request, peer).await) }
                });
                match &tls {
                    None => {
                        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), handler);
                        let watched = graceful.watch(connection);
                        tokio::spawn(async move { let _ = watched.await; });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), handler);
                            let _ = watcher.watch(connection).await;
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    watcher.abort();
    drop(service);
    tokio::task::spawn_blocking(move || writer.join()).await.ok();
    tracing::info!("click log flushed; bye");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return interrupt.await.unwrap_or(()),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
