//! Reading a DATA body safely. Only `<CR><LF>.<CR><LF>` ends it: a dot line after a bare LF or CR
//! (`<LF>.<LF>`, `<LF>.<CR><LF>`, `<CR>.<CR>`) is ordinary content, so a message cannot smuggle a
//! second one past us (SMTP smuggling). Bare LF, bare CR and NUL are recorded as flaws; the
//! session applies the configured policy (reject, or normalize to CRLF / strip).

use memchr::{memchr, memchr2};

/// What was wrong with a body, for the policy to judge.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flaws {
    pub bare_lf: bool,
    pub bare_cr: bool,
    pub nul: bool,
    /// The body passed the size limit; the rest was read and thrown away.
    pub too_big: bool,
}

/// Incremental DATA reader: feed it what arrives, it writes the unstuffed body (with bare line
/// ends normalized to CRLF and NULs removed; the flaws say whether that happened).
pub struct DataReader {
    partial: Vec<u8>,
    after_crlf: bool,
    limit: usize,
    pub flaws: Flaws,
}

impl DataReader {
    pub fn new(limit: usize) -> Self {
        Self {
            partial: Vec::new(),
            after_crlf: true,
            limit,
            flaws: Flaws::default(),
        }
    }

    /// Consumes bytes from `input`; returns how many were used and whether the end was reached.
    /// Bytes after the terminating dot line are left for the command reader (pipelining).
    pub fn ingest(&mut self, input: &[u8], body: &mut Vec<u8>) -> (usize, bool) {
        let mut position = 0;
        while position < input.len() {
            let Some(newline) = memchr(b'\n', &input[position..]) else {
                self.partial.extend_from_slice(&input[position..]);
                if self.partial.len() > self.limit {
                    // A line without end longer than the whole limit: keep the flag, not the bytes.
                    self.flaws.too_big = true;
                    self.partial.clear();
                }
                return (input.len(), false);
            };
            let line_end = position + newline + 1;
            let done = if self.partial.is_empty() {
                self.line(&input[position..line_end], body)
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&input[position..line_end]);
                let done = self.line(&line, body);
                line.clear();
                self.partial = line;
                done
            };
            position = line_end;
            if done {
                return (position, true);
            }
        }
        (position, false)
    }

    /// One complete line, with its LF. Returns true for the terminating dot line.
    fn line(&mut self, line: &[u8], body: &mut Vec<u8>) -> bool {
        let crlf = line.ends_with(b"\r\n");
        if self.after_crlf && line == b".\r\n" {
            return true;
        }
        let mut content = &line[..line.len() - if crlf { 2 } else { 1 }];
        if !crlf {
            self.flaws.bare_lf = true;
        }
        if self.after_crlf && content.first() == Some(&b'.') {
            content = &content[1..];
        }
        self.after_crlf = crlf;
        if body.len() + content.len() + 2 > self.limit {
            self.flaws.too_big = true;
            return false;
        }
        push_normalized(content, body, &mut self.flaws);
        body.extend_from_slice(b"\r\n");
        false
    }
}

/// Appends `content` (a line without its end), turning bare CRs into CRLF and dropping NULs, and
/// records that it did.
fn push_normalized(content: &[u8], body: &mut Vec<u8>, flaws: &mut Flaws) {
    let mut rest = content;
    while let Some(at) = memchr2(b'\r', 0, rest) {
        body.extend_from_slice(&rest[..at]);
        if rest[at] == b'\r' {
            flaws.bare_cr = true;
            body.extend_from_slice(b"\r\n");
        } else {
            flaws.nul = true;
        }
        rest = &rest[at + 1..];
    }
    body.extend_from_slice(rest);
}

/// The same normalization for a BDAT body, which has no dot lines: bare LF and CR become CRLF,
/// NULs are dropped, and the flaws say what was found.
pub fn normalize_chunked(message: &[u8]) -> (Vec<u8>, Flaws) {
    let mut flaws = Flaws::default();
    let mut body = Vec::with_capacity(message.len() + 64);
    let mut position = 0;
    while position < message.len() {
        let (line, end, next) = match memchr(b'\n', &message[position..]) {
            Some(at) => {
                let end = position + at;
                if end > position && message[end - 1] == b'\r' {
                    (&message[position..end - 1], true, end + 1)
                } else {
                    flaws.bare_lf = true;
                    (&message[position..end], true, end + 1)
                }
            }
            None => (&message[position..], false, message.len()),
        };
        push_normalized(line, &mut body, &mut flaws);
        if end {
            body.extend_from_slice(b"\r\n");
        }
        position = next;
    }
    (body, flaws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> (Vec<u8>, bool, Flaws, usize) {
        let mut reader = DataReader::new(1 << 20);
        let mut body = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            let (used, done) = reader.ingest(chunk, &mut body);
            if done {
                return (body, true, reader.flaws, index * 1000 + used);
            }
        }
        (body, false, reader.flaws, 0)
    }

    #[test]
    fn ends_only_on_crlf_dot_crlf_in_any_split() {
        let input = b"Subject: a\r\n\r\n..leading dot\r\nbody\r\n.\r\nMAIL FROM:<x>\r\n";
        for split in 0..input.len() {
            let (body, done, flaws, _) = read_all(&[&input[..split], &input[split..]]);
            assert!(done, "split {split}");
            assert_eq!(body, b"Subject: a\r\n\r\n.leading dot\r\nbody\r\n");
            assert_eq!(flaws, Flaws::default());
        }
        let (_, done, _, used) = read_all(&[input]);
        assert!(done);
        assert_eq!(&input[used..], b"MAIL FROM:<x>\r\n");
    }

    #[test]
    fn smuggling_sequences_do_not_end_data() {
        for smuggle in [
            &b"a\n.\nMAIL FROM:<evil>\r\n"[..],
            b"a\n.\r\nMAIL FROM:<evil>\r\n",
            b"a\r.\r\nMAIL FROM:<evil>\r\n",
            b"a\r\n.\nMAIL FROM:<evil>\r\n",
            b"a\r\n.\r\rMAIL FROM:<evil>\r\n",
        ] {
            let (body, done, flaws, _) = read_all(&[smuggle]);
            assert!(!done, "{:?} ended DATA", String::from_utf8_lossy(smuggle));
            assert!(flaws.bare_lf || flaws.bare_cr);
            assert!(body.windows(4).any(|w| w == b"MAIL"));
        }
    }

    #[test]
    fn flaws_and_limit() {
        let (body, done, flaws, _) = read_all(&[b"a\x00b\r\nc\rd\r\n.\r\n"]);
        assert!(done);
        assert!(flaws.nul && flaws.bare_cr && !flaws.bare_lf);
        assert_eq!(body, b"ab\r\nc\r\nd\r\n");
        let mut reader = DataReader::new(10);
        let mut body = Vec::new();
        let (_, done) = reader.ingest(b"0123456789abcdef\r\nmore\r\n.\r\n", &mut body);
        assert!(done && reader.flaws.too_big);
        let (body, flaws) = normalize_chunked(b"a\nb\r\nc");
        assert_eq!(body, b"a\r\nb\r\nc");
        assert!(flaws.bare_lf);
    }
}
