//! A seeded, deterministic mutation fuzzer over messages we did not write (the SpamAssassin corpus,
//! `samples/`) and the structures attackers use: byte flips, truncation, duplicated and removed
//! boundary lines, empty parts, huge header lines, multipart and `message/rfc822` nesting 50 and
//! 10,000 deep, wrong charsets, base64 garbage, quoted-printable soft-break abuse, NUL, lone CR.
//!
//! Every mutant goes through the rewriter and through the whole pipeline in-process. Each must
//! finish without a panic in under 2 s; every output must parse; every one of our links in it
//! must verify; and a rewritten message that is not flagged partial must hold no link a second
//! pass would still rewrite (nothing missed, nothing cut so that a link remains).
//!
//! `FUZZ_MUTANTS` (default 2,000), `FUZZ_SECONDS` (run until then instead) and `FUZZ_SEED` steer
//! it; `scripts/fuzz.sh` runs it for as long as asked. Failing mutants are written to
//! `target/fuzz-failures/` to replay with `portcullis rewrite`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::Config;
use portcullis::pipeline::{Envelope, Pipeline};
use portcullis::rewrite::{MessageContext, Rewriter};
use portcullis::store::DeliveryBody;
use portcullis::token::KeyRing;

use crate::hostile::{nested_multipart, nested_rfc822};

/// splitmix64: small, seeded, the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/welcome.eml")).unwrap(),
        nested_rfc822(3),
        nested_multipart(3),
        b"From: a@x.test\r\nSubject: qp\r\nContent-Type: text/html; charset=windows-1252\r\n\
          Content-Transfer-Encoding: quoted-printable\r\n\r\n<a href=3D\"https://example.org/a?q=3D\xe9\">x</a> =\r\n\
          https://example.org/b=\r\n/c\r\n"
            .to_vec(),
        b"From: a@x.test\r\nSubject: b64\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=zz\r\n\r\n\
          --zz\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b$B$3$s\x1b(B https://example.jp/x\r\n\
          --zz\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n\
          PGEgaHJlZj0iaHR0cHM6Ly9leGFtcGxlLm9yZy8iPmxpbms8L2E+\r\n--zz--\r\n"
            .to_vec(),
    ];
    let corpus = crate::corpus::corpus_files();
    seeds.extend(corpus.iter().map(|path| crate::corpus::corpus_message(path)));
    seeds
}

const MUTATIONS: &[&str] = &[
    "flip",
    "truncate",
    "duplicate-boundary",
    "remove-boundary",
    "empty-part",
    "huge-header",
    "nest-multipart-50",
    "nest-multipart-10000",
    "nest-rfc822-50",
    "nest-rfc822-10000",
    "nest-base64-rfc822-12",
    "charset",
    "base64-garbage",
    "qp-abuse",
    "nul",
    "lone-cr",
];

/// Offsets where lines start.
fn line_starts(message: &[u8]) -> Vec<usize> {
    std::iter::once(0)
        .chain(
            message
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&i| i < message.len())
        .collect()
}

