//! Running `portcullis serve` for a test, and local servers that speak the reputation providers'
//! wire protocols.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::common::{BASE, Portcullis, our_links};

/// A running click service.
pub struct Server {
    child: Child,
    pub base: String,
    /// The SMTP gateway's address, when it runs.
    pub smtp: Option<String>,
    /// The admin listener's base URL (`/metrics`).
    pub admin: String,
    /// The milter's address as an MTA is told it (`inet:127.0.0.1:PORT`), when it runs.
    pub milter: Option<String>,
}

impl Server {
    /// Starts `portcullis serve` with `config` (TOML) on a free loopback port.
    pub fn start(p: &Portcullis, config: &str) -> Server {
        Self::start_with(p, config, "off")
    }

    /// Starts `portcullis serve` with the SMTP gateway on `smtp_listen` as well.
    pub fn start_with(p: &Portcullis, config: &str, smtp_listen: &str) -> Server {
        let mut child = Self::command(p, config, smtp_listen)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("SERVE_STDERR").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start portcullis serve");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut smtp = None;
        let mut milter = None;
        let mut admin = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("listening line");
            assert!(!line.is_empty(), "portcullis serve exited before listening");
            let address = line.trim().rsplit(' ').next().expect("address").to_string();
            if line.contains("smtp gateway listening") {
                smtp = Some(address);
                continue;
            }
            if line.contains("milter listening") {
                milter = Some(address);
                continue;
            }
            if line.contains("admin listening") {
                admin = address;
                continue;
            }
            assert!(address.starts_with("http"), "unexpected line: {line}");
            return Server {
                child,
                base: address,
                smtp,
                admin,
                milter,
            };
        }
    }

    /// `portcullis serve` with `config` written to the test's directory, every listener on a free
    /// loopback port (the SMTP gateway on `smtp_listen`).
    pub fn command(p: &Portcullis, config: &str, smtp_listen: &str) -> Command {
        let config = p.write_config(config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .arg("--data-dir")
            .arg(p.data_dir())
            .arg("--config")
            .arg(&config)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--smtp-listen",
                smtp_listen,
                "--admin-listen",
                "127.0.0.1:0",
            ]);
        command
    }

    /// A signed link to `url`, made by `portcullis rewrite`, pointing at this server.
    pub fn link(&self, p: &Portcullis, url: &str) -> String {
        let message = crate::common::crlf(&format!(
            "From: a@example.org\nTo: b@example.com\nSubject: t\n\nGo to {url} now\n"
        ));
        let (out, _) = p.rewrite(&message, &[]);
        let links = our_links(&String::from_utf8(out).unwrap(), false);
        assert_eq!(links.len(), 1, "one link for {url}");
        links[0].replacen(BASE, &self.base, 1)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for serve")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

type Handler = Arc<dyn Fn(&hyper::http::request::Parts, &[u8]) -> (u16, String) + Send + Sync>;

/// A local HTTP server answering with `handler` (status, body; for a 3xx the text is the
/// `Location`), after `delay`, counting requests.
pub struct FakeHttp {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
    pub delay: Arc<Mutex<Duration>>,
}

impl FakeHttp {
    pub async fn start(handler: Handler) -> FakeHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let delay: Arc<Mutex<Duration>> = Arc::default();
        let (count, wait) = (requests.clone(), delay.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (count, wait, handler) = (count.clone(), wait.clone(), handler.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (count, wait, handler) = (count.clone(), wait.clone(), handler.clone());
                        async move {
                            count.fetch_add(1, Ordering::SeqCst);
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let delay = *wait.lock().unwrap();
                            tokio::time::sleep(delay).await;
                            let (status, text) = handler(&parts, &body);
                            // For a redirect the handler's text is the Location.
                            let redirect = (300..400).contains(&status);
                            let mut response = hyper::Response::new(Full::new(if redirect {
                                Bytes::new()
                            } else {
                                Bytes::from(text.clone())
                            }));
                            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            if redirect {
                                response.headers_mut().insert("location", text.parse().unwrap());
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeHttp { base, requests, delay }
    }
}

/// A local Google Safe Browsing v4 Lookup API: `POST /v4/threatMatches:find?key=…`. Listed URLs
/// get a match; every request is counted; answers can be delayed.
pub struct FakeSafeBrowsing {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
    pub listed: Arc<Mutex<Vec<(String, String)>>>,
    pub delay: Arc<Mutex<Duration>>,
}

impl FakeSafeBrowsing {
    pub async fn start() -> FakeSafeBrowsing {
        let listed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let list = listed.clone();
        let server = FakeHttp::start(Arc::new(move |parts, body| {
            let ok_path = parts.uri.path() == "/v4/threatMatches:find"
                && parts.uri.query().is_some_and(|q| q.contains("key=test-key"));
            if !ok_path {
                return (400, "{}".into());
            }
            let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let url = json["threatInfo"]["threatEntries"][0]["url"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let matches: Vec<serde_json::Value> = list
                .lock()
                .unwrap()
                .iter()
                .filter(|(listed, _)| *listed == url)
                .map(|(_, threat)| {
                    serde_json::json!({"threatType": threat, "platformType": "ANY_PLATFORM",
                        "threatEntryType": "URL", "threat": {"url": url}, "cacheDuration": "300s"})
                })
                .collect();
            let answer = if matches.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({"matches": matches})
            };
            (200, answer.to_string())
        }))
        .await;
        FakeSafeBrowsing {
            base: server.base,
            requests: server.requests,
            listed,
            delay: server.delay,
        }
    }

    pub fn list(&self, url: &str, threat: &str) {
        self.listed.lock().unwrap().push((url.into(), threat.into()));
    }

    pub fn config(&self) -> String {
        format!(
            "[reputation.safe_browsing]\napi_key = \"test-key\"\nbase_url = \"{}\"\n",
            self.base
        )
    }
}

/// A local URLhaus API: `POST /v1/url/` with a form field `url`.
pub async fn fake_urlhaus(listed: &'static [&'static str]) -> FakeHttp {
    FakeHttp::start(Arc::new(move |parts, body| {
        if parts.uri.path() != "/v1/url/" || parts.method != hyper::Method::POST {
            return (404, String::new());
        }
        let url = url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "url")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let answer = if listed.contains(&url.as_str()) {
            serde_json::json!({"query_status": "ok", "url": url, "url_status": "online", "threat": "malware_download"})
        } else {
            serde_json::json!({"query_status": "no_results"})
        };
        (200, answer.to_string())
    }))
    .await
}

/// A local DNS server (UDP, the DNS wire format) answering A queries for `records` and NXDOMAIN
/// for everything else. Returns its `address:port`.
pub async fn fake_dns(records: &'static [(&'static str, [u8; 4])]) -> String {
    let records: Vec<(&'static str, Record)> = records.iter().map(|(name, ip)| (*name, Record::A(*ip))).collect();
    fake_dns_records(Box::leak(records.into_boxed_slice())).await
}

/// A DNS record the fake server answers with.
#[derive(Clone)]
pub enum Record {
    A([u8; 4]),
    Txt(&'static str),
    Aaaa([u8; 16]),
    /// Preference and exchange.
    Mx(u16, String),
    Ptr(String),
    Text(String),
}

impl Record {
    pub fn qtype(&self) -> u16 {
        match self {
            Record::A(_) => 1,
            Record::Mx(..) => 15,
            Record::Ptr(_) => 12,
            Record::Txt(_) | Record::Text(_) => 16,
            Record::Aaaa(_) => 28,
        }
    }

    fn data(&self) -> Vec<u8> {
        let name = |name: &str| {
            let mut out = Vec::new();
            for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
                out.push(label.len() as u8);
                out.extend_from_slice(label.as_bytes());
            }
            out.push(0);
            out
        };
        match self {
            Record::A(ip) => ip.to_vec(),
            Record::Aaaa(ip) => ip.to_vec(),
            Record::Mx(preference, exchange) => [preference.to_be_bytes().to_vec(), name(exchange)].concat(),
            Record::Ptr(target) => name(target),
            Record::Txt(text) => character_strings(text),
            Record::Text(text) => character_strings(text),
        }
    }
}

fn character_strings(text: &str) -> Vec<u8> {
    let mut data = Vec::new();
    for chunk in text.as_bytes().chunks(255) {
        data.push(chunk.len() as u8);
        data.extend_from_slice(chunk);
    }
    data
}

/// A UDP DNS server answering A and TXT questions from `records`; other types of a known name get
/// an empty answer, unknown names NXDOMAIN.
pub async fn fake_dns_records(records: &'static [(&'static str, Record)]) -> String {
    slow_dns_records(records, Duration::ZERO).await
}

