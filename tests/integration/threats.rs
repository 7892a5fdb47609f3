//! Post-delivery threats through a running gateway: a feed update that lists a link of a
//! delivered message, a Safe Browsing verdict at click time (a local server speaking its API) on
//! another, and an analyst's domain; each found with its delivered messages and clickers over the
//! API, reported by the SIEM feed in the window it was found in, its status set and audited; and
//! its delivered copies moved out of the mailbox through a local Microsoft Graph stand-in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Portcullis, our_links};
use crate::gateway::{send_data_to_bob, sink_and_config, start_gateway};
use crate::hooks::token;

async fn get(client: &reqwest::Client, url: &str, token: &str) -> (u16, Value) {
    let answer = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn post(client: &reqwest::Client, url: &str, token: &str, body: Value) -> (u16, Value) {
    let answer = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// The threat on `url`, once the watcher has recorded it.
async fn wait_for_threat(client: &reqwest::Client, admin: &str, token: &str, url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = get(client, &format!("{admin}/api/v1/threats"), token).await;
        assert_eq!(status, 200, "{page}");
        if let Some(threat) = page["threats"].as_array().unwrap().iter().find(|t| t["url"] == url) {
            return threat.clone();
        }
        assert!(Instant::now() < deadline, "no threat on {url}: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn links_judged_bad_after_delivery_find_their_messages_and_clickers() {
    let p = Portcullis::new();
    let safe_browsing = crate::server::FakeSafeBrowsing::start().await;
    let feed = p.dir.path().join("feed.txt");
    std::fs::write(&feed, "# nothing yet\n").unwrap();
    let (sink, config) = sink_and_config(
        &p,
        &format!(
            "[reputation]\nfeed_reload_secs = 1\n[reputation.cache]\nclean_secs = 1\nunknown_secs = 1\n\
             [[reputation.feeds]]\npath = \"{}\"\nformat = \"plain\"\n{}",
            feed.display(),
            safe_browsing.config()
        ),
    )
    .await;
    let operator = token(&p, "soc", "operator");
    let (server, smtp) = start_gateway(&p, &config);
    let client = crate::server::client();
    let admin = server.admin.clone();

    let message = |subject: &str, body: &str| {
        format!(
            "From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n\
             Message-ID: <{subject}@sender.test>\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
        )
    };
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        message("invoice", "Pay at https://pay.later-bad.example/invoice now."),
    )
    .await;
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        message("shared", "Open https://files.sb-bad.example/doc please."),
    )
    .await;
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        message("news", "Read https://www.news-site.example/today."),
    )
    .await;
    let delivered = sink.wait_for(3, 30);
    let link_in = |needle: &str| -> String {
        let message = delivered.iter().find(|m| m.contains(needle)).unwrap();
        our_links(message, false)
            .pop()
            .unwrap()
            .replacen(crate::common::BASE, &server.base, 1)
    };
    let (invoice_link, shared_link) = (link_in("invoice"), link_in("shared"));

    // Bob follows the invoice link while nothing knows it as bad.
    let answer = client.get(&invoice_link).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 302);

    // The feed now lists it: the watcher looks at delivered links again and records a threat
    // with the message, its recipient, and Bob's click that reached the link.
    std::fs::write(&feed, "https://pay.later-bad.example/invoice\n").unwrap();
    let threat = wait_for_threat(&client, &admin, &operator, "https://pay.later-bad.example/invoice").await;
    assert_eq!(threat["status"], "active");
    assert_eq!(threat["source"], "feed");
    assert_eq!(threat["messages"].as_array().unwrap().len(), 1, "{threat}");
    assert_eq!(threat["messages"][0]["subject"], "invoice");
    assert_eq!(threat["recipients"], json!(["bob@example.com"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let threat = loop {
        let (_, threat) = get(&client, &format!("{admin}/api/v1/threats/{}", threat["id"]), &operator).await;
        if threat["clicks"].as_array().is_some_and(|c| !c.is_empty()) {
            break threat;
        }
        assert!(Instant::now() < deadline, "the click never showed: {threat}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(threat["clicks"][0]["recipient"], "bob@example.com");
    assert_eq!(threat["clicks"][0]["action"], "permitted");

    // Safe Browsing starts listing the shared document: Bob's next click is blocked, and that
    // verdict makes a post-delivery threat of the link.
    safe_browsing.list("https://files.sb-bad.example/doc", "SOCIAL_ENGINEERING");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(&shared_link).send().await.unwrap().status().as_u16() != 403 {
        assert!(Instant::now() < deadline, "the click was never blocked");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let clicked = wait_for_threat(&client, &admin, &operator, "https://files.sb-bad.example/doc").await;
    assert_eq!(clicked["source"], "click");
    assert_eq!(clicked["messages"][0]["subject"], "shared");

    // An analyst declares a whole domain: its subdomain's message is found; again is no new one.
    let (status, declared) = post(
        &client,
        &format!("{admin}/api/v1/threats"),
        &operator,
        json!({"domain": "news-site.example", "category": "malware", "reason": "takeover"}),
    )
    .await;
    assert_eq!(status, 201, "{declared}");
    assert_eq!(declared["messages"][0]["subject"], "news");
    let (again, _) = post(
        &client,
        &format!("{admin}/api/v1/threats"),
        &operator,
        json!({"domain": "news-site.example"}),
    )
    .await;
    assert_eq!(again, 200);
    let (refused, error) = post(
        &client,
        &format!("{admin}/api/v1/threats"),
        &operator,
        json!({"url": "javascript:alert(1)"}),
    )
    .await;
    assert_eq!((refused, error["error"]["code"].as_str()), (400, Some("bad_body")));

    // The SIEM feed reports each message again with its threat, active.
    let (principal, secret) = crate::hooks::tap_credentials(&operator);
    let interval = crate::hooks::interval_to_now(1);
    let siem = |query: &str| {
        client
            .get(format!(
                "{admin}/v2/siem/messages/delivered?format=json&interval={interval}{query}"
            ))
            .basic_auth(principal, Some(secret))
            .send()
    };
    let feed_answer: Value = siem("").await.unwrap().json().await.unwrap();
    let delivered_events = feed_answer["messagesDelivered"].as_array().unwrap();
    let invoice = delivered_events
        .iter()
        .find(|m| m["subject"] == "invoice")
        .unwrap_or_else(|| panic!("{feed_answer}"));
    let info = invoice["threatsInfoMap"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["threat"] == "https://pay.later-bad.example/invoice")
        .expect("the post-delivery threat");
    assert_eq!(info["threatStatus"], "active");
    assert_eq!(info["threatType"], "url");

    // Marked a false positive: audited, and the default feed (active and cleared) leaves it out.
    let (status, changed) = post(
        &client,
        &format!("{admin}/api/v1/threats/{}", threat["id"]),
        &operator,
        json!({"status": "falsePositive"}),
    )
    .await;
    assert_eq!((status, changed["status"].as_str()), (200, Some("falsePositive")));
    let feed_answer: Value = siem("").await.unwrap().json().await.unwrap();
    assert!(
        !feed_answer["messagesDelivered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == "invoice"),
        "{feed_answer}"
    );
    let feed_answer: Value = siem("&threatStatus=falsePositive").await.unwrap().json().await.unwrap();
    assert!(
        feed_answer["messagesDelivered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == "invoice")
    );
    let (_, active) = get(&client, &format!("{admin}/api/v1/threats?status=active"), &operator).await;
    assert_eq!(active["threats"].as_array().unwrap().len(), 2, "{active}");
    let (_, audit) = get(
        &client,
        &format!("{admin}/api/v1/audit?action=threat.status"),
        &operator,
    )
    .await;
    assert_eq!(audit["entries"][0]["target"], "https://pay.later-bad.example/invoice");
    let (_, audit) = get(&client, &format!("{admin}/api/v1/audit?action=threat.add"), &operator).await;
    assert_eq!(audit["entries"][0]["target"], "news-site.example");
}

/// A local stand-in for Microsoft Graph and its token endpoint, speaking their wire formats:
/// the client credentials grant, `GET /v1.0/users/{upn}/messages?$filter=internetMessageId eq
/// '…'`, `POST /v1.0/users/{upn}/messages/{id}/move`. It records each move.
async fn graph_stand_in(moves: Arc<Mutex<Vec<(String, String, String)>>>) -> crate::server::FakeHttp {
    crate::server::FakeHttp::start(Arc::new(move |parts, body| {
        let path = parts.uri.path().to_string();
        if path == "/tenant-1/oauth2/v2.0/token" {
            let form: std::collections::HashMap<String, String> =
                url::form_urlencoded::parse(body).into_owned().collect();
            let good = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                && form.get("client_id").map(String::as_str) == Some("app-1")
                && form.get("client_secret").map(String::as_str) == Some("s3cret")
                && form.get("scope").map(String::as_str) == Some("https://graph.microsoft.com/.default");
            return if good {
                (
                    200,
                    json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "graph-token"}).to_string(),
                )
            } else {
                (401, json!({"error": "invalid_client"}).to_string())
            };
        }
        let authorized = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer graph-token");
        if !authorized {
            return (
                401,
                json!({"error": {"code": "InvalidAuthenticationToken"}}).to_string(),
            );
        }
        let segments: Vec<String> = path
            .split('/')
            .map(|s| {
                url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                    .next()
                    .unwrap()
                    .1
                    .into_owned()
            })
            .collect();
        match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["", "v1.0", "users", user, "messages"] if parts.method == hyper::Method::GET => {
                let query: std::collections::HashMap<String, String> =
                    url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                let filter = query.get("$filter").cloned().unwrap_or_default();
                let found = if filter == "internetMessageId eq '<invoice@sender.test>'" && *user == "bob@example.com" {
                    json!([{"id": "AAMkAD=="}])
                } else {
                    json!([])
                };
                (200, json!({"@odata.context": "…", "value": found}).to_string())
            }
            ["", "v1.0", "users", user, "messages", id, "move"] if parts.method == hyper::Method::POST => {
                let request: Value = serde_json::from_slice(body).unwrap_or_default();
                let folder = request["destinationId"].as_str().unwrap_or_default().to_string();
                moves.lock().unwrap().push((user.to_string(), id.to_string(), folder));
                (201, json!({"id": "AAMkAD-moved"}).to_string())
            }
            _ => (404, json!({"error": {"code": "ResourceNotFound"}}).to_string()),
        }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn remediating_a_threat_moves_the_delivered_copies_through_microsoft_graph() {
    let p = Portcullis::new();
    let moves: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let graph = graph_stand_in(moves.clone()).await;
    let secret = p.dir.path().join("graph-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let (sink, config) = sink_and_config(
        &p,
        &format!(
            "[mailbox]\ntenant_id = \"tenant-1\"\nclient_id = \"app-1\"\nclient_secret_file = \"{}\"\n\
             login_url = \"{base}\"\ngraph_url = \"{base}\"\n",
            secret.display(),
            base = graph.base,
        ),
    )
    .await;
    let operator = token(&p, "soc", "operator");
    let viewer = token(&p, "reader", "viewer");
    let (server, smtp) = start_gateway(&p, &config);
    let client = crate::server::client();
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        "From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: invoice\r\nMessage-ID: <invoice@sender.test>\r\n\r\n\
         Pay at https://pay.gone-bad.example/now\r\n"
            .to_string(),
    )
    .await;
    sink.wait_for(1, 30);
    let (status, threat) = post(
        &client,
        &format!("{}/api/v1/threats", server.admin),
        &operator,
        json!({"url": "https://pay.gone-bad.example/now"}),
    )
    .await;
    assert_eq!(status, 201, "{threat}");
    let remediate = format!("{}/api/v1/threats/{}/remediate", server.admin, threat["id"]);
    let (forbidden, _) = post(&client, &remediate, &viewer, json!({})).await;
    assert_eq!(forbidden, 403);
    let (status, answer) = post(&client, &remediate, &operator, json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["recipient"], "bob@example.com");
    assert_eq!(answer["results"][0]["outcome"], "moved", "{answer}");
    assert_eq!(
        *moves.lock().unwrap(),
        [(
            "bob@example.com".to_string(),
            "AAMkAD==".to_string(),
            "junkemail".to_string()
        )]
    );
    let (_, audit) = get(
        &client,
        &format!("{}/api/v1/audit?action=threat.remediate", server.admin),
        &operator,
    )
    .await;
    assert_eq!(audit["entries"][0]["detail"]["moved"], 1, "{audit}");
}
