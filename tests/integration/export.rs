//! Push export from a running gateway: RFC 5424 syslog over TCP to a collector that is down when
//! the events happen and comes up later (it gets all of them), over UDP, and JSON lines to a
//! file; after a restart the exporters carry on from their saved positions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::common::{Portcullis, our_links};
use crate::gateway::{free_port, send_data_to_bob, sink_and_config, start_gateway};
use crate::hooks::token;

/// A syslog collector on TCP taking RFC 6587 octet-counted frames.
fn collect_tcp(listener: tokio::net::TcpListener, lines: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = Vec::new();
                    if reader.read_until(b' ', &mut length).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let length: usize = std::str::from_utf8(&length[..length.len() - 1])
                        .unwrap()
                        .parse()
                        .expect("an octet count");
                    let mut frame = vec![0; length];
                    reader.read_exact(&mut frame).await.unwrap();
                    lines.lock().unwrap().push(String::from_utf8(frame).unwrap());
                }
            });
        }
    });
}

/// The JSON of each syslog line, checked against RFC 5424's header.
fn syslog_events(lines: &[String]) -> Vec<(String, Value)> {
    let header = regex::Regex::new(
        r"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) (\S+) portcullis (\d+) (CLICK|MESSAGE|THREAT) - (\{.*\})$",
    )
    .unwrap();
    lines
        .iter()
        .map(|line| {
            let parts = header.captures(line).unwrap_or_else(|| panic!("not RFC 5424: {line}"));
            let priority: u32 = parts[1].parse().unwrap();
            assert_eq!(priority / 8, 16, "local0: {line}");
            assert_eq!(&parts[3], "gw.test");
            (parts[5].to_string(), serde_json::from_str(&parts[6]).unwrap())
        })
        .collect()
}

fn wait_until<T>(seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn file_events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_syslog_and_a_file_and_a_collector_down_for_a_while_loses_nothing() {
    let p = Portcullis::new();
    let tcp_port = free_port();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_address = udp.local_addr().unwrap();
    let jsonl = p.dir.path().join("events.jsonl");
    let (sink, config) = sink_and_config(
        &p,
        &format!(
            "[[export]]\nname = \"siem\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:{tcp_port}\"\n\
             [[export]]\nname = \"local\"\ntransport = \"udp\"\naddress = \"{udp_address}\"\nevents = [\"messages\"]\n\
             [[export]]\nname = \"archive\"\ntransport = \"file\"\npath = \"{}\"\n",
            jsonl.display()
        ),
    )
    .await;
    let operator = token(&p, "soc", "operator");
    let (mut server, smtp) = start_gateway(&p, &config);
    let client = crate::server::client();

    // The TCP collector is down while a message arrives and its link is clicked.
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        "From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: first\r\nMessage-ID: <first@sender.test>\r\n\r\n\
         See https://www.example.org/first today.\r\n"
            .to_string(),
    )
    .await;
    let delivered = sink.wait_for(1, 30);
    let link = our_links(&delivered[0], false)
        .pop()
        .unwrap()
        .replacen(crate::common::BASE, &server.base, 1);
    assert_eq!(client.get(&link).send().await.unwrap().status().as_u16(), 302);

    // The file has both events; so does the UDP collector, for the message it asked for.
    wait_until(30, "the click in the file", || {
        let events = file_events(&jsonl);
        (events
            .iter()
            .any(|e| e["event"] == "message" && e["subject"] == "first")
            && events
                .iter()
                .any(|e| e["event"] == "click" && e["url"] == "https://www.example.org/first"))
        .then_some(())
    });
    let mut datagram = vec![0; 65536];
    let length = tokio::time::timeout(Duration::from_secs(30), udp.recv(&mut datagram))
        .await
        .expect("a datagram")
        .unwrap();
    let udp_events = syslog_events(&[String::from_utf8(datagram[..length].to_vec()).unwrap()]);
    assert_eq!(udp_events[0].0, "MESSAGE");
    assert_eq!(udp_events[0].1["subject"], "first");

    // The collector comes up: it gets what happened while it was down, and what happens next.
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    collect_tcp(
        tokio::net::TcpListener::bind(("127.0.0.1", tcp_port)).await.unwrap(),
        lines.clone(),
    );
    let (status, _) = {
        let answer = client
            .post(format!("{}/api/v1/threats", server.admin))
            .bearer_auth(&operator)
            .json(&serde_json::json!({"url": "https://www.example.org/first", "reason": "test"}))
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), ())
    };
    assert_eq!(status, 201);
    let events = wait_until(60, "all three events on TCP", || {
        let events = syslog_events(&lines.lock().unwrap());
        let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
        (kinds.contains(&"MESSAGE") && kinds.contains(&"CLICK") && kinds.contains(&"THREAT")).then_some(events)
    });
    let threat = &events.iter().find(|(kind, _)| kind == "THREAT").unwrap().1;
    assert_eq!(threat["status"], "active");
    assert_eq!(threat["recipients_at_risk"], serde_json::json!(["bob@example.com"]));
    let click = &events.iter().find(|(kind, _)| kind == "CLICK").unwrap().1;
    assert_eq!(click["action"], "permitted");

    // A restart carries on from the saved positions: the next message is exported, the first
    // is not exported again.
    server.stop();
    let (_server, smtp) = start_gateway(&p, &config);
    send_data_to_bob(
        &smtp,
        "alice@sender.test",
        "From: alice@sender.test\r\nTo: bob@example.com\r\nSubject: second\r\nMessage-ID: <second@sender.test>\r\n\r\nHello.\r\n"
            .to_string(),
    )
    .await;
    wait_until(30, "the second message in the file", || {
        file_events(&jsonl)
            .iter()
            .any(|e| e["event"] == "message" && e["subject"] == "second")
            .then_some(())
    });
    let firsts = file_events(&jsonl)
        .iter()
        .filter(|e| e["event"] == "message" && e["subject"] == "first")
        .count();
    assert_eq!(firsts, 1, "the first message was exported again after the restart");
}