/// [`fake_dns_records`] answering each question `delay` after it arrives.
pub async fn slow_dns_records(records: &'static [(&'static str, Record)], delay: Duration) -> String {
    let records = records
        .iter()
        .map(|(name, record)| (name.to_string(), record.clone()))
        .collect();
    dns_zone(records, delay).await
}

/// A UDP DNS server for a whole zone: A, AAAA, MX, PTR and TXT records (names lower case);
/// a name containing `_dns_error` answers SERVFAIL, an unknown one NXDOMAIN.
pub async fn dns_zone(records: Vec<(String, Record)>, delay: Duration) -> String {
    let socket = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let address = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let query = &buffer[..length];
            if length < 12 {
                continue;
            }
            // The question: labels until a zero byte, then type and class.
            let mut position = 12;
            let mut labels = Vec::new();
            while position < length && query[position] != 0 {
                let size = query[position] as usize;
                if position + 1 + size > length {
                    break;
                }
                labels.push(String::from_utf8_lossy(&query[position + 1..position + 1 + size]).to_ascii_lowercase());
                position += 1 + size;
            }
            if position + 5 > length {
                continue;
            }
            let question_end = position + 5;
            let name = labels.join(".");
            let qtype = u16::from_be_bytes([query[position + 1], query[position + 2]]);
            let answers: Vec<&Record> = records
                .iter()
                .filter(|(n, record)| *n == name && record.qtype() == qtype)
                .map(|(_, record)| record)
                .collect();
            let mut response = query[..question_end].to_vec();
            response[2] = 0x84 | (query[2] & 0x01); // QR, AA, RD copied
            response[3] = if name.contains("_dns_error") {
                0x82 // RA, SERVFAIL
            } else if records.iter().any(|(n, _)| *n == name) {
                0x80
            } else {
                0x83 // RA, NXDOMAIN
            };
            response[4..6].copy_from_slice(&[0, 1]);
            response[6..12].copy_from_slice(&[0, answers.len() as u8, 0, 0, 0, 0]);
            for record in answers {
                let data = record.data();
                response.extend_from_slice(&[0xC0, 0x0C]);
                response.extend_from_slice(&record.qtype().to_be_bytes());
                response.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
                response.extend_from_slice(&(data.len() as u16).to_be_bytes());
                response.extend_from_slice(&data);
            }
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&response, peer).await;
            });
        }
    });
    address
}
