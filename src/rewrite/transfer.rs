//! Content-Transfer-Encodings: decode a part's body, and encode it again the way it came
//! (quoted-printable lines of at most 76 octets, base64 wrapped at the original width).

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use std::ops::Range;

use super::mime::{line_end_of, line_ending, trim_eol};

/// The transfer encodings we read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// 7bit, 8bit, binary or absent: the body is the content.
    Identity,
    QuotedPrintable,
    Base64,
}

impl TransferEncoding {
    /// `None` for encodings we cannot decode (x-uuencode and the like).
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        let value = value.map(|v| v.split('(').next().unwrap_or(v).trim().to_ascii_lowercase());
        match value.as_deref() {
            None | Some("" | "7bit" | "8bit" | "binary") => Some(Self::Identity),
            Some("quoted-printable") => Some(Self::QuotedPrintable),
            Some("base64") => Some(Self::Base64),
            Some(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid base64 content")]
pub struct InvalidBase64;

const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64, ignoring line breaks and white space. Any other stray byte is an error: we
/// would rather leave such a part alone than guess.
pub fn decode_base64(body: &[u8]) -> Result<Vec<u8>, InvalidBase64> {
    let compact: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    LENIENT_BASE64.decode(compact).map_err(|_| InvalidBase64)
}

/// Encodes base64 in lines of `line_len` characters (0: one line), each ended by `eol`;
/// `trailing_eol` says whether the last line has one too.
pub fn encode_base64(data: &[u8], line_len: usize, eol: &[u8], trailing_eol: bool) -> Vec<u8> {
    let encoded = general_purpose::STANDARD.encode(data);
    let line_len = if line_len == 0 { encoded.len().max(1) } else { line_len };
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / line_len * eol.len() + eol.len());
    for (i, chunk) in encoded.as_bytes().chunks(line_len).enumerate() {
        if i > 0 {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(chunk);
    }
    if trailing_eol {
        out.extend_from_slice(eol);
    }
    out
}

/// The wrap width of an encoded base64 body: its first non-blank line when it has several, else 76.
pub fn base64_line_len(body: &[u8]) -> usize {
    let mut lines = body.split(|&b| b == b'\n').map(trim_eol).filter(|l| !l.is_empty());
    match (lines.next(), lines.next()) {
        (Some(first), Some(_)) => first.len().max(4),
        _ => 76,
    }
}

/// The blank lines and white space before the first base64 character, kept as they were.
pub fn leading_whitespace(body: &[u8]) -> &[u8] {
    &body[..body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len())]
}

/// One hard line of a quoted-printable body: its encoded bytes (soft breaks included) and the
/// range of the decoded content they stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QpLine {
    pub encoded: Range<usize>,
    pub decoded: Range<usize>,
}

/// Decodes quoted-printable. Hard line breaks keep their bytes; soft breaks (`=` at the end of a
/// line) and trailing white space disappear; malformed `=` sequences stay literal.
pub fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    decode_quoted_printable_lines(body).0
}

/// [`decode_quoted_printable`], also returning where each hard line sits in the body and content.
pub fn decode_quoted_printable_lines(body: &[u8]) -> (Vec<u8>, Vec<QpLine>) {
    let mut out = Vec::with_capacity(body.len());
    let mut lines = Vec::new();
    decode_qp_range(body, 0..body.len(), &mut out, None, Some(&mut lines));
    (out, lines)
}

/// Where each decoded byte came from: its first encoded byte and how many encoded bytes it took
/// (1, or 3 for `=XX`). Five bytes per decoded byte.
#[derive(Default)]
struct QpSpans {
    starts: Vec<u32>,
    widths: Vec<u8>,
}

impl QpSpans {
    fn push(&mut self, start: usize, width: usize) {
        self.starts.push(start as u32);
        self.widths.push(width as u8);
    }

    fn start(&self, decoded: usize) -> usize {
        self.starts[decoded] as usize
    }

    fn end(&self, decoded: usize) -> usize {
        self.starts[decoded] as usize + usize::from(self.widths[decoded])
    }
}

