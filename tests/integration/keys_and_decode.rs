//! The key ring commands and `decode`: ours, forged, retired and foreign links.

use crate::common::*;

fn one_link(p: &Portcullis, url: &str) -> String {
    let message = crlf(&format!(
        "From: a@example.org\nTo: b@example.com\nSubject: t\n\nGo to {url} now\n"
    ));
    let (out, _) = p.rewrite(&message, &[]);
    let links = our_links(&String::from_utf8(out).unwrap(), false);
    assert_eq!(links.len(), 1, "one link expected");
    links.into_iter().next().unwrap()
}

#[test]
fn keys_are_created_owner_only_and_listed() {
    let p = Portcullis::new();
    let out = p.run(&["keys", "list"], b"");
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(listing.lines().filter(|l| l.contains("active")).count(), 1, "{listing}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir_mode = std::fs::metadata(p.data_dir()).unwrap().permissions().mode() & 0o777;
        let file_mode = std::fs::metadata(p.data_dir().join("keys.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!((dir_mode, file_mode), (0o700, 0o600));
    }
}

#[test]
fn rotated_keys_keep_verifying_and_retired_keys_expire() {
    let p = Portcullis::new();
    let old_link = one_link(&p, "https://example.org/before-rotation");
    let old_key = old_link.split('/').nth(4).unwrap().to_string();

    let out = p.run(&["keys", "rotate"], b"");
    assert!(out.status.success());
    let new_link = one_link(&p, "https://example.org/after-rotation");
    assert_ne!(
        new_link.split('/').nth(4).unwrap(),
        old_key,
        "new links use the new key"
    );
    assert_eq!(
        p.decode(&[old_link.clone(), new_link.clone()]),
        [
            "https://example.org/before-rotation",
            "https://example.org/after-rotation"
        ]
    );

    let active = new_link.split('/').nth(4).unwrap();
    let refused = p.run(&["keys", "retire", active], b"");
    assert!(!refused.status.success(), "the active key cannot be retired");

    assert!(p.run(&["keys", "retire", &old_key], b"").status.success());
    let out = p.decode_raw(&old_link);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("link expired"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(p.decode(&[new_link]), ["https://example.org/after-rotation"]);

    let out = p.run(&["keys", "generate"], b"");
    assert!(out.status.success());
    let listing = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        listing.lines().skip(1).filter(|l| l.contains("verifying")).count(),
        1,
        "{listing}"
    );
    assert_eq!(
        listing.lines().filter(|l| l.contains("retired")).count(),
        1,
        "{listing}"
    );
}

#[test]
fn forged_links_never_decode() {
    let p = Portcullis::new();
    let link = one_link(&p, "https://example.org/pay?invoice=42");
    assert_eq!(
        p.decode(std::slice::from_ref(&link)),
        ["https://example.org/pay?invoice=42"]
    );

    let mut forgeries = vec![
        link[..link.len() - 1].to_string(),
        link[..link.len() / 2].to_string(),
        link.replace("example.org", "examp1e.org"),
        link.replace("invoice=42", "invoice=43"),
    ];
    // Swapped key id: a key the ring has never seen.
    let key = link.split('/').nth(4).unwrap();
    forgeries.push(link.replacen(key, "ffffff", 1));
    // Every single-byte change of the signature.
    let mac_start = link.rfind('!').unwrap() + 1;
    for i in mac_start..link.len() {
        let mut bytes = link.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        forgeries.push(String::from_utf8(bytes).unwrap());
    }
    // Context from another message: same destination, other message reference.
    let other = p.run(
        &["rewrite", "--message-ref", "msg-2"],
        &crlf("From: a@b\nSubject: x\n\nhttps://example.org/pay?invoice=42\n"),
    );
    let other_link = our_links(&String::from_utf8(other.stdout).unwrap(), false).remove(0);
    let other_ctx = other_link.split('/').nth(5).unwrap();
    let ctx = link.split('/').nth(5).unwrap();
    forgeries.push(link.replacen(ctx, other_ctx, 1));

    for forged in forgeries {
        if forged == link {
            continue;
        }
        let out = p.decode_raw(&forged);
        assert_eq!(out.status.code(), Some(1), "forged link decoded: {forged}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("INVALID"));
    }
}

#[test]
fn link_shows_host_and_path_and_binds_the_context() {
    let p = Portcullis::new();
    let link = one_link(&p, "https://docs.example.org/guide/setup.html?x=1");
    assert!(
        link.contains("__https://docs.example.org/guide/setup.html?x=1__;"),
        "{link}"
    );
    let out = p.run(&["decode", "--json", &link], b"");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["destination"], "https://docs.example.org/guide/setup.html?x=1");
    assert_eq!(json["message_ref"], "msg-1");
    assert_eq!(
        json["recipient_ref"].as_str().unwrap().len(),
        24,
        "12-byte keyed pseudonym"
    );
    assert!(
        !out.stdout.windows(5).any(|w| w == b"alice"),
        "the recipient address never appears"
    );
}

#[test]
fn public_foreign_link_vectors_decode_exactly() {
    let p = Portcullis::new();
    let vectors = String::from_utf8(fixture("foreign-links.tsv")).unwrap();
    let mut count = 0;
    for line in vectors.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (encoded, decoded) = line.split_once('\t').expect("tab-separated");
        assert_eq!(p.decode(&[encoded.to_string()]), [decoded], "{encoded}");
        count += 1;
    }
    assert!(count >= 11, "all vectors read");
}

#[test]
fn garbage_is_invalid() {
    let p = Portcullis::new();
    for link in [
        "https://example.org/",
        "not a url",
        "http://127.0.0.1:8025/v1/",
        "http://127.0.0.1:8025/v1/abc/AA/__x__;!AAAA",
    ] {
        assert_eq!(p.decode_raw(link).status.code(), Some(1), "{link}");
    }
}
