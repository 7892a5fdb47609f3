//! Helpers shared by the integration tests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub const BASE: &str = "http://127.0.0.1:8025";

pub struct Portcullis {
    pub dir: tempfile::TempDir,
}

impl Portcullis {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn portcullis");
        let mut input = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let output = child.wait_with_output().expect("wait for portcullis");
        writer.join().expect("stdin writer");
        output
    }

    /// Runs a command that prints one JSON object a line (`--json` listings) and reads them back.
    pub fn run_json_lines(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let output = self.run(args, b"");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    pub fn write_config(&self, toml: &str) -> std::path::PathBuf {
        let path = self.dir.path().join("portcullis.toml");
        std::fs::write(&path, toml).expect("write config");
        path
    }

    /// Rewrites `message`; panics unless the CLI succeeds. Returns the output and the JSON report.
    pub fn rewrite(&self, message: &[u8], extra: &[&str]) -> (Vec<u8>, serde_json::Value) {
        let mut args = vec![
            "rewrite",
            "--report",
            "json",
            "--recipient",
            "alice@example.com",
            "--message-ref",
            "msg-1",
        ];
        args.extend_from_slice(extra);
        let output = self.run(&args, message);
        assert!(
            output.status.success(),
            "rewrite failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report = serde_json::from_slice(&output.stderr).expect("JSON report on stderr");
        (output.stdout, report)
    }

    /// Decodes links with the CLI; returns each destination (panics if any is invalid).
    pub fn decode(&self, links: &[String]) -> Vec<String> {
        if links.is_empty() {
            return Vec::new();
        }
        let args: Vec<&str> = std::iter::once("decode")
            .chain(links.iter().map(String::as_str))
            .collect();
        let output = self.run(&args, b"");
        assert!(
            output.status.success(),
            "decode failed for {links:?}: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    }

    pub fn decode_raw(&self, link: &str) -> Output {
        self.run(&["decode", link], b"")
    }
}

/// Where each of our links sits in `text` (decoded content): `{BASE}/v1/…__;…!<22 chars>`.
pub fn our_link_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let prefix = format!("{BASE}/v1/");
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(&prefix) {
        let start = from + i;
        let Some(sep) = text[start..].find("__;") else {
            break;
        };
        let mut end = start + sep + 3;
        let bytes = text.as_bytes();
        let b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        while end < bytes.len() && b64(bytes[end]) {
            end += 1;
        }
        assert_eq!(
            bytes.get(end),
            Some(&b'!'),
            "link without signature at {start}: {}",
            &text[start..end]
        );
        end += 1;
        // The signature is exactly 22 base64url characters; text may follow it directly.
        let mac_end = end + 22;
        assert!(
            mac_end <= bytes.len() && bytes[end..mac_end].iter().all(|&b| b64(b)),
            "signature length: {}",
            &text[start..bytes.len().min(end + 40)]
        );
        end = mac_end;
        ranges.push(start..end);
        from = end;
    }
    ranges
}

/// Our links in decoded text, HTML escapes undone when `html`.
pub fn our_links(text: &str, html: bool) -> Vec<String> {
    our_link_ranges(text)
        .into_iter()
        .map(|r| {
            if html {
                text[r].replace("&amp;", "&")
            } else {
                text[r].to_string()
            }
        })
        .collect()
}

/// Checks that `rewritten` is `original` with only links replaced: the text between our links
/// appears in the original, in order, and something (the original link) stands in each gap.
pub fn assert_only_links_changed(original: &str, rewritten: &str) {
    if let Err(e) = only_links_changed(original, rewritten) {
        panic!("{e}");
    }
}

pub fn only_links_changed(original: &str, rewritten: &str) -> Result<(), String> {
    let ranges = our_link_ranges(rewritten);
    let mut segments = Vec::new();
    let mut last = 0;
    for range in &ranges {
        segments.push(&rewritten[last..range.start]);
        last = range.end;
    }
    segments.push(&rewritten[last..]);
    let mut position = 0;
    for (i, segment) in segments.iter().enumerate() {
        if i == 0 {
            if !original.starts_with(segment) {
                return Err(format!(
                    "text before the first link changed:\n{segment:?}\n---\n{original:?}"
                ));
            }
            position = segment.len();
            continue;
        }
        let found = if i == segments.len() - 1 {
            original
                .len()
                .checked_sub(segment.len())
                .filter(|&s| s > position && original[s..] == **segment)
        } else {
            original[position + 1..].find(segment).map(|f| f + position + 1)
        };
        let Some(at) = found else {
            let head: String = segment.chars().take(12).collect();
            if let Some(h) = original[position..].find(&head) {
                let o = &original[position + h..];
                let same = o.bytes().zip(segment.bytes()).take_while(|(a, b)| a == b).count();
                return Err(format!(
                    "text between links changed after {same} bytes: original {:?} rewritten {:?}",
                    &o[same.saturating_sub(40)..(same + 40).min(o.len())],
                    &segment[same.saturating_sub(40)..(same + 40).min(segment.len())]
                ));
            }
            return Err(format!(
                "text between links changed: {segment:?} not found after byte {position} of\n{original}"
            ));
        };
        position = at + segment.len();
    }
    Ok(())
}

/// The decoded text of every text/* leaf, in order, via mail-parser (an independent parser).
pub fn text_bodies(message: &[u8]) -> Vec<(String, String)> {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .expect("message parses");
    let mut out = Vec::new();
    collect_text(&parsed, &mut out);
    out
}

fn collect_text(message: &mail_parser::Message<'_>, out: &mut Vec<(String, String)>) {
    for part in &message.parts {
        match &part.body {
            mail_parser::PartType::Text(text) => out.push(("text".into(), text.to_string())),
            mail_parser::PartType::Html(html) => out.push(("html".into(), html.to_string())),
            mail_parser::PartType::Message(inner) => collect_text(inner, out),
            _ => {}
        }
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Turns `\n` into `\r\n`, as mail on the wire has it.
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

pub fn report_links(report: &serde_json::Value, action: &str) -> Vec<String> {
    report["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter(|l| l["action"] == action)
        .map(|l| l["url"].as_str().expect("url").to_string())
        .collect()
}

/// Rewrites, then decodes every link of every text part and returns the destinations in order.
pub fn rewrite_and_decode(p: &Portcullis, message: &[u8], extra: &[&str]) -> (Vec<u8>, serde_json::Value, Vec<String>) {
    let (out, report) = p.rewrite(message, extra);
    let mut links = Vec::new();
    for (kind, text) in text_bodies(&out) {
        links.extend(our_links(&text, kind == "html"));
    }
    let destinations = p.decode(&links);
    (out, report, destinations)
}
