//! The milter wire protocol (version 6, as libmilter's `mfdef.h` defines it and Postfix and
//! Sendmail speak it): length-prefixed packets, the MTA's commands parsed without copying, our
//! replies built. Every packet is bounded before it is read.

use tokio::io::{AsyncRead, AsyncReadExt};

/// The protocol version we speak.
pub const VERSION: u32 = 6;

/// The largest packet accepted. Body chunks are at most 65,535 bytes (we never negotiate bigger
/// ones); a header field is bounded by the MTA (Postfix: `header_size_limit`, 100 KiB by default).
pub const MAX_PACKET: usize = 1024 * 1024;

/// Largest body chunk we send in a `SMFIR_REPLBODY`.
pub const MAX_BODY_CHUNK: usize = 65_535;

// Actions the MTA may let us take (SMFIF_*).
pub const ACTION_ADD_HEADERS: u32 = 0x01;
pub const ACTION_CHANGE_BODY: u32 = 0x02;
pub const ACTION_ADD_RECIPIENT: u32 = 0x04;
pub const ACTION_DELETE_RECIPIENT: u32 = 0x08;
pub const ACTION_CHANGE_HEADERS: u32 = 0x10;
pub const ACTION_QUARANTINE: u32 = 0x20;

// Protocol steps (SMFIP_*): what the MTA may leave out, and which commands get no reply.
pub const STEP_NO_UNKNOWN: u32 = 0x100;
pub const STEP_NO_REPLY_HEADER: u32 = 0x80;
pub const STEP_NO_REPLY_CONNECT: u32 = 0x1000;
pub const STEP_NO_REPLY_HELO: u32 = 0x2000;
pub const STEP_NO_REPLY_MAIL: u32 = 0x4000;
pub const STEP_NO_REPLY_RCPT: u32 = 0x8000;
pub const STEP_NO_REPLY_DATA: u32 = 0x10000;
pub const STEP_NO_REPLY_UNKNOWN: u32 = 0x20000;
pub const STEP_NO_REPLY_EOH: u32 = 0x40000;
pub const STEP_NO_REPLY_BODY: u32 = 0x80000;
pub const STEP_HEADER_LEADING_SPACE: u32 = 0x100000;

// Replies (SMFIR_*).
pub const REPLY_CONTINUE: u8 = b'c';
pub const REPLY_ACCEPT: u8 = b'a';
pub const REPLY_DISCARD: u8 = b'd';
pub const REPLY_TEMPFAIL: u8 = b't';
pub const REPLY_CODE: u8 = b'y';
pub const REPLY_ADD_HEADER: u8 = b'h';
pub const REPLY_INSERT_HEADER: u8 = b'i';
pub const REPLY_CHANGE_HEADER: u8 = b'm';
pub const REPLY_REPLACE_BODY: u8 = b'b';
pub const REPLY_ADD_RECIPIENT: u8 = b'+';
pub const REPLY_DELETE_RECIPIENT: u8 = b'-';
pub const REPLY_QUARANTINE: u8 = b'q';
pub const REPLY_OPTIONS: u8 = b'O';
pub const REPLY_PROGRESS: u8 = b'p';

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("packet of {0} bytes is over the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    #[error("empty packet")]
    Empty,
    #[error("malformed {command} packet")]
    Malformed { command: char },
    #[error("unknown command {0:#04x}")]
    UnknownCommand(u8),
}