fn line_at(message: &[u8], start: usize) -> &[u8] {
    let end = message[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(message.len(), |i| start + i + 1);
    &message[start..end]
}

fn insert(message: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(message.len());
    message.splice(at..at, bytes.iter().copied());
}

fn mutate(rng: &mut Rng, message: &[u8], mutation: &str) -> Vec<u8> {
    let mut out = message.to_vec();
    let lines = line_starts(message);
    let boundary_lines: Vec<usize> = lines
        .iter()
        .copied()
        .filter(|&s| message[s..].starts_with(b"--"))
        .collect();
    let body_start = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(0);
    let random_at = |rng: &mut Rng| rng.below(message.len() + 1);
    match mutation {
        "flip" => {
            for _ in 0..1 + rng.below(8) {
                if !out.is_empty() {
                    let at = rng.below(out.len());
                    out[at] = rng.next() as u8;
                }
            }
        }
        "truncate" => out.truncate(random_at(rng)),
        "duplicate-boundary" | "empty-part" if !boundary_lines.is_empty() => {
            let start = boundary_lines[rng.below(boundary_lines.len())];
            let line = line_at(message, start).to_vec();
            let at = start + line.len();
            insert(&mut out, at, &line);
        }
        "remove-boundary" if !boundary_lines.is_empty() => {
            let start = boundary_lines[rng.below(boundary_lines.len())];
            let len = line_at(message, start).len();
            out.drain(start..start + len);
        }
        "huge-header" => {
            let mut line = b"X-Huge: ".to_vec();
            line.extend(std::iter::repeat_n(b'a', 100_000 + rng.below(200_000)));
            line.extend_from_slice(b" https://example.org/in-a-header\r\n");
            insert(&mut out, 0, &line);
        }
        "nest-multipart-50" | "nest-multipart-10000" | "nest-rfc822-50" | "nest-rfc822-10000" => {
            let levels = if mutation.ends_with("10000") { 10_000 } else { 50 };
            let multipart = mutation.starts_with("nest-multipart");
            // Built as one prefix and one suffix: wrapping level by level would copy quadratically.
            let mut inner = Vec::with_capacity(message.len() + levels * 64);
            let mut closing = Vec::new();
            for level in (0..levels).rev() {
                if multipart {
                    inner.extend_from_slice(
                        format!("Content-Type: multipart/mixed; boundary=\"n{level}\"\r\n\r\n--n{level}\r\n")
                            .as_bytes(),
                    );
                    closing.push(format!("\r\n--n{level}--\r\n"));
                } else {
                    inner.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
                }
            }
            inner.extend_from_slice(message);
            for close in closing.iter().rev() {
                inner.extend_from_slice(close.as_bytes());
            }
            out = b"From: a@x.test\r\nTo: bob@example.com\r\nSubject: nested\r\nMIME-Version: 1.0\r\n".to_vec();
            out.extend_from_slice(&inner);
        }
        "nest-base64-rfc822-12" => {
            // Encoded attached messages: each level must be decoded to be seen at all.
            use base64::Engine;
            for _ in 0..12 {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&out);
                let mut wrapped =
                    b"From: a@x.test\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\
                      Content-Transfer-Encoding: base64\r\n\r\n"
                        .to_vec();
                for line in encoded.as_bytes().chunks(76) {
                    wrapped.extend_from_slice(line);
                    wrapped.extend_from_slice(b"\r\n");
                }
                out = wrapped;
            }
        }
        "charset" => {
            let charsets = [
                "utf-7",
                "utf-32",
                "iso-2022-jp",
                "shift_jis",
                "utf-16",
                "iso-2022-kr",
                "hz-gb-2312",
                "x-bogus",
                "windows-1252",
                "\"utf-8",
            ];
            let charset = charsets[rng.below(charsets.len())];
            let text = String::from_utf8_lossy(message);
            let replaced = if text.to_ascii_lowercase().contains("charset=") {
                let lower = text.to_ascii_lowercase();
                let at = lower.find("charset=").unwrap() + "charset=".len();
                let end = text[at..]
                    .find(|c: char| c == ';' || c.is_whitespace())
                    .map_or(text.len(), |i| at + i);
                format!("{}{charset}{}", &text[..at], &text[end..])
            } else {
                format!("Content-Type: text/plain; charset={charset}\r\n{text}")
            };
            out = replaced.into_bytes();
        }
        "base64-garbage" => {
            let mut garbage = b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
            for _ in 0..rng.below(400) {
                let alphabet = b"ABCxyz+/=!\r\n\x00\xff-";
                garbage.push(alphabet[rng.below(alphabet.len())]);
            }
            garbage.extend_from_slice(b"\r\n");
            if let Some(&start) = boundary_lines.first() {
                let at = start + line_at(message, start).len();
                insert(&mut out, at, &garbage);
            } else {
                out.truncate(body_start);
                out.extend_from_slice(b"MIME-Version: 1.0\r\n");
                out.extend_from_slice(&garbage);
            }
        }
        "qp-abuse" => {
            let abuse: [&[u8]; 6] = [b"=\r\n", b"=", b"=ZZ", b"=\n", b"=\r", b"=3D=\r\n"];
            for _ in 0..1 + rng.below(20) {
                let at = body_start + rng.below(out.len().saturating_sub(body_start) + 1);
                insert(&mut out, at, abuse[rng.below(abuse.len())]);
            }
            if !String::from_utf8_lossy(&out)
                .to_ascii_lowercase()
                .contains("quoted-printable")
            {
                insert(&mut out, 0, b"Content-Transfer-Encoding: quoted-printable\r\n");
            }
        }
        "nul" => {
            for _ in 0..1 + rng.below(5) {
                let at = rng.below(out.len() + 1);
                insert(&mut out, at, b"\0");
            }
        }
        "lone-cr" => {
            for _ in 0..1 + rng.below(5) {
                let at = rng.below(out.len() + 1);
                insert(&mut out, at, b"\r");
            }
        }
        _ => out.truncate(random_at(rng)),
    }
    out
}

