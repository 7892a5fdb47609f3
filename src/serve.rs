//! `portcullis serve`: builds the click service and the SMTP gateway (with its delivery workers and
//! housekeeping) from the configuration and runs them until SIGINT or SIGTERM, then drains
//! connections and flushes the click log.

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
    #[error("SMTP gateway: {0}")]
    Gateway(String),
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
    let gateway = if config.smtp.listen.is_empty() {
        None
    } else {
        Some(start_gateway(&config, keys.clone()).await?)
    };
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
    if let Some(tasks) = gateway {
        for task in tasks {
            task.abort();
        }
    }
    tracing::info!("shutting down: draining connections");
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    watcher.abort();
    drop(service);
    tokio::task::spawn_blocking(move || writer.join()).await.ok();
    tracing::info!("click log flushed; bye");
    Ok(())
}

/// Opens the gateway's store and spool, finishes what a crash left in the spool, then starts the
/// SMTP listener, the delivery workers and the housekeeping (spool sweep, quarantine expiry).
async fn start_gateway(config: &Config, keys: KeyRing) -> Result<Vec<tokio::task::JoinHandle<()>>, ServeError> {
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
    let arc_domain = config
        .pipeline
        .arc_domain
        .clone()
        .unwrap_or_else(|| config.smtp.hostname.clone());
    let arc = ArcKey::open_or_create(&config.data_dir, &arc_domain, &config.pipeline.arc_selector)
        .map_err(|e| gateway_error(e.to_string()))?;
    let pipeline = Arc::new(Pipeline::new(config, keys, resolver.clone(), Some(arc)));
    let filter = ConnectionFilter::new(&config.smtp, resolver).map_err(gateway_error)?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let delivery = Arc::new(
        crate::delivery::Delivery::new(store.clone(), &config.delivery, &config.smtp.hostname, wake.clone())
            .map_err(gateway_error)?,
    );
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
            wake,
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
    println!("portcullis: smtp gateway listening on {local}");
    tracing::info!(%local, "smtp gateway listening");
    let housekeeping = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.tick().await;
            loop {
                tick.tick().await;
                gateway.sweep_spool().await;
                let store = store.clone();
                if let Ok(Ok(expired)) =
                    tokio::task::spawn_blocking(move || store.expire_held(crate::store::now())).await
                    && expired > 0
                {
                    tracing::info!(expired, "quarantined messages past their retention deleted");
                }
            }
        })
    };
    Ok(vec![
        tokio::spawn(gateway.serve(listener)),
        tokio::spawn(delivery.run()),
        housekeeping,
    ])
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