/// One command from the MTA, borrowing the packet it came in.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Negotiate {
        version: u32,
        actions: u32,
        steps: u32,
    },
    /// Macros for the command `stage` that follows.
    Macros {
        stage: u8,
        pairs: Vec<(&'a [u8], &'a [u8])>,
    },
    Connect {
        hostname: &'a [u8],
        family: u8,
        address: &'a [u8],
    },
    Helo(&'a [u8]),
    /// MAIL FROM: the address, then ESMTP arguments.
    Mail(Vec<&'a [u8]>),
    Rcpt(Vec<&'a [u8]>),
    Data,
    Header {
        name: &'a [u8],
        value: &'a [u8],
    },
    EndOfHeaders,
    Body(&'a [u8]),
    /// End of the message; may carry a last piece of body.
    EndOfBody(&'a [u8]),
    Abort,
    Quit,
    /// Quit this message's connection state; another session follows on the same connection.
    QuitKeepConnection,
    Unknown(&'a [u8]),
}

impl Command<'_> {
    /// The stage letter of commands that take a reply unless the MTA agreed otherwise.
    pub fn code(&self) -> u8 {
        match self {
            Command::Negotiate { .. } => b'O',
            Command::Macros { .. } => b'D',
            Command::Connect { .. } => b'C',
            Command::Helo(_) => b'H',
            Command::Mail(_) => b'M',
            Command::Rcpt(_) => b'R',
            Command::Data => b'T',
            Command::Header { .. } => b'L',
            Command::EndOfHeaders => b'N',
            Command::Body(_) => b'B',
            Command::EndOfBody(_) => b'E',
            Command::Abort => b'A',
            Command::Quit => b'Q',
            Command::QuitKeepConnection => b'K',
            Command::Unknown(_) => b'U',
        }
    }
}

/// Reads one packet into `buffer` (reused between packets); `None` at a clean end of stream
/// before a packet starts.
pub async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut Vec<u8>,
    first_byte_wait: std::time::Duration,
    rest_wait: std::time::Duration,
) -> std::io::Result<Option<Result<(), ProtocolError>>> {
    let mut length = [0u8; 4];
    let first = match tokio::time::timeout(first_byte_wait, reader.read(&mut length)).await {
        Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle")),
        Ok(read) => read?,
    };
    if first == 0 {
        return Ok(None);
    }
    let rest = async {
        reader.read_exact(&mut length[first..]).await?;
        let size = u32::from_be_bytes(length) as usize;
        if size == 0 {
            return Ok(Err(ProtocolError::Empty));
        }
        if size > MAX_PACKET {
            return Ok(Err(ProtocolError::TooLarge(size)));
        }
        buffer.clear();
        buffer.resize(size, 0);
        reader.read_exact(buffer).await?;
        Ok(Ok(()))
    };
    match tokio::time::timeout(rest_wait, rest).await {
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "packet not finished in time",
        )),
        Ok(result) => result.map(Some),
    }
}

/// Parses a packet read by [`read_packet`].
pub fn parse(packet: &[u8]) -> Result<Command<'_>, ProtocolError> {
    let (&code, data) = packet.split_first().ok_or(ProtocolError::Empty)?;
    let malformed = || ProtocolError::Malformed { command: code as char };
    let be32 = |at: usize| -> Result<u32, ProtocolError> {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(malformed)
    };
    Ok(match code {
        b'O' => Command::Negotiate {
            version: be32(0)?,
            actions: be32(4)?,
            steps: be32(8)?,
        },
        b'D' => {
            let (&stage, rest) = data.split_first().ok_or_else(malformed)?;
            let strings = strings(rest).ok_or_else(malformed)?;
            if strings.len() % 2 != 0 {
                return Err(malformed());
            }
            Command::Macros {
                stage,
                pairs: strings.chunks(2).map(|pair| (pair[0], pair[1])).collect(),
            }
        }
        b'C' => {
            let end = memchr::memchr(0, data).ok_or_else(malformed)?;
            let hostname = &data[..end];
            let rest = &data[end + 1..];
            let (&family, rest) = rest.split_first().ok_or_else(malformed)?;
            let address = if family == b'U' {
                &[][..]
            } else {
                // Port (2 bytes), then the address, NUL-terminated.
                let rest = rest.get(2..).ok_or_else(malformed)?;
                let end = memchr::memchr(0, rest).ok_or_else(malformed)?;
                &rest[..end]
            };
            Command::Connect {
                hostname,
                family,
                address,
            }
        }
        b'H' => Command::Helo(one_string(data).ok_or_else(malformed)?),
        b'M' => Command::Mail(strings(data).filter(|s| !s.is_empty()).ok_or_else(malformed)?),
        b'R' => Command::Rcpt(strings(data).filter(|s| !s.is_empty()).ok_or_else(malformed)?),
        b'T' => Command::Data,
        b'L' => {
            let fields = strings(data).ok_or_else(malformed)?;
            if fields.len() != 2 {
                return Err(malformed());
            }
            Command::Header {
                name: fields[0],
                value: fields[1],
            }
        }
        b'N' => Command::EndOfHeaders,
        b'B' => Command::Body(data),
        b'E' => Command::EndOfBody(data),
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitKeepConnection,
        b'U' => Command::Unknown(one_string(data).unwrap_or(data)),
        other => return Err(ProtocolError::UnknownCommand(other)),
    })
}

/// NUL-terminated strings filling `data` exactly.
fn strings(data: &[u8]) -> Option<Vec<&[u8]>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    if *data.last()? != 0 {
        return None;
    }
    Some(data[..data.len() - 1].split(|&b| b == 0).collect())
}

