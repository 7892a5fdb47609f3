//! Plain text, charsets, transfer encodings and line endings.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use encoding_rs::{EUC_JP, Encoding, ISO_2022_JP, ISO_8859_2, SHIFT_JIS, UTF_8, WINDOWS_1251, WINDOWS_1252};

use crate::common::*;

fn text_message(body: &str) -> Vec<u8> {
    crlf(&format!(
        "From: a@example.org\nTo: alice@example.com\nSubject: text\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    ))
}

#[test]
fn plain_text_links_are_found_like_a_reader_sees_them() {
    let p = Portcullis::new();
    let body = "Visit www.example.com/start, then https://example.org/a_(b) (or see https://example.net/x).\n\
        Wrapped: <https://angle.example/path?q=1>. Trailing: https://dot.example/end.\n\
        Japanese: 詳細はhttps://jp.example/infoをご覧ください。（https://jp.example/paren）\n\
        Not links: alice@example.com, example.com, ftp://files.example/x, mailto:bob@example.com";
    let (out, report, destinations) = rewrite_and_decode(&p, &text_message(body), &[]);
    assert_eq!(
        destinations,
        [
            "http://www.example.com/start",
            "https://example.org/a_(b)",
            "https://example.net/x",
            "https://angle.example/path?q=1",
            "https://dot.example/end",
            "https://jp.example/info",
            "https://jp.example/paren",
        ]
    );
    let text = &text_bodies(&out)[0].1;
    assert_only_links_changed(&text_bodies(&text_message(body))[0].1, text);
    assert!(text.contains("をご覧ください。（"), "Japanese text intact");
    assert_eq!(report["links_skipped"]["scheme"], 1, "ftp: {report}");
}

/// Builds a one-part message in `charset` with `encoding`, containing `text`.
fn charset_message(charset: &str, cte: &str, html: bool, text: &str) -> Vec<u8> {
    let encoding = Encoding::for_label(charset.as_bytes()).unwrap();
    let (bytes, _, unmappable) = encoding.encode(text);
    assert!(!unmappable, "{charset} cannot encode the sample");
    let body = match cte {
        "base64" => {
            let b64 = STANDARD.encode(&bytes);
            b64.as_bytes()
                .chunks(76)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes()
        }
        "8bit" | "7bit" => bytes.replace_lf(),
        other => panic!("{other}"),
    };
    let subtype = if html { "html" } else { "plain" };
    let mut message = crlf(&format!(
        "From: a@example.org\nTo: alice@example.com\nSubject: charset\nMIME-Version: 1.0\nContent-Type: text/{subtype}; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
    ));
    message.extend_from_slice(&body);
    message.extend_from_slice(b"\r\n");
    message
}

trait ReplaceLf {
    fn replace_lf(&self) -> Vec<u8>;
}

impl ReplaceLf for std::borrow::Cow<'_, [u8]> {
    fn replace_lf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in self.iter() {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }
}

/// Decodes the single text part of `message` in `charset` with our own eyes: transfer-decode with
/// base64 when asked, then the charset. Compares the rewritten text with the original.
fn check_charset(charset: &str, cte: &str, html: bool, text: &str, expected: &[&str]) {
    let p = Portcullis::new();
    let message = charset_message(charset, cte, html, text);
    let (out, report) = p.rewrite(&message, &[]);
    assert_eq!(
        report["links_rewritten"].as_u64().unwrap() as usize,
        expected.len(),
        "{charset} {cte}: {report}"
    );
    let encoding = Encoding::for_label(charset.as_bytes()).unwrap();
    let body_of = |m: &[u8]| {
        let start = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = &m[start..];
        let raw = if cte == "base64" {
            STANDARD
                .decode(
                    body.iter()
                        .copied()
                        .filter(|b| !b.is_ascii_whitespace())
                        .collect::<Vec<u8>>(),
                )
                .unwrap()
        } else {
            body.to_vec()
        };
        let (decoded, malformed) = encoding.decode_without_bom_handling(&raw);
        assert!(!malformed, "{charset}: output is not valid {charset}");
        decoded.into_owned()
    };
    let original = body_of(&message);
    let rewritten = body_of(&out);
    assert_only_links_changed(&original, &rewritten);
    let links = our_links(&rewritten, html);
    assert_eq!(p.decode(&links), expected, "{charset} {cte}");
}

#[test]
fn charsets_come_out_without_mojibake() {
    let japanese = "お知らせ：詳細はhttps://jp.example/info?id=1をご覧ください。\n次も https://jp.example/two です。";
    let expected_jp = ["https://jp.example/info?id=1", "https://jp.example/two"];
    for charset in ["iso-2022-jp", "shift_jis", "euc-jp", "utf-8"] {
        for cte in ["7bit", "base64"] {
            if charset != "iso-2022-jp" && cte == "7bit" {
                check_charset(charset, "8bit", false, japanese, &expected_jp);
            } else {
                check_charset(charset, cte, false, japanese, &expected_jp);
            }
        }
        let html = format!(
            "<p>{}</p><a href=\"https://jp.example/button\">ボタン</a>",
            "こんにちは"
        );
        check_charset(charset, "base64", true, &html, &["https://jp.example/button"]);
    }
    let european = [
        ("iso-8859-1", "Café déjà vu: https://fr.example/café?q=é — merci"),
        ("windows-1252", "“Quoted” https://smart.example/path — dash"),
        ("iso-8859-2", "Zażółć https://pl.example/łódź gęślą"),
        ("windows-1251", "Привет https://ru.example/путь мир"),
    ];
    for (charset, text) in european {
        let p = Portcullis::new();
        let message = charset_message(charset, "8bit", false, text);
        let (out, report) = p.rewrite(&message, &[]);
        assert_eq!(report["links_rewritten"], 1, "{charset}");
        let encoding = [WINDOWS_1252, ISO_8859_2, WINDOWS_1251]
            .into_iter()
            .find(|e| Encoding::for_label(charset.as_bytes()) == Some(e))
            .unwrap();
        let start = |m: &[u8]| m.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let original = encoding
            .decode_without_bom_handling(&message[start(&message)..])
            .0
            .into_owned();
        let rewritten = encoding.decode_without_bom_handling(&out[start(&out)..]).0.into_owned();
        assert_only_links_changed(&original, &rewritten);
        let first_word = text.split(' ').next().unwrap();
        assert!(rewritten.starts_with(first_word), "{charset}: {rewritten}");
        assert!(rewritten.contains(text.rsplit(' ').next().unwrap()));
    }
    let _ = (UTF_8, SHIFT_JIS, EUC_JP, ISO_2022_JP);
}

#[test]
fn quoted_printable_stays_quoted_printable_within_76_octets() {
    let p = Portcullis::new();
    let message = fixture_sample();
    let (out, _, destinations) = rewrite_and_decode(&p, &message, &[]);
    assert_eq!(
        destinations,
        [
            "https://portal.example.org/storage?user=alice&lang=en",
            "http://www.example.org/help",
            "https://portal.example.org/storage?user=alice&lang=en",
            "http://www.example.org/help",
        ]
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.matches("Content-Transfer-Encoding: quoted-printable").count(), 2);
    assert!(text.split("\r\n").all(|l| l.len() <= 76), "QP lines within 76 octets");
    for ((kind, before), (_, after)) in text_bodies(&message).iter().zip(text_bodies(&out).iter()) {
        let _ = kind;
        assert_only_links_changed(before, after);
    }
}

fn fixture_sample() -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/welcome.eml")).unwrap()
}

