//! Attachment scanning throughput in MB/s of files opened, every image searched for QR codes as if
//! never seen before: the MIME walk that decodes the parts,
//! then `attachments::scan` (types, archives, Office, PDF, HTML/SVG, QR codes) and the SHA-256
//! signature check over every file, on a mixed set:
//! - `fixtures`: every attachment fixture in `tests/fixtures/detect/` (PDF, Office, zip, images);
//! - `large`: a 4 MiB deflated zip of text, a 1000×1000 noise PNG, a 1600×1200 JPEG photo-like
//!   image with a QR code, and a 2 MiB PDF with 200 compressed content streams.

use std::io::Write;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::attachments::{self, AttachmentsConfig, engines::Signatures};
use portcullis::pipeline::malware;
use std::hint::black_box;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detect");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            (name.starts_with("attach-") || name.starts_with("qr-")) && name.ends_with(".eml")
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A message carrying `files` as base64 attachments.
fn message(files: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    use base64::Engine;
    let mut out = String::from(
        "From: a@sender.test\r\nTo: b@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n",
    );
    for (name, mime, bytes) in files {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        out.push_str(&format!(
            "--b\r\nContent-Type: {mime}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        ));
        for line in encoded.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push_str("\r\n");
        }
    }
    out.push_str("--b--\r\n");
    out.into_bytes()
}

fn large() -> Vec<Vec<u8>> {
    let mut seed = 1u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    // Text that compresses like documents do, not like zeros.
    let words = [
        "invoice", "total", "shipping", "customer", "order", "amount", "date", "due", "net", "tax",
    ];
    let mut text = String::new();
    while text.len() < 4 * 1024 * 1024 {
        text.push_str(words[next() as usize % words.len()]);
        text.push(if next() % 12 == 0 { '\n' } else { ' ' });
    }
    let mut zip_bytes = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut zip_bytes);
    writer
        .start_file("ledger.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    writer.write_all(text.as_bytes()).unwrap();
    writer.finish().unwrap();

    let noise = image::GrayImage::from_fn(1000, 1000, |_, _| image::Luma([(next() & 0xff) as u8]));
    let mut png = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut png, image::ImageFormat::Png).unwrap();

    let photo = image::GrayImage::from_fn(1600, 1200, |x, y| image::Luma([((x / 7 + y / 5) % 200 + 30) as u8]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    photo.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();

    let mut pdf = b"%PDF-1.5\n".to_vec();
    for number in 0..200 {
        let mut content = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        for line in 0..400 {
            writeln!(
                content,
                "BT /F1 10 Tf 72 {} Td (line {line} of page {number}: total due) Tj ET",
                700 - line
            )
            .unwrap();
        }
        let content = content.finish().unwrap();
        pdf.extend_from_slice(
            format!(
                "{} 0 obj << /Length {} /Filter /FlateDecode >>\nstream\n",
                number + 1,
                content.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&content);
        pdf.extend_from_slice(b"\nendstream\nendobj\n");
    }
    pdf.extend_from_slice(b"trailer << /Root 1 0 R >>\n%%EOF\n");

    vec![
        message(&[("ledger.zip", "application/zip", zip_bytes.into_inner())]),
        message(&[("noise.png", "image/png", png.into_inner())]),
        message(&[("photo.jpg", "image/jpeg", jpeg.into_inner())]),
        message(&[("report.pdf", "application/pdf", pdf)]),
    ]
}

fn bench(c: &mut Criterion) {
    let config = AttachmentsConfig::default();
    let signatures = Signatures::load(&[]).unwrap();
    for (name, messages) in [("fixtures", fixtures()), ("large", large())] {
        let scanned: usize = messages
            .iter()
            .map(|m| {
                let parts = malware::parts(m, 64);
                attachments::scan(&parts, &config, Some("sender.test"))
                    .files
                    .iter()
                    .map(|f| f.bytes.len())
                    .sum::<usize>()
            })
            .sum();
        eprintln!(
            "{name}: {} messages, {:.1} MB of files opened",
            messages.len(),
            scanned as f64 / 1e6
        );
        let mut group = c.benchmark_group("attachments");
        group.throughput(Throughput::Bytes(scanned as u64));
        group.sample_size(10);
        group.bench_function(name, |b| {
            b.iter(|| {
                // Every image a first sight: the QR cache would otherwise answer from memory.
                attachments::forget_seen_images();
                for message in &messages {
                    let parts = malware::parts(black_box(message), 64);
                    let scan = attachments::scan(&parts, &config, Some("sender.test"));
                    for file in &scan.files {
                        black_box(signatures.check(&file.bytes));
                    }
                    black_box(scan.hits.len());
                }
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
