//! The click service over real HTTP: verdict paths, policy, reputation providers, forged links,
//! open-redirect and XSS attempts, prefetchers, metrics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use portcullis::token::{KeyRing, LinkContext};

use crate::common::*;
use crate::server::*;

fn clicks(p: &Portcullis, action: &str) -> Vec<serde_json::Value> {
    p.run_json_lines(&["clicks", "--limit", "0", "--json", "--action", action])
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_malicious_suspicious_and_unknown_paths() {
    let sb = FakeSafeBrowsing::start().await;
    sb.list("https://malware.example/payload.exe", "MALWARE");
    sb.list("https://phish.example/login", "SOCIAL_ENGINEERING");
    let p = Portcullis::new();
    let server = Server::start(
        &p,
        &format!(
            "[click]\norganisation = \"Acme Security\"\nsupport_contact = \"soc@acme.example\"\n{}",
            sb.config()
        ),
    );

    // Clean: Safe Browsing answers with no match → 302 to the exact destination.
    let response = get(&server.link(&p, "https://docs.example.org/guide?a=1&b=2")).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "https://docs.example.org/guide?a=1&b=2");

    // Malicious: block page, no Location, category shown.
    for (url, kind) in [
        ("https://malware.example/payload.exe", "malware"),
        ("https://phish.example/login", "phishing"),
    ] {
        let response = get(&server.link(&p, url)).await;
        assert_eq!(response.status(), 403);
        assert!(response.headers().get("location").is_none());
        let page = response.text().await.unwrap();
        assert!(page.contains(kind), "{page}");
        assert!(page.contains("Acme Security") && page.contains("soc@acme.example"));
        assert!(page.contains(url::Url::parse(url).unwrap().host_str().unwrap()));
    }

    // Suspicious (IP-literal host): warning page with a click-through link that works once followed.
    let response = get(&server.link(&p, "http://192.0.2.10/invoice")).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let page = response.text().await.unwrap();
    assert!(
        page.contains("may be unsafe") && page.contains("IP-literal host"),
        "{page}"
    );
    let href = page
        .split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("continue link")
        .replace("&amp;", "&");
    assert!(href.starts_with("/continue?"));
    let response = get(&format!("{}{href}", server.base)).await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "http://192.0.2.10/invoice");
    // A tampered continuation is refused.
    let response = get(&format!("{}{}", server.base, href.replace("invoice", "invoic3"))).await;
    assert_eq!(response.status(), 400);

    assert_eq!(clicks(&p, "permitted").len(), 1);
    assert_eq!(clicks(&p, "blocked").len(), 2);
    assert_eq!(clicks(&p, "warned").len(), 1);
    let through = clicks(&p, "clicked-through");
    assert_eq!(through.len(), 1);
    assert_eq!(through[0]["url"], "http://192.0.2.10/invoice");
    let permitted = &clicks(&p, "permitted")[0];
    assert_eq!(permitted["verdict"], "clean");
    assert_eq!(permitted["message_ref"], "msg-1");
    assert_eq!(permitted["recipient_ref"].as_str().unwrap().len(), 24);
    assert_eq!(permitted["client_ip"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_verdict_without_providers_is_permitted() {
    let p = Portcullis::new();
    let server = Server::start(&p, "");
    let response = get(&server.link(&p, "https://nobody-knows.example/")).await;
    assert_eq!(response.status(), 302);
    assert_eq!(clicks(&p, "permitted")[0]["verdict"], "unknown");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_and_block_lists_come_first() {
    let sb = FakeSafeBrowsing::start().await;
    sb.list("https://partner.example/file", "MALWARE");
    let p = Portcullis::new();
    let config = format!(
        "[click.policy]\nallow_list = [\"partner.example/*\"]\nblock_list = [\"*.blocked.example\"]\n{}",
        sb.config()
    );
    let server = Server::start(&p, &config);
    let response = get(&server.link(&p, "https://partner.example/file")).await;
    assert_eq!(response.status(), 302, "allow list wins over the provider");
    let response = get(&server.link(&p, "https://www.blocked.example/")).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("block list"));
    assert_eq!(
        sb.requests.load(Ordering::SeqCst),
        0,
        "lists answer without asking providers"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_timeout_fails_open_or_closed() {
    let sb = FakeSafeBrowsing::start().await;
    *sb.delay.lock().unwrap() = Duration::from_millis(1500);
    for (fail_open, status) in [(true, 302), (false, 403)] {
        let p = Portcullis::new();
        let config = format!(
            "[click.policy]\nfail_open = {fail_open}\n[reputation]\ndeadline_ms = 200\n{}",
            sb.config()
        );
        let server = Server::start(&p, &config);
        let started = std::time::Instant::now();
        let response = get(&server.link(&p, "https://slow.example/")).await;
        assert!(
            started.elapsed() < Duration::from_millis(1200),
            "answered within the deadline"
        );
        assert_eq!(response.status(), status, "fail_open = {fail_open}");
        let action = if fail_open { "permitted" } else { "blocked" };
        assert_eq!(clicks(&p, action)[0]["verdict"], "unavailable");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn feeds_reload_without_restart() {
    let p = Portcullis::new();
    let feed = p.dir.path().join("openphish.txt");
    let urlhaus = p.dir.path().join("urlhaus.csv");
    let phishtank = p.dir.path().join("phishtank.json");
    let plain = p.dir.path().join("domains.txt");
    std::fs::write(&feed, "https://already-bad.example/x\n").unwrap();
    std::fs::write(&urlhaus, "# URLhaus\n\"1\",\"2024-01-01 00:00:00\",\"http://dropper.example/a.exe\",\"online\",\"\",\"malware_download\",\"exe\",\"https://urlhaus.abuse.ch/url/1/\",\"x\"\n").unwrap();
    std::fs::write(&phishtank, r#"[{"phish_id": 1, "url": "https://bank-login.example/"}]"#).unwrap();
    std::fs::write(&plain, "# domains\nevil-domain.example\n").unwrap();
    let config = format!(
        "[reputation]\nfeed_reload_secs = 1\n\
         [[reputation.feeds]]\npath = \"{}\"\nformat = \"openphish\"\n\
         [[reputation.feeds]]\npath = \"{}\"\nformat = \"urlhaus-csv\"\n\
         [[reputation.feeds]]\npath = \"{}\"\nformat = \"phishtank-json\"\n\
         [[reputation.feeds]]\npath = \"{}\"\nformat = \"plain\"\n",
        feed.display(),
        urlhaus.display(),
        phishtank.display(),
        plain.display()
    );
    let server = Server::start(&p, &config);
    for url in [
        "https://already-bad.example/x",
        "http://dropper.example/a.exe",
        "https://bank-login.example/",
        "https://sub.evil-domain.example/p",
    ] {
        assert_eq!(get(&server.link(&p, url)).await.status(), 403, "{url}");
    }
    let later = server.link(&p, "https://later-bad.example/y");
    assert_eq!(get(&later).await.status(), 302);
    std::fs::write(&feed, "https://already-bad.example/x\nhttps://later-bad.example/y\n").unwrap();
    // Make sure the modification time moves even on coarse file systems.
    let future = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&feed)
        .unwrap()
        .set_modified(future)
        .unwrap();
    let mut status = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = get(&later).await.status().as_u16();
        if status == 403 {
            break;
        }
    }
    assert_eq!(status, 403, "the new feed entry blocks without a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_click_storm_makes_one_upstream_call() {
    let sb = FakeSafeBrowsing::start().await;
    *sb.delay.lock().unwrap() = Duration::from_millis(300);
    let p = Portcullis::new();
    let server = Server::start(&p, &sb.config());
    let link = server.link(&p, "https://popular.example/newsletter");
    let storm: Vec<_> = (0..64)
        .map(|_| {
            let link = link.clone();
            tokio::spawn(async move { get(&link).await.status().as_u16() })
        })
        .collect();
    for request in storm {
        assert_eq!(request.await.unwrap(), 302);
    }
    assert_eq!(
        sb.requests.load(Ordering::SeqCst),
        1,
        "64 concurrent clicks, one upstream lookup"
    );
    let all = clicks(&p, "permitted");
    assert_eq!(all.len(), 64);
    assert_eq!(all.iter().filter(|c| c["cache_hit"] == false).count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_links_never_redirect() {
    let p = Portcullis::new();
    let server = Server::start(&p, "");
    let link = server.link(&p, "https://example.org/pay?invoice=42");
    assert_eq!(get(&link).await.status(), 302);
    let key = link.split('/').nth(4).unwrap().to_string();
    let mut forgeries = vec![
        link[..link.len() - 1].to_string(),
        link[..link.len() - 30].to_string(),
        link.replace("invoice=42", "invoice=43"),
        link.replace("example.org", "examp1e.org"),
        link.replacen(&key, "000000", 1),
    ];
    let mac_start = link.rfind('!').unwrap() + 1;
    for i in (mac_start..link.len()).step_by(3) {
        let mut bytes = link.clone().into_bytes();
        bytes[i] ^= 0x01;
        if bytes[i].is_ascii_alphanumeric() {
            forgeries.push(String::from_utf8(bytes).unwrap());
        }
    }
    // The context of another message: same destination, other message reference.
    let other = p.run(
        &["rewrite", "--message-ref", "msg-2"],
        &crlf("From: a@b\nSubject: x\n\nhttps://example.org/pay?invoice=42\n"),
    );
    let other_link = our_links(&String::from_utf8(other.stdout).unwrap(), false).remove(0);
    forgeries.push(link.replacen(
        link.split('/').nth(5).unwrap(),
        other_link.split('/').nth(5).unwrap(),
        1,
    ));
    for forged in &forgeries {
        let response = get(forged).await;
        assert_eq!(response.status(), 400, "{forged}");
        assert!(response.headers().get("location").is_none());
    }
    assert_eq!(clicks(&p, "rejected").len(), forgeries.len(), "every attempt is logged");

    // A retired key's links say "expired".
    assert!(p.run(&["keys", "rotate"], b"").status.success());
    assert!(p.run(&["keys", "retire", &key], b"").status.success());
    drop(server);
    let server = Server::start(&p, "");
    let response = get(&link.replacen(link.split("/v1/").next().unwrap(), &server.base, 1)).await;
    assert_eq!(response.status(), 410);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("expired"));
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirect_attempts_fail() {
    let p = Portcullis::new();
    let server = Server::start(&p, "");
    let keys = KeyRing::open_or_create(&p.data_dir()).unwrap();
    // Even a correctly signed non-web destination never becomes a Location.
    for destination in [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/x",
        "\\\\evil.example",
    ] {
        let link = keys.sign(&server.base, destination, &LinkContext::default()).unwrap();
        let response = get(&link).await;
        assert_eq!(response.status(), 400, "{destination}");
        assert!(response.headers().get("location").is_none());
    }
    // CRLF and backslashes inside a signed http(s) URL cannot inject headers or change the host.
    let link = keys
        .sign(
            &server.base,
            "https://ok.example/a\r\nSet-Cookie: x=1\\b",
            &LinkContext::default(),
        )
        .unwrap();
    let response = get(&link).await;
    assert_eq!(response.status(), 302);
    assert!(response.headers().get("set-cookie").is_none());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("https://ok.example/"), "{location}");
    assert!(!location.contains('\r') && !location.contains('\n'));
    // Unsigned paths that try to smuggle a destination.
    for path in [
        "/v1/https://evil.example",
        "/v1//evil.example/__https://evil.example__;!x",
        "/continue?l=/v1/x&e=9999999999&t=a.b",
    ] {
        let response = get(&format!("{}{path}", server.base)).await;
        assert!(response.status().is_client_error(), "{path}");
        assert!(response.headers().get("location").is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn displayed_urls_are_escaped() {
    let p = Portcullis::new();
    let server = Server::start(&p, "[click]\norganisation = \"<b>Org</b>\"\n");
    let keys = KeyRing::open_or_create(&p.data_dir()).unwrap();
    let hostile = "http://192.0.2.66/\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let link = keys.sign(&server.base, hostile, &LinkContext::default()).unwrap();
    let response = get(&link).await;
    assert_eq!(response.status(), 200, "IP-literal host: warning page");
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("<script>alert") && !page.contains("<img src=x") && !page.contains("<b>Org"),
        "{page}"
    );
    assert!(page.contains("&lt;b&gt;Org&lt;/b&gt;"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prefetchers_and_head_requests_are_not_clicks() {
    let p = Portcullis::new();
    let server = Server::start(&p, "");
    let link = server.link(&p, "https://one-time.example/approve?token=abc");
    let head = client().head(&link).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().get("location").is_none());
    let scanner = client()
        .get(&link)
        .header("user-agent", "Mozilla/5.0 (compatible; Microsoft Office/16.0)")
        .send()
        .await
        .unwrap();
    assert_eq!(scanner.status(), 200);
    assert!(scanner.headers().get("location").is_none());
    assert_eq!(clicks(&p, "prefetch").len(), 2);
    assert!(clicks(&p, "permitted").is_empty());
    assert_eq!(get(&link).await.status(), 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let p = Portcullis::new();
    let server = Server::start(&p, "");
    assert_eq!(get(&format!("{}/healthz", server.base)).await.status(), 200);
    assert_eq!(get(&format!("{}/readyz", server.base)).await.status(), 200);
    get(&server.link(&p, "https://m.example/")).await;
    get(&format!("{}/v1/bogus", server.base)).await;
    // Metrics are for operators: on the admin listener, not the public click listener.
    assert_eq!(get(&format!("{}/metrics", server.base)).await.status(), 404);
    assert_eq!(get(&format!("{}/healthz", server.admin)).await.status(), 200);
    let metrics = get(&format!("{}/metrics", server.admin)).await.text().await.unwrap();
    assert!(
        metrics.contains("portcullis_clicks_total{action=\"permitted\",verdict=\"unknown\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("portcullis_clicks_total{action=\"rejected\",verdict=\"invalid\"} 1"));
    assert!(metrics.contains("portcullis_reputation_cache_total{result=\"miss\"} 1"));
    assert!(metrics.contains("portcullis_click_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_keeps_every_click() {
    let p = Portcullis::new();
    let mut server = Server::start(&p, "");
    let link = server.link(&p, "https://graceful.example/");
    for _ in 0..20 {
        assert_eq!(get(&link).await.status(), 302);
    }
    assert!(server.stop().success());
    assert_eq!(clicks(&p, "permitted").len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_load_loses_no_answered_click() {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    let p = Portcullis::new();
    let workers = 16;
    let mut answered: HashSet<String> = HashSet::new();
    let mut sent = 0usize;
    for round in 0..3 {
        let mut server = Server::start(&p, "");
        let link = server.link(&p, "https://load.example/page");
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let (link, stop, counter) = (link.clone(), stop.clone(), counter.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut ok = Vec::new();
                    let mut attempted = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let id = format!("load-{round}-{w}-{}", counter.fetch_add(1, Ordering::SeqCst));
                        attempted += 1;
                        match client.get(&link).header("user-agent", &id).send().await {
                            Ok(r) if r.status() == 302 => ok.push(id),
                            _ => break,
                        }
                    }
                    (ok, attempted)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            let (ok, attempted) = task.await.unwrap();
            sent += attempted;
            answered.extend(ok);
        }
    }
    // Restart once more: the store recovers its WAL and replays any spool.
    let mut server = Server::start(&p, "");
    assert!(server.stop().success());
    let logged: HashSet<String> = clicks(&p, "permitted")
        .iter()
        .map(|c| c["user_agent"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = answered.difference(&logged).collect();
    assert!(
        lost.is_empty(),
        "{} answered clicks missing after kill -9, e.g. {:?}",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    let extra = logged.difference(&answered).count();
    assert!(
        extra <= workers * 3,
        "{extra} rows for unanswered requests, more than were in flight"
    );
    assert!(
        answered.len() > 100,
        "the load did run: {} answered of {sent}",
        answered.len()
    );
    eprintln!(
        "kill -9 x3: {} answered, {} logged, {extra} in flight at a kill and logged anyway",
        answered.len(),
        logged.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn urlhaus_api_lookups() {
    let urlhaus = fake_urlhaus(&["http://payload.example/loader.bin"]).await;
    let p = Portcullis::new();
    let server = Server::start(
        &p,
        &format!(
            "[reputation.urlhaus]\nbase_url = \"{}\"\nauth_key = \"k\"\n",
            urlhaus.base
        ),
    );
    let response = get(&server.link(&p, "http://payload.example/loader.bin")).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("URLhaus: malware_download"));
    assert_eq!(get(&server.link(&p, "https://fine.example/")).await.status(), 302);
    assert_eq!(urlhaus.requests.load(Ordering::SeqCst), 2);
    assert_eq!(clicks(&p, "blocked")[0]["category"], "malware");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_chains_are_followed_with_head_and_never_inward() {
    use std::sync::{Arc, Mutex};
    // The internal service an attacker would like us to touch.
    let secret = FakeHttp::start(Arc::new(|_, _| (200, "secret".into()))).await;
    let secret_port = secret.base.rsplit(':').next().unwrap().to_string();
    let methods: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = methods.clone();
    let secret_base = secret.base.clone();
    let port_for_dns = secret_port.clone();
    let hops = FakeHttp::start(Arc::new(move |parts, _| {
        seen.lock()
            .unwrap()
            .push(format!("{} {}", parts.method, parts.uri.path()));
        let location = match parts.uri.path() {
            "/to-malware" => "https://malware.example/x".to_string(),
            "/to-loopback" => format!("{secret_base}/admin"),
            "/to-metadata" => "http://169.254.169.254/latest/meta-data/".to_string(),
            "/to-private-dns" => format!("http://localhost:{port_for_dns}/admin"),
            "/one-time" => return (200, "approved!".into()),
            _ => return (404, String::new()),
        };
        (302, location)
    }))
    .await;
    let hops_port = hops.base.rsplit(':').next().unwrap().to_string();
    let p = Portcullis::new();
    let feed = p.dir.path().join("feed.txt");
    std::fs::write(&feed, "https://malware.example/x\n").unwrap();
    // Only the hop server itself is an exception to the default blocked ranges.
    let config = format!(
        "[click.policy]\nfollow_redirects = true\n[reputation.redirects]\nallowed_addresses = [\"127.0.0.1:{hops_port}\"]\n\
         [[reputation.feeds]]\npath = \"{}\"\nformat = \"plain\"\n",
        feed.display()
    );
    let server = Server::start(&p, &config);
    let at = |path: &str| format!("http://localhost:{hops_port}{path}");

    let response = get(&server.link(&p, &at("/to-malware"))).await;
    assert_eq!(response.status(), 403, "a hop on the feed blocks the click");
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("redirects to https://malware.example/x")
    );

    for path in ["/to-loopback", "/to-metadata", "/to-private-dns"] {
        let response = get(&server.link(&p, &at(path))).await;
        assert_eq!(response.status(), 200, "{path}: warning page");
        assert!(response.text().await.unwrap().contains("an internal address"), "{path}");
    }
    assert_eq!(
        secret.requests.load(Ordering::SeqCst),
        0,
        "no request ever reached the internal service"
    );

    // A one-time approval link is only looked at with HEAD, so the user's own GET still works.
    let response = get(&server.link(&p, &at("/one-time"))).await;
    assert_eq!(response.status(), 302);
    let methods = methods.lock().unwrap().clone();
    assert!(methods.iter().all(|m| m.starts_with("HEAD ")), "{methods:?}");
    assert!(methods.contains(&"HEAD /one-time".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_blocklists_through_a_real_resolver() {
    static RECORDS: &[(&str, [u8; 4])] = &[
        ("phishy.example.dbl.test", [127, 0, 1, 4]),
        ("spammy.example.dbl.test", [127, 0, 1, 2]),
        ("malware-host.example.multi.test", [127, 0, 0, 16]),
        ("refused.example.dbl.test", [127, 255, 255, 254]),
    ];
    let dns = fake_dns(RECORDS).await;
    let p = Portcullis::new();
    let config = format!("[reputation.dnsbl]\nzones = [\"dbl.test\", \"multi.test\"]\nnameservers = [\"{dns}\"]\n");
    let server = Server::start(&p, &config);
    let response = get(&server.link(&p, "https://login.phishy.example/account")).await;
    assert_eq!(response.status(), 403, "the registrable domain is listed");
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("phishy.example is listed on dbl.test (127.0.1.4)")
    );
    assert_eq!(
        get(&server.link(&p, "http://malware-host.example/")).await.status(),
        403
    );
    assert_eq!(
        get(&server.link(&p, "https://spammy.example/")).await.status(),
        200,
        "spam domains warn"
    );
    assert_eq!(get(&server.link(&p, "https://clean.example/")).await.status(), 302);
    // A refusal (127.255.255.x) is not a listing: reputation is unavailable, the default fails open.
    assert_eq!(get(&server.link(&p, "https://refused.example/")).await.status(), 302);
    assert_eq!(
        clicks(&p, "blocked")
            .iter()
            .filter(|c| c["category"] == "phish")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn https_when_a_certificate_is_configured() {
    let p = Portcullis::new();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = p.dir.path().join("cert.pem");
    let key = p.dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = Server::start(
        &p,
        &format!(
            "[click]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let link = server
        .link(&p, "https://tls.example/")
        .replacen("127.0.0.1", "localhost", 1);
    let tls_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = tls_client.get(&link).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "https://tls.example/");
    // Plain HTTP to the TLS port never gets a redirect.
    assert!(
        client()
            .get(link.replacen("https://", "http://", 1))
            .send()
            .await
            .map_or(true, |r| r.status() != 302)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_store_spools_clicks_and_replays_them() {
    let p = Portcullis::new();
    std::fs::create_dir_all(p.data_dir()).unwrap();
    std::fs::write(p.data_dir().join("clicks"), b"").unwrap(); // the store's directory cannot be made
    let mut server = Server::start(&p, "");
    let link = server.link(&p, "https://spooled.example/");
    for _ in 0..10 {
        assert_eq!(get(&link).await.status(), 302, "clicks are still answered");
    }
    assert!(server.stop().success());
    let spool = std::fs::read_to_string(p.data_dir().join("clicks.spool")).unwrap();
    assert_eq!(spool.lines().count(), 10, "every click waits in the spool");
    std::fs::remove_file(p.data_dir().join("clicks")).unwrap();
    let mut server = Server::start(&p, "");
    assert!(server.stop().success());
    assert_eq!(clicks(&p, "permitted").len(), 10, "replayed into the store");
    assert_eq!(std::fs::metadata(p.data_dir().join("clicks.spool")).unwrap().len(), 0);
}

/// The click log's slices: `(finished, being written)` — a finished one has no log beside it.
fn slices(p: &Portcullis) -> (usize, usize) {
    let dir = p.data_dir().join("clicks");
    let databases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|path| path.extension().is_some_and(|e| e == "db"))
        .collect();
    let open = databases
        .iter()
        .filter(|path| path.with_extension("db-wal").exists())
        .count();
    (databases.len() - open, open)
}

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_click_log_moves_to_new_slices_and_finishes_the_old_ones() {
    let p = Portcullis::new();
    let config = "[click]\nlog_slice_secs = 1\n";
    let mut server = Server::start(&p, config);
    let link = server.link(&p, "https://sliced.example/");
    for click in 0..3 {
        if click > 0 {
            // Each click comes after the slice it lands in has reached its age.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        assert_eq!(get(&link).await.status(), 302);
    }
    // Every full slice is finished; only the one being written keeps its log.
    poll("full slices are indexed, checkpointed and closed", || {
        let (finished, open) = slices(&p);
        finished >= 2 && open == 1
    });
    let logged = clicks(&p, "permitted");
    assert_eq!(logged.len(), 3, "reads span every slice");
    let ids: Vec<&str> = logged.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let message_ref = logged[0]["message_ref"].as_str().unwrap().to_string();
    let by_message = p.run(
        &["clicks", "--limit", "2", "--json", "--message-ref", &message_ref],
        b"",
    );
    assert_eq!(String::from_utf8_lossy(&by_message.stdout).lines().count(), 2);

    // Killed mid-slice: the next start finishes the slice it left and writes to a new one.
    server.kill9();
    let (finished_before, open_before) = slices(&p);
    assert_eq!(open_before, 1);
    let mut server = Server::start(&p, config);
    poll("the slice a crash left is finished at start", || {
        slices(&p) == (finished_before + 1, 1)
    });
    let link = server.link(&p, "https://sliced.example/");
    assert_eq!(get(&link).await.status(), 302);
    assert!(server.stop().success());
    // The slice opened at start may already be past its age when the click comes (a slow
    // machine), so the click can open one more.
    let (finished_after, open_after) = slices(&p);
    assert_eq!(open_after, 0, "a clean stop finishes the last slice");
    assert!(
        finished_after >= finished_before + 2,
        "{finished_after} vs {finished_before}"
    );
    assert_eq!(clicks(&p, "permitted").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_flags_only_make_policy_stricter() {
    use portcullis::token::policy;
    let sb = FakeSafeBrowsing::start().await;
    let p = Portcullis::new();
    let server = Server::start(
        &p,
        &format!(
            "[click.policy]\nfail_open = true\n[reputation]\ndeadline_ms = 200\n{}",
            sb.config()
        ),
    );
    let keys = KeyRing::open_or_create(&p.data_dir()).unwrap();
    let sign = |url: &str, flags: u8| {
        keys.sign(
            &server.base,
            url,
            &LinkContext {
                flags,
                ..LinkContext::default()
            },
        )
        .unwrap()
    };

    // A clean destination, but the link asks for a warning: warned, with click-through.
    let page = get(&sign("https://clean.example/", policy::FORCE_WARN))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("may be unsafe") && page.contains("/continue?"));
    // Warning without click-through.
    let page = get(&sign(
        "https://clean.example/",
        policy::FORCE_WARN | policy::NO_CLICK_THROUGH,
    ))
    .await
    .text()
    .await
    .unwrap();
    assert!(page.contains("may be unsafe") && !page.contains("/continue?"));
    // The site policy fails open, the link says fail closed: a timeout blocks.
    *sb.delay.lock().unwrap() = Duration::from_millis(800);
    assert_eq!(
        get(&sign("https://slow.example/", policy::FAIL_CLOSED)).await.status(),
        403
    );
    assert_eq!(get(&sign("https://slow2.example/", 0)).await.status(), 302);
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_wrappers_are_judged_by_the_url_inside() {
    let p = Portcullis::new();
    let feed = p.dir.path().join("feed.txt");
    std::fs::write(&feed, "https://example.com/#newsletter\n").unwrap();
    let server = Server::start(
        &p,
        &format!(
            "[[reputation.feeds]]\npath = \"{}\"\nformat = \"plain\"\n",
            feed.display()
        ),
    );
    let wrapped = "https://urldefense.com/v3/__https://example.com/*newsletter__;Iw!!foo!bar$";
    let response = get(&server.link(&p, wrapped)).await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("wrapped URL https://example.com/#newsletter")
    );
}

/// The block page: the feed's name (never the server's file path), "Go back" first, a `mailto:`
/// support link, and "report a mistake", which records a signed report in the click log.
#[tokio::test(flavor = "multi_thread")]
async fn block_page_actions_and_false_positive_reports() {
    let p = Portcullis::new();
    let feed = p.dir.path().join("secret-feeds-dir-openphish.txt");
    std::fs::write(&feed, "https://blocked-by-feed.example/login\n").unwrap();
    let server = Server::start(
        &p,
        &format!(
            "[click]\nsupport_contact = \"soc@acme.example\"\n\
             [[reputation.feeds]]\npath = \"{}\"\nformat = \"plain\"\nname = \"OpenPhish\"\n",
            feed.display()
        ),
    );
    let response = get(&server.link(&p, "https://blocked-by-feed.example/login")).await;
    assert_eq!(response.status(), 403);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let page = response.text().await.unwrap();
    assert!(page.contains("OpenPhish"), "{page}");
    assert!(
        !page.contains("secret-feeds-dir"),
        "the feed's path is not for users: {page}"
    );
    assert!(page.contains(r#"id="back">Go back</button>"#));
    assert!(page.contains(r#"<a href="mailto:soc@acme.example">soc@acme.example</a>"#));
    assert!(policy.contains("script-src 'sha256-") && policy.contains("form-action 'self'"));

    let field = |name: &str| {
        let marker = format!(r#"name="{name}" value=""#);
        let start = page.find(&marker).unwrap_or_else(|| panic!("{name} in {page}")) + marker.len();
        page[start..start + page[start..].find('"').unwrap()].replace("&amp;", "&")
    };
    let form = [
        ("l", field("l")),
        ("v", field("v")),
        ("e", field("e")),
        ("t", field("t")),
    ];
    let report = client()
        .post(format!("{}/report", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    assert!(report.text().await.unwrap().contains("Thank you"));
    let reported = clicks(&p, "reported");
    assert_eq!(reported.len(), 1);
    assert_eq!(reported[0]["url"], "https://blocked-by-feed.example/login");
    assert_eq!(reported[0]["verdict"], "malicious");
    assert_eq!(reported[0]["message_ref"], "msg-1");

    // A forged or altered form records nothing.
    let mut forged = form.clone();
    forged[0].1 = forged[0].1.replace("login", "logon");
    let refused = client()
        .post(format!("{}/report", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let oversized = client()
        .post(format!("{}/report", server.base))
        .body(vec![b'a'; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    assert_eq!(clicks(&p, "reported").len(), 1);
}

fn form_body(fields: &[(&str, String)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// The pages people see come in the language their browser asks for (Japanese here), with the
/// organisation's name, logo and contact; the organisation's default language otherwise; and
/// words from the operator's own locale files.
#[tokio::test(flavor = "multi_thread")]
async fn pages_speak_the_language_the_browser_asks_for() {
    let p = Portcullis::new();
    let locales = p.dir.path().join("locales");
    std::fs::create_dir(&locales).unwrap();
    std::fs::write(
        locales.join("de.toml"),
        "[blocked]\nheading = \"Diese Seite wurde gesperrt\"\n[page]\ngo_back = \"Zurück\"\n",
    )
    .unwrap();
    let server = Server::start(
        &p,
        &format!(
            "[click]\norganisation = \"Acme <Corp>\"\nlogo_url = \"https://intranet.acme.example/logo.png\"\n\
             support_contact = \"soc@acme.example\"\ndefault_language = \"ja\"\nlocales_dir = \"{}\"\n\
             [click.policy]\nblock_list = [\"*.blocked.example\"]\n",
            locales.display()
        ),
    );
    let link = server.link(&p, "https://www.blocked.example/");
    let page = |language: Option<&'static str>| {
        let link = link.clone();
        async move {
            let mut request = client().get(&link);
            if let Some(language) = language {
                request = request.header("accept-language", language);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 403);
            response.text().await.unwrap()
        }
    };

    let japanese = page(Some("ja-JP,ja;q=0.9,en;q=0.8")).await;
    assert!(japanese.contains(r#"<html lang="ja">"#), "{japanese}");
    assert!(japanese.contains("このサイトはブロックされました"), "{japanese}");
    assert!(japanese.contains(r#"id="back">戻る</button>"#));
    assert!(
        japanese.contains("Acme &lt;Corp&gt; によって保護されています。"),
        "{japanese}"
    );
    assert!(japanese.contains(r#"<a href="mailto:soc@acme.example">soc@acme.example</a> までお問い合わせください"#));
    assert!(japanese.contains(r#"src="https://intranet.acme.example/logo.png""#));

    let english = page(Some("en-GB,en;q=0.9")).await;
    assert!(english.contains(r#"<html lang="en">"#));
    assert!(english.contains("This site has been blocked"));
    assert!(english.contains("Protected by Acme &lt;Corp&gt;."));

    // Nothing asked for that we have: the organisation's default, Japanese.
    let default = page(Some("fr-CH, fr;q=0.9")).await;
    assert!(default.contains("このサイトはブロックされました"));
    let none = page(None).await;
    assert!(none.contains(r#"<html lang="ja">"#));

    // The operator's German file: its words, and the default language's for the rest.
    let german = page(Some("de-AT")).await;
    assert!(german.contains(r#"<html lang="de">"#));
    assert!(german.contains("Diese Seite wurde gesperrt"));
    assert!(german.contains(r#"id="back">Zurück</button>"#));
    assert!(german.contains("<title>ブロック"), "{german}");

    // An expired or altered link says so in the language asked for, too.
    let altered = format!("{}x", &link[..link.len() - 1]);
    let answer = client()
        .get(&altered)
        .header("accept-language", "ja")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(answer.text().await.unwrap().contains("無効なリンク"));
}
