//! Rewrite throughput over real messages (the SpamAssassin corpus that `.ci/fetch-corpus` fetches,
//! plus the shipped samples) next to a bare pass that runs the same MIME walk, the same lol_html
//! selectors and the same link scan and classification without signing or changing anything.

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::config::RewriteConfig;
use portcullis::rewrite::{MessageContext, Rewriter};
use portcullis::token::KeyRing;
use std::hint::black_box;

/// Up to `limit` corpus messages with at least one link, spread over every corpus folder.
fn messages(limit: usize) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![std::fs::read(root.join("samples/welcome.eml")).expect("sample")];
    let data = root.join("target/corpus/package/data");
    let Ok(groups) = std::fs::read_dir(&data) else {
        eprintln!("corpus missing: run .ci/fetch-corpus; benchmarking the sample only");
        return out;
    };
    let mut files: Vec<_> = groups
        .filter_map(|g| g.ok().map(|g| g.path()))
        .filter(|g| g.is_dir())
        .flat_map(|g| std::fs::read_dir(g).unwrap().filter_map(|f| f.ok().map(|f| f.path())))
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let step = (files.len() / limit).max(1);
    for file in files.iter().step_by(step).take(limit) {
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let text = json["text"].as_str().unwrap_or_default();
        let text = if text.starts_with("From ") {
            text.split_once('\n').map_or("", |(_, r)| r)
        } else {
            text
        };
        if text.contains("http") {
            out.push(text.as_bytes().to_vec());
        }
    }
    out
}

fn rewrite(c: &mut Criterion) {
    let messages = messages(600);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    let rewriter = Rewriter::new(
        KeyRing::ephemeral(),
        "https://click.example.net",
        RewriteConfig::default(),
    );
    let context = MessageContext {
        message_ref: b"0123456789abcdef".to_vec(),
        recipient: Some("alice@example.com".into()),
        issued_at: 1_795_000_000,
        flags: 0,
    };
    let mut group = c.benchmark_group("rewrite");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(20);
    group.bench_function("bare-pass", |b| {
        b.iter(|| {
            for message in &messages {
                let _ = black_box(rewriter.scan(black_box(message)));
            }
        })
    });
    group.bench_function("rewrite", |b| {
        b.iter(|| {
            for message in &messages {
                let _ = black_box(rewriter.rewrite(black_box(message), &context));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, rewrite);
criterion_main!(benches);
