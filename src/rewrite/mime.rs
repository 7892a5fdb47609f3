//! Just enough MIME to find parts by their byte ranges: header blocks, `Content-Type` and
//! `Content-Transfer-Encoding`, and multipart boundaries. Everything works on offsets into the
//! original bytes so untouched parts are copied through byte for byte.

use std::ops::Range;

use memchr::memmem;

/// One parsed header block.
#[derive(Debug, Default)]
pub struct Headers {
    /// Offset where the body starts (after the blank line), relative to the entity.
    pub body_start: usize,
    /// Whether a blank line ended the header block at all.
    pub complete: bool,
    /// `(lowercased name, unfolded value, range of the whole field incl. its line end)`.
    pub fields: Vec<(String, String, Range<usize>)>,
}

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }
}

/// Reads the header block at the start of `entity`. Lines that are not header fields (no colon)
/// end the block, as lenient parsers do, so broken messages still expose their body.
pub fn parse_headers(entity: &[u8]) -> Headers {
    let mut headers = Headers::default();
    let mut pos = 0;
    while pos < entity.len() {
        let line_end = line_end_of(entity, pos);
        let line = trim_eol(&entity[pos..line_end]);
        if line.is_empty() {
            headers.body_start = line_end;
            headers.complete = true;
            return headers;
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            // Not a field: treat it as the start of the body.
            headers.body_start = pos;
            return headers;
        };
        // RFC 5322 §4.5 (obs-optional): white space may stand between the name and the colon.
        let name = trim_trailing_wsp(&line[..colon]);
        if name.is_empty() || name.iter().any(|&b| b <= b' ' || b >= 0x7f) {
            headers.body_start = pos;
            return headers;
        }
        let mut value = String::from_utf8_lossy(&line[colon + 1..]).into_owned();
        let mut end = line_end;
        while end < entity.len() && matches!(entity[end], b' ' | b'\t') {
            let next = line_end_of(entity, end);
            value.push_str(&String::from_utf8_lossy(trim_eol(&entity[end..next])));
            end = next;
        }
        headers.fields.push((
            String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
            value.trim().to_string(),
            pos..end,
        ));
        pos = end;
    }
    headers.body_start = entity.len();
    headers
}

fn trim_trailing_wsp(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// Offset just past the line feed of the line starting at `from` (or the end of input).
pub fn line_end_of(bytes: &[u8], from: usize) -> usize {
    memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |i| from + i + 1)
}

pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A parsed `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub kind: String,
    pub subtype: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn text_plain() -> Self {
        Self {
            kind: "text".into(),
            subtype: "plain".into(),
            params: Vec::new(),
        }
    }

    pub fn message_rfc822() -> Self {
        Self {
            kind: "message".into(),
            subtype: "rfc822".into(),
            params: Vec::new(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Parses `type/subtype; name=value; name="quoted"`. `None` when there is no `type/subtype`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut rest = value.trim();
        let main_end = rest.find(';').unwrap_or(rest.len());
        let (kind, subtype) = rest[..main_end].split_once('/')?;
        let kind = strip_comment(kind).trim().to_ascii_lowercase();
        let subtype = strip_comment(subtype).trim().to_ascii_lowercase();
        if kind.is_empty() || subtype.is_empty() {
            return None;
        }
        rest = &rest[main_end..];
        let mut params = Vec::new();
        while let Some(after) = rest.strip_prefix(';') {
            let after = after.trim_start();
            let Some(eq) = after.find('=') else { break };
            let name = after[..eq].trim().to_ascii_lowercase();
            let value_start = after[eq + 1..].trim_start();
            let (value, remaining) = if let Some(quoted) = value_start.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            } else {
                let end = value_start.find(';').unwrap_or(value_start.len());
                (value_start[..end].trim().to_string(), &value_start[end..])
            };
            params.push((name.trim_end_matches('*').to_string(), value));
            rest = remaining.trim_start();
            if !rest.starts_with(';') {
                rest = rest.find(';').map_or("", |i| &rest[i..]);
            }
        }
        Some(Self { kind, subtype, params })
    }
}

fn strip_comment(s: &str) -> &str {
    s.split('(').next().unwrap_or(s)
}

/// The parts of a multipart body, as ranges into `body`. Returns `None` when no delimiter line is
/// found. A missing close delimiter (truncated message) ends the last part at the end of `body`.
pub fn split_multipart(body: &[u8], boundary: &str) -> Option<Vec<Range<usize>>> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());
    let finder = memmem::Finder::new(&delimiter);
    let mut parts = Vec::new();
    let mut current_start: Option<usize> = None;
    let mut search_from = 0;
    while let Some(found) = finder.find(&body[search_from..]) {
        let at = search_from + found;
        search_from = at + delimiter.len();
        let at_line_start = at == 0 || body[at - 1] == b'\n';
        if !at_line_start {
            continue;
        }
        let after = &body[at + delimiter.len()..];
        let is_close = after.starts_with(b"--");
        let tail = if is_close { &after[2..] } else { after };
        let line_rest_end = line_end_of(tail, 0);
        if !trim_eol(&tail[..line_rest_end])
            .iter()
            .all(|b| matches!(b, b' ' | b'\t'))
        {
            // `--boundaryX`: a longer boundary that merely starts with ours.
            continue;
        }
        if let Some(start) = current_start.take() {
            // A delimiter straight after another one is an empty part: its line break belongs to
            // the delimiter, so the end must not fall before the start.
            parts.push(start..part_end_before(body, at).max(start));
        }
        if is_close {
            return Some(parts);
        }
        let next_line = at + delimiter.len() + line_rest_end;
        current_start = Some(next_line.min(body.len()));
    }
    match current_start {
        Some(start) => {
            parts.push(start..body.len());
            Some(parts)
        }
        None if parts.is_empty() => None,
        None => Some(parts),
    }
}

/// The line break before a delimiter belongs to the delimiter.
fn part_end_before(body: &[u8], delimiter_at: usize) -> usize {
    let mut end = delimiter_at;
    if end > 0 && body[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && body[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

/// The line ending a part uses: CRLF if it has any, else LF.
pub fn line_ending(bytes: &[u8]) -> &'static [u8] {
    if memmem::find(bytes, b"\r\n").is_some() {
        b"\r\n"
    } else {
        b"\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_params() {
        let ct = ContentType::parse("Multipart/Mixed; boundary=\"a\\\"b\"; charset=utf-8 (c)").unwrap();
        assert_eq!((ct.kind.as_str(), ct.subtype.as_str()), ("multipart", "mixed"));
        assert_eq!(ct.param("boundary"), Some("a\"b"));
        assert_eq!(ct.param("charset"), Some("utf-8 (c)"));
    }

    #[test]
    fn multipart_parts() {
        let body = b"pre\r\n--b\r\none\r\n--bb\r\n--b \r\ntwo\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, "b").unwrap();
        let texts: Vec<&[u8]> = parts.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(texts, vec![&b"one\r\n--bb"[..], &b"two"[..]]);
    }

    #[test]
    fn empty_parts_are_empty_ranges() {
        for body in [&b"--b\n--b\nx\n--b--\n"[..], b"--b\r\n--b--\r\n", b"--b\n--b\n--b\n"] {
            let parts = split_multipart(body, "b").unwrap();
            assert!(
                parts.iter().all(|r| r.start <= r.end && r.end <= body.len()),
                "{parts:?}"
            );
            assert!(parts[0].is_empty());
        }
    }

    #[test]
    fn obsolete_space_before_colon() {
        let headers = parse_headers(b"Subject : hi\nFrom\t: a@b\n\nbody");
        let names: Vec<&str> = headers.fields.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["subject", "from"]);
        assert_eq!(headers.get("subject"), Some("hi"));
    }

    #[test]
    fn truncated_multipart_runs_to_end() {
        let body = b"--b\none\n--b\ntwo";
        let parts = split_multipart(body, "b").unwrap();
        assert_eq!(parts, vec![4..7, 12..15]);
    }
}
