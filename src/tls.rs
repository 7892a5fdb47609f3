//! TLS (rustls with the aws-lc-rs provider): the click service's HTTPS and the SMTP gateway's
//! STARTTLS when a certificate is configured, and the client side delivery uses.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::config::{ClickConfig, DeliveryConfig};

/// The click service's acceptor (HTTP/1.1 ALPN).
pub fn acceptor(config: &ClickConfig) -> Result<Option<TlsAcceptor>, String> {
    acceptor_for(
        "click",
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &[b"http/1.1"],
    )
}

/// `None` without a certificate; an error when only half of the pair is configured or it does not load.
pub fn acceptor_for(
    section: &str,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
    alpn: &[&[u8]],
) -> Result<Option<TlsAcceptor>, String> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(format!("{section}.tls_cert and {section}.tls_key must be set together")),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let mut server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// The delivery client's TLS: the system's trust anchors plus `delivery.ca_file`, or no
/// verification at all when `verify_certificates = false` (a lab only).
pub fn connector(config: &DeliveryConfig) -> Result<TlsConnector, String> {
    connector_with(config.verify_certificates, config.ca_file.as_deref())
}

/// A TLS client trusting the system's anchors plus the certificates in `ca_file`, or (lab only)
/// any certificate.
pub fn connector_with(verify_certificates: bool, ca_file: Option<&std::path::Path>) -> Result<TlsConnector, String> {
    let builder = ClientConfig::builder();
    let client = if verify_certificates {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_file {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))? {
                roots
                    .add(cert.map_err(|e| format!("{}: {e}", path.display()))?)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate::new()))
            .with_no_client_auth()
    };
    Ok(TlsConnector::from(Arc::new(client)))
}

/// Accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<tokio_rustls::rustls::crypto::CryptoProvider>);

impl AnyCertificate {
    fn new() -> Self {
        Self(Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()))
    }
}

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<tokio_rustls::rustls::client::danger::HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
