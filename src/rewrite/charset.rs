//! Charsets: decode a part's bytes to text for link finding while remembering, for every
//! character, which bytes it came from, so changes are written back into the original bytes and
//! nothing around a link is ever transcoded.

use encoding_rs::{CoderResult, Encoding, ISO_2022_JP, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Charsets we cannot map byte for byte: the ones WHATWG decodes to the replacement character
/// (ISO-2022-KR, ISO-2022-CN, HZ-GB-2312) and the ones it does not know (UTF-7, UTF-32). A part in
/// one of them is left as it is and the message flagged, except UTF-7 text with no `+` in it,
/// which is plain ASCII.
fn undecodable(label: &str, bytes: &[u8]) -> bool {
    let label = label.trim().trim_matches('"').to_ascii_lowercase();
    match label.as_str() {
        "utf-7" | "unicode-1-1-utf-7" | "csunicode11utf7" | "x-utf-7" => bytes.contains(&b'+'),
        "utf-32" | "utf-32le" | "utf-32be" | "ucs-4" | "ucs4" | "iso-10646-ucs-4" | "csucs4" => !bytes.is_empty(),
        _ => Encoding::for_label(label.as_bytes()) == Some(encoding_rs::REPLACEMENT),
    }
}

/// Picks the decoder for a part: its declared charset when we know the label; otherwise UTF-8 when
/// the bytes are valid UTF-8, else windows-1252 (which maps every byte and keeps ASCII as is).
/// `None` for a charset whose text we cannot map back to its bytes.
pub fn resolve(label: Option<&str>, bytes: &[u8]) -> Option<&'static Encoding> {
    if label.is_some_and(|l| undecodable(l, bytes)) {
        return None;
    }
    Some(guess(label, bytes))
}

fn guess(label: Option<&str>, bytes: &[u8]) -> &'static Encoding {
    if let Some(encoding) = label.and_then(|l| Encoding::for_label(l.trim().as_bytes())) {
        // `utf-16` without BOM means big-endian in MIME, but WHATWG maps the label to LE.
        if label.is_some_and(|l| l.trim().eq_ignore_ascii_case("utf-16")) {
            return match bytes {
                [0xFF, 0xFE, ..] => UTF_16LE,
                _ => UTF_16BE,
            };
        }
        return encoding;
    }
    if std::str::from_utf8(bytes).is_ok() {
        UTF_8
    } else {
        WINDOWS_1252
    }
}

/// Decoded text plus the byte range of every character in the original bytes.
pub struct MappedText {
    pub text: String,
    /// `starts[i]`: where the character that begins at text offset `i` begins in the original.
    starts: Vec<u32>,
    /// `ends[i]`: where the character that ends at text offset `i` ends in the original.
    ends: Vec<u32>,
    identity: bool,
}

impl MappedText {
    /// The original byte range of the text range `start..end` (both on character boundaries).
    pub fn original_range(&self, start: usize, end: usize) -> std::ops::Range<usize> {
        if self.identity {
            return start..end;
        }
        self.starts[start] as usize..self.ends[end] as usize
    }

    fn identity(text: String) -> Self {
        Self {
            text,
            starts: Vec::new(),
            ends: Vec::new(),
            identity: true,
        }
    }
}

