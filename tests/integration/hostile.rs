//! Hostile input through the real interfaces: one regression test per class of crash, stall or
//! missed link found by trying Portcullis as an attacker would (issue "Survive hostile input").

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::gateway::{Raw, Sink, free_port, gateway_config, start_gateway};
use crate::server::Server;

/// A message nested `levels` deep in `message/rfc822` parts (about 190 KB at 3,000 levels).
pub fn nested_rfc822(levels: usize) -> Vec<u8> {
    let mut message = b"From: a@sender.test\r\nTo: bob@example.com\r\nSubject: deep\r\n".to_vec();
    for _ in 0..levels {
        message.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    message.extend_from_slice(b"From: x@example.org\r\nSubject: leaf\r\n\r\nhello https://example.org/leaf\r\n");
    message
}

/// A message nested `levels` deep in multiparts.
pub fn nested_multipart(levels: usize) -> Vec<u8> {
    let mut message = b"From: a@sender.test\r\nTo: bob@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n".to_vec();
    for level in 0..levels {
        message.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\n").as_bytes(),
        );
    }
    message.extend_from_slice(b"Content-Type: text/plain\r\n\r\nleaf https://example.org/leaf\r\n");
    for level in (0..levels).rev() {
        message.extend_from_slice(format!("\r\n--b{level}--\r\n").as_bytes());
    }
    message
}

fn data(raw: &mut Raw, message: &[u8]) -> String {
    assert!(raw.command("EHLO client.test").starts_with("250"));
    assert!(raw.command("MAIL FROM:<a@sender.test>").starts_with("250"));
    assert!(raw.command("RCPT TO:<bob@example.com>").starts_with("250"));
    assert!(raw.command("DATA").starts_with("354"));
    raw.send(message);
    raw.send(b"\r\n.\r\n");
    raw.reply()
}

fn healthz(base: &str) -> Duration {
    let address = base.trim_start_matches("http://");
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "healthz: {answer:?}");
    started.elapsed()
}

#[test]
fn deep_nesting_through_smtp_is_refused_and_nothing_else_stops() {
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let config = gateway_config("127.0.0.1:9", &sink.address, "", "[pipeline]\nauthenticate = false\n");
    let (server, smtp) = start_gateway(&p, &config);
    for message in [nested_rfc822(3000), nested_multipart(3000), nested_rfc822(10_000)] {
        let (mut raw, greeting) = Raw::connect(&smtp);
        assert!(greeting.starts_with("220"));
        let reply = data(&mut raw, &message);
        assert!(reply.starts_with("554 5.6.0"), "{reply}");
        healthz(&server.base);
    }
    // Within the bound, nesting is fine: the leaf link is rewritten and delivered.
    let (mut raw, _) = Raw::connect(&smtp);
    let reply = data(&mut raw, &nested_rfc822(40));
    assert!(reply.starts_with("250"), "{reply}");
    let delivered = sink.wait_for(1, 30);
    assert_eq!(delivered.len(), 1);
    assert_eq!(our_links(&delivered[0], false).len(), 1, "the leaf link is rewritten");
}

#[test]
fn a_spooled_message_too_deep_to_filter_is_held_as_damaged_not_a_crash_loop() {
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let config = gateway_config("127.0.0.1:9", &sink.address, "", "[pipeline]\nauthenticate = false\n");
    // What a crash between the fsync and the filing leaves behind: an envelope line and the message.
    let spool = p.data_dir().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let envelope = serde_json::json!({
        "message_ref": "0000deadbeef000000000001", "sender": "a@sender.test", "recipients": ["bob@example.com"],
        "client_ip": "192.0.2.1", "helo": "client.test", "tls": false, "received_at": 1_700_000_000,
        "connection_symbols": []
    });
    let mut file = serde_json::to_vec(&envelope).unwrap();
    file.push(b'\n');
    file.extend_from_slice(&nested_rfc822(3000));
    std::fs::write(spool.join("0000deadbeef000000000001.msg"), file).unwrap();
    let (server, smtp) = start_gateway(&p, &config);
    healthz(&server.base);
    let (_, greeting) = Raw::connect(&smtp);
    assert!(greeting.starts_with("220"));
    let listed = p.run(&["quarantine", "list", "--category", "damaged"], b"");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("0000deadbeef000000000001"), "{text}");
    assert!(text.contains("nested deeper than"), "{text}");
    assert!(!spool.join("0000deadbeef000000000001.msg").exists());
}

