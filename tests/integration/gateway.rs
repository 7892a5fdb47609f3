//! The SMTP gateway through real SMTP: `swaks` and a raw client of ours as senders, Postfix's
//! `smtp-sink` as the downstream host, a local DNS server for SPF/DKIM/DMARC and blocklists.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Portcullis, our_links};
use crate::server::Server;

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Postfix's `smtp-sink` writing every message it accepts into its own directory.
pub struct Sink {
    child: Child,
    pub dir: PathBuf,
    pub address: String,
}

impl Sink {
    pub fn start(dir: &Path, port: u16, extra: &[&str]) -> Sink {
        std::fs::create_dir_all(dir).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new("smtp-sink")
            .args(["-u", user.trim(), "-d"])
            .arg(format!("{}/%H%M%S.", dir.display()))
            .args(extra)
            .args([address.as_str(), "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (apt install postfix)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink {
            child,
            dir: dir.into(),
            address,
        }
    }

    /// Every message received so far (smtp-sink prepends its own trace headers).
    pub fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect()
    }

    /// Waits until `count` messages have arrived.
    pub fn wait_for(&self, count: usize, seconds: u64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let messages = self.messages();
            // smtp-sink writes the file while it reads DATA: only complete ones count.
            if messages
                .iter()
                .filter(|m| m.contains("\n.\n") || m.ends_with('\n'))
                .count()
                >= count
                || Instant::now() > deadline
            {
                std::thread::sleep(Duration::from_millis(100));
                return self.messages();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The gateway configuration the tests share; `extra` is appended (whole sections).
pub fn gateway_config(dns: &str, relay: &str, smtp_extra: &str, extra: &str) -> String {
    format!(
        "[smtp]\nhostname = \"gw.test\"\ndomains = [\"example.com\"]\n{smtp_extra}\n\
         [dns]\nnameservers = [\"{dns}\"]\ntimeout_secs = 1\n\
         [delivery]\nrelay = [\"{relay}\"]\ntls = \"off\"\nretry_secs = [1]\n{extra}\n"
    )
}

/// A local DNS server with no records, an SMTP sink on a free port, and the gateway's
/// configuration relaying to the sink with `extra` settings.
pub async fn sink_and_config(p: &Portcullis, extra: &str) -> (Sink, String) {
    let dns = crate::server::fake_dns(&[]).await;
    let sink_port = free_port();
    let sink = Sink::start(&p.dir.path().join("sink"), sink_port, &[]);
    let config = gateway_config(&dns, &format!("127.0.0.1:{sink_port}"), "", extra);
    (sink, config)
}

/// A block list for `*.evil.example`, and a transport rule holding as spam what carries
/// `X-Campaign: blast-…`.
pub const SPAM_RULE_AND_BLOCK_LIST: &str = "[click.policy]\nblock_list = [\"*.evil.example\"]\n\
     [[pipeline.rules]]\nname = \"forced-spam\"\nheader_matches = [{ name = \"X-Campaign\", pattern = \"^blast-\" }]\n\
     action = \"set_scl\"\nset_scl = 6\n";

pub fn start_gateway(p: &Portcullis, config: &str) -> (Server, String) {
    let server = Server::start_with(p, config, "127.0.0.1:0");
    let smtp = server.smtp.clone().expect("smtp gateway address");
    (server, smtp)
}

/// `swaks` against the gateway; returns whether it succeeded and its transcript.
pub fn swaks(server: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("swaks")
        .args(["--server", server, "--timeout", "30"])
        .args(args)
        .output()
        .expect("swaks (apt install swaks)");
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), transcript)
}

/// A raw SMTP client: sends exactly the bytes given and reads replies.
pub struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    pub fn connect(address: &str) -> (Raw, String) {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream),
        };
        let greeting = raw.reply();
        (raw, greeting)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// One whole reply (all lines), or "" when the server closed.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends a command line and returns its reply.
    pub fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    pub fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        // End of stream or a reset: either way the server hung up.
        !matches!(self.reader.read(&mut byte), Ok(n) if n > 0)
    }
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
}

/// A whole message (`data`) from `from` to bob, through swaks; panics unless it gets a 250.
pub async fn send_data_to_bob(smtp: &str, from: &str, data: String) {
    let (smtp, from) = (smtp.to_string(), from.to_string());
    let (ok, transcript) = tokio::task::spawn_blocking(move || {
        swaks(&smtp, &["--from", &from, "--to", "bob@example.com", "--data", &data])
    })
    .await
    .unwrap();
    assert!(ok, "{transcript}");
}

