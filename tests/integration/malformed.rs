//! Broken, huge and hostile input: a clear error or a rewrite flagged partial, never a panic.

use crate::common::*;

fn assert_no_panic(output: &std::process::Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        output.status.code().is_some_and(|c| c == 0 || c == 2),
        "exit {:?}: {stderr}",
        output.status
    );
}

#[test]
fn not_a_message_is_a_clear_error() {
    let p = Portcullis::new();
    for input in [&b""[..], b"just some text without headers\n", b"\x00\x01\x02"] {
        let out = p.run(&["rewrite"], input);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("not an RFC 5322 message"));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn truncated_mime_is_still_rewritten() {
    let p = Portcullis::new();
    let message = crlf(
        "From: a@example.org\nSubject: cut\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nfirst https://one.example/\n--b\nContent-Type: text/html\n\n<a href=\"https://two.example/\">cut off",
    );
    let (_, _, destinations) = rewrite_and_decode(&p, &message, &[]);
    assert_eq!(destinations, ["https://one.example/", "https://two.example/"]);
}

#[test]
fn bad_base64_is_left_untouched_and_flagged() {
    let p = Portcullis::new();
    let message = crlf(
        "From: a@example.org\nSubject: b64\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nThis is not base64! https://x.example/\n",
    );
    let (out, report) = p.rewrite(&message, &[]);
    assert_eq!(report["left_unrewritten"]["undecodable"], 1);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("X-Portcullis-Rewrite: partial; reason=undecodable"));
    assert!(text.ends_with(std::str::from_utf8(&message).unwrap()));

    let unknown_cte = crlf(
        "From: a@example.org\nSubject: uu\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n",
    );
    let (_, report) = p.rewrite(&unknown_cte, &[]);
    assert_eq!(report["left_unrewritten"]["undecodable"], 1);
}

#[test]
fn wrong_charset_labels_still_find_links() {
    let p = Portcullis::new();
    // Labelled UTF-8 but Latin-1 bytes; labelled with a charset that does not exist.
    let mut message = crlf(
        "From: a@example.org\nSubject: cs\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n",
    );
    message.extend_from_slice(b"caf\xe9 https://latin.example/ na\xefve\r\n");
    let (out, _, destinations) = rewrite_and_decode_bytes(&p, &message);
    assert_eq!(destinations, ["https://latin.example/"]);
    assert!(
        out.windows(5).any(|w| w == b"caf\xe9 "),
        "bytes around the link unchanged"
    );
    assert!(out.ends_with(b" na\xefve\r\n"));

    let bogus = crlf(
        "From: a@example.org\nSubject: cs\nContent-Type: text/plain; charset=x-no-such-charset\n\nhttps://bogus.example/\n",
    );
    let (_, _, destinations) = rewrite_and_decode(&p, &bogus, &[]);
    assert_eq!(destinations, ["https://bogus.example/"]);
}

/// For output that mail-parser would decode lossily: find links in the raw bytes.
fn rewrite_and_decode_bytes(p: &Portcullis, message: &[u8]) -> (Vec<u8>, serde_json::Value, Vec<String>) {
    let (out, report) = p.rewrite(message, &[]);
    let links = our_links(&String::from_utf8_lossy(&out), false);
    let destinations = p.decode(&links);
    (out, report, destinations)
}

/// A message whose text part sits `depth` multiparts down.
fn nested(depth: usize) -> String {
    let mut message = String::from(
        "From: a@example.org\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=\"=_0_=\"\r\n\r\n",
    );
    for level in 1..depth {
        message.push_str(&format!(
            "--=_{}_=\r\nContent-Type: multipart/mixed; boundary=\"=_{level}_=\"\r\n\r\n",
            level - 1
        ));
    }
    message.push_str(&format!(
        "--=_{}_=\r\nContent-Type: text/plain\r\n\r\nhttps://bottom.example/\r\n",
        depth - 1
    ));
    for level in (0..depth).rev() {
        message.push_str(&format!("--=_{level}_=--\r\n"));
    }
    message
}

#[test]
fn ten_thousand_nested_multiparts() {
    let p = Portcullis::new();
    let message = nested(10_000);
    let out = p.run(&["rewrite"], message.as_bytes());
    assert_no_panic(&out);
    assert!(out.status.success());
    // Past `rewrite.max_depth` nothing is walked: the message says so instead of a link slipping by.
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("X-Portcullis-Rewrite: partial; reason=too-deep"),
        "{}",
        &text[..200]
    );
    assert!(our_links(&text, false).is_empty());
    // Within the bound the bottom link is found and rewritten.
    let out = p.run(&["rewrite"], nested(90).as_bytes());
    let links = our_links(&String::from_utf8(out.stdout).unwrap(), false);
    assert_eq!(p.decode(&links), ["https://bottom.example/"]);
}

#[test]
fn a_fifty_megabyte_body() {
    let p = Portcullis::new();
    let mut message =
        crlf("From: a@example.org\nSubject: big\nContent-Type: text/plain\n\nstart https://big.example/start\n");
    let line = b"lorem ipsum dolor sit amet https://big.example/line consectetur adipiscing elit\r\n";
    while message.len() < 50 * 1024 * 1024 {
        message.extend_from_slice(line);
    }
    // Over the default 32 MiB part limit: left as is and flagged.
    let out = p.run(&["rewrite"], &message);
    assert_no_panic(&out);
    assert!(out.status.success());
    assert!(
        out.stdout
            .starts_with(b"X-Portcullis-Rewrite: partial; reason=too-large")
    );
    assert!(out.stdout.ends_with(&message));
    // With a higher limit every link is rewritten.
    let config = p.write_config("[rewrite]\nmax_part_bytes = 100000000\n");
    let out = p.run(
        &["--config", config.to_str().unwrap(), "rewrite", "--report", "json"],
        &message,
    );
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(
        report["links_rewritten"].as_u64().unwrap() as usize,
        1 + (message.len() - 70) / line.len()
    );
}

#[test]
fn hostile_headers_and_boundaries() {
    let p = Portcullis::new();
    let cases: Vec<Vec<u8>> = vec![
        crlf("From: a@example.org\nContent-Type: multipart/mixed\n\nno boundary https://x.example/\n"),
        crlf("From: a@example.org\nContent-Type: multipart/mixed; boundary=\"\"\n\n--\n\n--\n"),
        crlf("From: a@example.org\nContent-Type: text/html; charset=utf-16\n\n<a href=x>"),
        crlf(
            "From: a@example.org\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n=\n=X=Y=\nhttps://qp.example/=ZZ\n",
        ),
        crlf("From: a@example.org\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n!!!!\n"),
        b"From: a@example.org\r\nContent-Type: text/plain\r\n\r\n\xff\xfe\x00https://nul.example/\x00\r\n".to_vec(),
        crlf(&format!(
            "From: a@example.org\nSubject: {}\n\nhttps://long-header.example/\n",
            "x".repeat(100_000)
        )),
    ];
    for message in cases {
        let out = p.run(&["rewrite"], &message);
        assert_no_panic(&out);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}
