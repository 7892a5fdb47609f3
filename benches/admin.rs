//! The security team's queries at scale: loads 10 million clicks through the click log's own
//! writer (slices, indexes and rollups made by its closer, as in production) and 1 million
//! message index entries into the embedded store, starts `portcullis serve` on that data, and
//! measures over real HTTP the p50/p99 of the dashboard, click searches, a message trace and a
//! SIEM `interval` query. Target: p99 under 200 ms.
//!
//! `cargo bench --bench admin` (BENCH_CLICKS, BENCH_MESSAGES, BENCH_REPEAT change the sizes;
//! BENCH_DATA=dir keeps and reuses the loaded data). Without `--bench` (as `cargo test` runs it)
//! it loads a few thousand rows and checks that every query answers.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::clicklog::{Action, ClickEvent, ClickLog, Durability, Slicing};
use portcullis::store::{IndexEntry, IndexedRecipient, Store, WeighedSymbol};

const DAY_MS: i64 = 86_400_000;
/// The data spans this many days before now.
const DAYS: i64 = 30;
const USERS: usize = 5_000;
const HOSTS: usize = 20_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift), so every run loads the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Skewed towards small values: a few hosts and users get most clicks, as in real mail.
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b).min(self.below(n))
    }
}

fn user(i: usize) -> String {
    format!("user{i}@example.com")
}

