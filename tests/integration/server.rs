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
}

impl Server {
    /// Starts `portcullis serve` with `config` (TOML) on a free loopback port.
    pub fn start(p: &Portcullis, config: &str) -> Server {
        let config = p.write_config(config);
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("--data-dir")
            .arg(p.data_dir())
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start portcullis serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("listening line");
        let base = line.trim().rsplit(' ').next().expect("address").to_string();
        assert!(base.starts_with("http"), "unexpected first line: {line}");
        Server { child, base }
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let listed: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let delay: Arc<Mutex<Duration>> = Arc::default();
        let (r, l, d) = (requests.clone(), listed.clone(), delay.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, l, d) = (r.clone(), l.clone(), d.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (r, l, d) = (r.clone(), l.clone(), d.clone());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            let ok_path = request.uri().path() == "/v4/threatMatches:find"
                                && request.uri().query().is_some_and(|q| q.contains("key=test-key"));
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            let delay = *d.lock().unwrap();
                            tokio::time::sleep(delay).await;
                            if !ok_path {
                                let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                                *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
                                return Ok::<_, Infallible>(response);
                            }
                            let url = json["threatInfo"]["threatEntries"][0]["url"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string();
                            let matches: Vec<serde_json::Value> = l
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
                            Ok(hyper::Response::new(Full::new(Bytes::from(answer.to_string()))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeSafeBrowsing {
            base,
            requests,
            listed,
            delay,
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
