//! Link signing and verification, nanoseconds per operation.

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::token::{KeyRing, LinkContext};
use std::hint::black_box;

fn token(c: &mut Criterion) {
    let ring = KeyRing::ephemeral();
    let base = "https://click.example.net";
    let url = "https://portal.example.org/account/storage?user=alice&lang=en&ref=newsletter-2026-11";
    let context = LinkContext {
        message_ref: b"0123456789abcdef".to_vec(),
        recipient_ref: ring.recipient_ref("alice@example.com").unwrap(),
        issued_at: 1_795_000_000,
        flags: 0,
    };
    let link = ring.sign(base, url, &context).unwrap();
    c.bench_function("token/sign", |b| {
        b.iter(|| ring.sign(black_box(base), black_box(url), black_box(&context)))
    });
    c.bench_function("token/verify", |b| b.iter(|| ring.verify(black_box(&link))));
    c.bench_function("token/recipient_ref", |b| {
        b.iter(|| ring.recipient_ref(black_box("alice@example.com")))
    });
}

criterion_group!(benches, token);
criterion_main!(benches);
