//! An accepted message is stored once, however many recipients it has; each recipient's copy is
//! rendered (its own links, our headers, an ARC set) when it is delivered.

use std::path::Path;
use std::time::{Duration, Instant};

use mail_auth::{AuthenticatedMessage, DkimResult};
use portcullis::config::DnsConfig;
use portcullis::pipeline::Resolver;

use crate::common::{Portcullis, our_links};
use crate::gateway::{Raw, Sink, free_port, gateway_config, start_gateway};
use crate::server::{Record, fake_dns_records};

/// Bytes under `dir`, every file counted.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            size_of(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn send(smtp: &str, recipients: &[String], message: &str) -> String {
    let (mut raw, _) = Raw::connect(smtp);
    raw.command("EHLO client.test");
    raw.command("MAIL FROM:<alice@sender.test>");
    for recipient in recipients {
        let reply = raw.command(&format!("RCPT TO:<{recipient}>"));
        assert!(reply.starts_with("250"), "{recipient}: {reply}");
    }
    raw.command("DATA");
    raw.send(format!("{message}.\r\n").as_bytes());
    let reply = raw.reply();
    raw.command("QUIT");
    reply
}

fn queue_entries(p: &Portcullis) -> Vec<serde_json::Value> {
    let listed = p.run(&["queue", "list", "--json"], b"");
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn copies_are_sealed_per_recipient_and_the_arc_set_verifies() {
    let p = Portcullis::new();
    // The ARC key is made on first use; its record is what a downstream host looks up.
    let listed = String::from_utf8(p.run(&["keys", "list"], b"").stdout).unwrap();
    let record = listed
        .lines()
        .find_map(|line| {
            line.split_once("IN TXT \"")
                .map(|(_, value)| value.trim_end_matches('"'))
        })
        .expect("ARC record printed")
        .to_string();
    let records: &'static [(&'static str, Record)] = Box::leak(
        vec![(
            "portcullis._domainkey.gw.test",
            Record::Txt(Box::leak(record.into_boxed_str())),
        )]
        .into_boxed_slice(),
    );
    let dns = fake_dns_records(records).await;
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let (_server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", ""));
    let recipients: Vec<String> = ["bob", "carol", "dave"]
        .iter()
        .map(|name| format!("{name}@example.com"))
        .collect();
    let message = "From: Alice <alice@sender.test>\r\nTo: team@example.com\r\nSubject: story\r\n\
Message-ID: <story@sender.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n\
Read https://news.example/story?id=7 before the meeting.\r\n";
    let address = smtp.clone();
    let reply = tokio::task::spawn_blocking(move || send(&address, &recipients, message))
        .await
        .unwrap();
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let copies = sink.wait_for(3, 20);
    assert_eq!(copies.len(), 3);

    let resolver = Resolver::new(&DnsConfig {
        nameservers: vec![dns.clone()],
        timeout_secs: 1,
    })
    .unwrap();
    let mut links = Vec::new();
    for copy in &copies {
        // smtp-sink writes its own fields above the message: they are outside every signature.
        let crlf = copy.replace("\r\n", "\n").replace('\n', "\r\n");
        let parsed = AuthenticatedMessage::parse(crlf.as_bytes()).expect("copy parses");
        let arc = resolver.authenticator.verify_arc(&parsed).await;
        assert_eq!(arc.result(), &DkimResult::Pass, "ARC set verifies: {copy}");
        assert_eq!(arc.sets().len(), 1);
        assert!(
            crlf.contains("ARC-Authentication-Results: i=1; gw.test; spf="),
            "{copy}"
        );
        let found = our_links(copy, false);
        assert_eq!(found.len(), 1, "{copy}");
        links.push(found[0].clone());
    }
    links.sort();
    links.dedup();
    assert_eq!(links.len(), 3, "each recipient's copy has its own link");
    for destination in p.decode(&links) {
        assert_eq!(destination, "https://news.example/story?id=7");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_for_forty_recipients_is_stored_once_and_forgotten_once_delivered() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let port = free_port();
    let config = gateway_config(&dns, &format!("127.0.0.1:{port}"), "", "");
    let (_server, smtp) = start_gateway(&p, &config);
    // About 1 MB, a link on every line: forty rendered copies would be over 40 MB.
    let mut message = String::from("From: alice@sender.test\r\nTo: all@example.com\r\nSubject: big\r\n\r\n");
    let mut line = 0;
    while message.len() < 1_000_000 {
        message.push_str(&format!(
            "Line {line}: see https://docs.example/page/{line} for the details.\r\n"
        ));
        line += 1;
    }
    let size = message.len() as u64;
    let recipients: Vec<String> = (0..40).map(|n| format!("user{n}@example.com")).collect();
    let before = size_of(&p.data_dir());
    let (address, sent) = (smtp.clone(), message.clone());
    let reply = tokio::task::spawn_blocking(move || send(&address, &recipients, &sent))
        .await
        .unwrap();
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut entries = queue_entries(&p);
    while entries.len() < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        entries = queue_entries(&p);
    }
    assert_eq!(entries.len(), 40, "one queue entry per recipient");
    for entry in &entries {
        assert_eq!(entry["recipients"].as_array().unwrap().len(), 1);
        let stored = entry["size"].as_u64().unwrap();
        assert!(
            (size..size + 1000).contains(&stored),
            "each entry renders the stored message (ours plus a Received field): {stored}"
        );
    }
    let growth = size_of(&p.data_dir()) - before;
    assert!(
        growth < 3 * size,
        "the store grew {growth} bytes for one {size}-byte message to 40 recipients"
    );

    let sink = Sink::start(&p.dir.path().join("sink"), port, &[]);
    let copies = sink.wait_for(40, 60);
    assert_eq!(copies.len(), 40);
    for copy in copies.iter().take(3) {
        assert!(!copy.contains("https://docs.example/page/1 "), "links rewritten");
    }
    let database = rusqlite::Connection::open(p.data_dir().join("gateway.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = database
            .query_row("SELECT count(*) FROM stored_messages", [], |row| row.get(0))
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stored message outlived its last delivery"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reject_verdict_reached_after_the_reply_holds_the_message_instead() {
    let records: &'static [(&'static str, Record)] = &[
        ("spoofed.test", Record::Txt("v=spf1 ip4:192.0.2.1 -all")),
        ("_dmarc.spoofed.test", Record::Txt("v=DMARC1; p=reject")),
    ];
    // Every answer takes 400 ms: authentication outlasts the 200 ms budget for the DATA reply.
    let dns = crate::server::slow_dns_records(records, Duration::from_millis(400)).await;
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let config = gateway_config(&dns, &sink.address, "", "[pipeline]\ntime_budget_ms = 200\n");
    let (_server, smtp) = start_gateway(&p, &config);
    let message = "From: CEO <ceo@spoofed.test>\r\nTo: bob@example.com\r\nSubject: urgent\r\n\r\nPay now\r\n";
    let address = smtp.clone();
    let reply = tokio::task::spawn_blocking(move || {
        let (mut raw, _) = Raw::connect(&address);
        raw.command("EHLO mx.spoofed.test");
        raw.command("MAIL FROM:<ceo@spoofed.test>");
        raw.command("RCPT TO:<bob@example.com>");
        raw.command("DATA");
        raw.send(format!("{message}.\r\n").as_bytes());
        raw.reply()
    })
    .await
    .unwrap();
    assert!(
        reply.starts_with("250 2.0.0"),
        "the budget ran out, so the sender got 250: {reply}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let listed = p.run(&["quarantine", "list", "--json"], b"");
        if let Some(line) = String::from_utf8_lossy(&listed.stdout).lines().next() {
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(Instant::now() < deadline, "the late reject verdict was not held");
        std::thread::sleep(Duration::from_millis(100));
    };
    let reason = held["reason"].as_str().unwrap();
    assert!(reason.contains("after the DATA reply"), "{held}");
    assert!(sink.messages().is_empty(), "not delivered");
}