/// One message from alice to bob with this subject, through swaks; panics unless it gets a 250.
async fn send_to_bob(smtp: &str, subject: &str) {
    let (smtp, header) = (smtp.to_string(), format!("Subject: {subject}"));
    let (ok, transcript) = tokio::task::spawn_blocking(move || {
        swaks(
            &smtp,
            &[
                "--from",
                "alice@sender.test",
                "--to",
                "bob@example.com",
                "--header",
                &header,
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{transcript}");
}

pub fn messages_index(p: &Portcullis) -> Vec<serde_json::Value> {
    p.run_json_lines(&["messages", "--json", "--limit", "0"])
}

pub fn symbols(entry: &serde_json::Value) -> Vec<String> {
    entry["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_one_rewritten_stamped_sealed_copy_per_recipient() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));
    let body = "Read https://docs.example.org/report?id=7 today.\r\n\
                X-Portcullis-Spam-Flag: NO (in the body, untouched)";
    let data = format!(
        "X-Portcullis-Spam-Flag: NO\r\nX-Portcullis-Spam-Details: rule=forged\r\nAuthentication-Results: gw.test; dmarc=pass\r\n{}",
        message("two", body)
    );
    let (ok, transcript) = tokio::task::spawn_blocking(move || {
        swaks(
            &smtp,
            &[
                "--from",
                "alice@sender.test",
                "--to",
                "bob@example.com,carol@example.com",
                "--data",
                &data,
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{transcript}");
    assert!(transcript.contains("250 2.0.0 Ok: queued as"), "{transcript}");

    let copies = sink.wait_for(2, 20);
    assert_eq!(copies.len(), 2, "one copy per recipient");
    let index = messages_index(&p);
    assert_eq!(index.len(), 1);
    let entry = &index[0];
    assert_eq!(entry["verdict"], "deliver");
    assert_eq!(entry["message_id"], "<two@sender.test>");
    assert!(symbols(entry).contains(&"URL_REWRITTEN".to_string()), "{entry}");
    assert!(symbols(entry).contains(&"SPF_NONE".to_string()), "{entry}");
    assert_eq!(entry["urls"][0], "https://docs.example.org/report?id=7");
    let mut references = Vec::new();
    for copy in &copies {
        // Forged verdict headers are gone; ours are there exactly once.
        assert_eq!(copy.matches("X-Portcullis-Spam-Flag: NO").count(), 2, "{copy}"); // ours + the body line
        assert!(!copy.contains("rule=forged"), "{copy}");
        assert!(!copy.contains("gw.test; dmarc=pass"), "{copy}");
        assert!(
            copy.contains("X-Portcullis-Spam-Details: rule=notspam policy=deliver score="),
            "{copy}"
        );
        assert!(copy.contains("X-Portcullis-Virus-Details: clean"));
        // Spam and bulk confidence as Exchange writes them: not spam, not bulk.
        let field = |line: &str| copy.lines().any(|l| l.trim_end() == line);
        assert!(field("X-Portcullis-SCL: 1") || field("X-Portcullis-SCL: 0"), "{copy}");
        assert!(field("X-Portcullis-BCL: 0"), "{copy}");
        assert!(copy.contains("X-Portcullis-Orig-IP: 127.0.0.1"));
        assert!(copy.contains("X-Portcullis-Orig-Sender: alice@sender.test"));
        assert!(copy.contains("Authentication-Results: gw.test;"), "{copy}");
        assert!(
            copy.contains("ARC-Seal: i=1; a=rsa-sha256; s=portcullis; d=gw.test; cv=none;"),
            "{copy}"
        );
        assert!(copy.contains("by gw.test (Portcullis) with ESMTP id"), "{copy}");
        assert!(
            !copy.contains("https://docs.example.org/report?id=7 today"),
            "link not rewritten: {copy}"
        );
        let links = our_links(copy, false);
        assert_eq!(links.len(), 1, "{copy}");
        let decoded = p.run(&["decode", "--json", &links[0]], b"");
        assert!(decoded.status.success());
        let decoded: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
        assert_eq!(decoded["destination"], "https://docs.example.org/report?id=7");
        assert_eq!(decoded["message_ref"], entry["message_ref"]);
        references.push(decoded["recipient_ref"].as_str().unwrap().to_string());
    }
    references.sort();
    let mut indexed: Vec<String> = entry["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap().to_string())
        .collect();
    indexed.sort();
    assert_eq!(references, indexed, "each copy's links carry its recipient's reference");
    assert_ne!(references[0], references[1]);
    assert!(copies.iter().any(|c| c.contains("X-Rcpt-Args: <bob@example.com>")));
    assert!(copies.iter().any(|c| c.contains("X-Rcpt-Args: <carol@example.com>")));
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_pipelining_eight_bit_and_chunking() {
    let p = Portcullis::new();
    let certified = rcgen::generate_simple_self_signed(vec!["gw.test".to_string()]).unwrap();
    let cert = p.dir.path().join("cert.pem");
    let key = p.dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let smtp_extra = format!("tls_cert = \"{}\"\ntls_key = \"{}\"", cert.display(), key.display());
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, &smtp_extra, ""));
    let data = message("eight-bit", "Grüße aus Köln: https://köln.example/straße");
    let address = smtp.clone();
    let (ok, transcript) = tokio::task::spawn_blocking(move || {
        swaks(
            &address,
            &[
                "--tls",
                "--pipeline",
                "--from",
                "alice@sender.test",
                "--to",
                "bob@example.com",
                "--data",
                &data,
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{transcript}");
    assert!(transcript.contains("STARTTLS"), "{transcript}");
    assert!(transcript.contains("250 2.0.0 Ok: queued"), "{transcript}");

    // SMTPUTF8 and BDAT from a raw client: swaks speaks neither.
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        let (mut raw, greeting) = Raw::connect(&address);
        assert!(greeting.starts_with("220 gw.test"), "{greeting}");
        let ehlo = raw.command("EHLO client.test");
        for extension in [
            "PIPELINING",
            "SIZE",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
            "CHUNKING",
            "STARTTLS",
        ] {
            assert!(ehlo.contains(extension), "{extension} missing: {ehlo}");
        }
        assert!(raw.command("MAIL FROM:<ålice@sender.test>").starts_with("553 5.6.7"));
        assert!(
            raw.command("MAIL FROM:<ålice@sender.test> SMTPUTF8 BODY=8BITMIME")
                .starts_with("250 2.1.0")
        );
        assert!(raw.command("RCPT TO:<bøb@example.com>").starts_with("250 2.1.5"));
        let body = message("chunked", "Chunked: https://chunk.example/a");
        let (first, second) = body.as_bytes().split_at(40);
        raw.send(format!("BDAT {}\r\n", first.len()).as_bytes());
        raw.send(first);
        assert!(raw.reply().starts_with("250 2.0.0"));
        raw.send(format!("BDAT {} LAST\r\n", second.len()).as_bytes());
        raw.send(second);
        let reply = raw.reply();
        assert!(reply.starts_with("250 2.0.0 Ok: queued"), "{reply}");
        assert!(raw.command("VRFY bob").starts_with("502 5.5.1"));
        assert!(raw.command("QUIT").starts_with("221"));
    })
    .await
    .unwrap();

    let copies = sink.wait_for(2, 20);
    assert_eq!(copies.len(), 2);
    let eight_bit = copies.iter().find(|c| c.contains("eight-bit")).unwrap();
    assert!(eight_bit.contains("with ESMTPS id"), "{eight_bit}");
    assert!(eight_bit.contains("Grüße aus Köln"), "8-bit text intact: {eight_bit}");
    assert!(
        eight_bit.contains("X-Mail-Args: <alice@sender.test> BODY=8BITMIME"),
        "{eight_bit}"
    );
    let chunked = copies.iter().find(|c| c.contains("chunked")).unwrap();
    assert!(chunked.contains("with UTF8SMTP id"), "{chunked}");
    assert!(chunked.contains("SMTPUTF8"), "{chunked}");
    assert_eq!(our_links(chunked, false).len(), 1, "{chunked}");
}

#[tokio::test(flavor = "multi_thread")]
async fn open_relay_smuggling_and_loops_are_refused() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(
        &p,
        &gateway_config(
            &dns,
            &sink.address,
            "recipients = [\"bob@example.com\"]\nmax_hops = 30",
            "",
        ),
    );
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        let (mut raw, _) = Raw::connect(&address);
        assert!(
            raw.command("MAIL FROM:<a@b.test>").starts_with("503 5.5.1"),
            "EHLO first"
        );
        raw.command("EHLO attacker.test");
        assert!(
            raw.command("RCPT TO:<x@example.com>").starts_with("503 5.5.1"),
            "MAIL first"
        );
        raw.command("MAIL FROM:<spammer@attacker.test>");
        let relay = raw.command("RCPT TO:<victim@elsewhere.test>");
        assert!(relay.starts_with("550 5.7.1 Relaying denied"), "{relay}");
        let unknown = raw.command("RCPT TO:<nobody@example.com>");
        assert!(unknown.starts_with("550 5.1.1"), "{unknown}");
        assert!(raw.command("DATA").starts_with("554 5.5.1"), "no valid recipients");
        assert!(raw.command("RCPT TO:<Bob@Example.com>").starts_with("250"));

        // Smuggling: a bare-LF dot line followed by a second transaction inside the first DATA.
        assert!(raw.command("DATA").starts_with("354"));
        raw.send(
            b"From: a@attacker.test\r\nSubject: outer\r\n\r\nhello\n.\nMAIL FROM:<ceo@example.com>\r\n\
RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire money\r\n.\r\n",
        );
        let reply = raw.reply();
        assert!(
            reply.starts_with("550 5.5.2 Bare <LF>"),
            "smuggled data must not end DATA: {reply}"
        );
        // The session is still in step: the next command gets its own reply.
        assert!(raw.command("NOOP").starts_with("250"));

        // A loop: more Received headers than max_hops.
        raw.command("MAIL FROM:<a@attacker.test>");
        raw.command("RCPT TO:<bob@example.com>");
        raw.command("DATA");
        let mut looped = String::new();
        for hop in 0..31 {
            looped.push_str(&format!(
                "Received: from hop{hop}.test by hop{}.test; Wed, 25 Nov 2026 10:00:00 +0000\r\n",
                hop + 1
            ));
        }
        looped.push_str("Subject: loop\r\n\r\nround and round\r\n.\r\n");
        raw.send(looped.as_bytes());
        let reply = raw.reply();
        assert!(reply.starts_with("554 5.4.6"), "{reply}");
        raw.command("QUIT");
    })
    .await
    .unwrap();

    // With normalization on, the smuggled text is part of one message, never a second one.
    let p2 = Portcullis::new();
    let sink2 = Sink::start(&p2.dir.path().join("sink"), free_port(), &[]);
    let (_server2, smtp2) = start_gateway(
        &p2,
        &gateway_config(&dns, &sink2.address, "bare_newline = \"normalize\"", ""),
    );
    tokio::task::spawn_blocking(move || {
        let (mut raw, _) = Raw::connect(&smtp2);
        raw.command("EHLO attacker.test");
        raw.command("MAIL FROM:<a@attacker.test>");
        raw.command("RCPT TO:<bob@example.com>");
        raw.command("DATA");
        raw.send(
            b"From: a@attacker.test\r\nSubject: outer\r\n\r\nhello\n.\nMAIL FROM:<ceo@example.com>\r\n\
RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire money\r\n.\r\n",
        );
        let reply = raw.reply();
        assert!(reply.starts_with("250 2.0.0"), "{reply}");
        assert!(raw.command("QUIT").starts_with("221"));
    })
    .await
    .unwrap();
    let copies = sink2.wait_for(1, 20);
    std::thread::sleep(Duration::from_millis(500));
    let copies = if copies.len() == 1 { sink2.messages() } else { copies };
    assert_eq!(copies.len(), 1, "exactly one message: {copies:?}");
    assert!(copies[0].contains("wire money") && copies[0].contains("Subject: outer"));
    assert!(sink.messages().is_empty(), "nothing from the refused transactions");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_and_garbage_get_the_right_replies() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(
        &p,
        &gateway_config(
            &dns,
            &sink.address,
            "max_message_bytes = 100000\nmax_recipients = 100\nmax_commands = 5000\nidle_timeout_secs = 2\nmax_errors = 5",
            "",
        ),
    );
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        let (mut raw, _) = Raw::connect(&address);
        raw.command("EHLO client.test");
        // A command line far over the limit.
        let long = format!("NOOP {}", "x".repeat(10_000));
        assert!(raw.command(&long).starts_with("500 5.5.2 Line too long"));
        assert!(raw.command("NOOP").starts_with("250"), "in step after a long line");
        // SIZE declared over the limit.
        assert!(
            raw.command("MAIL FROM:<a@sender.test> SIZE=200000")
                .starts_with("552 5.3.4")
        );
        // 1000 recipients, pipelined: the first 100 are accepted, the rest get 452.
        raw.command("MAIL FROM:<a@sender.test>");
        let mut batch = String::new();
        for n in 0..1000 {
            batch.push_str(&format!("RCPT TO:<user{n}@example.com>\r\n"));
        }
        raw.send(batch.as_bytes());
        let mut accepted = 0;
        let mut too_many = 0;
        for _ in 0..1000 {
            let reply = raw.reply();
            if reply.starts_with("250") {
                accepted += 1;
            } else if reply.starts_with("452 4.5.3") {
                too_many += 1;
            }
        }
        assert_eq!((accepted, too_many), (100, 900));
        // A body over the limit, and a line of 5,000 octets in one within it.
        assert!(raw.command("DATA").starts_with("354"));
        let mut big = String::from("Subject: big\r\n\r\n");
        while big.len() < 150_000 {
            big.push_str("0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
        }
        big.push_str(".\r\n");
        raw.send(big.as_bytes());
        assert!(raw.reply().starts_with("552 5.3.4"));
        raw.command("MAIL FROM:<a@sender.test>");
        raw.command("RCPT TO:<bob@example.com>");
        raw.command("DATA");
        let long_line = format!("Subject: long line\r\n\r\n{}\r\n.\r\n", "y".repeat(5000));
        raw.send(long_line.as_bytes());
        assert!(
            raw.reply().starts_with("250 2.0.0"),
            "a long body line is accepted as is"
        );
        // Garbage until the connection is closed.
        let mut last = String::new();
        for _ in 0..10 {
            last = raw.command("\u{1}\u{2}GARBAGE \u{ff}");
            if last.starts_with("421") || last.is_empty() {
                break;
            }
            assert!(last.starts_with("500 5.5.2"), "{last}");
        }
        assert!(last.starts_with("421 4.7.0"), "{last}");
        assert!(raw.closed());

        // Slowloris: a client that stops sending is cut off.
        let (mut slow, _) = Raw::connect(&address);
        slow.send(
            b"EHLO slow.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: slow\r\n",
        );
        let started = Instant::now();
        let mut replies = String::new();
        loop {
            let reply = slow.reply();
            if reply.is_empty() {
                break;
            }
            replies.push_str(&reply);
        }
        assert!(replies.contains("421 4.4.2"), "{replies}");
        assert!(started.elapsed() < Duration::from_secs(10));
    })
    .await
    .unwrap();
    let copies = sink.wait_for(1, 20);
    assert_eq!(copies.len(), 1);
    assert!(
        copies[0].contains(&"y".repeat(5000)),
        "the long line is delivered intact"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn eicar_is_quarantined_then_released() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));
    let eicar = p.dir.path().join("eicar.com");
    std::fs::write(
        &eicar,
        br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    )
    .unwrap();
    let attach = format!("@{}", eicar.display());
    let address = smtp.clone();
    let (ok, transcript) = tokio::task::spawn_blocking(move || {
        swaks(
            &address,
            &[
                "--from",
                "alice@sender.test",
                "--to",
                "bob@example.com",
                "--header",
                "Subject: invoice",
                "--body",
                "see attached https://pay.example/now",
                "--attach-type",
                "application/octet-stream",
                "--attach",
                &attach,
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{transcript}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty(), "malware is not delivered");
    let listed = p.run(&["quarantine", "list", "--json"], b"");
    let held: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("one held message");
    assert_eq!(held["category"], "malware");
    assert_eq!(held["recipients"][0], "bob@example.com");
    let retention = held["expires_at"].as_i64().unwrap() - held["held_at"].as_i64().unwrap();
    assert_eq!(retention, 15 * 86400, "malware is kept 15 days");
    let index = messages_index(&p);
    assert_eq!(index[0]["verdict"], "quarantine");
    assert!(symbols(&index[0]).contains(&"EICAR".to_string()));
    let id = held["id"].to_string();
    let shown = p.run(&["quarantine", "show", &id], b"");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("X-Portcullis-Virus-Details: infected; builtin: EICAR-Test-File (eicar.com)"),
        "{shown}"
    );
    assert!(shown.contains("policy=quarantine"), "{shown}");

    let released = p.run(&["quarantine", "release", &id], b"");
    assert!(
        released.status.success(),
        "{}",
        String::from_utf8_lossy(&released.stderr)
    );
    let copies = sink.wait_for(1, 20);
    assert_eq!(copies.len(), 1, "released to the recipient by the running gateway");
    assert!(copies[0].contains("Subject: invoice"));
    assert!(p.run(&["quarantine", "list"], b"").stdout.is_empty());
    assert_eq!(messages_index(&p)[0]["verdict"], "released");
    assert!(
        !p.run(&["quarantine", "delete", &id], b"").status.success(),
        "already gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_spf_dkim_dmarc_decide() {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use base64::Engine;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter;
    use mail_auth::dkim::DkimSigner;

    let pair_der = Ed25519KeyPair::generate().unwrap().to_pkcs8().unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pair_der.as_ref()).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref());
    let dkim_record: &'static str = Box::leak(format!("v=DKIM1; k=ed25519; p={public}").into_boxed_str());
    let records: &'static [(&'static str, crate::server::Record)] = Box::leak(
        vec![
            ("signed.test", crate::server::Record::Txt("v=spf1 ip4:192.0.2.1 -all")),
            ("sel._domainkey.signed.test", crate::server::Record::Txt(dkim_record)),
            ("_dmarc.signed.test", crate::server::Record::Txt("v=DMARC1; p=reject")),
            ("spoofed.test", crate::server::Record::Txt("v=spf1 ip4:192.0.2.1 -all")),
            ("_dmarc.spoofed.test", crate::server::Record::Txt("v=DMARC1; p=reject")),
        ]
        .into_boxed_slice(),
    );
    let dns = crate::server::fake_dns_records(records).await;
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));

    // A message signed by its domain: SPF fails (wrong IP) but aligned DKIM passes DMARC.
    let unsigned = "From: Ann <ann@signed.test>\r\nTo: bob@example.com\r\nSubject: signed\r\n\
Message-ID: <signed@signed.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nSigned body https://signed.test/x\r\n";
    let key = Ed25519Key::from_pkcs8_der(pair_der.as_ref()).unwrap();
    let signature = DkimSigner::from_key(key)
        .domain("signed.test")
        .selector("sel")
        .headers(["From", "To", "Subject", "Message-ID", "Date"])
        .sign(unsigned.as_bytes())
        .unwrap();
    let signed = format!("{}{unsigned}", signature.to_header());
    let spoofed =
        "From: CEO <ceo@spoofed.test>\r\nTo: bob@example.com\r\nSubject: urgent\r\n\r\nPay now\r\n".to_string();
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        let (mut raw, _) = Raw::connect(&address);
        raw.command("EHLO mx.signed.test");
        raw.command("MAIL FROM:<ann@signed.test>");
        raw.command("RCPT TO:<bob@example.com>");
        raw.command("DATA");
        raw.send(format!("{signed}.\r\n").as_bytes());
        let reply = raw.reply();
        assert!(reply.starts_with("250 2.0.0"), "DKIM-aligned message accepted: {reply}");
        raw.command("MAIL FROM:<ceo@spoofed.test>");
        raw.command("RCPT TO:<bob@example.com>");
        raw.command("DATA");
        raw.send(format!("{spoofed}.\r\n").as_bytes());
        let reply = raw.reply();
        assert!(
            reply.starts_with("550 5.7.1") && reply.contains("DMARC"),
            "spoof refused at DATA: {reply}"
        );
        raw.command("QUIT");
    })
    .await
    .unwrap();
    let copies = sink.wait_for(1, 20);
    assert_eq!(copies.len(), 1, "only the authenticated message is delivered");
    let copy = &copies[0];
    assert!(copy.contains("dkim=pass"), "{copy}");
    assert!(copy.contains("spf=fail"), "{copy}");
    assert!(copy.contains("dmarc=pass"), "{copy}");
    assert!(copy.contains("ARC-Authentication-Results: i=1; gw.test;"), "{copy}");
    let index = messages_index(&p);
    let by_subject = |subject: &str| index.iter().find(|e| e["subject"] == subject).unwrap().clone();
    let signed_entry = by_subject("signed");
    for symbol in ["SPF_FAIL", "DKIM_PASS", "DMARC_PASS"] {
        assert!(
            symbols(&signed_entry).contains(&symbol.to_string()),
            "{symbol}: {signed_entry}"
        );
    }
    let spoofed_entry = by_subject("urgent");
    assert_eq!(spoofed_entry["verdict"], "reject");
    for symbol in ["SPF_FAIL", "DKIM_NONE", "DMARC_POLICY_REJECT"] {
        assert!(
            symbols(&spoofed_entry).contains(&symbol.to_string()),
            "{symbol}: {spoofed_entry}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_filter_allow_block_and_dnsbl() {
    let records: &'static [(&'static str, crate::server::Record)] =
        &[("1.0.0.127.zen.test", crate::server::Record::A([127, 0, 0, 2]))];
    let dns = crate::server::fake_dns_records(records).await;
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_blocked, blocked_smtp) = start_gateway(
        &p,
        &gateway_config(&dns, &sink.address, "block_ips = [\"127.0.0.0/8\"]", ""),
    );
    let p2 = Portcullis::new();
    let (_listed, listed_smtp) = start_gateway(
        &p2,
        &gateway_config(&dns, &sink.address, "dnsbl_zones = [\"zen.test\"]", ""),
    );
    let p3 = Portcullis::new();
    let (_scored, scored_smtp) = start_gateway(
        &p3,
        &gateway_config(
            &dns,
            &sink.address,
            "dnsbl_zones = [\"zen.test\"]\ndnsbl_action = \"score\"",
            "[pipeline.symbols]\nDNSBL_ZEN_TEST = { weight = 7.0, category = \"spam\" }",
        ),
    );
    let p4 = Portcullis::new();
    let (_allowed, allowed_smtp) = start_gateway(
        &p4,
        &gateway_config(
            &dns,
            &sink.address,
            "dnsbl_zones = [\"zen.test\"]\nallow_ips = [\"127.0.0.1/32\"]",
            "",
        ),
    );
    tokio::task::spawn_blocking(move || {
        let (_, greeting) = Raw::connect(&blocked_smtp);
        assert!(
            greeting.starts_with("554 5.7.1 Client address [127.0.0.1] is blocked"),
            "{greeting}"
        );
        let (_, greeting) = Raw::connect(&listed_smtp);
        assert!(
            greeting.starts_with("554 5.7.1") && greeting.contains("zen.test"),
            "{greeting}"
        );
        for address in [&scored_smtp, &allowed_smtp] {
            let (ok, transcript) = swaks(
                address,
                &[
                    "--from",
                    "alice@sender.test",
                    "--to",
                    "bob@example.com",
                    "--body",
                    "hello",
                ],
            );
            assert!(ok, "{transcript}");
        }
    })
    .await
    .unwrap();
    let scored = messages_index(&p3);
    assert!(symbols(&scored[0]).contains(&"DNSBL_ZEN_TEST".to_string()));
    assert_eq!(scored[0]["verdict"], "quarantine", "{}", scored[0]);
    assert_eq!(scored[0]["category"], "spam");
    let allowed = messages_index(&p4);
    assert!(symbols(&allowed[0]).contains(&"IP_ALLOW".to_string()));
    assert_eq!(allowed[0]["verdict"], "deliver");
    assert!(allowed[0]["details"].as_str().unwrap().starts_with("rule=allowlisted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_rules_discard_quarantine_and_reject() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let rules = "[[pipeline.rules]]\nname = \"drop-newsletters\"\nsender = [\"*@news.test\"]\naction = \"discard\"\n\
                 [[pipeline.rules]]\nname = \"no-exe\"\nattachment_name = [\"*.xyz\"]\naction = \"quarantine\"\n\
                 [[pipeline.rules]]\nname = \"no-wire\"\nsubject_contains = [\"WIRE TRANSFER\"]\naction = \"reject\"\n\
                 message = \"Wire transfer requests are not accepted\"\n";
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", rules));
    // Not a blocked type (that would be malware, decided before any rule): a name only the rule knows.
    let exe = p.dir.path().join("setup.xyz");
    std::fs::write(&exe, b"not really a program").unwrap();
    let attach = format!("@{}", exe.display());
    tokio::task::spawn_blocking(move || {
        let (ok, t) = swaks(
            &smtp,
            &["--from", "promo@news.test", "--to", "bob@example.com", "--body", "sale"],
        );
        assert!(ok && t.contains("250 2.0.0"), "{t}");
        let (ok, t) = swaks(
            &smtp,
            &[
                "--from",
                "a@sender.test",
                "--to",
                "bob@example.com",
                "--attach",
                &attach,
            ],
        );
        assert!(ok && t.contains("250 2.0.0"), "{t}");
        let (ok, t) = swaks(
            &smtp,
            &[
                "--from",
                "a@sender.test",
                "--to",
                "bob@example.com",
                "--header",
                "Subject: urgent wire transfer",
            ],
        );
        assert!(
            !ok && t.contains("550 5.7.1 Wire transfer requests are not accepted"),
            "{t}"
        );
    })
    .await
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.messages().is_empty());
    let index = messages_index(&p);
    let verdicts: Vec<(String, String)> = index
        .iter()
        .map(|e| {
            (
                e["verdict"].as_str().unwrap().into(),
                e["rule"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&("discard".into(), "drop-newsletters".into())),
        "{verdicts:?}"
    );
    assert!(
        verdicts.contains(&("quarantine".into(), "no-exe".into())),
        "{verdicts:?}"
    );
    assert!(verdicts.contains(&("reject".into(), "no-wire".into())), "{verdicts:?}");
    let held: serde_json::Value =
        serde_json::from_slice(&p.run(&["quarantine", "list", "--json"], b"").stdout).unwrap();
    assert_eq!(held["category"], "transport");
    assert_eq!(
        held["expires_at"].as_i64().unwrap() - held["held_at"].as_i64().unwrap(),
        7 * 86400
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn downstream_failures_retry_bounce_and_recover() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let port = free_port();
    let bounces = Sink::start(&p.dir.path().join("bounces"), free_port(), &[]);
    // The downstream refuses every recipient for good.
    let mut refusing = Sink::start(&p.dir.path().join("refusing"), port, &["-f", "rcpt"]);
    let extra = format!("dsn_relay = [\"{}\"]", bounces.address);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &refusing.address, "", &extra));
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        let (ok, t) = swaks(
            &address,
            &[
                "--from",
                "alice@sender.test",
                "--to",
                "bob@example.com",
                "--header",
                "Subject: bounced",
            ],
        );
        assert!(ok, "{t}");
        let (ok, t) = swaks(
            &address,
            &[
                "--from",
                "<>",
                "--to",
                "bob@example.com",
                "--header",
                "Subject: null sender",
            ],
        );
        assert!(ok, "{t}");
    })
    .await
    .unwrap();
    let dsns = bounces.wait_for(1, 20);
    std::thread::sleep(Duration::from_millis(1500));
    let dsns = if dsns.len() == 1 { bounces.messages() } else { dsns };
    assert_eq!(dsns.len(), 1, "one DSN, none for the null sender: {dsns:?}");
    let dsn = &dsns[0];
    assert!(dsn.contains("X-Mail-Args: <>"), "DSNs come from the null sender: {dsn}");
    assert!(dsn.contains("X-Rcpt-Args: <alice@sender.test>"), "{dsn}");
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(dsn.contains("Final-Recipient: rfc822; bob@example.com"), "{dsn}");
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(dsn.contains("Status: 5."), "{dsn}");
    assert!(dsn.contains("Subject: bounced"), "original headers returned: {dsn}");
    refusing.stop();

    // Down, then a temporary refusal, then up: the copy waits in the queue and goes out.
    send_to_bob(&smtp, "patient").await;
    std::thread::sleep(Duration::from_millis(2500));
    let listed = String::from_utf8(p.run(&["queue", "list"], b"").stdout).unwrap();
    assert!(
        listed.contains("bob@example.com") && listed.contains("attempts="),
        "{listed}"
    );
    assert!(
        listed.contains("Connection refused") || listed.contains("connect"),
        "{listed}"
    );
    let mut deferring = Sink::start(&p.dir.path().join("deferring"), port, &["-r", "rcpt"]);
    std::thread::sleep(Duration::from_millis(2500));
    let listed = String::from_utf8(p.run(&["queue", "list"], b"").stdout).unwrap();
    assert!(listed.contains("450") || listed.contains("4"), "{listed}");
    deferring.stop();
    let accepting = Sink::start(&p.dir.path().join("accepting"), port, &[]);
    let delivered = accepting.wait_for(1, 20);
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].contains("Subject: patient"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        p.run(&["queue", "list"], b"").stdout.is_empty(),
        "queue empty after delivery"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_cli_works_without_the_server() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let port = free_port();
    let config = gateway_config(&dns, &format!("127.0.0.1:{port}"), "", "");
    let (mut server, smtp) = start_gateway(&p, &config);
    tokio::task::spawn_blocking(move || {
        for subject in ["one", "two"] {
            let header = format!("Subject: {subject}");
            let (ok, t) = swaks(
                &smtp,
                &[
                    "--from",
                    "alice@sender.test",
                    "--to",
                    "bob@example.com",
                    "--header",
                    &header,
                ],
            );
            assert!(ok, "{t}");
        }
    })
    .await
    .unwrap();
    server.stop();
    let listed = String::from_utf8(p.run(&["queue", "list"], b"").stdout).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let first_id = listed.split('\t').next().unwrap().to_string();
    let deleted = p.run(&["queue", "delete", &first_id], b"");
    assert!(deleted.status.success());
    let sink = Sink::start(&p.dir.path().join("sink"), port, &[]);
    let flushed = p.run(
        &[
            "--config",
            p.dir.path().join("portcullis.toml").to_str().unwrap(),
            "queue",
            "flush",
        ],
        b"",
    );
    assert!(flushed.status.success(), "{}", String::from_utf8_lossy(&flushed.stderr));
    assert!(String::from_utf8_lossy(&flushed.stdout).contains("0 still queued"));
    let delivered = sink.wait_for(1, 10);
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].contains("Subject: two"));
}

