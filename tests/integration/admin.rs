//! The security team's side over real HTTP against a running gateway: console sign-in with its
//! cookie, CSRF token and throttle; click search; message trace; quarantine review, release (the
//! copy reaching a real SMTP sink) and delete by role; the audit log; and the SIEM feeds in
//! TAP's shape with HTTP Basic.

use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::{Portcullis, fixture, our_links};
use crate::gateway::{SPAM_RULE_AND_BLOCK_LIST, gateway_config, send_data_to_bob, sink_and_config, start_gateway};
use crate::hooks::token;

const PASSWORD: &str = "correct horse battery staple";

fn user(p: &Portcullis, name: &str, role: &str) {
    let output = p.run(
        &["users", "add", name, "--role", role, "--password-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn message(subject: &str, extra_header: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@sender.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n{extra_header}\r\n{body}\r\n"
    )
}

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let answer = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// GETs `path` until `done` holds for its answer, or `seconds` pass.
    async fn poll(
        &self,
        path: &str,
        token: &str,
        seconds: u64,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let (status, answer) = self.get(path, token).await;
            if status == 200 && done(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {path}: {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_security_team_searches_traces_reviews_releases_and_exports() {
    let p = Portcullis::new();
    let (sink, config) = sink_and_config(&p, SPAM_RULE_AND_BLOCK_LIST).await;
    user(&p, "ann", "operator");
    user(&p, "root", "admin");
    let viewer = token(&p, "siem", "viewer");
    let admin = token(&p, "soc-admin", "admin");
    let (server, smtp) = start_gateway(&p, &config);
    let api = Api {
        base: server.admin.clone(),
        client: crate::server::client(),
    };

    // Three messages: one delivered with two links, one held as spam, one held as malware.
    let ham = message(
        "statement",
        "",
        "See https://statements.example.org/view?id=42 and https://login.evil.example/reset today.",
    );
    send_data_to_bob(&smtp, "alice@sender.test", ham).await;
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        message("offer", "X-Campaign: blast-1\r\n", "Buy now."),
    )
    .await;
    let eicar = String::from_utf8(fixture("detect/attach-eicar-zip.eml")).unwrap();
    send_data_to_bob(&smtp, "mallory@sender.test", eicar).await;
    let delivered = sink.wait_for(1, 30);
    let links = our_links(&delivered[0], false);
    assert_eq!(links.len(), 2, "{}", delivered[0]);

    // Bob clicks both: one goes through, one is blocked by policy.
    let clicker = crate::server::client();
    for link in &links {
        let answer = clicker
            .get(link.replacen(crate::common::BASE, &server.base, 1))
            .header("user-agent", "Mozilla/5.0 (test)")
            .send()
            .await
            .unwrap();
        assert!(matches!(answer.status().as_u16(), 302 | 403), "{}", answer.status());
    }

    // Click search: by recipient, domain, action, with a cursor.
    let found = api
        .poll("/api/v1/clicks?recipient=bob@example.com", &viewer, 30, |page| {
            page["clicks"].as_array().is_some_and(|c| c.len() == 2)
        })
        .await;
    assert!(
        found["clicks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["recipient"] == "bob@example.com")
    );
    let (_, blocked) = api.get("/api/v1/clicks?domain=evil.example", &viewer).await;
    let blocked = blocked["clicks"].as_array().unwrap().clone();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["action"], "blocked");
    assert_eq!(blocked[0]["url"], "https://login.evil.example/reset");
    let (_, by_action) = api.get("/api/v1/clicks?action=permitted", &viewer).await;
    assert_eq!(
        by_action["clicks"][0]["url"],
        "https://statements.example.org/view?id=42"
    );
    let (_, nobody) = api.get("/api/v1/clicks?recipient=carol@example.com", &viewer).await;
    assert_eq!(nobody["clicks"].as_array().unwrap().len(), 0);
    let (_, first) = api.get("/api/v1/clicks?limit=1", &viewer).await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a cursor after a full page")
        .to_string();
    let (_, second) = api
        .get(&format!("/api/v1/clicks?limit=1&cursor={cursor}"), &viewer)
        .await;
    assert_ne!(first["clicks"][0]["id"], second["clicks"][0]["id"]);
    let (_, third) = api
        .get(
            &format!(
                "/api/v1/clicks?limit=1&cursor={}",
                second["next_cursor"].as_str().unwrap()
            ),
            &viewer,
        )
        .await;
    assert_eq!(third["clicks"].as_array().unwrap().len(), 0);
    assert!(third["next_cursor"].is_null());
    let future = "2999-01-01T00:00:00Z";
    let (_, later) = api.get(&format!("/api/v1/clicks?since={future}"), &viewer).await;
    assert_eq!(later["clicks"].as_array().unwrap().len(), 0);
    let (status, error) = api.get("/api/v1/clicks?since=yesterday", &viewer).await;
    assert_eq!((status, error["error"]["code"].as_str()), (400, Some("bad_parameter")));

    // The same clicks as Defender's UrlClickEvents rows, one JSON object per line.
    let lines = api
        .client
        .get(format!("{}/api/v1/export/url-click-events", api.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2, "{lines}");
    let blocked_row = rows
        .iter()
        .find(|r| r["ActionType"] == "ClickBlocked")
        .expect("a blocked row");
    assert_eq!(blocked_row["Url"], "https://login.evil.example/reset");
    assert_eq!(blocked_row["AccountUpn"], "bob@example.com");
    assert_eq!(blocked_row["IsClickedThrough"], false);
    assert!(blocked_row["Timestamp"].as_str().unwrap().ends_with('Z'));

    // The dashboard from the same data.
    let (status, summary) = api.get("/api/v1/reports/summary", &viewer).await;
    assert_eq!(status, 200, "{summary}");
    let totals = &summary["totals"];
    assert_eq!(
        (totals["clicks"].as_i64(), totals["blocked"].as_i64()),
        (Some(2), Some(1)),
        "{summary}"
    );
    assert_eq!(
        (totals["messages"].as_i64(), totals["quarantined"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(summary["quarantined_by_category"]["malware"], 1);
    assert!(
        summary["top_domains"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "login.evil.example")
    );
    assert_eq!(summary["top_clickers"][0]["key"], "bob@example.com", "{summary}");
    assert_eq!(summary["top_clickers"][0]["clicks"], 2);
    let hourly: i64 = summary["clicks_by_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["permitted"].as_i64().unwrap() + h["blocked"].as_i64().unwrap())
        .sum();
    assert_eq!(hourly, 2);

    // Message trace: by recipient, Message-ID and subject; the detail has weights and attempts.
    let (_, traced) = api.get("/api/v1/messages?recipient=bob@example.com", &viewer).await;
    let traced = traced["messages"].as_array().unwrap().clone();
    assert_eq!(traced.len(), 3, "{traced:?}");
    let (_, by_id) = api
        .get("/api/v1/messages?message_id=statement@sender.test", &viewer)
        .await;
    assert_eq!(by_id["messages"].as_array().unwrap().len(), 1);
    let ham_ref = by_id["messages"][0]["message_ref"].as_str().unwrap().to_string();
    let (_, by_subject) = api
        .get("/api/v1/messages?subject=OFFER&verdict=quarantine", &viewer)
        .await;
    assert_eq!(by_subject["messages"][0]["category"], "spam");
    let (_, by_sender) = api.get("/api/v1/messages?sender=mallory@sender.test", &viewer).await;
    assert_eq!(by_sender["messages"][0]["category"], "malware");
    let detail = api
        .poll(&format!("/api/v1/messages/{ham_ref}"), &viewer, 30, |detail| {
            detail["delivery_attempts"].as_array().is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(detail["delivery_attempts"][0]["outcome"], "delivered", "{detail}");
    assert_eq!(detail["delivery_attempts"][0]["recipient"], "bob@example.com");
    assert_eq!(detail["clicks"].as_array().unwrap().len(), 2);
    assert!(
        detail["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["weight"].is_number() && s["group"].is_string()),
        "{detail}"
    );
    let (status, _) = api.get("/api/v1/messages/nothing-here", &viewer).await;
    assert_eq!(status, 404);

    // Quarantine review: the spam's headers and text, the malware's attachment by hash.
    let (_, held) = api.get("/api/v1/quarantine", &viewer).await;
    let held = held["held"].as_array().unwrap().clone();
    assert_eq!(held.len(), 2);
    let spam_id = held.iter().find(|h| h["category"] == "spam").unwrap()["id"]
        .as_i64()
        .unwrap();
    let malware_id = held.iter().find(|h| h["category"] == "malware").unwrap()["id"]
        .as_i64()
        .unwrap();
    let (_, review) = api.get(&format!("/api/v1/quarantine/{spam_id}"), &viewer).await;
    assert!(
        review["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "Subject" && h[1] == "offer")
    );
    assert!(review["preview"].as_str().unwrap().contains("Buy now"));
    let (_, review) = api.get(&format!("/api/v1/quarantine/{malware_id}"), &viewer).await;
    let attachment = &review["attachments"][0];
    assert_eq!(attachment["name"], "eicar.zip", "{review}");
    assert_eq!(attachment["detected_type"], "zip", "{review}");
    assert_eq!(attachment["sha256"].as_str().unwrap().len(), 64, "{review}");

    // Releases: a viewer may not; an operator needs the session's CSRF token; malware is the
    // admin's.
    let release = |id: i64| format!("{}/api/v1/quarantine/{id}/release", api.base);
    let refused = api
        .client
        .post(release(spam_id))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let signed_in = api
        .client
        .post(format!("{}/api/v1/session", api.base))
        .json(&serde_json::json!({"name": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie_header = signed_in.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie_header.contains("HttpOnly") && cookie_header.contains("SameSite=Strict"),
        "{cookie_header}"
    );
    let cookie = cookie_header.split(';').next().unwrap().to_string();
    let csrf = signed_in.json::<serde_json::Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    // Block the spam's sender from its hold (its From address).
    let blocked_sender = api
        .client
        .post(format!("{}/api/v1/quarantine/{spam_id}/sender", api.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"list": "block"}))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked_sender.status(), 200);
    assert_eq!(
        blocked_sender.json::<serde_json::Value>().await.unwrap()["pattern"],
        "alice@sender.test"
    );
    let without_csrf = api
        .client
        .post(release(spam_id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(without_csrf.status(), 403);
    let cross_site = api
        .client
        .post(release(spam_id))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .header("origin", "https://attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let released = api
        .client
        .post(release(spam_id))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    let copies = sink.wait_for(2, 30);
    assert!(copies.iter().any(|copy| copy.contains("Subject: offer")));
    let malware_by_operator = api
        .client
        .post(release(malware_id))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(malware_by_operator.status(), 403);
    let deleted = api
        .client
        .delete(format!("{}/api/v1/quarantine/{malware_id}", api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) = api.get(&format!("/api/v1/quarantine/{malware_id}"), &viewer).await;
    assert_eq!(status, 404);

    // The blocked sender's next message is held as spam whatever its content; taking it off the
    // list lets the next one through.
    let (_, lists) = api.get("/api/v1/senders", &viewer).await;
    assert_eq!(lists["senders"][0]["list"], "block");
    send_data_to_bob(&smtp, "alice@sender.test", message("again", "", "Nothing wrong here.")).await;
    let (_, again) = api.get("/api/v1/messages?message_id=again@sender.test", &viewer).await;
    assert_eq!(again["messages"][0]["verdict"], "quarantine", "{again}");
    let (_, detail_again) = api
        .get(
            &format!(
                "/api/v1/messages/{}",
                again["messages"][0]["message_ref"].as_str().unwrap()
            ),
            &viewer,
        )
        .await;
    assert!(
        detail_again["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "SENDER_BLOCK"),
        "{detail_again}"
    );
    let refused = api
        .client
        .delete(format!("{}/api/v1/senders/alice@sender.test", api.base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let unlisted = api
        .client
        .delete(format!("{}/api/v1/senders/alice@sender.test", api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(unlisted.status(), 204);
    send_data_to_bob(&smtp, "alice@sender.test", message("later", "", "Nothing wrong here.")).await;
    // A sub-address's `+` in the path is itself.
    let tagged = api
        .client
        .post(format!("{}/api/v1/senders", api.base))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"sender": "news+tag@partner.test", "list": "allow"}))
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.status(), 200);
    let untagged = api
        .client
        .delete(format!("{}/api/v1/senders/news+tag@partner.test", api.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(untagged.status(), 204);
    let (_, later) = api.get("/api/v1/messages?message_id=later@sender.test", &viewer).await;
    assert_eq!(later["messages"][0]["verdict"], "deliver", "{later}");

    // The audit log: who did what, through what; a viewer may not read it.
    let (status, _) = api.get("/api/v1/audit", &viewer).await;
    assert_eq!(status, 403);
    let (_, audit) = api.get("/api/v1/audit", &admin).await;
    let entries = audit["entries"].as_array().unwrap();
    let entry = |action: &str| entries.iter().find(|e| e["action"] == action).cloned();
    let release_entry = entry("quarantine.release").expect("release audited");
    assert_eq!(
        (release_entry["actor"].as_str(), release_entry["via"].as_str()),
        (Some("ann"), Some("console"))
    );
    assert_eq!(release_entry["target"], spam_id.to_string());
    assert_eq!(entry("quarantine.delete").unwrap()["actor"], "token:soc-admin");
    assert!(entry("session.login").is_some() && entry("token.add").is_some() && entry("user.add").is_some());
    assert_eq!(entry("sender.block").unwrap()["target"], "alice@sender.test");
    assert_eq!(entry("sender.remove").unwrap()["actor"], "token:soc-admin");

    // Signing out ends the session.
    let signed_out = api
        .client
        .delete(format!("{}/api/v1/session", api.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 204);
    let after = api
        .client
        .get(format!("{}/api/v1/session", api.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);

    // SIEM, as a TAP connector calls it: Basic with the token's principal and secret.
    let (principal, secret) = crate::hooks::tap_credentials(&viewer);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{principal}:{secret}"))
    );
    let interval = crate::hooks::interval_to_now(60);
    let siem = |feed: &str, format: &str| {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("interval", &interval)
            .append_pair("format", format)
            .finish();
        api.client
            .get(format!("{}/v2/siem/{feed}?{query}", api.base))
            .header("authorization", &basic)
            .send()
    };
    let answer = siem("clicks/blocked", "json").await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let click = &body["clicksBlocked"][0];
    assert_eq!(click["url"], "https://login.evil.example/reset", "{body}");
    assert_eq!(click["recipient"], "bob@example.com");
    assert_eq!(click["sender"], "alice@sender.test");
    assert_eq!(click["messageID"], "<statement@sender.test>");
    assert!(click["clickTime"].as_str().unwrap().ends_with('Z'));
    assert!(body["queryEndTime"].is_string());
    assert!(body.get("clicksPermitted").is_none());
    let body: serde_json::Value = siem("messages/blocked", "json").await.unwrap().json().await.unwrap();
    let blocked = body["messagesBlocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 3, "{body}");
    let malware = blocked.iter().find(|m| m["sender"] == "mallory@sender.test").unwrap();
    assert!(malware["malwareScore"].as_i64().unwrap() > 0, "{malware}");
    assert_eq!(malware["threatsInfoMap"][0]["threatType"], "attachment");
    assert!(malware["toAddresses"].is_array() && malware["completelyRewritten"] == false);
    let syslog = siem("all", "syslog").await.unwrap().text().await.unwrap();
    assert!(
        syslog.lines().any(|line| line.contains(" ProofpointTAP - CLKBLK - ")),
        "{syslog}"
    );
    assert!(syslog.lines().all(|line| line.starts_with("<14>1 ")), "{syslog}");
    // Nothing delivered carried a threat and no click went through one: 204, as TAP answers.
    assert_eq!(siem("issues", "json").await.unwrap().status(), 204);
    let wrong_secret = api
        .client
        .get(format!("{}/v2/siem/all?sinceSeconds=60", api.base))
        .basic_auth(principal, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_secret.status(), 401);
    let two_windows = api
        .client
        .get(format!(
            "{}/v2/siem/all?sinceSeconds=60&sinceTime=2026-01-01T00:00:00Z",
            api.base
        ))
        .header("authorization", &basic)
        .send()
        .await
        .unwrap();
    assert_eq!(two_windows.status(), 400);
    // Basic is for the SIEM feeds only: a browser replays it on its own.
    let basic_elsewhere = api
        .client
        .get(format!("{}/api/v1/clicks", api.base))
        .header("authorization", &basic)
        .send()
        .await
        .unwrap();
    assert_eq!(basic_elsewhere.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_throttled_after_failures_and_wrong_passwords_are_audited() {
    let p = Portcullis::new();
    user(&p, "ann", "viewer");
    let admin = token(&p, "auditor", "admin");
    let server = crate::server::Server::start(&p, "");
    let client = crate::server::client();
    let sign_in = |password: &str| {
        client
            .post(format!("{}/api/v1/session", server.admin))
            .json(&serde_json::json!({"name": "ann", "password": password}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(sign_in("guess guess guess").await.unwrap().status(), 401);
    }
    let throttled = sign_in(PASSWORD).await.unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    let form = client
        .post(format!("{}/api/v1/session", server.admin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=ann&password=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    let audit: serde_json::Value = client
        .get(format!("{}/api/v1/audit?action=session.login_failed", server.admin))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"].as_array().unwrap().len(), 5, "{audit}");
    assert_eq!(audit["entries"][0]["client_ip"], "127.0.0.1");
}

/// The schemathesis command: `SCHEMATHESIS`, else the one `.ci/run` installs, else `PATH`'s.
fn schemathesis() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return path.into();
    }
    let installed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv/bin/schemathesis");
    if installed.exists() {
        return installed;
    }
    "schemathesis".into()
}

/// Schemathesis (PyPI) generates calls from the checked-in OpenAPI description, valid and
/// invalid, against a running gateway holding real messages and clicks, and checks every answer
/// against the description: no server error, documented statuses, content types and schemas,
/// auth enforced, 405 for other methods, a deleted hold gone.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_wrong_with_the_api_against_its_description() {
    let p = Portcullis::new();
    let dns = crate::server::fake_dns(&[]).await;
    let config = gateway_config(
        &dns,
        "127.0.0.1:9",
        "",
        "[[pipeline.rules]]\nname = \"forced-spam\"\nheader_matches = [{ name = \"X-Campaign\", pattern = \"^blast-\" }]\n\
         action = \"set_scl\"\nset_scl = 6\n",
    );
    let admin = token(&p, "schemathesis", "admin");
    let (server, smtp) = start_gateway(&p, &config);
    for subject in ["one", "two", "three"] {
        send_data_to_bob(
            &smtp,
            "alice@sender.test",
            message(
                subject,
                "X-Campaign: blast-1\r\n",
                "See https://shop.example.org/deal now.",
            ),
        )
        .await;
    }
    let description = format!("{}/api/v1/openapi.json", server.admin);
    let config_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let program = schemathesis();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&program)
            .arg("--config-file")
            .arg(config_file)
            .args([
                "run",
                &description,
                "--header",
                &format!("Authorization: Bearer {admin}"),
                "--max-examples",
                "25",
                "--seed",
                "20261129",
                "--no-color",
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (python3 -m venv target/schemathesis-venv && \
                     target/schemathesis-venv/bin/pip install schemathesis==4.32.5)",
                    program.display()
                )
            })
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(report.contains(" passed"), "{report}");
}
