//! A W3C WebDriver client over HTTP, driving Debian's headless Chromium through chromedriver
//! (`CHROMEDRIVER` and `CHROMIUM` override `/usr/bin/chromedriver` and `/usr/bin/chromium`).
//! Screenshots go to `target/test-artifacts/<suite>/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::gateway::free_port;

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    artifacts: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(suite: &str) -> Browser {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{chromedriver} (Debian chromium-driver): {e}"));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(answer) = ready
                && let Ok(status) = answer.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start on {base}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags keep Chromium from reaching for Google's services on a closed network.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1366,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": chromium, "args": args},
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_string();
        let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-artifacts")
            .join(suite);
        std::fs::create_dir_all(&artifacts).unwrap();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{session}"),
            artifacts,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"].get("error").is_some() {
            Err(answer["value"].clone())
        } else {
            Ok(answer["value"].clone())
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// Runs `script` in the page (its `arguments` are `args`) and gives its result.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The first element matching `css` whose text contains `text`, waited for up to `seconds`.
    pub async fn wait_for(&self, css: &str, text: &str, seconds: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let found = self
                .run(
                    "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);",
                    json!([css]),
                )
                .await;
            let texts: Vec<String> = found
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if let Some(hit) = texts.iter().position(|t| t.contains(text)) {
                return self.element_at(css, hit).await;
            }
            if Instant::now() >= deadline {
                let page = self.run("return document.body.innerText;", json!([])).await;
                panic!("no {css} with {text:?} after {seconds} s; the page says:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    async fn element_at(&self, css: &str, index: usize) -> String {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found[index][ELEMENT].as_str().unwrap().to_string()
    }

    pub async fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    pub async fn type_into(&self, element: &str, text: &str) {
        self.post(&format!("/element/{element}/value"), json!({ "text": text }))
            .await;
    }

    /// Types into whatever has the keyboard focus, as a person at the keyboard would.
    pub async fn keys(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// Accepts the `confirm()` the page opens, once it is open.
    pub async fn accept_dialog(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.command(reqwest::Method::GET, "/alert/text", None).await.is_err() {
            assert!(Instant::now() < deadline, "no dialog opened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.post("/alert/accept", json!({})).await;
    }

    /// Saves the page as `<name>.png` among the suite's artifacts.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let shot = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then the driver goes.
        let (http, session) = (self.http.clone(), self.session.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(5), http.delete(session).send()).await;
            })
        })
        .join();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
