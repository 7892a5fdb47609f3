//! Push export: every click, message verdict and post-delivery threat sent to a collector as it
//! happens, as RFC 5424 syslog over TCP (RFC 6587 octet counting), TLS (RFC 5425) or UDP
//! (RFC 5426), or appended to a JSON-lines file. Each exporter follows the click log, the
//! message index and the threats from positions kept in the store, and moves a position only
//! after the collector took the batch (the write completed; the file synced), so a collector
//! that is down for an hour gets that hour when it is back. UDP cannot tell a lost datagram:
//! it is for collectors on the same host or network only.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::clicklog::{ClickEvent, ClickQuery};
use crate::follow::FollowError;
use crate::store::{IndexEntry, Store, StoreError};
use crate::threats::{Threat, ThreatQuery};
use crate::time::{rfc3339, rfc3339_millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Tls,
    Udp,
    /// JSON lines appended to `path`.
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Clicks,
    Messages,
    Threats,
}

/// One `[[export]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Names the exporter's positions in the store: renaming it starts it over from now.
    pub name: String,
    pub transport: Transport,
    /// `host:port` of the collector (tcp, tls, udp).
    #[serde(default)]
    pub address: String,
    /// The file (file).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Trust anchors besides the system's (tls).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the collector's certificate must carry (tls); the address's host by default.
    #[serde(default)]
    pub tls_name: Option<String>,
    #[serde(default = "all_events")]
    pub events: Vec<EventKind>,
    /// Only the clicks that are threat events (blocked, warned, clicked through, or let through
    /// to a link judged bad), not every click.
    #[serde(default)]
    pub threat_clicks_only: bool,
    /// The syslog facility number (16 to 23 are local0 to local7).
    #[serde(default = "local0")]
    pub facility: u8,
    /// The syslog APP-NAME.
    #[serde(default = "app_name")]
    pub app_name: String,
}

fn all_events() -> Vec<EventKind> {
    vec![EventKind::Clicks, EventKind::Messages, EventKind::Threats]
}

fn local0() -> u8 {
    16
}

fn app_name() -> String {
    "portcullis".into()
}