struct Failure {
    name: String,
    problem: String,
    mutant: Vec<u8>,
}

fn check_rewrite(rewriter: &Rewriter, keys: &KeyRing, mutant: &[u8]) -> Result<(), String> {
    let context = MessageContext {
        message_ref: b"fuzz".to_vec(),
        recipient: Some("bob@example.com".into()),
        issued_at: 1_700_000_000,
        flags: 0,
    };
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| rewriter.rewrite(mutant, &context)))
        .map_err(|panic| format!("rewrite panicked: {}", panic_text(&panic)))?;
    if started.elapsed() > Duration::from_secs(2) {
        return Err(format!("rewrite took {:?}", started.elapsed()));
    }
    let Ok(rewritten) = result else {
        return Ok(()); // Not a message at all: a clear error, which is right.
    };
    // mail-parser recurses: like the gateway, it only ever sees bounded nesting.
    let bounded = portcullis::rewrite::walk_entities(&rewritten.message, 64, 100_000, |_, _, _| {}) <= 64;
    if bounded
        && mail_parser::MessageParser::default()
            .parse(&rewritten.message)
            .is_none()
        && !mutant.is_empty()
    {
        return Err("output does not parse".into());
    }
    let second = catch_unwind(AssertUnwindSafe(|| rewriter.scan(&rewritten.message)))
        .map_err(|panic| format!("scan of the output panicked: {}", panic_text(&panic)))?
        .map_err(|e| format!("output is no longer a message: {e}"))?;
    for link in &second.links {
        if link.action == "ours" {
            keys.verify(&link.url)
                .map_err(|e| format!("our link {} does not verify: {e}", link.url))?;
        }
    }
    if !rewritten.report.is_partial() {
        let missed: Vec<&str> = second
            .links
            .iter()
            .filter(|l| l.action == "rewritten")
            .map(|l| l.url.as_str())
            .collect();
        if !missed.is_empty() {
            return Err(format!("not flagged partial, yet links remain unrewritten: {missed:?}"));
        }
    }
    Ok(())
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

fn envelope() -> Envelope {
    Envelope {
        message_ref: "0000000000000000fuzz0001".into(),
        sender: "a@sender.test".into(),
        recipients: vec!["bob@example.com".into(), "carol@example.com".into()],
        client_ip: "192.0.2.7".parse().unwrap(),
        helo: "client.test".into(),
        tls: false,
        received_at: 1_700_000_000,
        connection_symbols: Vec::new(),
    }
}