#[test]
fn slow_connections_are_closed_at_the_header_timeout_and_healthz_answers() {
    let p = Portcullis::new();
    let server = Server::start(&p, "[click]\nheader_timeout_ms = 1500\nmax_connections = 1000\n");
    let address = server.base.trim_start_matches("http://").to_string();
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let stream = TcpStream::connect(&address).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    let mut closed = vec![false; slow.len()];
    let mut worst = Duration::ZERO;
    // One byte per connection every 100 ms, as slowloris does, until every one is closed.
    while closed.iter().any(|c| !c) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} slow connections still open",
            closed.iter().filter(|c| !**c).count()
        );
        for (stream, closed) in slow.iter_mut().zip(closed.iter_mut()).filter(|(_, c)| !**c) {
            let _ = stream.write_all(b"G");
            let mut byte = [0u8; 64];
            match stream.read(&mut byte) {
                Ok(0) => *closed = true,
                Ok(_) => *closed = true, // an error response, then the close
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => *closed = true,
            }
        }
        worst = worst.max(healthz(&server.base));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(worst < Duration::from_secs(1), "healthz took {worst:?} under slowloris");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "closed at the timeout, not before"
    );
}

#[test]
fn keys_rotated_and_retired_on_disk_take_effect_on_a_running_server() {
    let p = Portcullis::new();
    let server = Server::start(&p, "");
    let client = TcpStatus(server.base.clone());
    let old_link = server.link(&p, "https://example.org/old");
    assert_eq!(client.status(&old_link), 302);
    let old_key = old_link.split("/v1/").nth(1).unwrap()[..6].to_string();

    assert!(p.run(&["keys", "rotate"], b"").status.success());
    let new_link = server.link(&p, "https://example.org/new");
    assert_ne!(&new_link.split("/v1/").nth(1).unwrap()[..6], old_key);
    poll(|| client.status(&new_link) == 302, "the new key's links verify");
    assert_eq!(client.status(&old_link), 302, "the rotated-out key still verifies");

    assert!(p.run(&["keys", "retire", &old_key], b"").status.success());
    poll(|| client.status(&old_link) == 410, "the retired key's links expire");

    // SIGHUP reloads; it no longer kills the server.
    let pid = server.pid();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(client.status(&new_link), 302, "still serving after SIGHUP");
    assert_eq!(client.status(&old_link), 410);
}

