//! The quarantine digest end to end: spam and phish held through SMTP, digests queued over the
//! API and delivered to a real `smtp-sink` in each recipient's language, and their links used on
//! the click service as a recipient's browser would: a GET only shows a confirmation (mail
//! scanners fetch every link), the POST its form makes releases one recipient's copy, releases
//! and allows the sender (whose next message then reaches that recipient only), or asks for a
//! phish to be released, which an operator approves over the API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::Portcullis;
use crate::gateway::{SPAM_RULE_AND_BLOCK_LIST, Sink, free_port, gateway_config, start_gateway};
use crate::hooks::token;
use crate::server::Record;
use portcullis::digest::{Action, ActionLink};

/// Rules that make what carries `X-Test: spam…` spam by its score, and `X-Test: phish…` phish.
pub const SPAM_AND_PHISH_BY_SCORE: &str = "[[pipeline.rules]]\nname = \"spammy\"\n\
    header_matches = [{ name = \"X-Test\", pattern = \"^spam\" }]\naction = \"symbol\"\nsymbol = \"TEST_SPAMMY\"\n\
    [[pipeline.rules]]\nname = \"phishy\"\nheader_matches = [{ name = \"X-Test\", pattern = \"^phish\" }]\n\
    action = \"symbol\"\nsymbol = \"TEST_PHISHY\"\n\
    [pipeline.symbols]\nTEST_SPAMMY = { weight = 8.0, group = \"spam\" }\nTEST_PHISHY = { weight = 9.0, group = \"phish\" }\n";

fn message(from: &str, to: &str, subject: &str, test: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nX-Test: {test}\r\n\
         Message-ID: <{}@test>\r\nDate: Sun, 29 Nov 2026 10:00:00 +0000\r\n\r\nHello.\r\n",
        subject.replace(' ', "-")
    )
}

/// One message through swaks to these recipients.
async fn send(smtp: &str, from: &str, to: &[&str], data: String) {
    let (smtp, from, to) = (smtp.to_string(), from.to_string(), to.join(","));
    let (ok, transcript) = tokio::task::spawn_blocking(move || {
        crate::gateway::swaks(&smtp, &["--from", &from, "--to", &to, "--data", &data])
    })
    .await
    .unwrap();
    assert!(ok, "{transcript}");
}