async fn check_pipeline(pipeline: &Arc<Pipeline>, mutant: Vec<u8>) -> Result<(), String> {
    let envelope = envelope();
    let started = Instant::now();
    let (task_pipeline, task_envelope, task_mutant) = (pipeline.clone(), envelope.clone(), mutant.clone());
    let outcome = tokio::spawn(async move { task_pipeline.run(&task_envelope, &task_mutant, true).await })
        .await
        .map_err(|e| format!("pipeline panicked: {e}"))?;
    if started.elapsed() > Duration::from_secs(2) {
        return Err(format!("pipeline took {:?}", started.elapsed()));
    }
    let Some(plan) = outcome.plan.clone() else {
        return Ok(());
    };
    let renderer = pipeline.renderer();
    let mut recipients: Vec<Option<String>> = outcome
        .deliveries
        .iter()
        .map(|delivery| match &delivery.body {
            DeliveryBody::Rendered { recipient } => recipient.clone(),
            DeliveryBody::Literal(_) => None,
        })
        .collect();
    if outcome.hold.is_some() {
        recipients.push(None);
    }
    tokio::task::spawn_blocking(move || {
        for recipient in recipients {
            let copy = renderer.render(&mutant, &plan, &envelope.message_ref, recipient.as_deref());
            if mail_parser::MessageParser::default().parse(&copy).is_none() {
                return Err("a copy for delivery does not parse".to_string());
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| format!("rendering panicked: {e}"))??;
    if started.elapsed() > Duration::from_secs(2) {
        return Err(format!("pipeline and rendering took {:?}", started.elapsed()));
    }
    Ok(())
}

/// The rewriter and a pipeline with every stage on, the classifier included: its model is trained
/// here on 400 corpus messages, so mutants reach the feature extraction too.
fn setup() -> (KeyRing, Rewriter, Arc<Pipeline>) {
    let keys = KeyRing::ephemeral();
    let mut config = Config::default();
    config.pipeline.authenticate = false;
    let data_dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    config.data_dir = data_dir.path().to_path_buf();
    let untrained = Pipeline::new(&config, keys.clone(), None, None);
    let envelope = envelope();
    let mut trainer = portcullis::classifier::Trainer::default();
    for file in crate::corpus::corpus_files().iter().step_by(15).take(400) {
        let message = std::fs::read(file.with_extension("txt")).unwrap();
        let spam = file.to_string_lossy().contains("/spam-");
        if let Some(features) = untrained.features(&envelope, &message) {
            trainer.add(features, spam);
        }
    }
    let model = trainer.fit(portcullis::classifier::Learner::Logistic, 2).unwrap();
    model
        .save(&data_dir.path().join(portcullis::classifier::MODEL_FILE))
        .unwrap();
    let rewriter = Rewriter::new(keys.clone(), &config.links.base_url, config.rewrite.clone());
    let pipeline = Arc::new(Pipeline::new(&config, keys.clone(), None, None));
    (keys, rewriter, pipeline)
}

/// Every mutant the fuzzer ever caught, kept in `tests/fixtures/hostile/` under a name that says
/// what it is, stays fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutants_found_before_stay_fixed() {
    let (keys, rewriter, pipeline) = setup();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let mutant = std::fs::read(&path).unwrap();
        let result = match check_rewrite(&rewriter, &keys, &mutant) {
            Ok(()) => check_pipeline(&pipeline, mutant).await,
            Err(problem) => Err(problem),
        };
        assert_eq!(result, Ok(()), "{}", path.display());
        checked += 1;
    }
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutants_never_crash_stall_or_slip_a_link_past() {
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let count: usize = std::env::var("FUZZ_MUTANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let seeds = seeds();
    let (keys, rewriter, pipeline) = setup();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut failures: Vec<Failure> = Vec::new();
    let mut done = 0usize;
    let mut by_mutation = std::collections::BTreeMap::<&str, usize>::new();
    while match budget {
        Some(budget) => started.elapsed() < budget,
        None => done < count,
    } {
        let index = rng.below(seeds.len());
        let mutation = MUTATIONS[rng.below(MUTATIONS.len())];
        let mut mutant = mutate(&mut rng, &seeds[index], mutation);
        // A second mutation on a third of them: flaws combine in real mail too.
        let second = (rng.below(3) == 0).then(|| MUTATIONS[rng.below(MUTATIONS.len())]);
        if let Some(second) = second.filter(|m| !m.starts_with("nest")) {
            mutant = mutate(&mut rng, &mutant, second);
        }
        let name = format!(
            "seed{index}-{mutation}{}-{done}",
            second.map(|s| format!("+{s}")).unwrap_or_default()
        );
        if std::env::var_os("FUZZ_VERBOSE").is_some() {
            eprintln!("{name}");
        }
        *by_mutation.entry(mutation).or_default() += 1;
        let result = match check_rewrite(&rewriter, &keys, &mutant) {
            Ok(()) => check_pipeline(&pipeline, mutant.clone()).await,
            Err(problem) => Err(problem),
        };
        if let Err(problem) = result {
            failures.push(Failure { name, problem, mutant });
        }
        done += 1;
    }
    eprintln!(
        "fuzz: {done} mutants of {} seeds (seed {seed}) in {:?}: {by_mutation:?}",
        seeds.len(),
        started.elapsed()
    );
    if !failures.is_empty() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
        std::fs::create_dir_all(&dir).unwrap();
        for failure in &failures {
            std::fs::write(dir.join(format!("{}.eml", failure.name)), &failure.mutant).unwrap();
        }
        let listed: Vec<String> = failures
            .iter()
            .take(15)
            .map(|f| format!("{}: {}", f.name, f.problem.chars().take(300).collect::<String>()))
            .collect();
        panic!(
            "{} of {done} mutants failed (written to {}):\n{}",
            failures.len(),
            dir.display(),
            listed.join("\n")
        );
    }
}

/// What the gateway's session must answer, tracked alongside it.
#[derive(Default)]
struct SessionModel {
    greeted: bool,
    mail: bool,
    recipients: usize,
}

/// One command of the session fuzz: the bytes to send and the reply codes that are correct now.
fn next_command(rng: &mut Rng, model: &mut SessionModel) -> (Vec<u8>, Vec<u16>, bool) {
    let pick = rng.below(16);
    let line = |text: &str| format!("{text}\r\n").into_bytes();
    let (bytes, codes): (Vec<u8>, Vec<u16>) = match pick {
        0 => {
            *model = SessionModel {
                greeted: true,
                ..Default::default()
            };
            (line("EHLO fuzz.test"), vec![250])
        }
        1 => {
            *model = SessionModel {
                greeted: true,
                ..Default::default()
            };
            (line("HELO fuzz.test"), vec![250])
        }
        2 | 3 => {
            let codes = if !model.greeted || model.mail {
                vec![503]
            } else {
                vec![250]
            };
            model.mail |= codes == [250];
            (line("MAIL FROM:<a@sender.test>"), codes)
        }
        4 | 5 => {
            let codes = if model.mail { vec![250] } else { vec![503] };
            if model.mail {
                model.recipients = 1;
            }
            (line("RCPT TO:<bob@example.com>"), codes)
        }
        6 => {
            let codes = if model.mail { vec![550] } else { vec![503] };
            (line("RCPT TO:<someone@elsewhere.test>"), codes)
        }
        7 => (line("MAIL FROM:<<<broken"), vec![500, 501, 503]),
        8 => {
            let codes = if !model.mail {
                vec![503]
            } else if model.recipients == 0 {
                vec![554]
            } else {
                vec![354]
            };
            (line("DATA"), codes)
        }
        9 => {
            model.mail = false;
            model.recipients = 0;
            (line("RSET"), vec![250])
        }
        10 => (line("NOOP"), vec![250]),
        11 => (line("VRFY bob"), vec![502]),
        12 => {
            let mut garbage = b"X".to_vec();
            for _ in 0..rng.below(60) {
                garbage.push(match rng.next() as u8 {
                    b'\r' | b'\n' => b' ',
                    b => b,
                });
            }
            garbage.extend_from_slice(b"\r\n");
            (garbage, vec![500, 501, 502])
        }
        13 => {
            let mut long = b"NOOP ".to_vec();
            long.extend(std::iter::repeat_n(b'a', 5000 + rng.below(5000)));
            long.extend_from_slice(b"\r\n");
            (long, vec![500])
        }
        14 => (b"NOOP\0x\r\n".to_vec(), vec![250, 500, 501]),
        _ => (line("HELP"), vec![214]),
    };
    (bytes, codes, pick == 8)
}

/// The SMTP session under random valid and invalid command sequences, pipelined in groups: every
/// reply is the one the protocol asks for, DATA goes through when it should, and the server
/// neither dies nor stops answering.
#[test]
fn smtp_sessions_under_random_commands_answer_correctly() {
    let p = crate::common::Portcullis::new();
    let config = crate::gateway::gateway_config(
        "127.0.0.1:9",
        "127.0.0.1:9",
        "max_errors = 100000\nmax_commands = 100000\n",
        "[pipeline]\nauthenticate = false\n",
    );
    let (server, smtp) = crate::gateway::start_gateway(&p, &config);
    let mut rng = Rng(std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5));
    let sessions = 120;
    let mut accepted = 0;
    for session in 0..sessions {
        let (mut raw, greeting) = crate::gateway::Raw::connect(&smtp);
        assert!(greeting.starts_with("220"), "{greeting}");
        let mut model = SessionModel::default();
        let mut transcript = String::new();
        let commands = 5 + rng.below(40);
        let mut sent = 0;
        while sent < commands {
            // A group of pipelined commands; DATA, when it comes, ends its group (RFC 2920).
            let mut group = Vec::new();
            let mut expected = Vec::new();
            let mut ends_in_data = false;
            for _ in 0..1 + rng.below(6) {
                let (bytes, codes, is_data) = next_command(&mut rng, &mut model);
                transcript.push_str(&String::from_utf8_lossy(&bytes[..bytes.len().min(80)]));
                group.extend_from_slice(&bytes);
                expected.push(codes);
                sent += 1;
                if is_data {
                    ends_in_data = true;
                    break;
                }
            }
            raw.send(&group);
            let mut data_accepted = false;
            for codes in &expected {
                let reply = raw.reply();
                transcript.push_str(&format!("  <- {reply}"));
                let code: u16 = reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                assert!(
                    codes.contains(&code),
                    "session {session}: expected one of {codes:?}, got {reply:?}\n{transcript}"
                );
                data_accepted = code == 354;
            }
            if ends_in_data && data_accepted {
                if rng.below(10) == 0 {
                    // Hang up in the middle of the message: the server must shrug it off.
                    raw.send(b"Subject: cut\r\n\r\nhalf a mess");
                    break;
                }
                raw.send(b"Subject: fuzz\r\n\r\nsee https://example.org/fuzz\r\n.\r\n");
                let reply = raw.reply();
                assert!(
                    reply.starts_with("250"),
                    "session {session}: after DATA: {reply}\n{transcript}"
                );
                accepted += 1;
                model.mail = false;
                model.recipients = 0;
            }
        }
        if rng.below(2) == 0 {
            let reply = raw.command("QUIT");
            assert!(reply.starts_with("221"), "{reply}");
            assert!(raw.closed());
        }
    }
    assert!(accepted > 0, "some messages went through");
    let (mut raw, greeting) = crate::gateway::Raw::connect(&smtp);
    assert!(greeting.starts_with("220"));
    assert!(raw.command("EHLO after.test").starts_with("250"));
    drop(server);
}
