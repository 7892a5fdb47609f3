//! Attachments through real SMTP: ClamAV's own test files, each sent as an attachment to a gateway
//! asking a private clamd (Debian's `clamav-daemon`, with a signature database the test builds with
//! `sigtool --md5`, since no signatures can be downloaded here), end in quarantine under ClamAV's
//! signature name; a clamd that does not answer lets mail through (fail open) or refuses it for
//! now (fail closed).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::attachments::engines::{ClamavConfig, Clamd, ClamdVerdict, FailMode};

use crate::common::Portcullis;
use crate::gateway::{Sink, free_port, gateway_config, messages_index, start_gateway, swaks, symbols};

const TEST_FILES: &str = "/usr/share/clamav-testfiles";
const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A clamd of our own on a loopback port, with only the signatures the test made.
struct ClamDaemon {
    child: Child,
    address: String,
}

impl ClamDaemon {
    fn start(dir: &Path, files: &[PathBuf]) -> ClamDaemon {
        let database = dir.join("db");
        std::fs::create_dir_all(&database).unwrap();
        let sigtool = Command::new("sigtool")
            .arg("--md5")
            .args(files)
            .output()
            .expect("sigtool (apt install clamav)");
        assert!(sigtool.status.success(), "{}", String::from_utf8_lossy(&sigtool.stderr));
        let mut signatures = String::from_utf8(sigtool.stdout).unwrap();
        signatures.push_str(&format!("{}:{}:Eicar-Test-Signature\n", md5_hex(EICAR), EICAR.len()));
        std::fs::write(database.join("portcullis-test.hdb"), signatures).unwrap();
        let port = free_port();
        let config = dir.join("clamd.conf");
        std::fs::write(
            &config,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 LogFile {}\nPidFile {}\nStreamMaxLength 50M\n",
                database.display(),
                dir.join("clamd.log").display(),
                dir.join("clamd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new(clamd_binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd (apt install clamav-daemon)");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pong(&address) {
            assert!(
                Instant::now() < deadline,
                "clamd did not start: {}",
                std::fs::read_to_string(dir.join("clamd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        ClamDaemon { child, address }
    }
}

impl Drop for ClamDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clamd_binary() -> &'static str {
    if Path::new("/usr/sbin/clamd").exists() {
        "/usr/sbin/clamd"
    } else {
        "clamd"
    }
}

fn pong(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    stream.write_all(b"zPING\0").is_ok() && stream.read_to_end(&mut reply).is_ok() && reply.starts_with(b"PONG")
}

/// MD5 by `md5sum`, in hex: the one digest the test needs and the crate does not have.
fn md5_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn held(p: &Portcullis) -> Vec<serde_json::Value> {
    p.run_json_lines(&["quarantine", "list", "--json"])
}

fn send_attachment(smtp: &str, subject: &str, file: &Path) -> (bool, String) {
    swaks(
        smtp,
        &[
            "--from",
            "alice@sender.test",
            "--to",
            "bob@example.com",
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            "the file you asked for",
            "--attach-type",
            "application/octet-stream",
            "--attach-name",
            &file.file_name().unwrap().to_string_lossy(),
            "--attach",
            &format!("@{}", file.display()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn clamav_test_files_through_smtp_end_in_quarantine_under_clamav_names() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(TEST_FILES)
        .expect("clamav-testfiles (apt install clamav-testfiles)")
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 40, "{} test files", files.len());
    let p = Portcullis::new();
    let clamd = ClamDaemon::start(&p.dir.path().join("clamd"), &files);

    // What clamd itself calls each file, asked directly.
    let direct = Clamd::new(&ClamavConfig {
        address: clamd.address.clone(),
        timeout_ms: 30_000,
        fail: FailMode::Closed,
    });
    let mut expected = Vec::new();
    for file in &files {
        match direct.scan(&std::fs::read(file).unwrap()).await.unwrap() {
            ClamdVerdict::Found(name) => expected.push(name),
            ClamdVerdict::Clean => panic!("{} is clean to clamd", file.display()),
        }
    }

    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let extra = format!(
        "[attachments.clamav]\naddress = \"{}\"\ntimeout_ms = 30000\nfail = \"closed\"\n",
        clamd.address
    );
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", &extra));
    let sent = files.clone();
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        for (number, file) in sent.iter().enumerate() {
            let (ok, transcript) = send_attachment(&address, &format!("file {number}"), file);
            assert!(ok, "{}: {transcript}", file.display());
        }
    })
    .await
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut holds = held(&p);
    while holds.len() < files.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        holds = held(&p);
    }
    assert_eq!(holds.len(), files.len(), "every file is held");
    assert!(sink.messages().is_empty(), "nothing infected is delivered");
    let index = messages_index(&p);
    for (number, (file, signature)) in files.iter().zip(&expected).enumerate() {
        let subject = format!("file {number}");
        let hold = holds
            .iter()
            .find(|h| h["subject"] == subject.as_str())
            .unwrap_or_else(|| panic!("{} not held", file.display()));
        assert_eq!(hold["category"], "malware", "{}", file.display());
        let name = file.file_name().unwrap().to_string_lossy();
        let reason = hold["reason"].as_str().unwrap();
        assert!(
            reason.contains(&format!("clamav: {signature} in {name}")),
            "{}: {reason}",
            file.display()
        );
        let entry = index.iter().find(|e| e["subject"] == subject.as_str()).unwrap();
        assert!(symbols(entry).contains(&"CLAMAV_VIRUS".to_string()), "{entry}");
    }
    // The header the quarantined copy carries names the engine and the signature.
    let id = holds[0]["id"].to_string();
    let shown = p.run(&["quarantine", "show", &id], b"");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("X-Portcullis-Virus-Details: infected; clamav: "),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_clamd_fails_open_or_closed_as_configured() {
    let p = Portcullis::new();
    let clean = p.dir.path().join("notes.txt");
    std::fs::write(&clean, b"meeting notes\n").unwrap();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    // Nothing listens on this port.
    let dead = format!("127.0.0.1:{}", free_port());

    let open = format!("[attachments.clamav]\naddress = \"{dead}\"\ntimeout_ms = 2000\nfail = \"open\"\n");
    let (mut server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", &open));
    let (ok, transcript) = {
        let (smtp, clean) = (smtp.clone(), clean.clone());
        tokio::task::spawn_blocking(move || send_attachment(&smtp, "fail open", &clean))
            .await
            .unwrap()
    };
    assert!(ok, "{transcript}");
    let copies = sink.wait_for(1, 20);
    assert_eq!(copies.len(), 1, "fail open delivers");
    assert!(
        copies[0].contains("X-Portcullis-Virus-Details: unscanned;"),
        "{}",
        copies[0]
    );
    let index = messages_index(&p);
    assert!(symbols(&index[0]).contains(&"CLAMAV_UNAVAILABLE".to_string()));
    assert!(server.stop().success());

    let closed = format!("[attachments.clamav]\naddress = \"{dead}\"\ntimeout_ms = 2000\nfail = \"closed\"\n");
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", &closed));
    let (ok, transcript) = tokio::task::spawn_blocking(move || send_attachment(&smtp, "fail closed", &clean))
        .await
        .unwrap();
    assert!(!ok, "fail closed refuses for now");
    assert!(transcript.contains("451 4.7.1"), "{transcript}");
    assert_eq!(sink.messages().len(), 1, "nothing more delivered");
}

/// Files we did not write (ClamAV's test files: 7z, cab, chm, OLE, PDF, tar.gz, cpio, PE packers…)
/// and the attachment fixtures, each mutated at the byte level (flips, truncation, a chunk
/// repeated, a length field zeroed) and opened: no inspection may fail (a panic inside one is
/// caught and reported as a failed inspection, which this counts).
#[test]
fn mutated_files_never_fail_inspection() {
    use portcullis::attachments::{AttachmentsConfig, scan};
    use portcullis::pipeline::malware::{Leaf, Parts};
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(TEST_FILES)
        .expect("clamav-testfiles (apt install clamav-testfiles)")
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.is_file())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detect");
    for entry in std::fs::read_dir(&fixtures).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("attach-") || name.starts_with("qr-")) || !name.ends_with(".eml") {
            continue;
        }
        let parts = portcullis::pipeline::malware::parts(&std::fs::read(entry.path()).unwrap(), 64);
        for (body, leaf) in parts.bodies.iter().zip(&parts.leaves) {
            if let Some(file) = &leaf.name {
                files.push((file.clone(), body.clone()));
            }
        }
    }
    files.sort();
    assert!(files.len() >= 60, "{} files", files.len());
    let config = AttachmentsConfig::default();
    let mut seed = 11u64;
    let mut next = move |below: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as usize) % below.max(1)
    };
    let mut failures = Vec::new();
    for round in 0..6000 {
        let (name, original) = &files[round % files.len()];
        let mut bytes = original.clone();
        match next(4) {
            0 => {
                for _ in 0..1 + next(16) {
                    let at = next(bytes.len());
                    if let Some(byte) = bytes.get_mut(at) {
                        *byte = next(256) as u8;
                    }
                }
            }
            1 => bytes.truncate(next(bytes.len() + 1)),
            2 => {
                let start = next(bytes.len());
                let end = (start + next(512)).min(bytes.len());
                let chunk = bytes[start..end].to_vec();
                let at = next(bytes.len());
                bytes.splice(at..at, chunk.iter().cloned().cycle().take(chunk.len() * (1 + next(8))));
            }
            _ => {
                // Sizes and offsets: four bytes zeroed or maxed where a header field might be.
                let at = next(bytes.len().min(4096));
                let fill = if next(2) == 0 { 0 } else { 0xff };
                for byte in bytes.iter_mut().skip(at).take(4) {
                    *byte = fill;
                }
            }
        }
        let parts = Parts {
            bodies: vec![bytes.clone()],
            leaves: vec![Leaf {
                mime: "application/octet-stream".into(),
                charset: None,
                attachment: true,
                name: Some(name.clone()),
            }],
            attachment_names: vec![name.clone()],
            depth: 1,
        };
        let found = scan(&parts, &config, Some("sender.test"));
        if let Some(hit) = found.hits.iter().find(|hit| hit.detail.contains("inspection failed")) {
            let path = std::env::temp_dir().join(format!("portcullis-mutant-{round}-{name}"));
            std::fs::write(&path, &bytes).unwrap();
            failures.push(format!("{}: {} (kept as {})", name, hit.detail, path.display()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every SpamAssassin corpus message (mail we did not write): its files opened without a failed
/// inspection, and the DLP types run over its text with every match masked — never more than four
/// letters or digits of the value shown, and the value itself nowhere in what is kept.
#[test]
fn corpus_files_open_and_sensitive_matches_stay_masked() {
    use portcullis::dlp::{self, InfoType};
    let files = crate::corpus::corpus_files();
    assert!(files.len() > 6000, "{} corpus messages", files.len());
    let types = [
        InfoType::CreditCard,
        InfoType::Iban,
        InfoType::JapanMyNumber,
        InfoType::UsSsn,
    ];
    let config = portcullis::attachments::AttachmentsConfig::default();
    let (mut opened, mut matches) = (0usize, 0usize);
    for path in &files {
        let message = crate::corpus::corpus_message(path);
        let parts = portcullis::pipeline::malware::parts(&message, 64);
        let scan = portcullis::attachments::scan(&parts, &config, None);
        opened += scan.files.len();
        assert!(
            !scan.hits.iter().any(|hit| hit.detail.contains("inspection failed")),
            "{}: {:?}",
            path.display(),
            scan.hits
        );
        let text = portcullis::pipeline::content::Content::of(&parts).text;
        for kind in &types {
            for found in dlp::find(&text, kind) {
                matches += 1;
                let clear = &text[found.start..found.end];
                let shown = found
                    .masked
                    .chars()
                    .filter(|c| c.is_alphanumeric() && *c != '*')
                    .count();
                assert!(shown <= 4, "{}: {} shows {shown}", path.display(), found.masked);
                assert!(!found.masked.contains(clear), "{}: clear value kept", path.display());
            }
        }
    }
    eprintln!(
        "corpus: {} messages, {opened} files opened, {matches} sensitive matches (all masked)",
        files.len()
    );
}