/// Decodes `bytes` in `encoding`, keeping the character map. Invalid sequences become U+FFFD and
/// still map to their bytes.
pub fn decode_mapped(bytes: &[u8], encoding: &'static Encoding) -> MappedText {
    if encoding == UTF_8
        && let Ok(text) = std::str::from_utf8(bytes)
    {
        return MappedText::identity(text.to_owned());
    }
    let mut text = String::with_capacity(bytes.len() + bytes.len() / 2);
    let mut starts = Vec::with_capacity(bytes.len() + 1);
    let mut ends = Vec::with_capacity(bytes.len() + 1);
    let mut push_char = |text: &mut String, c: char, start: usize, end: usize| {
        let offset = text.len();
        text.push(c);
        starts.resize(offset + 1, 0);
        ends.resize(text.len() + 1, 0);
        starts[offset] = start as u32;
        ends[text.len()] = end as u32;
    };
    if encoding.is_single_byte() {
        let (decoded, _) = encoding.decode_without_bom_handling(bytes);
        for (i, c) in decoded.chars().enumerate() {
            push_char(&mut text, c, i, i + 1);
        }
    } else if encoding == UTF_8 {
        // Each maximal invalid sequence is one U+FFFD over exactly its own bytes, so the byte after
        // it (a space, `>`, a line end) keeps a range of its own and is never replaced with a link.
        let mut at = 0;
        for chunk in bytes.utf8_chunks() {
            for (offset, c) in chunk.valid().char_indices() {
                push_char(&mut text, c, at + offset, at + offset + c.len_utf8());
            }
            at += chunk.valid().len();
            if !chunk.invalid().is_empty() {
                push_char(&mut text, '\u{FFFD}', at, at + chunk.invalid().len());
                at += chunk.invalid().len();
            }
        }
    } else {
        // Feed one byte at a time: a character is complete when the decoder emits it.
        let mut decoder = encoding.new_decoder_without_bom_handling();
        let code_unit = if encoding == UTF_16LE || encoding == UTF_16BE {
            2
        } else {
            1
        };
        let mut buffer = [0u8; 32];
        let mut char_start = 0;
        for i in 0..=bytes.len() {
            let (input, last) = if i < bytes.len() {
                (&bytes[i..=i], false)
            } else {
                (&bytes[..0], true)
            };
            let (result, _, written, _) = decoder.decode_to_utf8(input, &mut buffer, last);
            debug_assert_eq!(result, CoderResult::InputEmpty);
            if written == 0 {
                continue;
            }
            let end = (i + 1).min(bytes.len());
            let produced = std::str::from_utf8(&buffer[..written]).unwrap_or("\u{FFFD}");
            // A malformed sequence cut short by an ASCII byte comes out as U+FFFD and that byte
            // together: the byte keeps its own range, the replacement character the bytes before.
            let (produced, ascii_tail) = match produced.as_bytes() {
                [.., last] if produced.len() > 1 && last.is_ascii() && bytes.get(i) == Some(last) && code_unit == 1 => {
                    (&produced[..produced.len() - 1], Some(*last as char))
                }
                _ => (produced, None),
            };
            let end = if ascii_tail.is_some() { i } else { end };
            for c in produced.chars() {
                // Escape sequences (ISO-2022-JP) emit nothing; they stay outside the next
                // character's range so replacing a link never removes a mode switch.
                let start = if bytes[char_start..end].contains(&0x1B) {
                    end.saturating_sub(if c.is_ascii() { code_unit } else { 2 })
                } else {
                    char_start
                };
                push_char(&mut text, c, start, end);
            }
            if let Some(c) = ascii_tail {
                push_char(&mut text, c, i, i + 1);
            }
            char_start = (i + 1).min(bytes.len());
        }
    }
    if starts.len() < text.len() + 1 {
        starts.resize(text.len() + 1, 0);
    }
    starts[text.len()] = bytes.len() as u32;
    MappedText {
        text,
        starts,
        ends,
        identity: false,
    }
}

/// Encodes replacement text (always ASCII: our links) so it can stand in the part's own bytes.
pub fn encode_ascii(text: &str, encoding: &'static Encoding) -> Vec<u8> {
    debug_assert!(text.is_ascii());
    if encoding == UTF_16LE {
        text.encode_utf16().flat_map(u16::to_le_bytes).collect()
    } else if encoding == UTF_16BE {
        text.encode_utf16().flat_map(u16::to_be_bytes).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// Whether lol_html can read the part's bytes directly.
pub fn html_reads_directly(encoding: &'static Encoding) -> bool {
    encoding.is_ascii_compatible() && encoding != ISO_2022_JP
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::{EUC_JP, SHIFT_JIS};

    fn check(encoding: &'static Encoding, text: &str) {
        let (bytes, _, _) = encoding.encode(text);
        let mapped = decode_mapped(&bytes, encoding);
        assert_eq!(mapped.text, text);
        let start = text.find("https").unwrap();
        let end = start + "https://example.com/".len();
        assert_eq!(&bytes[mapped.original_range(start, end)], b"https://example.com/");
    }

    #[test]
    fn invalid_bytes_keep_their_neighbours() {
        for (encoding, bytes) in [
            (UTF_8, &b"https://example.com/a\xC3 next"[..]),
            (UTF_8, b"https://example.com/a\xFF>"),
            (SHIFT_JIS, b"https://example.com/a\x81 next"),
            (EUC_JP, b"https://example.com/a\xA4\nnext"),
        ] {
            let mapped = decode_mapped(bytes, encoding);
            let replacement = mapped.text.find('\u{FFFD}').unwrap();
            let after = replacement + '\u{FFFD}'.len_utf8();
            let range = mapped.original_range(after, after + 1);
            assert_eq!(
                range.len(),
                1,
                "{encoding:?}: the byte after the bad one maps to itself"
            );
            assert_eq!(bytes[range.start] as char, mapped.text[after..].chars().next().unwrap());
            let link = mapped.original_range(0, "https://example.com/a".len());
            assert_eq!(&bytes[link], b"https://example.com/a");
        }
    }

    #[test]
    fn maps_links_in_japanese_charsets() {
        for encoding in [ISO_2022_JP, SHIFT_JIS, EUC_JP, UTF_8, WINDOWS_1252] {
            let text = if encoding == WINDOWS_1252 {
                "café https://example.com/ ok"
            } else {
                "詳細はhttps://example.com/をご覧ください"
            };
            check(encoding, text);
        }
    }
}