/// Messages numbered 0..N go in while the gateway is killed with SIGKILL and restarted; every
/// message that got a 250 must come out at the sink. Duplicates are counted (a 250 lost with the
/// connection, or a delivery cut before its result was recorded, cannot be told apart from loss
/// by the sender or the gateway, so SMTP resends).
#[tokio::test(flavor = "multi_thread")]
async fn nothing_acknowledged_is_lost_across_sigkill() {
    const MESSAGES: usize = 300;
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let smtp_port = free_port();
    let smtp = format!("127.0.0.1:{smtp_port}");
    let config = gateway_config(&dns, &sink.address, "", "");
    let mut server = Server::start_with(&p, &config, &smtp);

    let address = smtp.clone();
    let sender = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut connection: Option<Raw> = None;
        let mut n = 0;
        while n < MESSAGES {
            if connection.is_none() {
                match TcpStream::connect(&address) {
                    Ok(_) => {
                        let (mut raw, greeting) = Raw::connect(&address);
                        if greeting.starts_with("220") && raw.command("EHLO crash.test").starts_with("250") {
                            connection = Some(raw);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
                continue;
            }
            let raw = connection.as_mut().unwrap();
            let body = format!("Subject: crash-test-{n}\r\n\r\nmessage {n} https://n{n}.example/\r\n.\r\n");
            raw.send(b"MAIL FROM:<load@sender.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n");
            let replies = [raw.reply(), raw.reply(), raw.reply()];
            if !replies[2].starts_with("354") {
                connection = None;
                continue;
            }
            raw.send(body.as_bytes());
            let reply = raw.reply();
            if reply.starts_with("250") {
                acknowledged.push(n);
                n += 1;
            } else {
                // No answer (killed) or a temporary failure: send the same message again.
                connection = None;
            }
        }
        acknowledged
    });

    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        server.kill9();
        server = Server::start_with(&p, &config, &smtp);
    }
    let acknowledged = tokio::task::spawn_blocking(move || sender.join().unwrap())
        .await
        .unwrap();
    assert_eq!(acknowledged.len(), MESSAGES);

    let deadline = Instant::now() + Duration::from_secs(60);
    let count = |messages: &[String]| {
        let mut seen = vec![0usize; MESSAGES];
        for message in messages {
            if let Some(at) = message.find("Subject: crash-test-") {
                let digits: String = message[at + 20..].chars().take_while(char::is_ascii_digit).collect();
                if let Ok(n) = digits.parse::<usize>() {
                    seen[n] += 1;
                }
            }
        }
        seen
    };
    let seen = loop {
        let seen = count(&sink.messages());
        if seen.iter().all(|&c| c > 0) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lost: Vec<usize> = acknowledged.iter().copied().filter(|&n| seen[n] == 0).collect();
    let duplicates: usize = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    eprintln!(
        "crash test: {} acknowledged, {} delivered, {} lost, {duplicates} duplicates, 3 SIGKILLs",
        acknowledged.len(),
        seen.iter().filter(|&&c| c > 0).count(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but never delivered: {lost:?}");
    server.stop();
}

/// A real Postfix, started by the test in its own directory, as the downstream host: STARTTLS
/// required and verified against its certificate, recipients refused temporarily and permanently
/// through its access map, and Postfix stopped and started again.
#[tokio::test(flavor = "multi_thread")]
async fn real_postfix_downstream() {
    let p = Portcullis::new();
    let dir = p.dir.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["downstream.test".to_string()]).unwrap();
    let (cert, key) = (dir.join("downstream.pem"), dir.join("downstream.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let access = dir.join("access");
    std::fs::write(
        &access,
        "temp@example.com 450 4.2.0 try again later\ngone@example.com 550 5.1.1 no such user\n",
    )
    .unwrap();
    let sink = Sink::start(&dir.join("sink"), free_port(), &[]);
    let postfix_port = free_port();
    let postfix_dir = dir.join("postfix");
    let postfix = |action: &str| {
        let status = Command::new("postfix")
            .args(["-c", postfix_dir.join("etc").to_str().unwrap(), action])
            .status()
            .unwrap();
        assert!(status.success(), "postfix {action}");
    };
    let started = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/postfix-instance.sh"))
        .arg(&postfix_dir)
        .arg(postfix_port.to_string())
        .arg(&sink.address)
        .arg(format!("smtpd_tls_cert_file = {}", cert.display()))
        .arg(format!("smtpd_tls_key_file = {}", key.display()))
        .arg("smtpd_tls_security_level = may")
        .arg(format!(
            "smtpd_recipient_restrictions = check_recipient_access texthash:{}, permit_mynetworks, reject_unauth_destination",
            access.display()
        ))
        .status()
        .unwrap();
    assert!(started.success(), "postfix instance");
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("postfix")
                .args(["-c", self.0.to_str().unwrap(), "stop"])
                .status();
        }
    }
    let _stop = Stop(postfix_dir.join("etc"));

    let dns = crate::server::fake_dns(&[]).await;
    let delivery = format!(
        "[delivery]\nrelay = [\"127.0.0.1:{postfix_port}\"]\ntls = \"required\"\nca_file = \"{}\"\n\
         tls_name = \"downstream.test\"\nretry_secs = [1]\n",
        cert.display()
    );
    let config = gateway_config(&dns, "unused:1", "", "").replace(
        "[delivery]\nrelay = [\"unused:1\"]\ntls = \"off\"\nretry_secs = [1]\n",
        &delivery,
    );
    let (_server, smtp) = start_gateway(&p, &config);
    let address = smtp.clone();
    tokio::task::spawn_blocking(move || {
        for (to, subject) in [
            ("bob@example.com", "through postfix"),
            ("gone@example.com", "gone"),
            ("temp@example.com", "later"),
        ] {
            let header = format!("Subject: {subject}");
            let (ok, t) = swaks(
                &address,
                &[
                    "--from",
                    "alice@sender.test",
                    "--to",
                    to,
                    "--header",
                    &header,
                    "--body",
                    "https://x.example/",
                ],
            );
            assert!(ok, "{t}");
        }
    })
    .await
    .unwrap();
    // Bob's copy, and the DSN for the 550 (Postfix relays it on for us, over the same TLS).
    let delivered = sink.wait_for(2, 20);
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    let copy = delivered
        .iter()
        .find(|m| m.contains("Subject: through postfix"))
        .expect("bob's copy");
    assert!(
        copy.contains("by downstream.test (Postfix) with ESMTPS"),
        "STARTTLS to Postfix: {copy}"
    );
    let dsn = delivered
        .iter()
        .find(|m| m.contains("report-type=delivery-status"))
        .expect("a DSN");
    assert!(
        dsn.contains("Final-Recipient: rfc822; gone@example.com") && dsn.contains("5.1.1"),
        "{dsn}"
    );
    assert!(dsn.contains("X-Rcpt-Args: <alice@sender.test>"), "{dsn}");
    std::thread::sleep(Duration::from_millis(1500));
    let listed = String::from_utf8(p.run(&["queue", "list"], b"").stdout).unwrap();
    assert!(
        listed.contains("temp@example.com") && listed.contains("450"),
        "4xx waits in the queue: {listed}"
    );

    // Postfix down: the next message waits too; the access map relents; Postfix comes back.
    postfix("stop");
    send_to_bob(&smtp, "while down").await;
    std::thread::sleep(Duration::from_millis(1500));
    let listed = String::from_utf8(p.run(&["queue", "list"], b"").stdout).unwrap();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    std::fs::write(&access, "gone@example.com 550 5.1.1 no such user\n").unwrap();
    postfix("start");
    let delivered = sink.wait_for(4, 30);
    let subjects: Vec<bool> = ["Subject: later", "Subject: while down"]
        .iter()
        .map(|s| delivered.iter().any(|m| m.contains(s)))
        .collect();
    assert_eq!(subjects, [true, true], "{delivered:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(p.run(&["queue", "list"], b"").stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn first_contact_and_campaigns_are_remembered_across_messages() {
    use crate::server::{Record, fake_dns_records};
    let p = Portcullis::new();
    // partner.test passes DMARC (SPF for 127.0.0.1, aligned); elsewhere.test publishes nothing.
    let dns = fake_dns_records(&[
        ("partner.test", Record::Txt("v=spf1 ip4:127.0.0.0/8 -all")),
        ("_dmarc.partner.test", Record::Txt("v=DMARC1; p=none")),
    ])
    .await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));
    let send = |from: &'static str, subject: String, body: String| {
        let data = format!(
            "From: {from}\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x.test>\r\n\
             Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
        );
        send_data_to_bob(&smtp, from, data)
    };
    let symbols_of = |p: &Portcullis, subject: &str| -> Vec<String> {
        let entry = messages_index(p)
            .into_iter()
            .find(|e| e["subject"] == subject)
            .unwrap_or_else(|| panic!("{subject} not indexed"));
        symbols(&entry)
    };

    // A store that has delivered nothing knows nobody: the first message is not "first contact".
    send("ann@partner.test", "one".into(), "Hello Bob.".into()).await;
    assert!(!symbols_of(&p, "one").contains(&"FIRST_CONTACT".to_string()));
    let one = symbols_of(&p, "one");
    assert!(one.contains(&"DMARC_PASS".to_string()), "{one:?}");
    // Ann is known now (her mail passed DMARC and was delivered); Mallory is not.
    send("ann@partner.test", "two".into(), "Hello again.".into()).await;
    assert!(!symbols_of(&p, "two").contains(&"FIRST_CONTACT".to_string()));
    let mallory = |subject: &str| {
        send(
            "mallory@elsewhere.test",
            subject.into(),
            "Please pay the invoice.".into(),
        )
    };
    mallory("three").await;
    assert!(symbols_of(&p, "three").contains(&"FIRST_CONTACT".to_string()));
    // Delivered, but unauthenticated: Mallory does not become familiar by writing again.
    mallory("four").await;
    assert!(symbols_of(&p, "four").contains(&"FIRST_CONTACT".to_string()));

    // Six personalised copies of one campaign: the sixth has seen five near-identical ones.
    for (i, name) in ["Ann", "Carol", "Dave", "Erin", "Frank", "Grace"].iter().enumerate() {
        let body = format!(
            "Dear {name}, your exclusive member offer number {} is waiting. This week only, every item in \
             our spring collection is forty percent off, with free delivery on orders over fifty pounds. \
             Visit our store today and use your personal code at checkout before Sunday.",
            1000 + i * 37
        );
        send("news@shop.test", format!("offer{i}"), body).await;
    }
    assert!(!symbols_of(&p, "offer4").iter().any(|s| s.starts_with("BULK_SIMILAR")));
    let sixth = symbols_of(&p, "offer5");
    assert!(sixth.contains(&"BULK_SIMILAR_5".to_string()), "{sixth:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn transport_rules_change_copies_and_hold_sensitive_data_masked() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let rules = r#"
[[pipeline.rules]]
name = "redirect-ceo"
priority = 0
recipient = ["ceo@example.com"]
action = "redirect"
recipients = ["assistant@example.com"]
stop = true

[[pipeline.rules]]
name = "dlp-cards"
priority = 1
sensitive = [{ type = "credit_card", min_count = 1, min_confidence = 75 }]
action = "quarantine"

[[pipeline.rules]]
name = "forced-spam"
priority = 2
header_matches = [{ name = "X-Campaign", pattern = "^blast-" }]
action = "set_scl"
set_scl = 6

[[pipeline.rules]]
name = "tag-external"
priority = 10
sender_domain = ["sender.test"]
action = ["add_header", "prepend_subject", "remove_header", "add_recipient"]
add_header = "X-External: yes"
subject_prefix = "[EXT]"
remove_header = ["X-Secret"]
recipients = ["review@example.com"]
"#;
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", rules));
    let send = |to: &'static str, headers: Vec<String>, body: &'static str| {
        let smtp = smtp.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut args = vec!["--from", "alice@sender.test", "--to", to, "--body", body];
                for header in &headers {
                    args.extend(["--header", header.as_str()]);
                }
                let (ok, transcript) = swaks(&smtp, &args);
                assert!(ok && transcript.contains("250 2.0.0"), "{transcript}");
            })
            .await
            .unwrap()
        }
    };
    send(
        "bob@example.com",
        vec!["Subject: lunch".into(), "X-Secret: internal-only".into()],
        "see you at noon",
    )
    .await;
    send(
        "bob@example.com",
        vec!["Subject: order".into()],
        "my card is 4111 1111 1111 1111, expiry 12/29",
    )
    .await;
    send("ceo@example.com", vec!["Subject: for the boss".into()], "hello").await;
    send(
        "bob@example.com",
        vec!["Subject: offer".into(), "X-Campaign: blast-7".into()],
        "hello",
    )
    .await;

    let copies = sink.wait_for(3, 20);
    assert_eq!(copies.len(), 3, "{copies:#?}");
    let to = |address: &str| -> Vec<&String> {
        copies
            .iter()
            .filter(|c| c.contains(&format!("X-Rcpt-Args: <{address}>")))
            .collect()
    };
    // Tagged, stripped, and copied to the reviewer: one copy each.
    for address in ["bob@example.com", "review@example.com"] {
        let copy = to(address);
        assert_eq!(copy.len(), 1, "{address}: {copies:#?}");
        assert!(copy[0].contains("Subject: [EXT] lunch"), "{}", copy[0]);
        assert!(copy[0].contains("X-External: yes"), "{}", copy[0]);
        assert!(!copy[0].contains("X-Secret"), "{}", copy[0]);
    }
    // Redirected, and no rule after it ran.
    let assistant = to("assistant@example.com");
    assert_eq!(assistant.len(), 1);
    assert!(assistant[0].contains("Subject: for the boss"), "{}", assistant[0]);
    assert!(to("ceo@example.com").is_empty());

    let index = messages_index(&p);
    let by_subject = |subject: &str| index.iter().find(|e| e["subject"] == subject).unwrap().clone();
    let card = by_subject("order");
    assert_eq!(card["verdict"], "quarantine");
    assert_eq!(card["rule"], "dlp-cards");
    let forced = by_subject("offer");
    assert_eq!(forced["verdict"], "quarantine");
    assert_eq!(forced["category"], "spam");
    // The card number is masked wherever it is kept: the index and what `messages show` prints.
    let shown = p.run(
        &["messages", "show", card["message_ref"].as_str().unwrap(), "--json"],
        b"",
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("DLP_MATCH") && shown.contains("**** **** **** 1111"),
        "{shown}"
    );
    let everything = format!("{index:?}{shown}");
    assert!(!everything.contains("4111 1111 1111 1111"), "clear card number written");
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_passes_while_both_listeners_answer_and_fails_once_stopped() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (mut server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));
    let admin = server
        .admin
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let check = |p: &Portcullis| {
        p.run(
            &[
                "healthcheck",
                "--admin",
                &admin,
                "--smtp",
                &smtp,
                "--timeout-ms",
                "2000",
            ],
            b"",
        )
    };
    let healthy = check(&p);
    assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stderr));
    assert!(server.stop().success());
    let stopped = check(&p);
    assert_eq!(stopped.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stopped.stderr).contains("unhealthy"));
}
