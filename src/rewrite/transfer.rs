//! Content-Transfer-Encodings: decode a part's body, and encode it again the way it came
//! (quoted-printable lines of at most 76 octets, base64 wrapped at the original width).

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use super::mime::{line_end_of, trim_eol};

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
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    LENIENT_BASE64.decode(compact).map_err(|_| InvalidBase64)
}

/// Encodes base64 in lines of `line_len` characters (0: one line), each ended by `eol`;
/// `trailing_eol` says whether the last line has one too.
pub fn encode_base64(data: &[u8], line_len: usize, eol: &[u8], trailing_eol: bool) -> Vec<u8> {
    let encoded = general_purpose::STANDARD.encode(data);
    let line_len = if line_len == 0 {
        encoded.len().max(1)
    } else {
        line_len
    };
    let mut out =
        Vec::with_capacity(encoded.len() + encoded.len() / line_len * eol.len() + eol.len());
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

/// The wrap width of an encoded base64 body: its first line when it has several, else 76.
pub fn base64_line_len(body: &[u8]) -> usize {
    let first_end = line_end_of(body, 0);
    if first_end >= body.len() {
        76
    } else {
        trim_eol(&body[..first_end]).len().max(4)
    }
}

/// Decodes quoted-printable. Hard line breaks keep their bytes; soft breaks (`=` at the end of a
/// line, optionally followed by white space) disappear; malformed `=` sequences stay literal.
pub fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut pos = 0;
    while pos < body.len() {
        let end = line_end_of(body, pos);
        let line = &body[pos..end];
        let content = trim_eol(line);
        let eol = &line[content.len()..];
        let trimmed_len = content
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |i| i + 1);
        let soft = trimmed_len > 0 && content[trimmed_len - 1] == b'=';
        let text = if soft {
            &content[..trimmed_len - 1]
        } else {
            content
        };
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'='
                && let (Some(h), Some(l)) = (
                    text.get(i + 1).and_then(hex_value),
                    text.get(i + 2).and_then(hex_value),
                )
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            out.push(text[i]);
            i += 1;
        }
        if !soft {
            out.extend_from_slice(eol);
        }
        pos = end;
    }
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
        let literal =
            matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !at_line_end);
        let width = if literal { 1 } else { 3 };
        // Keep room for the soft-break `=` unless this is the line's last character.
        let room = if at_line_end {
            QP_LINE_MAX
        } else {
            QP_LINE_MAX - 1
        };
        if line_len + width > room {
            out.push(b'=');
            out.extend_from_slice(eol);
            line_len = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        line_len += width;
        i += 1;
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// True when some line of `data` is longer than SMTP's 998-octet limit.
pub fn has_overlong_line(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n')
        .any(|line| trim_eol(line).len() > 998)
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
                    encoded
                        .split(|&b| b == b'\n')
                        .all(|l| trim_eol(l).len() <= 76),
                    "{encoded:?}"
                );
                assert_eq!(decode_quoted_printable(&encoded), sample);
            }
        }
    }

    #[test]
    fn base64_wraps_like_the_original() {
        let encoded = encode_base64(&[7u8; 100], 60, b"\r\n", true);
        assert_eq!(base64_line_len(&encoded), 60);
        assert_eq!(decode_base64(&encoded).unwrap(), vec![7u8; 100]);
        assert_eq!(decode_base64(b"!!!notbase64"), Err(InvalidBase64));
    }
}
