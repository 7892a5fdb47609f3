//! PDF files, read the way a scanner can afford to on hostile input: no object graph, a bounded
//! pass over the bytes and over every Flate stream (object streams included, where PDF 1.5 hides
//! annotation dictionaries). It finds link targets (`/URI`), encryption (`/Encrypt`), active content
//! (JavaScript, launch actions) and the JPEG images the QR scanner can read.

use std::io::Read;

use regex::bytes::Regex;

#[derive(Debug, Default)]
pub struct Report {
    pub encrypted: bool,
    /// A launch action (runs a program).
    pub launch: Option<String>,
    /// JavaScript: common in fillable forms, so noted rather than condemned.
    pub javascript: bool,
    pub links: Vec<String>,
    /// Raw JPEG data of `/DCTDecode` image streams.
    pub jpeg_images: Vec<Vec<u8>>,
}

/// Streams inflated per file, bytes per stream and in all: bounds against hostile files.
const MAX_STREAMS: usize = 2000;
const MAX_STREAM_BYTES: u64 = 16 * 1024 * 1024;
const MAX_INFLATED_TOTAL: u64 = 64 * 1024 * 1024;
const MAX_IMAGES: usize = 10;
const MAX_LINKS: usize = 200;
/// `/URI` keys looked at per file, links kept or not: a file of repeated keys is not quadratic.
const MAX_URI_KEYS: usize = 5000;

fn patterns() -> &'static (Regex, Regex, Regex) {
    static PATTERNS: std::sync::OnceLock<(Regex, Regex, Regex)> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        (
            // ASCII word boundaries: a Unicode `\b` sends the regex engine to its slow path on binary.
            Regex::new(r"(?-u)/Encrypt\s*(<<|\d+\s+\d+\s+R)").expect("valid"),
            Regex::new(r"(?-u)/(JavaScript|JS|Launch)\b").expect("valid"),
            Regex::new(r"(?-u)/URI\s*([(<])").expect("valid"),
        )
    })
}

/// `allowance` is what the message may still inflate; the streams of this file are charged to it.
pub fn inspect(bytes: &[u8], allowance: &mut u64) -> Report {
    let (encrypt, active, uri) = patterns();
    let mut report = Report {
        encrypted: encrypt.is_match(&unescape_names(bytes)),
        ..Report::default()
    };
    let mut texts: Vec<std::borrow::Cow<'_, [u8]>> = vec![bytes.into()];
    let mut inflated_total = 0u64;
    for (dictionary, data) in streams(bytes).take(MAX_STREAMS) {
        let is_image = memchr::memmem::find(dictionary, b"/Image").is_some();
        if memchr::memmem::find(dictionary, b"/DCTDecode").is_some() {
            if is_image && report.jpeg_images.len() < MAX_IMAGES && !report.encrypted {
                report.jpeg_images.push(data.to_vec());
            }
            continue;
        }
        // Encrypted streams inflate to noise; images hold no links.
        if report.encrypted || is_image || memchr::memmem::find(dictionary, b"/FlateDecode").is_none() {
            continue;
        }
        let room = MAX_INFLATED_TOTAL
            .saturating_sub(inflated_total)
            .min(MAX_STREAM_BYTES)
            .min(*allowance);
        if room == 0 {
            break;
        }
        let mut out = Vec::new();
        // A damaged stream yields what inflated before the damage; that is still worth reading.
        let _ = flate2::read::ZlibDecoder::new(data).take(room).read_to_end(&mut out);
        inflated_total += out.len() as u64;
        *allowance = allowance.saturating_sub(out.len() as u64);
        texts.push(out.into());
    }
    let mut keys_seen = 0;
    for text in &texts {
        // `/J#61vaScript` is `/JavaScript` to a reader: names are compared with escapes undone.
        let text = unescape_names(text);
        let text = text.as_ref();
        for found in active.captures_iter(text).take(100) {
            match &found[1] {
                b"Launch" => report.launch = Some("PDF /Launch action".into()),
                _ => report.javascript = true,
            }
            if report.launch.is_some() && report.javascript {
                break;
            }
        }
        for found in uri.captures_iter(text) {
            keys_seen += 1;
            if report.links.len() >= MAX_LINKS || keys_seen > MAX_URI_KEYS {
                break;
            }
            let start = found.get(1).map_or(0, |m| m.start());
            let value = match &found[1] {
                b"(" => literal_string(&text[start..]),
                _ => hex_string(&text[start..]),
            };
            let url = String::from_utf8_lossy(&value).trim().to_string();
            if !url.is_empty() && !report.links.contains(&url) {
                report.links.push(url);
            }
        }
    }
    report
}

/// Every `stream … endstream` with the dictionary before it.
fn streams(bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let found = memchr::memmem::find(&bytes[at..], b"stream")? + at;
            at = found + 6;
            // `endstream` contains `stream`: only a keyword after a dictionary's `>>` opens one.
            let before = bytes[..found].trim_ascii_end();
            if !before.ends_with(b">>") {
                continue;
            }
            let mut start = found + 6;
            if bytes.get(start) == Some(&b'\r') {
                start += 1;
            }
            if bytes.get(start) == Some(&b'\n') {
                start += 1;
            }
            let end = memchr::memmem::find(&bytes[start..], b"endstream").map_or(bytes.len(), |e| start + e);
            let dictionary_start = memchr::memmem::rfind(&before[before.len().saturating_sub(4096)..], b"<<")
                .map_or(0, |d| before.len().saturating_sub(4096) + d);
            let dictionary = &before[dictionary_start..];
            at = end;
            return Some((dictionary, &bytes[start..end]));
        }
    })
}

