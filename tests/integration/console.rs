//! The console in a real browser (Debian's headless Chromium through chromedriver) against a
//! running gateway with real mail and real clicks: sign in at the keyboard, the dashboard's chart
//! drawn from the clicks, a click found and its message traced, a held message reviewed (its
//! subject shown as text, not markup) and released to a real SMTP sink, the release in the audit
//! log, a phish requested from the quarantine digest's page and approved from the quarantine
//! page, a domain declared bad from the threats page. Each page's screenshot is kept in `target/test-artifacts/console/`.

use serde_json::json;

use crate::browser::{Browser, ENTER, TAB};
use crate::common::our_links;
use crate::gateway::{SPAM_RULE_AND_BLOCK_LIST, send_data_to_bob, sink_and_config, start_gateway};

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test(flavor = "multi_thread")]
async fn the_console_signs_in_finds_a_click_traces_it_and_releases_a_held_message() {
    let p = crate::common::Portcullis::new();
    let (sink, config) = sink_and_config(
        &p,
        &format!("{SPAM_RULE_AND_BLOCK_LIST}{}", crate::digest::SPAM_AND_PHISH_BY_SCORE),
    )
    .await;
    let added = p.run(
        &["users", "add", "ann", "--role", "operator", "--password-stdin"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let (server, smtp) = start_gateway(&p, &config);

    // One message delivered with two links (one of them to a blocked host), one held as spam
    // whose subject is markup.
    let message = |subject: &str, extra: &str, body: &str| {
        format!(
            "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
             Message-ID: <{}@sender.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n{extra}\r\n{body}\r\n",
            subject.len()
        )
    };
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        message(
            "Your statement",
            "",
            "See https://statements.example.org/view?id=42 and https://login.evil.example/reset today.",
        ),
    )
    .await;
    let held_subject = "<img src=x id=injected> offer";
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        message(held_subject, "X-Campaign: blast-1\r\n", "Buy now."),
    )
    .await;
    let delivered = sink.wait_for(1, 30);
    let clicker = crate::server::client();
    for link in our_links(&delivered[0], false) {
        let answer = clicker
            .get(link.replacen(crate::common::BASE, &server.base, 1))
            .send()
            .await
            .unwrap();
        assert!(matches!(answer.status().as_u16(), 302 | 403), "{}", answer.status());
    }

    let browser = Browser::start("console").await;
    let console = format!("{}/console/", server.admin);

    // Sign in with the keyboard alone: the name field has the focus, Tab moves on, Enter submits.
    browser.goto(&console).await;
    browser.wait_for("#signin", "Sign in", 15).await;
    browser.screenshot("sign-in").await;
    browser.keys(&format!("ann{TAB}{PASSWORD}{ENTER}")).await;
    browser.wait_for("#whoami", "ann (operator)", 15).await;

    // The dashboard's click chart, drawn from the two clicks (the page is reloaded until the
    // click log has them).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        browser.goto(&console).await;
        browser.wait_for("#totals", "clicks", 15).await;
        let bars = browser
            .run(
                "return [...document.querySelectorAll('#clicks-chart rect.bar')].map(r => r.getAttribute('class') + ' ' + r.getAttribute('height'));",
                json!([]),
            )
            .await;
        let bars: Vec<String> = serde_json::from_value(bars).unwrap();
        if bars.iter().any(|b| b.starts_with("bar s-blocked")) && bars.iter().any(|b| b.starts_with("bar s-permitted"))
        {
            assert!(
                bars.iter()
                    .all(|b| b.split(' ').next_back().unwrap().parse::<f64>().unwrap() > 0.0)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the chart never showed both clicks: {bars:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let verdict_bars = browser
        .run(
            "return document.querySelectorAll('#verdicts-chart rect.bar').length;",
            json!([]),
        )
        .await;
    assert!(verdict_bars.as_u64().unwrap() >= 1, "no message bars");
    browser.screenshot("dashboard").await;

    // Click search by domain finds the blocked click; its row traces to the message.
    browser.goto(&format!("{console}#/clicks")).await;
    let domain = browser.wait_for("#clicks-filters input[name=domain]", "", 15).await;
    browser.type_into(&domain, "evil.example").await;
    browser.keys(ENTER).await;
    browser
        .wait_for("#click-results tbody tr", "https://login.evil.example/reset", 15)
        .await;
    let rows = browser
        .run(
            "return document.querySelectorAll('#click-results tbody tr').length;",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!(1), "only the blocked click is under evil.example");
    browser.wait_for("#click-results tbody tr", "blocked", 5).await;
    browser.screenshot("clicks").await;
    let trace = browser.wait_for("#click-results tbody tr a", "trace", 5).await;
    browser.click(&trace).await;
    browser.wait_for("#message-subject", "Your statement", 15).await;
    browser.wait_for("#delivery-attempts", "delivered", 15).await;
    browser.screenshot("message-trace").await;

    // The held message: its subject is shown as the text it is, never as markup.
    browser.goto(&format!("{console}#/quarantine")).await;
    let held = browser.wait_for("#held-list tbody a", "offer", 15).await;
    browser.click(&held).await;
    browser.wait_for("#held-subject", held_subject, 15).await;
    let injected = browser
        .run("return document.getElementById('injected') === null;", json!([]))
        .await;
    assert_eq!(injected, json!(true), "the subject became markup");
    browser.wait_for("#held-preview", "Buy now.", 5).await;
    browser.screenshot("quarantine-review").await;
    let release = browser.wait_for("#held-release", "Release", 5).await;
    browser.click(&release).await;
    browser.accept_dialog().await;
    browser.wait_for("#toast", "Released", 15).await;
    let both = sink.wait_for(2, 30);
    assert!(
        both.iter().any(|m| m.contains("Buy now.")),
        "the released message did not reach the sink"
    );

    // The trace shows it delivered; the audit log shows who released it.
    browser.goto(&format!("{console}#/messages?subject=offer")).await;
    let traced = browser.wait_for("#message-results tbody a", "offer", 15).await;
    browser.click(&traced).await;
    browser.wait_for("#delivery-attempts", "delivered", 30).await;
    browser.goto(&format!("{console}#/audit")).await;
    browser.wait_for("#audit-list tbody tr", "quarantine.release", 15).await;
    browser.wait_for("#audit-list tbody tr", "ann", 5).await;
    browser.screenshot("audit").await;

    // Phish held for Bob: his digest (sent from the quarantine page) offers only a request. In
    // the browser the link shows a confirmation; its button files the request, which Ann
    // approves from the quarantine page, and the message reaches Bob.
    send_data_to_bob(
        &smtp,
        "it@shady.test",
        message("Reset your password", "X-Test: phish\r\n", "Sign in here."),
    )
    .await;
    browser.goto(&format!("{console}#/quarantine")).await;
    browser.wait_for("#held-list tbody a", "Reset your password", 15).await;
    let send_digests = browser.wait_for("#send-digests", "Send digests now", 5).await;
    browser.click(&send_digests).await;
    browser
        .wait_for("#toast", "Queued 1 digests listing 1 messages", 15)
        .await;
    let with_digest = sink.wait_for(3, 30);
    let digest = with_digest
        .iter()
        .find(|m| m.contains("Auto-Submitted: auto-generated"))
        .expect("the digest reached the sink");
    let links = crate::digest::read_digest(digest).links;
    assert_eq!(links.len(), 1, "phish is only requested: {links:?}");
    assert_eq!(links[0].0, "request");
    browser.goto(&format!("{}{}", server.base, links[0].1)).await;
    browser.wait_for("h1", "Ask for this message to be released?", 15).await;
    browser.wait_for("main p", "Reset your password", 5).await;
    browser.screenshot("digest-confirmation").await;
    let send_request = browser.wait_for("form.confirm button", "Send request", 5).await;
    browser.click(&send_request).await;
    browser.wait_for("h1", "Request sent", 15).await;
    browser.screenshot("digest-request-sent").await;
    browser.goto(&format!("{console}#/quarantine")).await;
    browser
        .wait_for("#release-requests tbody tr", "bob@example.com", 15)
        .await;
    browser.screenshot("release-requests").await;
    let approve = browser.wait_for("#release-requests button.primary", "Approve", 5).await;
    browser.click(&approve).await;
    browser.accept_dialog().await;
    browser.wait_for("#toast", "Approved", 15).await;
    let all = sink.wait_for(4, 30);
    assert!(
        all.iter()
            .any(|m| m.contains("Subject: Reset your password") && m.contains("Sign in here.")),
        "the approved message did not reach the sink"
    );

    // A domain declared bad from the threats page finds the delivered message that carried it;
    // its recipient is then at risk.
    browser.goto(&format!("{console}#/threats")).await;
    let target = browser.wait_for("#declare-threat input[name=target]", "", 15).await;
    browser.type_into(&target, "statements.example.org").await;
    browser.keys(ENTER).await;
    browser
        .wait_for("#threat-list .threat", "statements.example.org", 15)
        .await;
    browser.wait_for("#threat-list .threat", "Your statement", 5).await;
    browser.screenshot("threats").await;

    for (page, marker, text) in [
        ("reports", "h1", "Reported mistakes"),
        ("at-risk", "#exposed-list", "bob@example.com"),
        ("settings", "#settings", "smtp"),
    ] {
        browser.goto(&format!("{console}#/{page}")).await;
        browser.wait_for(marker, text, 15).await;
        browser.screenshot(page).await;
    }

    // Signing out ends the session: the API no longer takes the cookie and the form is back.
    let sign_out = browser.wait_for("#sign-out", "Sign out", 5).await;
    browser.click(&sign_out).await;
    browser.wait_for("#signin", "Sign in", 15).await;
}