/// The decoder proper, over `range` of `body`. `spans` receives, for each decoded byte, the
/// encoded bytes it came from; `lines` receives the hard lines.
fn decode_qp_range(
    body: &[u8],
    range: Range<usize>,
    out: &mut Vec<u8>,
    mut spans: Option<&mut QpSpans>,
    mut lines: Option<&mut Vec<QpLine>>,
) {
    let (mut line_encoded, mut line_decoded) = (range.start, out.len());
    let mut pos = range.start;
    while pos < range.end {
        let end = line_end_of(&body[..range.end], pos);
        let content = trim_eol(&body[pos..end]);
        let eol = pos + content.len()..end;
        let trimmed_len = content
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |i| i + 1);
        let soft = trimmed_len > 0 && content[trimmed_len - 1] == b'=';
        // Trailing white space is transport padding (RFC 2045 6.7): decoders drop it.
        let text_len = if soft { trimmed_len - 1 } else { trimmed_len };
        let mut i = 0;
        while i < text_len {
            let (byte, width) = match (
                content.get(i + 1).and_then(hex_value),
                content.get(i + 2).and_then(hex_value),
            ) {
                (Some(h), Some(l)) if content[i] == b'=' && i + 2 < text_len => (h << 4 | l, 3),
                _ => (content[i], 1),
            };
            out.push(byte);
            if let Some(spans) = spans.as_deref_mut() {
                spans.push(pos + i, width);
            }
            i += width;
        }
        pos = end;
        if !soft {
            for at in eol {
                out.push(body[at]);
                if let Some(spans) = spans.as_deref_mut() {
                    spans.push(at, 1);
                }
            }
        }
        if (!soft || pos == range.end)
            && let Some(lines) = lines.as_deref_mut()
        {
            lines.push(QpLine {
                encoded: line_encoded..pos,
                decoded: line_decoded..out.len(),
            });
            (line_encoded, line_decoded) = (pos, out.len());
        }
    }
}

/// Applies `edits` (sorted, non-overlapping ranges of the decoded content) to a quoted-printable
/// body by splicing inside the encoded bytes: everything outside the edited ranges keeps its
/// original bytes, soft breaks, padding and oddities included. Replacements are encoded and
/// wrapped so no line passes 76 octets.
pub fn reencode_quoted_printable(body: &[u8], lines: &[QpLine], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let eol = line_ending(body);
    let mut out = Vec::with_capacity(body.len() + edits.iter().map(|(_, b)| b.len() * 11 / 10 + 8).sum::<usize>());
    let mut copied = 0;
    let mut next_line = 0;
    let mut run: Option<(usize, usize, QpSpans)> = None;
    for (range, replacement) in edits {
        // The hard lines holding this edit: their decoded bytes map back to encoded spans.
        while lines[next_line].decoded.end <= range.start {
            next_line += 1;
        }
        let mut last_line = next_line;
        while lines[last_line].decoded.end < range.end && last_line + 1 < lines.len() {
            last_line += 1;
        }
        // Consecutive edits usually sit in the same run (an HTML part is often one hard line):
        // map it once.
        if run
            .as_ref()
            .is_none_or(|(first, last, _)| (*first, *last) != (next_line, last_line))
        {
            let mut spans = QpSpans::default();
            let encoded = lines[next_line].encoded.start..lines[last_line].encoded.end;
            decode_qp_range(body, encoded, &mut Vec::new(), Some(&mut spans), None);
            run = Some((next_line, last_line, spans));
        }
        let (_, _, spans) = run.as_ref().expect("mapped above");
        let base = lines[next_line].decoded.start;
        let start = spans.start(range.start - base);
        let end = spans.end(range.end - 1 - base);
        out.extend_from_slice(&body[copied..start]);
        let mut column = out.len() - out.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        for &b in replacement {
            push_qp(
                &mut out,
                b,
                matches!(b, 33..=60 | 62..=126),
                &mut column,
                QP_LINE_MAX - 1,
                eol,
            );
        }
        // What follows on this physical line must still fit, or it moves to the next one.
        let rest = body[end..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len() - end, |i| i);
        if column + trim_eol(&body[end..end + rest + usize::from(end + rest < body.len())]).len() > QP_LINE_MAX {
            out.push(b'=');
            out.extend_from_slice(eol);
        }
        copied = end;
    }
    out.extend_from_slice(&body[copied..]);
    out
}

