//! Property tests of the link format: any URL and context round-trip exactly, and any single-byte
//! change to a link makes verification fail.

use portcullis::token::{KeyRing, LinkContext, MAX_MESSAGE_REF, MAX_RECIPIENT_REF, policy};
use proptest::prelude::*;

const BASE: &str = "https://click.example.net";

fn context() -> impl Strategy<Value = LinkContext> {
    (
        proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE_REF),
        proptest::collection::vec(any::<u8>(), 0..=MAX_RECIPIENT_REF),
        any::<u32>(),
        0..=policy::KNOWN,
    )
        .prop_map(|(message_ref, recipient_ref, issued_at, flags)| LinkContext {
            message_ref,
            recipient_ref,
            issued_at,
            flags,
        })
}

/// URLs of every shape: arbitrary Unicode, and URL-like strings full of separators.
fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "https?://[a-z0-9.-]{1,20}(/[ -~]{0,40}){0,4}",
        "https://[a-z]{1,8}\\.example/[*!;#%_$&?=./\\\\]{0,30}",
        "https://例え.jp/パス/[\\PC]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn sign_then_verify_gives_back_url_and_context(url in url(), context in context()) {
        let ring = KeyRing::ephemeral();
        let link = ring.sign(BASE, &url, &context).unwrap();
        prop_assert!(link.is_ascii());
        prop_assert!(!link.contains(['#', ' ', '"', '<', '>', '%', '\'']));
        let verified = ring.verify(&link).unwrap();
        prop_assert_eq!(verified.url, url);
        prop_assert_eq!(verified.context, context);
    }

    #[test]
    fn any_single_byte_change_fails(url in url(), context in context(), position in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let ring = KeyRing::ephemeral();
        let link = ring.sign(BASE, &url, &context).unwrap();
        let mut bytes = link.clone().into_bytes();
        // Only the part after the base URL is ours to check: the base itself is not signed.
        let i = BASE.len() + position.index(bytes.len() - BASE.len());
        prop_assume!(bytes[i] != replacement);
        bytes[i] = replacement;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert!(ring.verify(&altered).is_err(), "{} verified after changing byte {}", altered, i);
    }

    #[test]
    fn links_from_another_ring_never_verify(url in url(), context in context()) {
        let link = KeyRing::ephemeral().sign(BASE, &url, &context).unwrap();
        prop_assert!(KeyRing::ephemeral().verify(&link).is_err());
    }
}

#[test]
fn truncation_never_verifies() {
    let ring = KeyRing::ephemeral();
    let link = ring
        .sign(BASE, "https://example.org/a?b=c#d", &LinkContext::default())
        .unwrap();
    for end in BASE.len()..link.len() {
        assert!(ring.verify(&link[..end]).is_err(), "prefix of {end} bytes verified");
    }
}
