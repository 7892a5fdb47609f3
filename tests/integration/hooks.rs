//! The gateway hooks through their real interfaces: the HTTP API over HTTP (tokens, limits,
//! streaming and malformed bodies, JSON errors), the milter over its wire protocol (a raw client
//! of ours, then a real Postfix with `smtpd_milters`), and `portcullis filter` as a real
//! Postfix's `content_filter` through pipe(8), reinjecting with Postfix's own sendmail.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Portcullis, fixture, our_links};
use crate::gateway::{Sink, free_port, messages_index, swaks};
use crate::server::Server;

/// Rules that exercise every kind of edit: a subject prefixed, a field removed, a message forced
/// to spam (held).
const RULES: &str = r#"
[[pipeline.rules]]
name = "forced-spam"
priority = 1
header_matches = [{ name = "X-Campaign", pattern = "^blast-" }]
action = "set_scl"
set_scl = 6

[[pipeline.rules]]
name = "tag-external"
priority = 10
sender_domain = ["sender.test"]
action = ["prepend_subject", "remove_header"]
subject_prefix = "[EXT]"
remove_header = ["X-Secret"]
"#;

fn config(dns: &str, extra: &str) -> String {
    format!(
        "[smtp]\nhostname = \"gw.test\"\ndomains = [\"example.com\"]\nmax_message_bytes = 200000\n\
         [dns]\nnameservers = [\"{dns}\"]\ntimeout_secs = 1\n\
         [pipeline]\nmalware = \"reject\"\n[delivery]\nrelay = [\"127.0.0.1:9\"]\ntls = \"off\"\n{RULES}\n{extra}\n"
    )
}

fn ham(subject: &str) -> String {
    format!(
        "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\
         X-Secret: internal-only\r\nX-Portcullis-Spam-Flag: forged\r\n\r\n\
         Your statement is at https://statements.example.org/view?id=42 today.\r\n"
    )
}

fn eicar() -> String {
    String::from_utf8(fixture("detect/eicar.eml")).unwrap()
}

fn spam(subject: &str) -> String {
    ham(subject).replacen("X-Secret:", "X-Campaign: blast-9\r\nX-Secret:", 1)
}

/// A token as a TAP connector is given it: the principal and the secret of HTTP Basic.
pub fn tap_credentials(token: &str) -> (&str, &str) {
    token
        .strip_prefix("pc_")
        .and_then(|rest| rest.split_once('_'))
        .expect("a token prints as pc_<principal>_<secret>")
}

/// A SIEM `interval` from half an hour ago to `ahead` seconds from now (`sinceSeconds` ends at
/// the last whole minute, as TAP's does, which would miss what just happened).
pub fn interval_to_now(ahead: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    format!(
        "{}/{}",
        portcullis::time::rfc3339(now - 1800),
        portcullis::time::rfc3339(now + ahead)
    )
}