#[test]
fn base64_keeps_its_line_width() {
    let p = Portcullis::new();
    let html = "<p>Hello</p>".repeat(20) + "<a href=\"https://b64.example/x\">x</a>" + &"<p>Bye</p>".repeat(20);
    let encoded = STANDARD.encode(html.as_bytes());
    let wrapped: Vec<&str> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let message = crlf(&format!(
        "From: a@b.example\nTo: c@d.example\nSubject: b64\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}\n",
        wrapped.join("\n")
    ));
    let (out, _, destinations) = rewrite_and_decode(&p, &message, &[]);
    assert_eq!(destinations, ["https://b64.example/x"]);
    let body = String::from_utf8(out).unwrap();
    let body = &body[body.find("\r\n\r\n").unwrap() + 4..];
    let lines: Vec<&str> = body.trim_end().split("\r\n").collect();
    assert!(lines.len() > 2);
    assert!(lines[..lines.len() - 1].iter().all(|l| l.len() == 60), "{lines:?}");
}

#[test]
fn long_seven_bit_lines_become_quoted_printable() {
    let p = Portcullis::new();
    let links: Vec<String> = (0..40).map(|i| format!("https://long.example/{i}")).collect();
    let line = links.join(" ");
    assert!(line.len() < 998);
    let message = crlf(&format!(
        "From: a@b.example\nSubject: long\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n\n{line}\n"
    ));
    let (out, _, destinations) = rewrite_and_decode(&p, &message, &[]);
    assert_eq!(destinations, links);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Content-Transfer-Encoding: quoted-printable\r\n"));
    assert!(!text.contains("7bit"));
    assert!(text.split("\r\n").all(|l| l.len() <= 76));
}

#[test]
fn bare_lf_messages_keep_bare_lf() {
    let p = Portcullis::new();
    let message = b"From: a@b.example\nSubject: lf\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: quoted-printable\n\nsee https://lf.example/=\npath and more text that is long enough to need a soft line break somewhere soon\n".to_vec();
    let (out, _, destinations) = rewrite_and_decode(&p, &message, &[]);
    assert_eq!(destinations, ["https://lf.example/path"]);
    assert!(!out.contains(&b'\r'));
}

#[test]
fn utf16_parts_get_utf16_links() {
    let p = Portcullis::new();
    let text = "Hallo — see https://utf16.example/path?q=1 today";
    let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let message = crlf(&format!(
        "From: a@example.org\nSubject: u16\nContent-Type: text/plain; charset=utf-16le\nContent-Transfer-Encoding: base64\n\n{}\n",
        STANDARD.encode(&bytes)
    ));
    let (out, report) = p.rewrite(&message, &[]);
    assert_eq!(report["links_rewritten"], 1);
    let body = &out[out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let decoded = STANDARD
        .decode(
            body.iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect::<Vec<u8>>(),
        )
        .unwrap();
    let (rewritten, malformed) = encoding_rs::UTF_16LE.decode_without_bom_handling(&decoded);
    assert!(!malformed);
    assert_only_links_changed(text, &rewritten);
    assert_eq!(
        p.decode(&our_links(&rewritten, false)),
        ["https://utf16.example/path?q=1"]
    );
}
