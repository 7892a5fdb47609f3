//! The gateway's ARC sealing key: RSA-2048, generated on first start into `arc-key.der` (0600) in
//! the data directory, and the DNS record the operator publishes so downstream hosts can verify
//! the seal. Rewriting breaks the sender's DKIM body hash; the seal carries the verdicts we
//! reached before changing anything.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use mail_auth::arc::{ArcError, ArcSealer, Set};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::{Header, HeaderWriter};
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pipeline::render::SealPlan;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("ARC key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("ARC seal: {0}")]
    Seal(String),
}

pub struct ArcKey {
    /// Parsed once: parsing checks the key, which costs more than a signature.
    key: std::sync::Arc<RsaKey<Sha256>>,
    public_spki: Vec<u8>,
    pub domain: String,
    pub selector: String,
}

const FILE: &str = "arc-key.der";

impl ArcKey {
    /// Loads the key from the data directory, generating it on first use.
    pub fn open_or_create(data_dir: &Path, domain: &str, selector: &str) -> Result<ArcKey, SealError> {
        let path = data_dir.join(FILE);
        let error = |message: String| SealError::Key {
            path: path.clone(),
            message,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::token::create_private_dir(data_dir).map_err(|e| error(e.to_string()))?;
                let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| error(e.to_string()))?;
                let der: Pkcs8V1Der<'_> = pair.as_der().map_err(|e| error(e.to_string()))?;
                write_private(&path, der.as_ref()).map_err(|e| error(e.to_string()))?;
                der.as_ref().to_vec()
            }
            Err(e) => return Err(error(e.to_string())),
        };
        let pair = KeyPair::from_pkcs8(&pkcs8).map_err(|e| error(e.to_string()))?;
        let public: PublicKeyX509Der<'_> = pair.public_key().as_der().map_err(|e| error(e.to_string()))?;
        let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_slice())))
            .map_err(|e| error(e.to_string()))?;
        Ok(ArcKey {
            public_spki: public.as_ref().to_vec(),
            key: std::sync::Arc::new(key),
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_string(),
        })
    }

    /// The gateway's key for `config`: in its data directory, for `pipeline.arc_domain` (default
    /// the SMTP hostname) and `pipeline.arc_selector`.
    pub fn for_config(config: &crate::config::Config) -> Result<ArcKey, SealError> {
        let domain = config.pipeline.arc_domain.as_deref().unwrap_or(&config.smtp.hostname);
        ArcKey::open_or_create(&config.data_dir, domain, &config.pipeline.arc_selector)
    }

    /// The TXT record to publish: `{selector}._domainkey.{domain}`.
    pub fn dns_record(&self) -> (String, String) {
        let public = base64::engine::general_purpose::STANDARD.encode(&self.public_spki);
        (
            format!("{}._domainkey.{}", self.selector, self.domain),
            format!("v=DKIM1; k=rsa; p={public}"),
        )
    }

    /// Prepends an ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) to
    /// `message`, asserting what `plan` recorded at analysis. The chain it extends is the one the
    /// message carries (rendering leaves ARC fields as they arrived); a chain whose last seal
    /// says `cv=fail` is not extended and the message is returned unsealed (RFC 8617 5.1.2).
    pub fn seal(&self, message: &[u8], plan: &SealPlan) -> Result<Option<Vec<u8>>, SealError> {
        let parsed = AuthenticatedMessage::parse(message).ok_or_else(|| SealError::Seal("unparsable".into()))?;
        let mut chain = ArcOutput::default().with_result(if plan.chain_pass {
            DkimResult::Pass
        } else {
            DkimResult::Fail(mail_auth::Error::Arc(ArcError::BrokenChain))
        });
        for ((seal, signature), results) in parsed
            .as_headers
            .iter()
            .zip(&parsed.ams_headers)
            .zip(&parsed.aar_headers)
            .take(plan.chain_sets)
        {
            chain = chain.with_set(Set {
                signature: Header::new(signature.name, signature.value, &signature.header),
                seal: Header::new(seal.name, seal.value, &seal.header),
                results: Header::new(results.name, results.value, &results.header),
            });
        }
        if !chain.can_be_sealed() {
            return Ok(None);
        }
        // The payload goes in as mail-auth's "authserv-id" so it is written exactly as recorded.
        let results = AuthenticationResults::new(&plan.results);
        let set = ArcSealer::from_key(SharedKey(self.key.clone()))
            .domain(self.domain.clone())
            .selector(self.selector.clone())
            .headers(["From", "To", "Cc", "Subject", "Date", "Message-ID", "DKIM-Signature"])
            .seal(&parsed, &results, &chain)
            .map_err(|e| SealError::Seal(e.to_string()))?;
        let header = set.to_header();
        let mut sealed = Vec::with_capacity(header.len() + message.len());
        sealed.extend_from_slice(header.as_bytes());
        sealed.extend_from_slice(message);
        Ok(Some(sealed))
    }
}

/// The parsed key, shared by every seal (mail-auth's sealer takes its key by value).
struct SharedKey(std::sync::Arc<RsaKey<Sha256>>);

impl mail_auth::common::crypto::SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl mail_auth::common::headers::Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
