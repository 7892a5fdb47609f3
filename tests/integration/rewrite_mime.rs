//! MIME structure: attachments stay byte-identical, attached messages are rewritten, signed and
//! encrypted parts are left alone and the message says so.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::common::*;

fn wrapped_base64(data: &[u8]) -> String {
    STANDARD
        .encode(data)
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn mixed_message() -> Vec<u8> {
    let pdf: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let inner = "From: inner@example.org\nSubject: forwarded\nContent-Type: text/html\n\n<a href=\"https://inner.example/b64\">x</a>\n";
    crlf(&format!(
        "From: a@example.org\nTo: alice@example.com\nSubject: mixed\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n\
preamble text\n--outer\nContent-Type: text/plain\n\nBody https://body.example/1\n\
--outer\nContent-Type: application/pdf; name=\"doc.pdf\"\nContent-Disposition: attachment; filename=\"doc.pdf\"\nContent-Transfer-Encoding: base64\n\n{pdf}\n\
--outer\nContent-Type: message/rfc822\n\nFrom: fwd@example.org\nSubject: fwd\nContent-Type: multipart/alternative; boundary=\"inner\"\n\n\
--inner\nContent-Type: text/plain\n\nForwarded https://forwarded.example/2\n--inner--\n\
--outer\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{inner_b64}\n\
--outer\nContent-Type: text/csv\n\nurl\nhttps://csv.example/untouched\n--outer--\nepilogue\n",
        pdf = wrapped_base64(&pdf),
        inner_b64 = wrapped_base64(&crlf(inner)),
    ))
}

#[test]
fn attachments_stay_byte_identical_and_attached_messages_are_rewritten() {
    let p = Portcullis::new();
    let message = mixed_message();
    let (out, report) = p.rewrite(&message, &[]);
    let original = String::from_utf8(message.clone()).unwrap();
    let rewritten = String::from_utf8(out.clone()).unwrap();
    // The PDF attachment, the CSV part, the preamble and the epilogue are untouched, byte for byte.
    for unchanged in [
        "Content-Transfer-Encoding: base64\r\n\r\n",
        "preamble text\r\n",
        "url\r\nhttps://csv.example/untouched\r\n--outer--\r\nepilogue\r\n",
    ] {
        assert!(rewritten.contains(unchanged), "{unchanged:?}");
    }
    let pdf_start = original.find("Content-Disposition: attachment").unwrap();
    let pdf_end = original[pdf_start..].find("--outer").unwrap() + pdf_start;
    assert!(
        rewritten.contains(&original[pdf_start..pdf_end]),
        "attachment bytes identical"
    );
    assert_eq!(report["links_rewritten"], 3, "{report}");
    assert_eq!(report["left_unrewritten"], serde_json::json!({}));
    assert!(!rewritten.contains("X-Portcullis-Rewrite"));

    // Every link in every part (the base64 attached message included) decodes.
    let mut links = Vec::new();
    for (kind, text) in text_bodies(&out) {
        links.extend(our_links(&text, kind == "html"));
    }
    let mut destinations = p.decode(&links);
    destinations.sort();
    assert_eq!(
        destinations,
        [
            "https://body.example/1",
            "https://forwarded.example/2",
            "https://inner.example/b64"
        ]
    );
}

#[test]
fn signed_and_encrypted_parts_are_left_alone_and_flagged() {
    let p = Portcullis::new();
    let signed = crlf(
        "From: a@example.org\nSubject: signed\nMIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s\"\n\n\
--s\nContent-Type: text/plain\n\nSigned https://signed.example/\n--s\nContent-Type: application/pkcs7-signature; name=smime.p7s\nContent-Transfer-Encoding: base64\n\nMIIBAAAA\n--s--\n",
    );
    let (out, report) = p.rewrite(&signed, &[]);
    assert_eq!(report["links_rewritten"], 0);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("X-Portcullis-Rewrite: partial; reason=signed; parts=1\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with(std::str::from_utf8(&signed).unwrap()),
        "the signed message is otherwise untouched"
    );

    let inline_pgp = crlf(
        "From: a@example.org\nSubject: pgp\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSee https://pgp.example/\n-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n",
    );
    let (out, report) = p.rewrite(&inline_pgp, &[]);
    assert_eq!(report["links_rewritten"], 0);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("X-Portcullis-Rewrite: partial; reason=signed")
    );

    let encrypted = crlf(
        "From: a@example.org\nSubject: enc\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\nContent-Transfer-Encoding: base64\n\nMIIBAAAA\n",
    );
    let (_, report) = p.rewrite(&encrypted, &[]);
    assert_eq!(report["left_unrewritten"]["signed"], 1);

    // A signed part inside a mixed message: the rest is still rewritten.
    let mixed = crlf(
        "From: a@example.org\nSubject: m\nContent-Type: multipart/mixed; boundary=m\n\n--m\nContent-Type: text/plain\n\nhttps://open.example/\n--m\nContent-Type: multipart/signed; boundary=s\n\n--s\nContent-Type: text/plain\n\nhttps://signed.example/\n--s--\n--m--\n",
    );
    let (_, report, destinations) = rewrite_and_decode(&p, &mixed, &[]);
    assert_eq!(destinations, ["https://open.example/"]);
    assert_eq!(report["left_unrewritten"]["signed"], 1);
}

#[test]
fn encoded_messages_nested_past_the_limit_are_counted() {
    let p = Portcullis::new();
    let mut message = crlf("From: x@example.org\nSubject: core\nContent-Type: text/plain\n\nhttps://deep.example/\n");
    for level in 0..4 {
        message = crlf(&format!(
            "From: l{level}@example.org\nSubject: level {level}\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{}\n",
            wrapped_base64(&message)
        ));
    }
    let config = p.write_config("[rewrite]\nmax_encoded_nesting = 2\n");
    let (out, report) = p.rewrite(&message, &["--config", config.to_str().unwrap()]);
    assert_eq!(report["links_rewritten"], 0);
    assert_eq!(report["left_unrewritten"]["too-deep"], 1);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .starts_with("X-Portcullis-Rewrite: partial; reason=too-deep")
    );
    // With the default limit the link four levels down is rewritten.
    let (_, report) = p.rewrite(&message, &[]);
    assert_eq!(report["links_rewritten"], 1);
}