/// Waits until a message to `recipient` containing `needle` has reached the sink.
fn wait_for_copy(sink: &Sink, recipient: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(copy) = sink
            .messages()
            .into_iter()
            .find(|m| m.contains(&format!("X-Rcpt-Args: <{recipient}>")) && m.contains(needle))
        {
            return copy;
        }
        assert!(Instant::now() < deadline, "nothing with {needle:?} reached {recipient}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The admin API with a bearer token: the status and the JSON (or the text) answered.
struct AdminApi {
    client: reqwest::Client,
    base: String,
}

impl AdminApi {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
    }
}

/// A digest as its recipient reads it.
pub struct Digest {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// (action, path and query), in order, from the text part (as a mail client shows them);
    /// each is in the HTML part too.
    pub links: Vec<(String, String)>,
}

pub fn read_digest(copy: &str) -> Digest {
    // smtp-sink's own trace fields come first; the message starts at our From.
    let start = copy.find("From: ").expect("a From field");
    let parsed = mail_parser::MessageParser::default()
        .parse(&copy.as_bytes()[start..])
        .expect("digest parses");
    let subject = parsed.subject().unwrap_or_default().to_string();
    let text = parsed.body_text(0).expect("a text part").to_string();
    let html = parsed.body_html(0).expect("an HTML part").to_string();
    let links = text
        .lines()
        .filter_map(|line| line.split_once(": http"))
        .map(|(_, rest)| format!("http{}", rest.trim()))
        .map(|link| {
            let url = url::Url::parse(&link).unwrap();
            let action = url.query_pairs().find(|(k, _)| k == "a").unwrap().1.into_owned();
            assert!(html.contains(&link.replace('&', "&amp;")), "the HTML part has {link}");
            (action, format!("{}?{}", url.path(), url.query().unwrap()))
        })
        .collect();
    Digest {
        subject,
        text,
        html,
        links,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_links_release_allow_and_request_through_the_click_service() {
    let dns = crate::server::fake_dns_records(&[
        ("partner.test", Record::Txt("v=spf1 ip4:127.0.0.1 -all")),
        ("_dmarc.partner.test", Record::Txt("v=DMARC1; p=none")),
    ])
    .await;
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let operator = token(&p, "soc", "operator");
    let viewer = token(&p, "auditor", "viewer");
    let (server, smtp) = start_gateway(
        &p,
        &gateway_config(
            &dns,
            &sink.address,
            "",
            &format!(
                "{SPAM_AND_PHISH_BY_SCORE}[quarantine.digest]\nlanguages = {{ \"carol@example.com\" = \"ja\" }}\n\
                 [click]\norganisation = \"Acme Corp\"\nlogo_url = \"https://acme.example/logo.png\"\n\
                 support_contact = \"soc@acme.example\"\n"
            ),
        ),
    );
    let client = crate::server::client();
    let admin = AdminApi {
        client: client.clone(),
        base: server.admin.clone(),
    };

    send(
        &smtp,
        "ann@partner.test",
        &["bob@example.com", "carol@example.com"],
        message(
            "ann@partner.test",
            "bob@example.com, carol@example.com",
            "Spring offer",
            "spam",
        ),
    )
    .await;
    send(
        &smtp,
        "it@shady.test",
        &["bob@example.com"],
        message("it@shady.test", "bob@example.com", "Reset your password", "phish"),
    )
    .await;
    let (status, held) = admin.get("/api/v1/quarantine", &viewer).await;
    assert_eq!(status, 200, "{held}");
    let held_at_start = held["held"].as_array().unwrap().clone();
    let categories: Vec<&str> = held_at_start.iter().map(|h| h["category"].as_str().unwrap()).collect();
    assert_eq!(categories, ["phish", "spam"], "{held_at_start:?}");
    let spam_id = held_at_start[1]["id"].as_i64().unwrap();

    // Digests on demand: one per recipient, each message listed once.
    let digests = "/api/v1/quarantine/digests";
    let (status, _) = admin.post(digests, &viewer, json!({})).await;
    assert_eq!(status, 403, "a viewer sends no digests");
    let (status, queued) = admin.post(digests, &operator, json!({})).await;
    assert_eq!(
        (status, &queued["queued"]),
        (200, &json!({"recipients": 2, "messages": 3})),
        "{queued}"
    );
    let (_, again) = admin.post(digests, &operator, json!({})).await;
    assert_eq!(
        again["queued"],
        json!({"recipients": 0, "messages": 0}),
        "nothing listed twice"
    );

    let bob_digest = wait_for_copy(&sink, "bob@example.com", "Auto-Submitted: auto-generated");
    let carol_digest = wait_for_copy(&sink, "carol@example.com", "Auto-Submitted: auto-generated");
    assert!(
        bob_digest.contains("X-Mail-Args: <>"),
        "sent from the null reverse path: {bob_digest}"
    );
    let Digest {
        subject: bob_subject,
        text: bob_text,
        html: bob_html,
        links: bob_links,
    } = read_digest(&bob_digest);
    assert!(
        bob_html.contains(r#"<img src="https://acme.example/logo.png" alt="Acme Corp""#),
        "{bob_html}"
    );
    assert!(bob_text.contains("Acme Corp held these messages") && bob_text.contains("soc@acme.example"));
    assert_eq!(bob_subject, "Quarantine digest: 2 new messages held for you");
    let actions: Vec<&str> = bob_links.iter().map(|(action, _)| action.as_str()).collect();
    assert_eq!(
        actions,
        ["release", "allow", "request"],
        "spam is released, phish only requested"
    );
    let Digest {
        subject: carol_subject,
        links: carol_links,
        ..
    } = read_digest(&carol_digest);
    assert!(
        carol_subject.starts_with("隔離ダイジェスト"),
        "carol's digest is in Japanese: {carol_subject}"
    );
    assert_eq!(carol_links.len(), 2);
    for subject in [
        "Spring offer",
        "Reset your password",
        "ann@partner.test",
        "it@shady.test",
    ] {
        assert!(bob_text.contains(subject), "bob's digest lists {subject}: {bob_text}");
    }

    // A GET, as a scanner fetching every link makes, only asks.
    let click = &server.base;
    let (bob_release, bob_allow, bob_request) = (&bob_links[0].1, &bob_links[1].1, &bob_links[2].1);
    for _ in 0..2 {
        let page = client.get(format!("{click}{bob_release}")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let body = page.text().await.unwrap();
        assert!(
            body.contains("Release this message?") && body.contains("Spring offer"),
            "{body}"
        );
        assert!(body.contains(r#"method="post" action="/quarantine""#), "{body}");
    }
    let (_, still) = admin.get(&format!("/api/v1/quarantine/{spam_id}"), &viewer).await;
    assert_eq!(
        still["held"]["recipients"],
        json!(["bob@example.com", "carol@example.com"]),
        "{still}"
    );

    // Garbage and oversized forms get a clear answer.
    let garbage = client
        .get(format!("{click}/quarantine?a=release&h=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let huge = client
        .post(format!("{click}/quarantine"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("x={}&a=", "y".repeat(8192)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let head = client.head(format!("{click}{bob_release}")).send().await.unwrap();
    assert_eq!(head.status(), 200, "a HEAD is a GET: nothing happens");

    // Altered links are refused: another hold, another recipient, a later expiry.
    for (from, to) in [("h=", "h=9"), ("r=bob", "r=eve"), ("e=1", "e=2")] {
        let tampered = bob_release.replacen(from, to, 1);
        let answer = client.get(format!("{click}{tampered}")).send().await.unwrap();
        assert!(
            matches!(answer.status().as_u16(), 400 | 410),
            "{tampered}: {}",
            answer.status()
        );
    }

    // Carol releases her copy from a Japanese browser: only hers goes; Bob's stays held.
    let form = |link: &str| link.split_once('?').unwrap().1.to_string();
    let post = |link: &str, language: &str| {
        client
            .post(format!("{click}/quarantine"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept-language", language)
            .body(form(link))
            .send()
    };
    let released = post(&carol_links[0].1, "ja").await.unwrap();
    assert_eq!(released.status(), 200);
    assert!(released.text().await.unwrap().contains("配信しました"));
    wait_for_copy(&sink, "carol@example.com", "Subject: Spring offer");
    let (_, after) = admin.get(&format!("/api/v1/quarantine/{spam_id}"), &viewer).await;
    assert_eq!(after["held"]["recipients"], json!(["bob@example.com"]), "{after}");
    let twice = post(&carol_links[0].1, "ja").await.unwrap();
    assert_eq!(twice.status(), 410, "a copy is released once");

    // Bob releases and allows Ann: the hold is gone, and Ann's next spam reaches Bob while
    // Carol's copy is held.
    let allowed = post(bob_allow, "en").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert!(allowed.text().await.unwrap().contains("ann@partner.test"));
    wait_for_copy(&sink, "bob@example.com", "Subject: Spring offer");
    let (status, _) = admin.get(&format!("/api/v1/quarantine/{spam_id}"), &viewer).await;
    assert_eq!(status, 404, "released to everyone: no longer held");
    let (_, own) = admin.get("/api/v1/recipient-senders", &viewer).await;
    assert_eq!(own["entries"][0]["recipient"], "bob@example.com", "{own}");
    assert_eq!(own["entries"][0]["sender"], "ann@partner.test", "{own}");
    send(
        &smtp,
        "ann@partner.test",
        &["bob@example.com", "carol@example.com"],
        message(
            "ann@partner.test",
            "bob@example.com, carol@example.com",
            "Summer offer",
            "spam",
        ),
    )
    .await;
    wait_for_copy(&sink, "bob@example.com", "Subject: Summer offer");
    let (_, held) = admin.get("/api/v1/quarantine?category=spam", &viewer).await;
    let summer = held["held"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["subject"] == "Summer offer")
        .cloned()
        .expect("Summer offer held for carol");
    assert_eq!(summer["recipients"], json!(["carol@example.com"]));
    let (_, trace) = admin
        .get(
            &format!("/api/v1/messages/{}", summer["message_ref"].as_str().unwrap()),
            &viewer,
        )
        .await;
    assert!(
        trace["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "RECIPIENT_ALLOW"),
        "{trace}"
    );

    // The click service decides what a link may do, whatever was signed: a release link for the
    // phish, made with the gateway's own keys, is refused; so is a link past its expiry.
    let keys = portcullis::token::KeyRing::open_or_create(&p.data_dir()).unwrap();
    let phish = &held_at_start[0];
    let (phish_id, phish_ref) = (phish["id"].as_i64().unwrap(), phish["message_ref"].as_str().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = |action, expires| {
        let link = ActionLink::sign(&keys, action, phish_id, phish_ref, "bob@example.com", expires).unwrap();
        format!("{click}/quarantine?{}", link.query())
    };
    let release_phish = client.get(signed(Action::Release, now + 3600)).send().await.unwrap();
    assert_eq!(release_phish.status(), 403, "a recipient cannot release phish");
    let expired = client.get(signed(Action::Request, now - 1)).send().await.unwrap();
    assert_eq!(expired.status(), 410);
    assert!(expired.text().await.unwrap().contains("Link expired"));

    // Phish: Bob can only ask; an operator approves and Bob's copy is delivered.
    let requested = post(bob_request, "en").await.unwrap();
    assert_eq!(requested.status(), 200);
    assert!(requested.text().await.unwrap().contains("Request sent"));
    let (_, pending) = admin.get("/api/v1/quarantine/requests?status=pending", &viewer).await;
    let request = pending["requests"][0].clone();
    assert_eq!(request["recipient"], "bob@example.com", "{pending}");
    assert_eq!(request["held"]["subject"], "Reset your password", "{pending}");
    let decide = format!("/api/v1/quarantine/requests/{}", request["id"]);
    let (status, _) = admin.post(&decide, &viewer, json!({"decision": "approve"})).await;
    assert_eq!(status, 403);
    let (status, approved) = admin.post(&decide, &operator, json!({"decision": "approve"})).await;
    assert_eq!(
        (status, approved["request"]["status"].as_str()),
        (200, Some("approved")),
        "{approved}"
    );
    assert_eq!(approved["request"]["decided_by"], "token:soc");
    wait_for_copy(&sink, "bob@example.com", "Subject: Reset your password");
    let (status, _) = admin.post(&decide, &operator, json!({"decision": "deny"})).await;
    assert_eq!(status, 409, "decided once");

    // Every step is in the audit log under who did it.
    let (_, audit) = admin.get("/api/v1/audit", &operator).await;
    let entries = audit["entries"].as_array().unwrap();
    let by = |action: &str| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["actor"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(by("quarantine.request"), ["digest:bob@example.com"]);
    assert_eq!(by("quarantine.request.approve"), ["token:soc"]);
    assert_eq!(by("sender.recipient.allow"), ["digest:bob@example.com"]);
    let releases = by("quarantine.release");
    assert!(
        releases.contains(&"digest:carol@example.com".to_string()),
        "{releases:?}"
    );
    assert!(releases.contains(&"digest:bob@example.com".to_string()), "{releases:?}");
}

/// With `[quarantine.digest] enabled`, a gateway sends the digest on its own: here at its start,
/// for a message held while the schedule was off (and not for one a transport rule held).
#[tokio::test(flavor = "multi_thread")]
async fn the_schedule_sends_digests_on_its_own() {
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let dns = crate::server::fake_dns(&[]).await;
    let config = |enabled: bool| {
        gateway_config(
            &dns,
            &sink.address,
            "",
            &format!(
                "{SPAM_RULE_AND_BLOCK_LIST}{SPAM_AND_PHISH_BY_SCORE}[quarantine.digest]\nenabled = {enabled}\nevery_hours = 24\n"
            ),
        )
    };
    {
        let (_off, smtp) = start_gateway(&p, &config(false));
        send(
            &smtp,
            "news@promo.test",
            &["dave@example.com"],
            message("news@promo.test", "dave@example.com", "Weekly deals", "spam"),
        )
        .await;
        // Held by a transport rule, not by its scores: the security team's to release, never
        // listed in a digest.
        send(
            &smtp,
            "news@promo.test",
            &["dave@example.com"],
            message(
                "news@promo.test",
                "dave@example.com",
                "Forced",
                "none\r\nX-Campaign: blast-7",
            ),
        )
        .await;
    }
    let held: Vec<String> = p
        .run_json_lines(&["quarantine", "list", "--json"])
        .iter()
        .map(|h| format!("{} {}", h["category"], h["subject"]))
        .collect();
    assert_eq!(held, [r#""spam" "Forced""#, r#""spam" "Weekly deals""#]);
    let (_on, _) = start_gateway(&p, &config(true));
    let digest = wait_for_copy(&sink, "dave@example.com", "Auto-Submitted: auto-generated");
    let Digest {
        subject, text, links, ..
    } = read_digest(&digest);
    assert_eq!(subject, "Quarantine digest: 1 new message held for you");
    assert!(
        text.contains("Weekly deals") && text.contains("news@promo.test"),
        "{text}"
    );
    assert_eq!(links.len(), 2);
}

/// Spam from the SpamAssassin corpus (subjects and senders we did not write: encoded words,
/// 8-bit, odd From fields) held and listed: the digest parses, offers each message its links, and
/// shows each subject as the quarantine has it.
#[tokio::test(flavor = "multi_thread")]
async fn corpus_spam_is_listed_faithfully() {
    let p = Portcullis::new();
    let sink = Sink::start(&p.dir.path().join("sink"), free_port(), &[]);
    let dns = crate::server::fake_dns(&[]).await;
    let operator = token(&p, "soc", "operator");
    let (server, smtp) = start_gateway(&p, &gateway_config(&dns, &sink.address, "", SPAM_AND_PHISH_BY_SCORE));
    let spam: Vec<Vec<u8>> = crate::corpus::corpus_files()
        .iter()
        .filter(|path| path.to_string_lossy().contains("/spam-2/"))
        .step_by(25)
        .take(40)
        .map(|path| crate::corpus::corpus_message(path))
        .collect();
    assert_eq!(spam.len(), 40);
    let accepted = tokio::task::spawn_blocking(move || {
        let (mut raw, _) = crate::gateway::Raw::connect(&smtp);
        raw.command("EHLO mx.corpus.test");
        let mut accepted = 0;
        for message in spam {
            raw.command("MAIL FROM:<bulk@corpus.test>");
            raw.command("RCPT TO:<bob@example.com>");
            raw.command("DATA");
            // Marked as spam by its score; CRLF lines, dot-stuffed.
            let text = String::from_utf8_lossy(&message).replace("\r\n", "\n");
            let mut data = String::from("X-Test: spam\r\n");
            for line in text.lines() {
                if line.starts_with('.') {
                    data.push('.');
                }
                data.push_str(line);
                data.push_str("\r\n");
            }
            raw.send(format!("{data}.\r\n").as_bytes());
            if raw.reply().starts_with("250") {
                accepted += 1;
            }
        }
        raw.command("QUIT");
        accepted
    })
    .await
    .unwrap();
    assert!(accepted >= 30, "only {accepted} of 40 accepted");

    let admin = AdminApi {
        client: crate::server::client(),
        base: server.admin.clone(),
    };
    let (_, held) = admin.get("/api/v1/quarantine?limit=1000", &operator).await;
    let listed: Vec<&Value> = held["held"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["self_service"] == true)
        .collect();
    assert!(listed.len() >= 30, "{held}");
    let (status, queued) = admin.post("/api/v1/quarantine/digests", &operator, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(queued["queued"], json!({"recipients": 1, "messages": listed.len()}));
    let digest = read_digest(&wait_for_copy(
        &sink,
        "bob@example.com",
        "Auto-Submitted: auto-generated",
    ));
    let count = |action: &str| digest.links.iter().filter(|(a, _)| a == action).count();
    let phish = listed.iter().filter(|h| h["category"] == "phish").count();
    assert_eq!(count("release"), listed.len() - phish, "{}", digest.text);
    assert_eq!(count("request"), phish, "{}", digest.text);
    for hold in &listed {
        // The subject as the digest shows it: one line, no control or invisible characters.
        let subject: String = hold["subject"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'))
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let subject = subject.trim();
        let shown = if subject.is_empty() { "(no subject)" } else { subject };
        assert!(
            digest.text.contains(shown),
            "{shown:?} not in the digest:\n{}",
            digest.text
        );
    }
}
