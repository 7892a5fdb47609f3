//! Malware engines: the built-in hash signature set (EICAR and the operator's SHA-256 lists) and
//! ClamAV, asked over clamd's `INSTREAM` protocol with a deadline. An engine that cannot answer
//! says so; whether the message waits (fail closed) or goes on (fail open) is the pipeline's call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pipeline::malware::EICAR;

/// `[attachments.clamav]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClamavConfig {
    /// `host:port` of clamd's TCP socket, or the path of its local socket.
    pub address: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// `open`: an unanswered scan adds `CLAMAV_UNAVAILABLE` and the message goes on;
    /// `closed`: the message is refused for now (451) or, past the DATA reply, held.
    #[serde(default)]
    pub fail: FailMode,
}

fn default_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    #[default]
    Open,
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read signature list {path}: {source}")]
    ReadSignatures { path: PathBuf, source: std::io::Error },
    #[error("signature list {path} line {line}: {reason}")]
    BadSignature { path: PathBuf, line: usize, reason: String },
    /// clamd could not be reached or did not answer in time: worth trying again later.
    #[error("clamd at {address}: {reason}")]
    Clamd { address: String, reason: String },
    /// clamd answered with an error for this file (past its `StreamMaxLength`…): it will say the
    /// same next time.
    #[error("clamd at {address} refused the file: {reason}")]
    Refused { address: String, reason: String },
}

/// A match: which engine, and the signature's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub engine: &'static str,
    pub signature: String,
    /// The file it was found in.
    pub file: String,
}

/// SHA-256 digests of known-bad files.
#[derive(Debug, Clone, Default)]
pub struct Signatures {
    by_digest: HashMap<[u8; 32], String>,
}

impl Signatures {
    /// The built-in set (the EICAR test file) and the operator's lists.
    pub fn load(files: &[PathBuf]) -> Result<Signatures, EngineError> {
        let mut signatures = Signatures::default();
        signatures
            .by_digest
            .insert(Sha256::digest(EICAR).into(), "EICAR-Test-File".into());
        for path in files {
            signatures.read_list(path)?;
        }
        Ok(signatures)
    }

    /// `sha256 name` or ClamAV's `.hsb` form `sha256:size:name`; `#` starts a comment.
    fn read_list(&mut self, path: &Path) -> Result<(), EngineError> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::ReadSignatures {
            path: path.into(),
            source,
        })?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| EngineError::BadSignature {
                path: path.into(),
                line: number + 1,
                reason: reason.into(),
            };
            let (digest, name) = match line.split_once(':') {
                Some((digest, rest)) => (digest, rest.split_once(':').map_or(rest, |(_, name)| name)),
                None => line.split_once(char::is_whitespace).ok_or_else(|| bad("no name"))?,
            };
            let digest = unhex(digest.trim()).ok_or_else(|| bad("not a hex digest"))?;
            let digest: [u8; 32] = digest.try_into().map_err(|_| bad("not a SHA-256 digest"))?;
            self.by_digest.insert(digest, name.trim().to_string());
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The signature `bytes` matches, if any.
    pub fn check(&self, bytes: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.by_digest.get(&digest).map(String::as_str)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

impl EngineError {
    /// Whether asking again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Clamd { .. })
    }
}

/// A clamd to ask.
#[derive(Debug, Clone)]
pub struct Clamd {
    address: String,
    timeout: Duration,
    /// Streams open at once, for all messages: clamd serves a few at a time (10 threads by
    /// default) and more would only queue inside it and time out.
    streams: std::sync::Arc<tokio::sync::Semaphore>,
}

const CLAMD_STREAMS: usize = 8;

/// clamd's answer for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdVerdict {
    Clean,
    Found(String),
}

/// Bytes per INSTREAM chunk.
const CHUNK: usize = 64 * 1024;

impl Clamd {
    pub fn new(config: &ClamavConfig) -> Clamd {
        Clamd {
            address: config.address.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            streams: std::sync::Arc::new(tokio::sync::Semaphore::new(CLAMD_STREAMS)),
        }
    }