fn hex_value(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable line limit, `=` of a soft break included (RFC 2045).
const QP_LINE_MAX: usize = 76;

/// Encodes `data` as quoted-printable with `eol` as the hard line break. Any CR or LF that is not
/// part of an `eol` is escaped, so decoding gives back `data` exactly.
pub fn encode_quoted_printable(data: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    let mut line_len = 0;
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(eol) {
            out.extend_from_slice(eol);
            line_len = 0;
            i += eol.len();
            continue;
        }
        let b = data[i];
        let at_line_end = i + 1 == data.len() || data[i + 1..].starts_with(eol);
        let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !at_line_end);
        // Keep room for the soft-break `=` unless this is the line's last character.
        let room = if at_line_end { QP_LINE_MAX } else { QP_LINE_MAX - 1 };
        push_qp(&mut out, b, literal, &mut line_len, room, eol);
        i += 1;
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends one byte (as itself when `literal`, else `=XX`), first breaking the line with a soft
/// break if the byte would take it past `room` columns.
fn push_qp(out: &mut Vec<u8>, b: u8, literal: bool, column: &mut usize, room: usize, eol: &[u8]) {
    let width = if literal { 1 } else { 3 };
    if *column + width > room {
        out.push(b'=');
        out.extend_from_slice(eol);
        *column = 0;
    }
    if literal {
        out.push(b);
    } else {
        out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
    *column += width;
}

/// True when some line of `data` is longer than SMTP's 998-octet limit.
pub fn has_overlong_line(data: &[u8]) -> bool {
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len())) {
        if trim_eol(&data[line_start..newline]).len() > 998 {
            return true;
        }
        line_start = newline + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_round_trips() {
        let samples: [&[u8]; 5] = [
            b"plain text\r\nwith lines \r\nand = signs\ttab\t\r\n",
            b"caf\xc3\xa9 \xe2\x80\x94 bare\rcr and bare\nlf",
            &[b'x'; 300],
            b"trailing space ",
            b"",
        ];
        for sample in samples {
            for eol in [&b"\r\n"[..], b"\n"] {
                let encoded = encode_quoted_printable(sample, eol);
                assert!(
                    encoded.split(|&b| b == b'\n').all(|l| trim_eol(l).len() <= 76),
                    "{encoded:?}"
                );
                assert_eq!(decode_quoted_printable(&encoded), sample);
            }
        }
    }

    #[test]
    fn quoted_printable_reencodes_only_touched_lines() {
        let body = b"keep  \r\nsoft=\r\n break with link X here\r\nlast line=20\r\n";
        let (content, lines) = decode_quoted_printable_lines(body);
        assert_eq!(content, b"keep\r\nsoft break with link X here\r\nlast line \r\n");
        assert_eq!(lines.len(), 3);
        let x = content.iter().position(|&b| b == b'X').unwrap();
        let out = reencode_quoted_printable(body, &lines, &[(x..x + 1, b"LINK=1".to_vec())]);
        assert_eq!(
            out,
            b"keep  \r\nsoft=\r\n break with link LINK=3D1 here\r\nlast line=20\r\n"
        );
        let long = vec![b'L'; 200];
        let out = reencode_quoted_printable(body, &lines, &[(x..x + 1, long.clone())]);
        assert!(out.split(|&b| b == b'\n').all(|l| trim_eol(l).len() <= 76));
        let mut expected = content.clone();
        expected.splice(x..x + 1, long);
        assert_eq!(decode_quoted_printable(&out), expected);
    }

    #[test]
    fn base64_wraps_like_the_original() {
        let encoded = encode_base64(&[7u8; 100], 60, b"\r\n", true);
        assert_eq!(base64_line_len(&encoded), 60);
        assert_eq!(decode_base64(&encoded).unwrap(), vec![7u8; 100]);
        assert_eq!(decode_base64(b"!!!notbase64"), Err(InvalidBase64));
    }
}
