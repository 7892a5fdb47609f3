//! The outbound SMTP client: relays to the downstream host (EHLO, STARTTLS as configured, MAIL,
//! RCPT per recipient, DATA with dot-stuffing) and asks it whether a recipient exists (callout).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::config::{DeliveryConfig, TlsMode};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// All lines' text, joined with a space.
    pub text: String,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {address}: {message}")]
    Connect { address: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for the downstream host")]
    Timeout,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("downstream does not offer STARTTLS and delivery.tls = \"required\"")]
    TlsRequired,
    #[error("downstream answered {0}")]
    Rejected(Reply),
    #[error("malformed reply from downstream: {0}")]
    Protocol(String),
}

impl ClientError {
    /// A permanent failure bounces; anything else is retried.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ClientError::Rejected(reply) if reply.is_permanent())
    }
}

/// How to reach the downstream host.
#[derive(Clone)]
pub struct ClientSettings {
    pub helo: String,
    pub tls: TlsMode,
    pub connector: TlsConnector,
    pub tls_name: Option<String>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl ClientSettings {
    pub fn new(config: &DeliveryConfig, helo: &str) -> Result<Self, String> {
        Ok(Self {
            helo: helo.to_string(),
            tls: config.tls,
            connector: crate::tls::connector(config)?,
            tls_name: config.tls_name.clone(),
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
        })
    }
}

/// An open, greeted SMTP session with the downstream host.
pub struct Client {
    stream: Box<dyn Io>,
    buffer: Vec<u8>,
    pipelining: bool,
    pub tls: bool,
    timeout: Duration,
}

/// What the downstream said about each recipient of one transaction.
#[derive(Debug)]
pub struct Sent {
    /// Per recipient: the RCPT reply, or the DATA reply for those accepted at RCPT.
    pub results: Vec<(String, Reply)>,
}

impl Client {
    /// Connects, reads the greeting, says EHLO and negotiates STARTTLS as configured.
    pub async fn connect(address: &str, settings: &ClientSettings) -> Result<Client, ClientError> {
        let tcp = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Connect {
                address: address.into(),
                message: "timed out".into(),
            })?
            .map_err(|e| ClientError::Connect {
                address: address.into(),
                message: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let mut client = Client {
            stream: Box::new(tcp),
            buffer: Vec::with_capacity(4096),
            pipelining: false,
            tls: false,
            timeout: settings.command_timeout,
        };
        client.expect(220).await?;
        let extensions = client.ehlo(&settings.helo).await?;
        let offers_tls = extensions.iter().any(|e| e == "STARTTLS");
        let use_tls = match settings.tls {
            TlsMode::Off => false,
            TlsMode::Opportunistic => offers_tls,
            TlsMode::Required if offers_tls => true,
            TlsMode::Required => return Err(ClientError::TlsRequired),
        };
        if use_tls {
            client.command("STARTTLS\r\n").await?;
            client.expect(220).await?;
            let host = settings
                .tls_name
                .clone()
                .unwrap_or_else(|| address.rsplit_once(':').map_or(address, |(host, _)| host).to_string());
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let name = ServerName::try_from(host).map_err(|e| ClientError::Tls(e.to_string()))?;
            let plain = std::mem::replace(&mut client.stream, Box::new(tokio::io::duplex(1).0));
            let tls = settings
                .connector
                .connect(name, plain)
                .await
                .map_err(|e| ClientError::Tls(e.to_string()))?;
            client.stream = Box::new(tls);
            client.tls = true;
            client.buffer.clear();
            client.ehlo(&settings.helo).await?;
        }
        Ok(client)
    }

    async fn ehlo(&mut self, helo: &str) -> Result<Vec<String>, ClientError> {
        self.command(&format!("EHLO {helo}\r\n")).await?;
        let (reply, lines) = self.read_reply().await?;
        if reply.code != 250 {
            return Err(ClientError::Rejected(reply));
        }
        let extensions: Vec<String> = lines
            .iter()
            .skip(1)
            .map(|line| line.split_whitespace().next().unwrap_or("").to_ascii_uppercase())
            .collect();
        self.pipelining = extensions.iter().any(|e| e == "PIPELINING");
        Ok(extensions)
    }

    async fn command(&mut self, line: &str) -> Result<(), ClientError> {
        self.write(line.as_bytes()).await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    async fn expect(&mut self, code: u16) -> Result<Reply, ClientError> {
        let (reply, _) = self.read_reply().await?;
        if reply.code == code {
            Ok(reply)
        } else {
            Err(ClientError::Rejected(reply))
        }
    }

    /// Reads one (possibly multi-line) reply.
    async fn read_reply(&mut self) -> Result<(Reply, Vec<String>), ClientError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.len() < 3 || !line.as_bytes()[..3].iter().all(u8::is_ascii_digit) {
                return Err(ClientError::Protocol(line));
            }
            let code: u16 = line[..3].parse().map_err(|_| ClientError::Protocol(line.clone()))?;
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if last {
                let text = lines.join(" ");
                return Ok((Reply { code, text }, lines));
            }
            if lines.len() > 100 {
                return Err(ClientError::Protocol("reply longer than 100 lines".into()));
            }
        }
    }