    /// Sends `bytes` as one stream and reads clamd's verdict, all within the timeout.
    pub async fn scan(&self, bytes: &[u8]) -> Result<ClamdVerdict, EngineError> {
        let error = |reason: String| EngineError::Clamd {
            address: self.address.clone(),
            reason,
        };
        let _permit = self.streams.acquire().await.map_err(|e| error(e.to_string()))?;
        let exchange = async {
            if self.address.starts_with('/') {
                #[cfg(unix)]
                {
                    let stream = tokio::net::UnixStream::connect(&self.address).await?;
                    return instream(stream, bytes).await;
                }
                #[cfg(not(unix))]
                return Err(std::io::Error::other("local sockets need unix"));
            }
            let stream = tokio::net::TcpStream::connect(&self.address).await?;
            instream(stream, bytes).await
        };
        let reply = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(io)) => return Err(error(io.to_string())),
            Err(_) => return Err(error(format!("no answer within {} ms", self.timeout.as_millis()))),
        };
        parse_reply(&reply).map_err(|reason| EngineError::Refused {
            address: self.address.clone(),
            reason,
        })
    }
}

async fn instream<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, bytes: &[u8]) -> std::io::Result<String> {
    stream.write_all(b"zINSTREAM\0").await?;
    for chunk in bytes.chunks(CHUNK) {
        stream.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
        stream.write_all(chunk).await?;
    }
    stream.write_all(&0u32.to_be_bytes()).await?;
    stream.flush().await?;
    // One short line ending with NUL; a clamd that talks on past 4 KiB is not one.
    let mut reply = Vec::new();
    let mut chunk = [0u8; 512];
    while !reply.contains(&0) && reply.len() < 4096 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..read]);
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_string())
}

/// `stream: OK`, `stream: Name FOUND`, or an error (`INSTREAM size limit exceeded. ERROR`).
fn parse_reply(reply: &str) -> Result<ClamdVerdict, String> {
    let body = reply.strip_prefix("stream:").map(str::trim).unwrap_or(reply);
    if body == "OK" {
        Ok(ClamdVerdict::Clean)
    } else if let Some(name) = body.strip_suffix(" FOUND") {
        Ok(ClamdVerdict::Found(name.trim().to_string()))
    } else if reply.is_empty() {
        Err("closed without a verdict".into())
    } else {
        Err(reply.chars().take(200).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply("stream: OK"), Ok(ClamdVerdict::Clean));
        assert_eq!(
            parse_reply("stream: Clamav.Test.File-6 FOUND"),
            Ok(ClamdVerdict::Found("Clamav.Test.File-6".into()))
        );
        assert!(parse_reply("INSTREAM size limit exceeded. ERROR").is_err());
        assert!(parse_reply("").is_err());
    }

    #[test]
    fn lists_in_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        let digest = crate::pipeline::hex(&Sha256::digest(b"bad file"));
        let other = crate::pipeline::hex(&Sha256::digest(b"worse file"));
        std::fs::write(
            &path,
            format!("# ours\n{digest}  Bad.File\n{other}:10:Worse.File.UNOFFICIAL\n"),
        )
        .unwrap();
        let signatures = Signatures::load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(signatures.check(b"bad file"), Some("Bad.File"));
        assert_eq!(signatures.check(b"worse file"), Some("Worse.File.UNOFFICIAL"));
        assert_eq!(signatures.check(EICAR), Some("EICAR-Test-File"));
        assert_eq!(signatures.check(b"fine"), None);
        std::fs::write(&path, "nothex Name\n").unwrap();
        assert!(matches!(
            Signatures::load(std::slice::from_ref(&path)),
            Err(EngineError::BadSignature { line: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_dead_clamd_is_an_error_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let clamd = Clamd::new(&ClamavConfig {
            address,
            timeout_ms: 500,
            fail: FailMode::Open,
        });
        assert!(clamd.scan(b"x").await.is_err());
    }
}