fn one_string(data: &[u8]) -> Option<&[u8]> {
    let strings = strings(data)?;
    (strings.len() == 1).then(|| strings[0])
}

/// A reply packet: length, code, payload.
pub fn packet(code: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    out.push(code);
    out.extend_from_slice(payload);
    out
}

/// A reply whose payload is NUL-terminated strings.
pub fn string_packet(code: u8, strings: &[&[u8]]) -> Vec<u8> {
    let mut payload = Vec::new();
    for string in strings {
        payload.extend(string.iter().filter(|&&b| b != 0));
        payload.push(0);
    }
    packet(code, &payload)
}

/// A reply whose payload starts with a 32-bit index, then NUL-terminated strings.
pub fn indexed_packet(code: u8, index: u32, strings: &[&[u8]]) -> Vec<u8> {
    let mut payload = index.to_be_bytes().to_vec();
    for string in strings {
        payload.extend(string.iter().filter(|&&b| b != 0));
        payload.push(0);
    }
    packet(code, &payload)
}

/// Our answer to the MTA's offer: the version, and of what it offers, the actions and steps we use.
pub fn negotiate_reply(version: u32, actions: u32, steps: u32) -> Vec<u8> {
    let mut payload = Vec::with_capacity(12);
    payload.extend_from_slice(&version.to_be_bytes());
    payload.extend_from_slice(&actions.to_be_bytes());
    payload.extend_from_slice(&steps.to_be_bytes());
    packet(REPLY_OPTIONS, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_malformed_ones_are_refused() {
        assert_eq!(
            parse(b"O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff").unwrap(),
            Command::Negotiate {
                version: 6,
                actions: 0x1ff,
                steps: 0x1fffff
            }
        );
        assert_eq!(
            parse(b"Cmx.test\0\x34\x00\x19192.0.2.1\0").unwrap(),
            Command::Connect {
                hostname: b"mx.test",
                family: b'4',
                address: b"192.0.2.1"
            }
        );
        assert_eq!(
            parse(b"Dji\0ABC123\0{auth_authen}\0\0").unwrap(),
            Command::Macros {
                stage: b'j',
                pairs: vec![(&b"i"[..], &b"ABC123"[..]), (&b"{auth_authen}"[..], &b""[..])]
            }
        );
        assert_eq!(
            parse(b"M<a@b.test>\0SIZE=10\0").unwrap(),
            Command::Mail(vec![b"<a@b.test>", b"SIZE=10"])
        );
        assert_eq!(
            parse(b"LSubject\0 hello\0").unwrap(),
            Command::Header {
                name: b"Subject",
                value: b" hello"
            }
        );
        for bad in [
            &b"O\0\0"[..],
            b"LSubject\0no terminator",
            b"L\0",
            b"Djodd\0",
            b"C host\0\x34",
            b"M",
            b"H\0\0",
        ] {
            assert!(matches!(parse(bad), Err(ProtocolError::Malformed { .. })), "{bad:?}");
        }
        assert_eq!(parse(b"Z"), Err(ProtocolError::UnknownCommand(b'Z')));
        assert_eq!(parse(b""), Err(ProtocolError::Empty));
    }

    #[test]
    fn replies_are_length_prefixed_and_strings_cannot_smuggle_nuls() {
        assert_eq!(packet(REPLY_CONTINUE, b""), b"\0\0\0\x01c");
        assert_eq!(
            indexed_packet(REPLY_CHANGE_HEADER, 2, &[b"Subject", b"x\0y"]),
            b"\0\0\0\x10m\0\0\0\x02Subject\0xy\0"
        );
    }

    #[tokio::test]
    async fn packets_over_the_limit_are_refused_before_they_are_read() {
        let mut stream: &[u8] = b"\xff\xff\xff\xffO";
        let mut buffer = Vec::new();
        let wait = std::time::Duration::from_secs(1);
        let read = read_packet(&mut stream, &mut buffer, wait, wait).await.unwrap();
        assert_eq!(read, Some(Err(ProtocolError::TooLarge(u32::MAX as usize))));
        assert!(buffer.capacity() < 1024);
        let mut empty: &[u8] = b"";
        assert_eq!(read_packet(&mut empty, &mut buffer, wait, wait).await.unwrap(), None);
        let mut cut: &[u8] = b"\0\0\0\x05c";
        assert!(read_packet(&mut cut, &mut buffer, wait, wait).await.is_err());
    }
}