pub fn token(p: &Portcullis, name: &str, role: &str) -> String {
    let output = p.run(&["tokens", "add", name, "--role", role], b"");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// One raw HTTP/1.1 exchange: the status line's code and the body.
fn raw_http(address: &str, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn error_code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_api_scans_and_rewrites_behind_tokens_and_refuses_bad_calls_in_json() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let scan_token = token(&p, "platform", "scan");
    let viewer_token = token(&p, "reader", "viewer");
    let server = Server::start(&p, &config(&dns, ""));
    let api = server.admin.clone();
    let address = api.trim_start_matches("http://").to_string();
    let client = crate::server::client();
    let post = |path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut request = client.post(format!("{api}{path}")).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    // Scan: the verdict and every symbol, nothing kept.
    let answer = post(
        "/api/v1/scan?recipient=bob@example.com&client_ip=192.0.2.7&helo=mx.sender.test",
        Some(&scan_token),
        ham("hello").into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(report["verdict"], "deliver", "{report}");
    assert_eq!(report["recipients"][0], "bob@example.com");
    assert!(
        report["symbols"].is_array() && report["scores"]["spam"].is_number(),
        "{report}"
    );
    assert_eq!(report["per_recipient_links"], true);
    let scanned = post("/api/v1/scan", Some(&scan_token), eicar().into_bytes())
        .await
        .unwrap();
    let report: serde_json::Value = scanned.json().await.unwrap();
    assert_eq!(report["verdict"], "reject", "{report}");
    assert!(report["reply"].as_str().unwrap().starts_with('5'), "{report}");
    assert!(messages_index(&p).is_empty(), "a scan keeps nothing");

    // Rewrite: the copy as it goes on, indexed.
    let answer = post(
        "/api/v1/rewrite?recipient=bob@example.com",
        Some(&scan_token),
        ham("rewritten").into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "message/rfc822");
    assert_eq!(answer.headers()["portcullis-verdict"], "deliver");
    let message_ref = answer.headers()["portcullis-message-ref"].to_str().unwrap().to_string();
    let copy = answer.text().await.unwrap();
    assert_eq!(our_links(&copy, false).len(), 1, "{copy}");
    assert!(copy.contains("Subject: [EXT] rewritten"), "{copy}");
    assert!(!copy.contains("X-Secret") && !copy.contains("forged"), "{copy}");
    let index = messages_index(&p);
    assert_eq!(index.len(), 1);
    assert_eq!(index[0]["message_ref"], message_ref.as_str());
    // One recipient: the links carry its reference, and the index says so.
    assert!(
        !index[0]["recipients"][0]["reference"].as_str().unwrap().is_empty(),
        "{}",
        index[0]
    );

    // The report and the copy in one multipart answer; a refusal after the queue is held.
    let answer = client
        .post(format!("{api}/api/v1/rewrite?after_queue=true"))
        .bearer_auth(&scan_token)
        .header("accept", "multipart/mixed")
        .body(eicar())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/mixed; boundary=")
    );
    assert_eq!(answer.headers()["portcullis-verdict"], "quarantine");
    let body = answer.text().await.unwrap();
    assert!(
        body.contains("application/json") && body.contains("\"category\":\"malware\""),
        "{body}"
    );
    let held = p.run_json_lines(&["quarantine", "list", "--json"]);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["category"], "malware");

    // Errors: stable codes, JSON, the right statuses.
    let ham_bytes = || ham("x").into_bytes();
    for (path, token, body, status, code) in [
        ("/api/v1/scan", None, ham_bytes(), 401, "unauthorized"),
        (
            "/api/v1/scan",
            Some("pc_0000_forged"),
            ham_bytes(),
            401,
            "invalid_token",
        ),
        (
            "/api/v1/scan",
            Some(viewer_token.as_str()),
            ham_bytes(),
            403,
            "forbidden",
        ),
        (
            "/api/v1/nothing",
            Some(scan_token.as_str()),
            ham_bytes(),
            404,
            "not_found",
        ),
        (
            "/api/v1/scan?client_ip=nonsense",
            Some(scan_token.as_str()),
            ham_bytes(),
            400,
            "bad_parameter",
        ),
        (
            "/api/v1/scan?colour=blue",
            Some(scan_token.as_str()),
            ham_bytes(),
            400,
            "bad_parameter",
        ),
        ("/api/v1/scan", Some(scan_token.as_str()), Vec::new(), 400, "empty_body"),
        (
            "/api/v1/scan",
            Some(scan_token.as_str()),
            b"just some words\r\n".to_vec(),
            422,
            "not_a_message",
        ),
        (
            "/api/v1/scan",
            Some(scan_token.as_str()),
            vec![b'a'; 300_000],
            413,
            "body_too_large",
        ),
    ] {
        let answer = post(path, token, body).await.unwrap();
        assert_eq!(answer.status(), status, "{path}");
        assert_eq!(answer.headers()["content-type"], "application/json");
        assert_eq!(error_code(&answer.text().await.unwrap()), code, "{path}");
    }
    let wrong_method = client.get(format!("{api}/api/v1/scan")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");

    // A streamed body with no length is cut off at the limit, not read to its end.
    let scan_token_for_raw = scan_token.clone();
    let address_for_raw = address.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        let mut request = format!(
            "POST /api/v1/scan HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {scan_token_for_raw}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..40 {
            request.extend_from_slice(format!("{:x}\r\n", 10_000).as_bytes());
            request.extend_from_slice(&[b'b'; 10_000]);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        raw_http(&address_for_raw, &request)
    })
    .await
    .unwrap();
    assert_eq!((status, error_code(&body).as_str()), (413, "body_too_large"));
    // Malformed chunked framing: refused, and the server goes on.
    let scan_token_for_raw = scan_token.clone();
    let address_for_raw = address.clone();
    let (status, _) = tokio::task::spawn_blocking(move || {
        raw_http(
            &address_for_raw,
            format!(
                "POST /api/v1/scan HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {scan_token_for_raw}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nnot a chunk\r\n"
            )
            .as_bytes(),
        )
    })
    .await
    .unwrap();
    assert!(status == 400 || status == 0, "malformed chunks answered {status}");

    // The description is served and names every endpoint.
    let description: serde_json::Value = client
        .get(format!("{api}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/api/v1/scan", "/api/v1/rewrite", "/healthz", "/metrics"] {
        assert!(description["paths"][path].is_object(), "{path} undocumented");
    }

    // Revoked: refused at once.
    assert!(p.run(&["tokens", "revoke", "platform"], b"").status.success());
    let answer = post("/api/v1/scan", Some(&scan_token), ham_bytes()).await.unwrap();
    assert_eq!(answer.status(), 401);
    let listed = p.run_json_lines(&["tokens", "list", "--json"]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "reader");
}

/// A milter client speaking the wire protocol, for tests that need exact packets.
struct MilterClient {
    stream: TcpStream,
}

impl MilterClient {
    fn connect(address: &str) -> MilterClient {
        let stream = TcpStream::connect(address.trim_start_matches("inet:")).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        MilterClient { stream }
    }

    fn send(&mut self, code: u8, payload: &[u8]) {
        let mut packet = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
        packet.push(code);
        packet.extend_from_slice(payload);
        self.stream.write_all(&packet).unwrap();
    }

    /// One reply packet, or `None` when the milter closed the connection.
    fn reply(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).ok()?;
        let mut packet = vec![0u8; u32::from_be_bytes(length) as usize];
        self.stream.read_exact(&mut packet).ok()?;
        let code = packet.remove(0);
        Some((code, packet))
    }

    /// Negotiates as Postfix does: every action, every step offered.
    fn negotiate(&mut self) -> (u32, u32) {
        let mut offer = 6u32.to_be_bytes().to_vec();
        offer.extend_from_slice(&0x1ffu32.to_be_bytes());
        offer.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
        self.send(b'O', &offer);
        let (code, reply) = self.reply().expect("negotiation reply");
        assert_eq!(code, b'O');
        let word = |at: usize| u32::from_be_bytes(reply[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), 6);
        (word(4), word(8))
    }

    /// A whole message; returns every packet of the end-of-message answer, the final one last.
    fn message(&mut self, sender: &str, recipients: &[&str], message: &str) -> Vec<(u8, Vec<u8>)> {
        self.send(b'C', b"mx.sender.test\x004\x00\x19192.0.2.7\0");
        self.send(b'H', b"mx.sender.test\0");
        self.send(b'D', b"Mi\0QUEUE1\0");
        self.send(b'M', format!("<{sender}>\0").as_bytes());
        self.message_after_mail(recipients, message)
    }

    /// The rest of a message once MAIL was sent.
    fn message_after_mail(&mut self, recipients: &[&str], message: &str) -> Vec<(u8, Vec<u8>)> {
        for recipient in recipients {
            self.send(b'R', format!("<{recipient}>\0").as_bytes());
        }
        self.send(b'T', b"");
        let (head, body) = message.split_once("\r\n\r\n").unwrap();
        let mut fields: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            match fields.last_mut() {
                Some(last) if line.starts_with([' ', '\t']) => {
                    last.push('\n');
                    last.push_str(line);
                }
                _ => fields.push(line.to_string()),
            }
        }
        for field in fields {
            // An MTA passes only well-formed fields on as headers.
            let Some((name, value)) = field.split_once(':') else {
                continue;
            };
            // Leading space kept: we asked for SMFIP_HDR_LEADSPC.
            self.send(b'L', format!("{name}\0{value}\0").as_bytes());
        }
        self.send(b'N', b"");
        for chunk in body.as_bytes().chunks(65_535) {
            self.send(b'B', chunk);
        }
        self.send(b'E', b"");
        let mut packets = Vec::new();
        loop {
            let packet = self.reply().expect("end-of-message answer");
            let last = matches!(packet.0, b'c' | b'a' | b'r' | b't' | b'd' | b'y');
            packets.push(packet);
            if last {
                return packets;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn milter_wire_protocol_edits_holds_refuses_and_survives_bad_peers() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let milter_config =
        "[milter]\nlisten = \"127.0.0.1:0\"\nread_timeout_secs = 1\nidle_timeout_secs = 2\nspool_after_kib = 4\n";
    let server = Server::start(&p, &config(&dns, milter_config));
    let address = server.milter.clone().expect("milter address");
    let spool = p.data_dir().join("milter-spool");
    let address_for_task = address.clone();
    tokio::task::spawn_blocking(move || {
        let address = address_for_task;
        let mut client = MilterClient::connect(&address);
        let (actions, steps) = client.negotiate();
        assert_eq!(actions & 0x3f, 0x3f, "headers, body, recipients, quarantine");
        assert_ne!(steps & 0x80, 0, "headers go unanswered");
        assert_ne!(steps & 0x100000, 0, "leading space kept");

        // Delivered: forged field deleted, subject changed in place, ours inserted on top, body
        // replaced with the link rewritten. A body past spool_after_kib goes through the disk.
        let long = ham("hello").replace("today.", &format!("today.\r\n{}", "padding line\r\n".repeat(800)));
        let answer = client.message("alice@sender.test", &["bob@example.com"], &long);
        assert_eq!(answer.last().unwrap().0, b'c');
        let of = |code: u8| -> Vec<String> {
            answer
                .iter()
                .filter(|(c, _)| *c == code)
                .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
                .collect()
        };
        let changes = of(b'm');
        assert!(
            changes.iter().any(|c| c.contains("Subject\0 [EXT] hello")),
            "{changes:?}"
        );
        assert!(changes.iter().any(|c| c.ends_with("X-Secret\0\0")), "{changes:?}");
        assert!(
            changes.iter().any(|c| c.ends_with("X-Portcullis-Spam-Flag\0\0")),
            "{changes:?}"
        );
        let inserted = of(b'i');
        assert!(
            inserted.iter().any(|i| i.contains("X-Portcullis-Spam-Flag\0 NO\0")),
            "{inserted:?}"
        );
        let body: String = of(b'b').concat();
        assert_eq!(our_links(&body, false).len(), 1, "{body}");
        assert!(body.contains("padding line"));

        // Spam is held: the MTA's quarantine, and ours.
        let answer = client.message(
            "alice@sender.test",
            &["bob@example.com", "carol@example.com"],
            &spam("offer"),
        );
        assert!(
            answer
                .iter()
                .any(|(c, p)| *c == b'q' && String::from_utf8_lossy(p).contains("spam")),
            "{answer:?}"
        );
        // Two recipients: links carry the message's reference only.
        let body: String = answer
            .iter()
            .filter(|(c, _)| *c == b'b')
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(our_links(&body, false).len(), 1);

        // Malware is refused with our reply.
        let answer = client.message("ann@partner.test", &["bob@example.com"], &eicar());
        let (code, reply) = answer.last().unwrap();
        assert_eq!(*code, b'y');
        assert!(String::from_utf8_lossy(reply).starts_with("5"), "{reply:?}");

        // A header block past 1,000 fields is refused, not compared.
        let crowded = ham("crowded").replacen("From:", &format!("{}From:", "X-Filler: a\r\n".repeat(1001)), 1);
        let answer = client.message("alice@sender.test", &["bob@example.com"], &crowded);
        let (code, reply) = answer.last().unwrap();
        assert_eq!(*code, b'y');
        assert!(String::from_utf8_lossy(reply).starts_with("552 5.3.4"), "{reply:?}");

        // Dropped mid-message: nothing kept, no spool file left.
        let mut dropped = MilterClient::connect(&address);
        dropped.negotiate();
        dropped.send(b'M', b"<alice@sender.test>\0");
        dropped.send(b'B', &vec![b'x'; 20_000]);
        drop(dropped);

        // An oversize length prefix, an unknown command, a packet cut short: each closes only
        // its own connection.
        for bad in [&b"\xff\xff\xff\xffO"[..], b"\0\0\0\x01Z", b"\0\0\0\x10O\0\0"] {
            let mut peer = MilterClient::connect(&address);
            peer.stream.write_all(bad).unwrap();
            let started = Instant::now();
            assert!(peer.reply().is_none(), "{bad:?} answered");
            assert!(started.elapsed() < Duration::from_secs(20));
        }
        // Still serving; and a connection reused for the next session (Sendmail's QUIT_NC)
        // starts clean.
        let mut again = MilterClient::connect(&address);
        again.negotiate();
        let answer = again.message("alice@sender.test", &["bob@example.com"], &ham("again"));
        assert_eq!(answer.last().unwrap().0, b'c');
        again.send(b'K', b"");
        again.negotiate();
        // A sender who authenticated to the MTA is outbound: let through, not scanned.
        again.send(b'D', b"M{auth_authen}\0alice\0");
        again.send(b'M', b"<alice@example.com>\0");
        let answer = again.message_after_mail(&["bob@example.com"], &eicar());
        assert_eq!(answer, vec![(b'a', Vec::new())]);
        // Idle past idle_timeout_secs: closed.
        let started = Instant::now();
        assert!(again.reply().is_none());
        assert!(started.elapsed() < Duration::from_secs(20));
    })
    .await
    .unwrap();

    let index = messages_index(&p);
    assert_eq!(index.len(), 4, "hello, offer, eicar, again: {index:#?}");
    let held = p.run_json_lines(&["quarantine", "list", "--json"]);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["category"], "spam");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0) > 0 {
        assert!(Instant::now() < deadline, "spooled bodies left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn filter_exit_status_tells_the_mta_to_bounce_retry_or_carry_on() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let scan_token = token(&p, "filter", "scan");
    let server = Server::start(&p, &config(&dns, ""));
    let filter = |api: &str, token: &str, message: &[u8]| {
        let output = p.run(
            &[
                "filter",
                "--api",
                api,
                "--token",
                token,
                "--stdout",
                "-f",
                "alice@sender.test",
                "--",
                "bob@example.com",
            ],
            message,
        );
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let api = server.admin.as_str();
    tokio::task::block_in_place(|| {
        let (code, copy, said) = filter(api, &scan_token, ham("piped").as_bytes());
        assert_eq!(code, Some(0), "{said}");
        assert_eq!(our_links(&copy, false).len(), 1, "{copy}");
        // Held: done, nothing to pass on.
        let (code, copy, said) = filter(api, &scan_token, eicar().as_bytes());
        assert_eq!((code, copy.as_str()), (Some(0), ""), "{said}");
        assert!(said.contains("held in quarantine (malware)"), "{said}");
        // Not a message, or too big: bounced (EX_DATAERR).
        let (code, _, said) = filter(api, &scan_token, b"no header here\r\n");
        assert_eq!(code, Some(65), "{said}");
        let (code, _, said) = filter(api, &scan_token, &vec![b'a'; 300_000]);
        assert_eq!(code, Some(65), "{said}");
        // A refused token or a server that is not there: kept queued (EX_TEMPFAIL).
        let (code, _, said) = filter(api, "pc_00_nope", ham("x").as_bytes());
        assert_eq!(code, Some(75), "{said}");
        let (code, _, said) = filter(
            &format!("http://127.0.0.1:{}", free_port()),
            &scan_token,
            ham("x").as_bytes(),
        );
        assert_eq!(code, Some(75), "{said}");
    });
}

/// Mail we did not write through the milter: a slice of the SpamAssassin corpus over one
/// connection, message after message. Every message gets an answer, the edits rebuild a message
/// whose only verdict fields are ours, and every one is indexed.
#[tokio::test(flavor = "multi_thread")]
async fn corpus_messages_through_the_milter_all_get_an_answer_and_clean_verdict_fields() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let server = Server::start(&p, &config(&dns, "[milter]\nlisten = \"127.0.0.1:0\"\n"));
    let address = server.milter.clone().expect("milter address");
    let files: Vec<_> = crate::corpus::corpus_files().into_iter().step_by(40).collect();
    let answered = tokio::task::block_in_place(|| {
        let mut client = MilterClient::connect(&address);
        client.negotiate();
        let mut answered = 0;
        for file in &files {
            let text = String::from_utf8_lossy(&crate::corpus::corpus_message(file)).replace("\r\n", "\n");
            // As an MTA hands it over: CRLF lines, a header block ended by an empty line.
            let mut message = text.replace('\n', "\r\n");
            if !message.contains("\r\n\r\n") {
                message.push_str("\r\n\r\n");
            }
            let forged = message.replacen("\r\n\r\n", "\r\nX-Portcullis-Spam-Flag: NO\r\n\r\n", 1);
            let answer = client.message("sender@corpus.test", &["bob@example.com"], &forged);
            let (code, _) = answer.last().unwrap();
            assert!(matches!(code, b'c' | b'y' | b'd' | b'a'), "{}: {code}", file.display());
            if *code == b'c' {
                // Our one stamped flag inserted, the forged one deleted.
                let inserted = answer
                    .iter()
                    .filter(|(c, p)| *c == b'i' && p[4..].starts_with(b"X-Portcullis-Spam-Flag\0"))
                    .count();
                let deleted = answer
                    .iter()
                    .filter(|(c, p)| {
                        *c == b'm' && p[4..].starts_with(b"X-Portcullis-Spam-Flag\0") && p.ends_with(b"\0\0")
                    })
                    .count();
                assert_eq!((inserted, deleted), (1, 1), "{}", file.display());
            }
            answered += 1;
        }
        answered
    });
    assert_eq!(answered, files.len());
    assert!(files.len() > 100);
    assert_eq!(messages_index(&p).len(), files.len());
}

/// A private Postfix instance in `dir`, listening on `port`, relaying to `relay`; stopped on drop.
struct Postfix {
    etc: std::path::PathBuf,
}

impl Postfix {
    fn start(dir: &Path, port: u16, relay: &str, main: &[String], smtpd_options: &str, master_extra: &str) -> Postfix {
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/postfix-instance.sh"))
            .arg(dir)
            .arg(port.to_string())
            .arg(relay)
            .args(main)
            .env("SMTPD_OPTIONS", smtpd_options)
            .env("MASTER_EXTRA", master_extra)
            .status()
            .unwrap();
        assert!(status.success(), "postfix instance in {}", dir.display());
        Postfix { etc: dir.join("etc") }
    }

    /// Queue ids in the hold queue (`postqueue -p` marks them with `!`).
    fn held(&self) -> usize {
        let output = Command::new("postqueue")
            .args(["-c", self.etc.to_str().unwrap(), "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.split_whitespace().next().is_some_and(|id| id.ends_with('!')))
            .count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.etc.parent().unwrap().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .args(["-c", self.etc.to_str().unwrap(), "stop"])
            .status();
    }
}

/// Postfix's set-group-id `postdrop` (behind the filter's `sendmail`) takes mail only for
/// configuration directories the default one lists: the test's private instance is added there.
/// A real deployment reinjects into the default instance and needs nothing of the kind.
fn allow_alternate_config(etc: &Path) -> AlternateConfig {
    // Installed with "No configuration" (as CI does), Postfix has no main.cf of its own yet.
    let default = Path::new("/etc/postfix/main.cf");
    if !default.exists() {
        std::fs::write(default, format!("alternate_config_directories = {}\n", etc.display())).unwrap();
        return AlternateConfig {
            etc: etc.to_path_buf(),
            created: true,
        };
    }
    set_alternate_configs(|dir| dir != etc, Some(etc));
    AlternateConfig {
        etc: etc.to_path_buf(),
        created: false,
    }
}

/// Rewrites `alternate_config_directories`: the listed directories `keep` keeps (and that still
/// exist: instances of earlier runs are gone), then `add`.
fn set_alternate_configs(keep: impl Fn(&Path) -> bool, add: Option<&Path>) {
    let current = Command::new("postconf")
        .args(["-h", "alternate_config_directories"])
        .output()
        .expect("postconf");
    let mut dirs: Vec<String> = String::from_utf8_lossy(&current.stdout)
        .split([',', ' ', '\n'])
        .filter(|dir| !dir.is_empty() && Path::new(dir).exists() && keep(Path::new(dir)))
        .map(str::to_string)
        .collect();
    dirs.extend(add.map(|dir| dir.display().to_string()));
    let status = Command::new("postconf")
        .arg("-e")
        .arg(format!("alternate_config_directories = {}", dirs.join(", ")))
        .status()
        .expect("postconf -e");
    assert!(status.success());
}

/// Takes the test's instance off the default configuration again.
struct AlternateConfig {
    etc: std::path::PathBuf,
    created: bool,
}

impl Drop for AlternateConfig {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file("/etc/postfix/main.cf");
        } else {
            set_alternate_configs(|dir| dir != self.etc, None);
        }
    }
}

fn send_via(server: &str, data: &str, from: &str) -> (bool, String) {
    swaks(server, &["--from", from, "--to", "bob@example.com", "--data", data])
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_with_our_milter_rewrites_refuses_malware_holds_spam_and_applies_its_default_action() {
    let p = Portcullis::new();
    let dir = p.dir.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dns = crate::server::fake_dns(&[]).await;
    let mut server = Server::start(&p, &config(&dns, "[milter]\nlisten = \"127.0.0.1:0\"\n"));
    let milter = server.milter.clone().expect("milter address");
    let sink = Sink::start(&dir.join("sink"), free_port(), &[]);
    let port = free_port();
    let postfix = Postfix::start(
        &dir.join("postfix"),
        port,
        &sink.address,
        &[
            format!("smtpd_milters = {milter}"),
            "milter_protocol = 6".into(),
            "milter_default_action = tempfail".into(),
        ],
        "",
        "",
    );
    let front = format!("127.0.0.1:{port}");
    let (index, held_by_postfix, log) = tokio::task::block_in_place(|| {
        let (ok, transcript) = send_via(&front, &ham("through postfix"), "alice@sender.test");
        assert!(ok, "{transcript}");
        let copies = sink.wait_for(1, 30);
        assert_eq!(copies.len(), 1, "{}", postfix.log());
        let copy = &copies[0];
        assert_eq!(our_links(copy, false).len(), 1, "{copy}");
        assert!(copy.contains("X-Portcullis-Spam-Flag: NO"), "{copy}");
        assert!(copy.contains("Subject: [EXT] through postfix"), "{copy}");
        assert!(!copy.contains("X-Secret") && !copy.contains("forged"), "{copy}");

        let (ok, transcript) = send_via(&front, &eicar(), "ann@partner.test");
        assert!(
            !ok && transcript.contains("<** 5"),
            "malware refused at DATA: {transcript}"
        );

        let (ok, transcript) = send_via(&front, &spam("held offer"), "alice@sender.test");
        assert!(ok, "{transcript}");
        wait_until("the hold queue", 30, || postfix.held() == 1);
        (messages_index(&p), postfix.held(), postfix.log())
    });
    assert_eq!(held_by_postfix, 1, "{log}");
    let verdicts: Vec<&str> = index.iter().map(|e| e["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts.len(), 3, "{index:#?}");
    for verdict in ["deliver", "reject", "quarantine"] {
        assert!(verdicts.contains(&verdict), "{verdicts:?}");
    }

    // The milter gone: Postfix applies milter_default_action (tempfail) and the client retries later.
    server.stop();
    let front = format!("127.0.0.1:{port}");
    let (ok, transcript) = tokio::task::block_in_place(|| send_via(&front, &ham("milter down"), "alice@sender.test"));
    assert!(!ok && transcript.contains("<** 451"), "{transcript}");
    drop(postfix);
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_content_filter_through_portcullis_filter_rewrites_and_holds() {
    let p = Portcullis::new();
    let dir = p.dir.path().to_path_buf();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dns = crate::server::fake_dns(&[]).await;
    let scan_token = token(&p, "postfix", "scan");
    let server = Server::start(&p, &config(&dns, ""));
    // pipe(8) runs the filter as an unprivileged user: the binary and the token must be theirs
    // to read.
    let binary = dir.join("portcullis");
    std::fs::copy(env!("CARGO_BIN_EXE_portcullis"), &binary).unwrap();
    let token_file = dir.join("filter.token");
    std::fs::write(&token_file, &scan_token).unwrap();
    for path in [&binary, &token_file] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let sink = Sink::start(&dir.join("sink"), free_port(), &[]);
    let port = free_port();
    let postfix_dir = dir.join("postfix");
    // Reinjected mail comes back through pickup, which has no content_filter: no loop.
    let master_extra = format!(
        "portcullis unix - n n - 4 pipe flags=Rq user=nobody null_sender= \
         argv={} filter --api {} --token-file {} --sendmail {}/sendmail-wrapper --sender=${{sender}} --helo=${{client_helo}} -- ${{recipient}}",
        binary.display(),
        server.admin,
        token_file.display(),
        dir.display(),
    );
    // Postfix's sendmail, told which instance to hand the copy to.
    std::fs::write(
        dir.join("sendmail-wrapper"),
        format!(
            "#!/bin/sh\nexec /usr/sbin/sendmail -C {}/etc -G -i \"$@\"\n",
            postfix_dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        dir.join("sendmail-wrapper"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let _registered = allow_alternate_config(&postfix_dir.join("etc"));
    let postfix = Postfix::start(
        &postfix_dir,
        port,
        &sink.address,
        &[],
        "-o content_filter=portcullis:dummy",
        &master_extra,
    );
    let front = format!("127.0.0.1:{port}");
    let index = tokio::task::block_in_place(|| {
        let (ok, transcript) = send_via(&front, &ham("filtered"), "alice@sender.test");
        assert!(ok, "{transcript}");
        let copies = sink.wait_for(1, 30);
        assert_eq!(copies.len(), 1, "{}", postfix.log());
        assert_eq!(our_links(&copies[0], false).len(), 1, "{}", copies[0]);
        assert!(copies[0].contains("X-Portcullis-Spam-Flag: NO"), "{}", copies[0]);
        assert!(copies[0].contains("Subject: [EXT] filtered"), "{}", copies[0]);
        // After the queue nothing can be refused: malware and spam are held by us, not bounced.
        for (data, from) in [
            (eicar(), "ann@partner.test"),
            (spam("filtered offer"), "alice@sender.test"),
        ] {
            let (ok, transcript) = send_via(&front, &data, from);
            assert!(ok, "{transcript}");
        }
        wait_until("both held", 60, || {
            p.run_json_lines(&["quarantine", "list", "--json"]).len() == 2
        });
        // Give the MTA the chance to (wrongly) deliver them before looking.
        wait_until("the pipe deliveries logged", 30, || {
            postfix.log().matches("relay=portcullis").count() >= 3
        });
        assert!(postfix.log().matches("status=sent").count() >= 3, "{}", postfix.log());
        assert_eq!(sink.messages().len(), 1, "nothing held was delivered");
        messages_index(&p)
    });
    assert_eq!(index.len(), 3);
    let held: Vec<&str> = index.iter().filter_map(|e| e["category"].as_str()).collect();
    assert!(held.contains(&"malware") && held.contains(&"spam"), "{index:#?}");
    drop(server);
}