impl ExportConfig {
    /// The mistakes a configuration can make, found before anything starts.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            return Err(format!("export name {:?}: letters, digits, - and _", self.name));
        }
        match self.transport {
            Transport::File if self.path.is_none() => Err(format!("export {}: a file export needs `path`", self.name)),
            Transport::Tcp | Transport::Tls | Transport::Udp if self.address.is_empty() => {
                Err(format!("export {}: needs `address` (host:port)", self.name))
            }
            _ if self.facility > 23 => Err(format!("export {}: facility is 0 to 23", self.name)),
            _ if self.app_name.is_empty()
                || self.app_name.len() > 48
                || !self.app_name.bytes().all(|b| (33..=126).contains(&b)) =>
            {
                Err(format!(
                    "export {}: app_name is 1 to 48 printable ASCII characters",
                    self.name
                ))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("click log: {0}")]
    Clicks(String),
    #[error("collector {0}")]
    Collector(String),
    #[error(transparent)]
    Threats(#[from] crate::threats::ThreatError),
}

impl From<FollowError> for ExportError {
    fn from(error: FollowError) -> Self {
        match error {
            FollowError::Store(error) => ExportError::Store(error),
            FollowError::Clicks(error) => ExportError::Clicks(error),
        }
    }
}

impl Store {
    /// The rowid of the newest indexed message (0 when there is none).
    fn newest_message_rowid(&self) -> Result<i64, StoreError> {
        let connection = self.lock();
        Ok(connection.query_row("SELECT coalesce(max(rowid), 0) FROM messages", [], |row| row.get(0))?)
    }

    /// Up to `limit` messages indexed after `rowid`, in the order they were indexed. A message
    /// indexed again (released, say) comes again.
    fn messages_after(&self, rowid: i64, limit: usize) -> Result<Vec<(i64, IndexEntry)>, StoreError> {
        let rows: Vec<(i64, String)> = {
            let connection = self.lock();
            let mut statement = connection
                .prepare_cached("SELECT rowid, message_ref FROM messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2")?;
            let rows = statement.query_map(rusqlite::params![rowid, limit as i64], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut found = Vec::with_capacity(rows.len());
        for (rowid, message_ref) in rows {
            if let Some(entry) = self.index(1, Some(&message_ref))?.into_iter().next() {
                found.push((rowid, entry));
            }
        }
        Ok(found)
    }
}

/// One event on its way out: its JSON, and how syslog files it.
struct Event {
    msgid: &'static str,
    severity: u8,
    time: String,
    body: Value,
}

fn click_event(click: &ClickEvent) -> Event {
    let severity = match click.action.as_str() {
        "blocked" | "clicked-through" => 4,
        "warned" | "rejected" => 5,
        _ => 6,
    };
    Event {
        msgid: "CLICK",
        severity,
        time: rfc3339_millis(click.at_ms),
        body: json!({
            "event": "click",
            "id": click.id,
            "time": rfc3339_millis(click.at_ms),
            "url": click.url,
            "action": click.action.as_str(),
            "verdict": click.verdict,
            "category": click.category,
            "message_ref": click.message_ref,
            "recipient_ref": click.recipient_ref,
            "client_ip": click.client_ip,
            "user_agent": click.user_agent,
        }),
    }
}

fn message_event(entry: &IndexEntry) -> Event {
    let severity = match entry.verdict.as_str() {
        "deliver" | "released" => 6,
        _ => 5,
    };
    Event {
        msgid: "MESSAGE",
        severity,
        time: rfc3339(entry.received_at),
        body: json!({
            "event": "message",
            "message_ref": entry.message_ref,
            "received_at": rfc3339(entry.received_at),
            "message_id": entry.message_id,
            "sender": entry.sender,
            "from": entry.from_address,
            "client_ip": entry.client_ip,
            "subject": entry.subject,
            "recipients": entry.recipients.iter().map(|r| r.address.clone()).collect::<Vec<_>>(),
            "verdict": entry.verdict,
            "category": entry.category,
            "rule": entry.rule,
            "scores": crate::pipeline::symbols::Scores::of_weighed(&entry.weighed),
            "symbols": entry.weighed.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            "urls": entry.urls,
        }),
    }
}

fn threat_event(threat: &Threat, carried: &[IndexEntry]) -> Event {
    let mut body = serde_json::Map::from_iter([("event".to_string(), json!("threat"))]);
    body.extend(threat.fields());
    body.insert(
        "messages".into(),
        json!(carried.iter().map(|m| m.message_ref.clone()).collect::<Vec<_>>()),
    );
    body.insert(
        "recipients_at_risk".into(),
        json!(crate::threats::recipients_of(carried)),
    );
    Event {
        msgid: "THREAT",
        severity: 2,
        time: rfc3339_millis(threat.found_at_ms),
        body: Value::Object(body),
    }
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`, the event's
/// JSON as MSG (no BOM: MSG-ANY, which collectors take as they take JSON).
fn syslog_line(config: &ExportConfig, hostname: &str, event: &Event) -> String {
    let priority = u16::from(config.facility) * 8 + u16::from(event.severity);
    let hostname = if hostname.is_empty() { "-" } else { hostname };
    format!(
        "<{priority}>1 {} {hostname} {} {} {} - {}",
        event.time,
        config.app_name,
        std::process::id(),
        event.msgid,
        event.body
    )
}

/// The most of one UDP datagram's payload (RFC 5426 asks receivers for 2048; most take more).
const UDP_MAX: usize = 8192;

/// A connection to a stream collector: written to, and read to learn that it closed.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> Duplex for T {}

enum Connection {
    Stream(Box<dyn Duplex>),
    Udp(tokio::net::UdpSocket),
    File(tokio::fs::File),
}

/// Sends events to one collector, reconnecting as needed.
pub struct Exporter {
    config: ExportConfig,
    hostname: String,
    store: Store,
    data_dir: PathBuf,
    connection: Option<Connection>,
    /// Built on the first TLS connection (reading the system's anchors is slow and blocking).
    tls: Option<tokio_rustls::TlsConnector>,
}

/// How many messages or threats one step reads, and how many events one write carries.
const BATCH: usize = 500;
/// How long a connect or a write may take before the collector counts as down.
const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(10);

impl Exporter {
    pub fn new(config: ExportConfig, hostname: &str, store: Store, data_dir: PathBuf) -> Exporter {
        Exporter {
            config,
            hostname: hostname.to_string(),
            store,
            data_dir,
            connection: None,
            tls: None,
        }
    }

    fn position(&self, stream: &str) -> String {
        format!("export.{}.{stream}", self.config.name)
    }

    pub async fn run(mut self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.step().await {
                Ok(sent) => {
                    backoff = Duration::from_secs(1);
                    if sent == 0 {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                Err(error) => {
                    self.connection = None;
                    tracing::warn!(export = %self.config.name, %error, retry_in = ?backoff, "export paused");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Sends what is new on each followed record; returns how many events went.
    pub async fn step(&mut self) -> Result<usize, ExportError> {
        let mut sent = 0;
        for kind in self.config.events.clone() {
            sent += match kind {
                EventKind::Clicks => self.step_clicks().await?,
                EventKind::Messages => self.step_messages().await?,
                EventKind::Threats => self.step_threats().await?,
            };
        }
        Ok(sent)
    }

    async fn step_clicks(&mut self) -> Result<usize, ExportError> {
        let filter = ClickQuery {
            threats_only: self.config.threat_clicks_only,
            ..ClickQuery::default()
        };
        let mut sent = 0;
        let end = crate::follow::click_log_end();
        loop {
            let (store, data_dir, name, filter) = (
                self.store.clone(),
                self.data_dir.clone(),
                self.position("clicks"),
                filter.clone(),
            );
            let minute = blocking(move || -> Result<_, ExportError> {
                let Some(window) = crate::follow::next_click_window(&store, &name, end)? else {
                    return Ok(None);
                };
                Ok(Some((
                    window,
                    crate::follow::read_click_window(&data_dir, &filter, window)?,
                )))
            })
            .await?;
            let Some(((_, to), clicks)) = minute else {
                return Ok(sent);
            };
            let events: Vec<Event> = clicks.iter().map(click_event).collect();
            self.send(&events).await?;
            sent += events.len();
            let (store, name) = (self.store.clone(), self.position("clicks"));
            blocking(move || store.set_follower_position(&name, to).map_err(ExportError::from)).await?;
        }
    }

    async fn step_messages(&mut self) -> Result<usize, ExportError> {
        let (store, name) = (self.store.clone(), self.position("messages"));
        let batch = blocking(move || {
            let Some(position) = store.follower_position(&name)? else {
                let newest = store.newest_message_rowid()?;
                store.set_follower_position(&name, newest)?;
                return Ok(Vec::new());
            };
            Ok(store.messages_after(position, BATCH)?)
        })
        .await?;
        let Some((last, _)) = batch.last() else {
            return Ok(0);
        };
        let last = *last;
        let events: Vec<Event> = batch.iter().map(|(_, entry)| message_event(entry)).collect();
        self.send(&events).await?;
        let (store, name) = (self.store.clone(), self.position("messages"));
        blocking(move || store.set_follower_position(&name, last).map_err(ExportError::from)).await?;
        Ok(events.len())
    }

    async fn step_threats(&mut self) -> Result<usize, ExportError> {
        let (store, name) = (self.store.clone(), self.position("threats"));
        let batch = blocking(move || {
            let Some(position) = store.follower_position(&name)? else {
                // A new export starts from now, as the other records do.
                let newest = store.threats(&ThreatQuery {
                    limit: 1,
                    ..ThreatQuery::default()
                })?;
                store.set_follower_position(&name, newest.first().map_or(0, |t| t.id))?;
                return Ok(Vec::new());
            };
            let threats = store.threats(&ThreatQuery {
                after_id: Some(position),
                limit: BATCH,
                ..ThreatQuery::default()
            })?;
            let mut batch = Vec::new();
            for threat in threats {
                let carried = store.threat_messages(&threat, BATCH)?;
                batch.push((threat, carried));
            }
            Ok(batch)
        })
        .await?;
        let Some((last, _)) = batch.last() else {
            return Ok(0);
        };
        let last = last.id;
        let events: Vec<Event> = batch
            .iter()
            .map(|(threat, carried)| threat_event(threat, carried))
            .collect();
        self.send(&events).await?;
        let (store, name) = (self.store.clone(), self.position("threats"));
        blocking(move || store.set_follower_position(&name, last).map_err(ExportError::from)).await?;
        Ok(events.len())
    }

    async fn connect(&mut self) -> Result<Connection, ExportError> {
        let destination = self.destination();
        let failed = |e: &dyn std::fmt::Display| ExportError::Collector(format!("{destination}: {e}"));
        match self.config.transport {
            Transport::File => {
                let path = self.config.path.clone().unwrap_or_default();
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .await
                    .map_err(|e| failed(&e))?;
                Ok(Connection::File(file))
            }
            Transport::Udp => {
                let socket = tokio::net::UdpSocket::bind(if self.config.address.starts_with('[') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                })
                .await
                .map_err(|e| failed(&e))?;
                socket.connect(&self.config.address).await.map_err(|e| failed(&e))?;
                Ok(Connection::Udp(socket))
            }
            Transport::Tcp | Transport::Tls => {
                let stream =
                    tokio::time::timeout(COLLECTOR_TIMEOUT, tokio::net::TcpStream::connect(&self.config.address))
                        .await
                        .map_err(|_| failed(&"connect timed out"))?
                        .map_err(|e| failed(&e))?;
                let _ = stream.set_nodelay(true);
                if self.config.transport == Transport::Tcp {
                    return Ok(Connection::Stream(Box::new(stream)));
                }
                if self.tls.is_none() {
                    let ca_file = self.config.ca_file.clone();
                    let connector =
                        tokio::task::spawn_blocking(move || crate::tls::connector_with(true, ca_file.as_deref()))
                            .await
                            .map_err(|e| failed(&e))?
                            .map_err(|e| failed(&e))?;
                    self.tls = Some(connector);
                }
                let connector = self.tls.clone().ok_or_else(|| failed(&"no TLS connector"))?;
                let host = self.config.tls_name.clone().unwrap_or_else(|| {
                    self.config
                        .address
                        .rsplit_once(':')
                        .map_or(self.config.address.clone(), |(host, _)| {
                            host.trim_matches(['[', ']']).to_string()
                        })
                });
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(host).map_err(|e| failed(&e))?;
                let tls = tokio::time::timeout(COLLECTOR_TIMEOUT, connector.connect(name, stream))
                    .await
                    .map_err(|_| failed(&"TLS handshake timed out"))?
                    .map_err(|e| failed(&e))?;
                Ok(Connection::Stream(Box::new(tls)))
            }
        }
    }

    fn destination(&self) -> String {
        match self.config.transport {
            Transport::File => self.config.path.clone().unwrap_or_default().display().to_string(),
            _ => self.config.address.clone(),
        }
    }

    /// Sends a batch: all of it is written (and a file synced) or an error says it was not.
    async fn send(&mut self, events: &[Event]) -> Result<(), ExportError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Some(Connection::Stream(stream)) = self.connection.as_mut()
            && !still_open(stream).await
        {
            // The collector closed it (a restart, say): a write now would reach only our
            // kernel and be lost with the reset that follows.
            self.connection = None;
        }
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        let outcome = self.write(events).await;
        if outcome.is_err() {
            self.connection = None;
        }
        outcome
    }

    async fn write(&mut self, events: &[Event]) -> Result<(), ExportError> {
        let destination = self.destination();
        let failed = |e: std::io::Error| ExportError::Collector(format!("{destination}: {e}"));
        let (config, hostname) = (&self.config, self.hostname.as_str());
        match self.connection.as_mut() {
            Some(Connection::File(file)) => {
                let mut text = String::new();
                for event in events {
                    text.push_str(&event.body.to_string());
                    text.push('\n');
                }
                let length = file.metadata().await.map_err(failed)?.len();
                let written = async {
                    file.write_all(text.as_bytes()).await?;
                    file.sync_data().await
                }
                .await;
                if let Err(error) = written {
                    // No half line for the retry to run into.
                    let _ = file.set_len(length).await;
                    return Err(failed(error));
                }
                Ok(())
            }
            Some(Connection::Udp(socket)) => {
                for event in events {
                    let mut bytes = syslog_line(config, hostname, event).into_bytes();
                    bytes.truncate(UDP_MAX);
                    socket.send(&bytes).await.map_err(failed)?;
                }
                Ok(())
            }
            Some(Connection::Stream(stream)) => {
                // A chunk at a time, each with its own deadline: a slow collector that keeps
                // taking data is not cut off for the size of a busy minute.
                for chunk in events.chunks(BATCH) {
                    let mut framed = Vec::new();
                    for event in chunk {
                        let line = syslog_line(config, hostname, event);
                        framed.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
                    }
                    tokio::time::timeout(COLLECTOR_TIMEOUT, async {
                        stream.write_all(&framed).await?;
                        stream.flush().await
                    })
                    .await
                    .map_err(|_| failed(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out")))?
                    .map_err(failed)?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Whether a collector's connection is still open: a read that would wait means it is; an end
/// of stream or an error means the collector closed it. Collectors send nothing back, so
/// anything read is dropped.
async fn still_open(stream: &mut Box<dyn Duplex>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 512];
    match tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buffer)).await {
        Err(_) => true,
        Ok(Ok(read)) => read > 0,
        Ok(Err(_)) => false,
    }
}

/// Starts every configured exporter.
pub fn start(
    configs: &[ExportConfig],
    hostname: &str,
    store: &Store,
    data_dir: &std::path::Path,
) -> Vec<tokio::task::JoinHandle<()>> {
    configs
        .iter()
        .map(|config| {
            tracing::info!(export = %config.name, transport = ?config.transport, "export started");
            let exporter = Exporter::new(config.clone(), hostname, store.clone(), data_dir.to_path_buf());
            tokio::spawn(exporter.run())
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ExportError> + Send + 'static,
) -> Result<T, ExportError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ExportError::Clicks(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_lines_follow_rfc_5424() {
        let config: ExportConfig =
            toml::from_str("name = \"siem\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:514\"").unwrap();
        config.check().unwrap();
        let event = Event {
            msgid: "THREAT",
            severity: 2,
            time: "2026-11-29T10:00:00.000Z".into(),
            body: json!({"event": "threat"}),
        };
        let line = syslog_line(&config, "gw.example", &event);
        let pattern = regex::Regex::new(
            r#"^<130>1 2026-11-29T10:00:00\.000Z gw\.example portcullis \d+ THREAT - \{"event":"threat"\}$"#,
        )
        .unwrap();
        assert!(pattern.is_match(&line), "{line}");
        let bad: ExportConfig = toml::from_str("name = \"x y\"\ntransport = \"file\"").unwrap();
        assert!(bad.check().is_err());
    }
}