fn poll(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bare HTTP/1.1 GET: the status code only.
struct TcpStatus(String);

impl TcpStatus {
    fn status(&self, link: &str) -> u16 {
        let rest = link.strip_prefix(&self.0).expect("link on this server");
        let mut stream = TcpStream::connect(self.0.trim_start_matches("http://")).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {rest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer[9..12].parse().unwrap()
    }
}

/// Rewriter classes, through the CLI.
#[test]
fn rewriter_regressions() {
    let p = Portcullis::new();
    // 1. An empty MIME part (a delimiter straight after another) no longer panics.
    for body in [
        "--b\r\n--b\r\nContent-Type: text/plain\r\n\r\nhttps://example.org/x\r\n--b--\r\n",
        "--b\r\n--b--\r\n",
    ] {
        let message =
            format!("From: a@x.test\r\nSubject: e\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{body}");
        let output = p.run(&["rewrite"], message.as_bytes());
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // 5. Invalid UTF-8 straight after a link keeps the byte after it.
    let message = b"From: a@x.test\r\nSubject: u\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhttps://example.org/a\xC3 next\r\nline two\r\n";
    let (out, _) = p.rewrite(message, &[]);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("\u{FFFD} next\r\nline two"), "{text}");
    // 7. No blank line after the header block: our link must not become a header field.
    let (out, _) = p.rewrite(b"Subject: x\nwww.example.com/x\n", &[]);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("Subject: x\n\nhttp://127.0.0.1:8025/v1/"), "{text}");
    // 10. An obsolete `Name : value` first field is a header, not an error.
    let (out, report) = p.rewrite(
        b"Subject : hi\r\nFrom : a@x.test\r\n\r\nsee https://example.org/o\r\n",
        &[],
    );
    assert_eq!(report["links_rewritten"], 1);
    assert!(String::from_utf8(out).unwrap().starts_with("Subject : hi\r\n"));
    // 8. Charsets we cannot map back are flagged, never silently skipped.
    for charset in ["utf-7", "utf-32", "iso-2022-kr", "hz-gb-2312", "iso-2022-cn"] {
        let message = format!(
            "From: a@x.test\r\nSubject: c\r\nContent-Type: text/plain; charset={charset}\r\n\r\nhttps://example.org/a+b\r\n"
        );
        let (out, report) = p.rewrite(message.as_bytes(), &[]);
        assert_eq!(report["left_unrewritten"]["charset"], 1, "{charset}: {report}");
        assert!(String::from_utf8_lossy(&out).starts_with("X-Portcullis-Rewrite: partial; reason=charset"));
    }
}

/// 6. Plain-text links a mail client makes clickable are rewritten whole.
#[test]
fn plain_text_links_are_signed_whole() {
    let p = Portcullis::new();
    let cases = [
        ("http://[2001:db8::1]/x", "http://[2001:db8::1]/x"),
        ("http://пример.рф/", "http://xn--e1afmkfd.xn--p1ai/"),
        ("http://my_host.example.com/x", "http://my_host.example.com/x"),
        ("http://3232235777/x", "http://192.168.1.1/x"),
        ("http://x.y/z", "http://x.y/z"),
        ("https://example.com#frag", "https://example.com/#frag"),
        ("http://example.com./x", "http://example.com./x"),
        ("https://example.com\\path", "https://example.com/path"),
    ];
    for (written, destination) in cases {
        let message = format!(
            "From: a@x.test\r\nSubject: l\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee {written} now\r\n"
        );
        let (out, report) = p.rewrite(message.as_bytes(), &[]);
        assert_eq!(report["links_rewritten"], 1, "{written}: {report}");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(p.decode(&our_links(&text, false)), [destination], "{written}");
        assert!(
            text.contains(" now\r\n"),
            "{written}: nothing after the link is lost: {text}"
        );
    }
}

/// At the default log level: where the data lives (and that keys were made there), then one line
/// per message with its reference, client, sender, recipient count, verdict, symbols and time.
#[test]
fn logs_say_where_keys_live_and_one_line_per_message() {
    use std::io::BufRead;
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let config = gateway_config("127.0.0.1:9", &sink.address, "", "[pipeline]\nauthenticate = false\n");
    let log_path = p.dir.path().join("serve.log");
    let mut child = Server::command(&p, &config, "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let smtp = loop {
        let line = lines.next().unwrap().unwrap();
        if line.contains("smtp gateway listening") {
            break line.rsplit(' ').next().unwrap().to_string();
        }
    };
    let (mut raw, _) = Raw::connect(&smtp);
    let reply = data(&mut raw, b"From: a@sender.test\r\nSubject: log me\r\n\r\nhello\r\n");
    let message_ref = reply.trim().rsplit(' ').next().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains(&message_ref) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let absolute = p.data_dir().display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("generating new keys") && l.contains(&absolute)),
        "{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains(&message_ref) && l.contains(" message"))
        .unwrap_or_else(|| panic!("no line for {message_ref}: {log}"));
    for part in [
        "client_ip=127.0.0.1",
        "sender=a@sender.test",
        "recipients=1",
        "verdict=deliver",
        "ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

/// Class 11, bypass surfaces in HTML: URLs written as text (clients auto-link them), SVG
/// `xlink:href`, and CSS `url()` in style attributes and style sheets are rewritten too.
#[test]
fn html_bypass_surfaces_are_rewritten() {
    let p = Portcullis::new();
    let html = "<html><head><style>.b { background: url('https://sheet.example/b.png') }</style></head><body>\
        <p>Pay at https://pay.example/invoice?a=1&amp;b=2 today.</p>\
        <svg><a xlink:href=\"https://svg.example/x\"><text>go</text></a></svg>\
        <div style=\"background-image: url(https://inline.example/i.png)\">x</div></body></html>";
    let message = format!("From: a@x.test\r\nSubject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n");
    let (out, report) = p.rewrite(message.as_bytes(), &[]);
    assert_eq!(report["links_rewritten"], 4, "{report}");
    let text = String::from_utf8(out).unwrap();
    let mut destinations = p.decode(&our_links(&text, true));
    destinations.sort();
    assert_eq!(
        destinations,
        [
            "https://inline.example/i.png",
            "https://pay.example/invoice?a=1&b=2",
            "https://sheet.example/b.png",
            "https://svg.example/x",
        ]
    );
    assert!(text.contains(" today.</p>"), "text around the link stays: {text}");
}

/// Class 9: in a windows-1252 HTML part, a browser sends a non-ASCII query in windows-1252: that is
/// what gets signed. Plain text (opened by the mail client as a UTF-8 URL) stays UTF-8.
#[test]
fn legacy_charset_queries_are_signed_as_the_browser_sends_them() {
    let p = Portcullis::new();
    let mut message =
        b"From: a@x.test\r\nSubject: q\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/html; charset=windows-1252\r\n\r\n<a href=\"https://shop.example/s?q=caf"
            .to_vec();
    message.extend_from_slice(b"\xe9\">x</a>\r\n--b\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\nhttps://shop.example/s?q=caf\xe9 now\r\n--b--\r\n");
    let (out, report) = p.rewrite(&message, &[]);
    assert_eq!(report["links_rewritten"], 2, "{report}");
    let text = String::from_utf8_lossy(&out);
    let html_link = our_links(&text, true)[0].clone();
    let text_link = our_links(&text, false)[1].clone();
    assert_eq!(p.decode(&[html_link]), ["https://shop.example/s?q=caf%E9"]);
    assert_eq!(p.decode(&[text_link]), ["https://shop.example/s?q=caf%C3%A9"]);
}