    async fn read_line(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some(at) = memchr::memchr(b'\n', &self.buffer) {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                let line = crate::rewrite::mime::trim_eol(&line);
                return Ok(String::from_utf8_lossy(line).into_owned());
            }
            if self.buffer.len() > 64 * 1024 {
                return Err(ClientError::Protocol("reply line too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout)??;
            if read == 0 {
                return Err(ClientError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "downstream closed the connection",
                )));
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// One transaction. Errors are for the whole transaction (MAIL refused, DATA refused, the
    /// connection failed); per-recipient refusals at RCPT are in the result.
    pub async fn send(&mut self, sender: &str, recipients: &[String], body: &[u8]) -> Result<Sent, ClientError> {
        let eight_bit = body.iter().any(|&b| b >= 0x80);
        let utf8_address = sender
            .bytes()
            .chain(recipients.iter().flat_map(|r| r.bytes()))
            .any(|b| b >= 0x80);
        let mut mail = format!("MAIL FROM:<{sender}>");
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if utf8_address {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        let rcpts: Vec<String> = recipients.iter().map(|r| format!("RCPT TO:<{r}>\r\n")).collect();
        let mut results = Vec::with_capacity(recipients.len());
        let mail_reply;
        if self.pipelining {
            // MAIL, every RCPT and DATA in one write (RFC 2920).
            let mut batch = mail.clone();
            for rcpt in &rcpts {
                batch.push_str(rcpt);
            }
            batch.push_str("DATA\r\n");
            self.command(&batch).await?;
            mail_reply = self.read_reply().await?.0;
            for recipient in recipients {
                results.push((recipient.clone(), self.read_reply().await?.0));
            }
        } else {
            self.command(&mail).await?;
            mail_reply = self.read_reply().await?.0;
            if mail_reply.is_positive() {
                for (recipient, rcpt) in recipients.iter().zip(&rcpts) {
                    self.command(rcpt).await?;
                    results.push((recipient.clone(), self.read_reply().await?.0));
                }
            }
        }
        let any_accepted = results.iter().any(|(_, r)| r.is_positive());
        let data_reply = if self.pipelining {
            Some(self.read_reply().await?.0)
        } else if mail_reply.is_positive() && any_accepted {
            self.command("DATA\r\n").await?;
            Some(self.read_reply().await?.0)
        } else {
            None
        };
        if !mail_reply.is_positive() {
            if data_reply.as_ref().is_some_and(|r| r.code == 354) {
                self.write(b".\r\n").await?;
                let _ = self.read_reply().await?;
            }
            self.reset().await;
            return Err(ClientError::Rejected(mail_reply));
        }
        match data_reply {
            Some(reply) if reply.code == 354 && any_accepted => {
                self.write(&dot_stuff(body)).await?;
                let final_reply = self.read_reply().await?.0;
                if !final_reply.is_positive() {
                    return Err(ClientError::Rejected(final_reply));
                }
                for (_, result) in results.iter_mut() {
                    if result.is_positive() {
                        *result = final_reply.clone();
                    }
                }
            }
            Some(reply) if reply.code == 354 => {
                // Pipelined DATA was accepted though every RCPT failed: end it empty (RFC 2920 3.1).
                self.write(b".\r\n").await?;
                let _ = self.read_reply().await?;
            }
            Some(reply) if any_accepted => return Err(ClientError::Rejected(reply)),
            _ => {}
        }
        Ok(Sent { results })
    }

    /// Asks whether `recipient` exists without sending anything: MAIL FROM:<>, RCPT, RSET.
    pub async fn verify(&mut self, recipient: &str) -> Result<Reply, ClientError> {
        self.command("MAIL FROM:<>\r\n").await?;
        let mail = self.read_reply().await?.0;
        if !mail.is_positive() {
            self.reset().await;
            return Err(ClientError::Rejected(mail));
        }
        self.command(&format!("RCPT TO:<{recipient}>\r\n")).await?;
        let reply = self.read_reply().await?.0;
        self.reset().await;
        Ok(reply)
    }

    async fn reset(&mut self) {
        if self.command("RSET\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
    }

    pub async fn quit(mut self) {
        if self.command("QUIT\r\n").await.is_ok() {
            let _ = self.read_reply().await;
        }
    }
}

/// The body on the wire: lines starting with a dot get another, CRLF at the end, then the dot line.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut line_start = true;
    for &byte in body {
        if line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::dot_stuff;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n.\r\n"), b"..a\r\nb\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"no end"), b"no end\r\n.\r\n");
    }
}