fn host(i: usize) -> String {
    if i.is_multiple_of(50) {
        format!("login-{i}.evil.example")
    } else {
        format!("www.site{i}.example.org")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Recipient pseudonyms as the click service records them: the keyed reference under the
/// data directory's key ring.
fn recipient_refs(data_dir: &Path) -> Vec<String> {
    let ring = portcullis::token::KeyRing::open_or_create(data_dir).expect("key ring");
    (0..USERS)
        .map(|i| portcullis::pipeline::hex(&ring.recipient_ref(&user(i)).expect("active key")))
        .collect()
}

fn load_messages(data_dir: &Path, count: usize, start_ms: i64, refs: &[String]) {
    let store = Store::open(data_dir).expect("store");
    let mut rng = Rng(0x5eed_0001);
    let verdicts = [
        "deliver",
        "deliver",
        "deliver",
        "deliver",
        "quarantine",
        "reject",
        "deliver",
        "quarantine",
    ];
    let span_secs = DAYS * 86_400;
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..count {
        let received_at = start_ms / 1000 + (i as i64 * span_secs) / count.max(1) as i64;
        let to = rng.skewed(USERS);
        let verdict = verdicts[rng.below(verdicts.len())];
        batch.push(IndexEntry {
            message_ref: format!("{:012x}{:012x}", received_at, i),
            received_at,
            message_id: Some(format!("<m{i}@sender{}.example>", rng.below(2000))),
            sender: format!("news@sender{}.example", rng.below(2000)),
            client_ip: format!("192.0.2.{}", rng.below(250)),
            helo: "mx.sender.example".into(),
            from_address: Some(format!("news@sender{}.example", rng.below(2000))),
            from_authenticated: false,
            size: 4000 + rng.below(60_000) as i64,
            subject: Some(format!("Newsletter {} about offer {}", i % 997, rng.below(100))),
            recipients: vec![IndexedRecipient {
                address: user(to),
                reference: refs[to].clone(),
            }],
            urls: vec![format!("https://{}/p/{}", host(rng.skewed(HOSTS)), rng.below(100))],
            symbols: Vec::new(),
            weighed: vec![
                WeighedSymbol {
                    name: "SPF_PASS".into(),
                    group: "info".into(),
                    weight: 0.0,
                    detail: String::new(),
                },
                WeighedSymbol {
                    name: if verdict == "deliver" {
                        "BULK_HEADER"
                    } else {
                        "PHISH_CREDENTIAL_FORM"
                    }
                    .into(),
                    group: if verdict == "deliver" { "bulk" } else { "phish" }.into(),
                    weight: 3.0,
                    detail: "bench".into(),
                },
            ],
            verdict: verdict.into(),
            category: (verdict == "quarantine").then(|| "phish".to_string()),
            rule: None,
            details: String::new(),
        });
        if batch.len() == batch.capacity() {
            store.file_index_batch(&batch).expect("file");
            batch.clear();
        }
    }
    store.file_index_batch(&batch).expect("file");
}

fn load_clicks(data_dir: &Path, count: usize, start_ms: i64, refs: &[String]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let slicing = Slicing {
            wal_bytes: 256 << 20,
            age: Duration::from_secs(3600),
        };
        let (log, writer) = ClickLog::open(data_dir, Durability::Normal, slicing).expect("click log");
        let tasks = 8usize;
        let per_task = count.div_ceil(tasks);
        let span = DAYS * DAY_MS;
        let started = Instant::now();
        let mut handles = Vec::new();
        for task in 0..tasks {
            let log = log.clone();
            let refs = refs.to_vec();
            handles.push(tokio::spawn(async move {
                let mut rng = Rng(0x5eed_1000 + task as u64);
                let mut pending = futures_util::stream::FuturesUnordered::new();
                for n in 0..per_task {
                    let i = n * tasks + task;
                    if i >= count {
                        break;
                    }
                    let at_ms = start_ms + (i as i64 * span) / count as i64;
                    let host_index = rng.skewed(HOSTS);
                    let evil = host_index.is_multiple_of(50);
                    let roll = rng.below(100);
                    let action = match (evil, roll) {
                        (true, 0..=79) => Action::Blocked,
                        (true, 80..=89) => Action::Warned,
                        (true, _) => Action::ClickedThrough,
                        (false, 0..=4) => Action::Prefetch,
                        (false, 5) => Action::Reported,
                        (false, _) => Action::Permitted,
                    };
                    let who = rng.skewed(USERS);
                    let event = ClickEvent {
                        id: format!("{:012x}{:020x}", at_ms, rng.next() as u128 & ((1u128 << 80) - 1)),
                        at_ms,
                        message_ref: format!("{:012x}{:012x}", at_ms / 1000, i % 1_000_000),
                        recipient_ref: refs[who].clone(),
                        url: format!("https://{}/p/{}", host(host_index), rng.below(100)),
                        verdict: if evil { "malicious" } else { "clean" }.into(),
                        category: if evil { "phish" } else { "" }.into(),
                        action,
                        client_ip: format!("198.51.100.{}", rng.below(250)),
                        user_agent: "Mozilla/5.0 (bench)".into(),
                        cache_hit: rng.below(10) < 8,
                        latency_us: 300 + rng.below(2000) as i64,
                        key_id: "bench".into(),
                    };
                    let log = log.clone();
                    pending.push(async move { log.record(event).await });
                    if pending.len() >= 512 {
                        use futures_util::StreamExt;
                        pending.next().await.expect("pending").expect("recorded");
                    }
                }
                use futures_util::StreamExt;
                while let Some(result) = pending.next().await {
                    result.expect("recorded");
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        drop(log);
        let written = started.elapsed();
        tokio::task::spawn_blocking(move || writer.join()).await.unwrap();
        eprintln!(
            "loaded {count} clicks in {:.1} s ({:.0}/s); slices finished after {:.1} s",
            written.as_secs_f64(),
            count as f64 / written.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    });
}

struct Server {
    child: Child,
    admin: String,
    /// Kept open while the server runs: it prints to it.
    _stdout: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Server {
    let config = data_dir.join("bench.toml");
    std::fs::write(&config, "[delivery]\nrelay = [\"127.0.0.1:9\"]\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(&config)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--smtp-listen",
            "off",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("SERVE_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("portcullis serve");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin = String::new();
    // The click service's line comes last.
    loop {
        let line = lines.next().expect("a listening line").unwrap();
        if line.contains("admin listening on") {
            admin = line.rsplit(' ').next().unwrap().to_string();
        }
        if line.contains("click service listening") {
            break;
        }
    }
    Server {
        child,
        admin,
        _stdout: lines,
    }
}

/// p50 and p99 of `repeat` timed calls of each query, in milliseconds, one call at a time.
fn measure(admin: &str, token: &str, queries: &[(String, String)], repeat: usize) -> Vec<(String, f64, f64)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut results = Vec::new();
        for (name, path) in queries {
            // One call first: the slices' pages come into the page cache as a running
            // console's would already be.
            let warm = client
                .get(format!("{admin}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("call");
            let status = warm.status().as_u16();
            let text = warm.text().await.unwrap_or_default();
            assert!(matches!(status, 200 | 204), "{name}: {path} answered {status}: {text}");
            let mut times = Vec::with_capacity(repeat);
            for _ in 0..repeat {
                let started = Instant::now();
                let answer = client
                    .get(format!("{admin}{path}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("call");
                let _ = answer.bytes().await.expect("body");
                times.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
            results.push((name.clone(), at(0.50), at(0.99)));
        }
        results
    })
}

fn main() {
    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let (clicks, messages, repeat) = if benchmarking {
        (
            env_usize("BENCH_CLICKS", 10_000_000),
            env_usize("BENCH_MESSAGES", 1_000_000),
            env_usize("BENCH_REPEAT", 200),
        )
    } else {
        (5_000, 1_000, 3)
    };
    let temp;
    let data_dir: PathBuf = match std::env::var_os("BENCH_DATA") {
        Some(dir) if benchmarking => dir.into(),
        _ => {
            temp = tempfile::tempdir().unwrap();
            temp.path().to_path_buf()
        }
    };
    let now = now_ms();
    let start_ms = now - DAYS * DAY_MS;
    let refs = recipient_refs(&data_dir);
    let loaded = data_dir.join("bench.loaded");
    if !loaded.exists() {
        let started = Instant::now();
        load_messages(&data_dir, messages, start_ms, &refs);
        eprintln!("loaded {messages} messages in {:.1} s", started.elapsed().as_secs_f64());
        load_clicks(&data_dir, clicks, start_ms, &refs);
        std::fs::write(&loaded, format!("{clicks} {messages} {start_ms}\n")).unwrap();
    }
    let slices = std::fs::read_dir(data_dir.join("clicks")).map_or(0, |dir| dir.count());
    let store = Store::open(&data_dir).unwrap();
    let token = portcullis::tokens::Tokens::new(store)
        .unwrap()
        .issue(
            &format!("bench-{}", now),
            portcullis::tokens::Role::Admin,
            &portcullis::audit::Actor::cli(),
        )
        .unwrap();
    let server = serve(&data_dir);
    let hour_ago = now / 1000 - 3600;
    let interval = format!(
        "{}/{}",
        portcullis::time::rfc3339(hour_ago - 86_400),
        portcullis::time::rfc3339(hour_ago - 86_400 + 3600)
    );
    let queries: Vec<(String, String)> = vec![
        ("dashboard, 7 days".into(), "/api/v1/reports/summary".into()),
        (
            "dashboard, 30 days".into(),
            format!("/api/v1/reports/summary?since={}", start_ms / 1000),
        ),
        (
            "dashboard, 24 hours".into(),
            format!("/api/v1/reports/summary?since={}", now / 1000 - 86_400),
        ),
        (
            "clicks by recipient".into(),
            format!("/api/v1/clicks?recipient={}", user(4321)),
        ),
        (
            "clicks by domain".into(),
            "/api/v1/clicks?domain=site77.example.org".into(),
        ),
        (
            "clicks blocked, last day".into(),
            format!("/api/v1/clicks?action=blocked&since={}", now / 1000 - 86_400),
        ),
        ("clicks, newest page".into(), "/api/v1/clicks".into()),
        (
            "message trace by recipient".into(),
            format!("/api/v1/messages?recipient={}", user(4321)),
        ),
        (
            "message trace by sender".into(),
            "/api/v1/messages?sender=news@sender77.example".into(),
        ),
        (
            "SIEM all, 1 hour interval".into(),
            format!("/v2/siem/all?format=json&interval={}", interval.replace('+', "%2B")),
        ),
        (
            "SIEM clicks/blocked, 1 hour interval".into(),
            format!("/v2/siem/clicks/blocked?format=json&interval={interval}"),
        ),
    ];
    let results = measure(&server.admin, &token, &queries, repeat);
    println!("admin queries over {clicks} clicks in {slices} slices and {messages} messages, {repeat} calls each:");
    println!("{:<40} {:>10} {:>10}", "query", "p50 ms", "p99 ms");
    for (name, p50, p99) in &results {
        println!("{name:<40} {p50:>10.1} {p99:>10.1}");
    }
}