/// The text with `#hh` escapes inside names (`/J#61vaScript`) undone; strings are left as written.
/// Borrowed when there is no escape, which is almost always.
fn unescape_names(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'#', text).is_none() {
        return text.into();
    }
    let delimiter = |b: u8| b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b);
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(text.len());
    let mut in_name = false;
    let mut at = 0;
    while at < text.len() {
        let byte = text[at];
        if byte == b'(' {
            // A literal string is copied as written: its slashes are not names.
            let end = literal_end(text, at);
            out.extend_from_slice(&text[at..end]);
            at = end;
            in_name = false;
            continue;
        }
        if byte == b'/' {
            in_name = true;
        } else if delimiter(byte) {
            in_name = false;
        }
        if in_name
            && byte == b'#'
            && let (Some(high), Some(low)) = (
                text.get(at + 1).copied().and_then(hex),
                text.get(at + 2).copied().and_then(hex),
            )
        {
            out.push(high << 4 | low);
            at += 3;
            continue;
        }
        out.push(byte);
        at += 1;
    }
    out.into()
}

/// Where the literal string starting at `(` ends: past its balancing `)`, backslash escapes
/// skipped; the end of the text for an unbalanced one.
fn literal_end(text: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut at = start;
    while at < text.len() {
        match text[at] {
            b'\\' => at += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
        at += 1;
    }
    text.len()
}

/// A PDF literal string starting at `(`: balanced parentheses and backslash escapes.
fn literal_string(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut bytes = text.iter().copied().take(8192).peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'(' => {
                depth += 1;
                if depth > 1 {
                    out.push(byte);
                }
            }
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
                out.push(byte);
            }
            b'\\' => match bytes.next() {
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                Some(b't') => out.push(b'\t'),
                Some(digit @ b'0'..=b'7') => {
                    let mut value = u32::from(digit - b'0');
                    for _ in 0..2 {
                        match bytes.peek() {
                            Some(&d @ b'0'..=b'7') => {
                                value = value * 8 + u32::from(d - b'0');
                                bytes.next();
                            }
                            _ => break,
                        }
                    }
                    out.push(value as u8);
                }
                Some(b'\r' | b'\n') => {}
                Some(other) => out.push(other),
                None => break,
            },
            _ => out.push(byte),
        }
    }
    out
}

/// A PDF hex string starting at `<`.
fn hex_string(text: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = text
        .iter()
        .skip(1)
        .take(8192)
        .take_while(|&&b| b != b'>')
        .filter_map(|&b| (b as char).to_digit(16).map(|d| d as u8))
        .collect();
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_plain_and_compressed_objects() {
        let plain = b"%PDF-1.4\n1 0 obj << /Type /Annot /A << /S /URI /URI (https://a.test/x\\(1\\)) >> >> endobj\n";
        assert_eq!(inspect(plain, &mut u64::MAX.clone()).links, vec!["https://a.test/x(1)"]);

        let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(
            &mut deflate,
            b"<< /A << /S /URI /URI <68747470733A2F2F622E746573742F> >> >>",
        )
        .unwrap();
        let stream = deflate.finish().unwrap();
        let mut compressed = b"%PDF-1.5\n5 0 obj << /Type /ObjStm /Filter /FlateDecode /Length 9 >>\nstream\n".to_vec();
        compressed.extend_from_slice(&stream);
        compressed.extend_from_slice(b"\nendstream\nendobj\n");
        let mut allowance = 1 << 20;
        let report = inspect(&compressed, &mut allowance);
        assert!(allowance < 1 << 20, "inflation is charged to the message");
        assert_eq!(report.links, vec!["https://b.test/"]);
        assert!(!report.encrypted);
    }

    #[test]
    fn escaped_names_are_read_as_names() {
        let pdf = b"%PDF-1.6\n1 0 obj << /OpenAction << /S /J#61vaScript /JS (x) >> /A << /S /U#52I /U#52I (https://a.test/#41) >> >>\n";
        let report = inspect(pdf, &mut u64::MAX.clone());
        assert!(report.javascript);
        assert_eq!(report.links, vec!["https://a.test/#41"], "strings keep their #");
        let pdf = b"%PDF-1.6\ntrailer << /Root 1 0 R /#45ncrypt 9 0 R >>\n";
        assert!(inspect(pdf, &mut u64::MAX.clone()).encrypted);
    }

    #[test]
    fn encryption_and_actions() {
        let pdf = b"%PDF-1.6\ntrailer << /Root 1 0 R /Encrypt 9 0 R >>\n";
        assert!(inspect(pdf, &mut u64::MAX.clone()).encrypted);
        let pdf = b"%PDF-1.6\n1 0 obj << /OpenAction << /S /JavaScript /JS (app.alert(1)) >> >>\n";
        let report = inspect(pdf, &mut u64::MAX.clone());
        assert!(report.javascript && report.launch.is_none());
        let pdf = b"%PDF-1.6\n1 0 obj << /OpenAction << /S /Launch /F (cmd.exe) >> >>\n";
        assert_eq!(
            inspect(pdf, &mut u64::MAX.clone()).launch.as_deref(),
            Some("PDF /Launch action")
        );
    }
}
