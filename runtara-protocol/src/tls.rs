//! TLS material: the dev certificate, PEM loading, and rustls configurations.
//!
//! TLS is always on. In dev mode the server creates a self-signed certificate for
//! `localhost`, `127.0.0.1` and `::1` once and keeps it in `<data-dir>/tls/`; clients
//! trust it by pinning `<data-dir>/tls/ca.pem`. Skipping verification exists only for
//! `SdkConfig::localhost()` and `RUNTARA_SKIP_CERT_VERIFICATION=true`: it lets anyone on the
//! path impersonate the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use crate::{ProtocolError, Result, ALPN};

fn tls_error(context: &str, error: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Tls(format!("{context}: {error}"))
}

/// The crypto provider every config uses (ring; no C toolchain beyond `cc` needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate kept in a data directory.
#[derive(Clone)]
pub struct DevCertificate {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
    /// Where clients find the certificate to trust (`<data-dir>/tls/ca.pem`).
    pub ca_path: PathBuf,
}

impl std::fmt::Debug for DevCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCertificate")
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl DevCertificate {
    /// Names the dev certificate is valid for.
    pub const SUBJECT_NAMES: [&'static str; 3] = ["localhost", "127.0.0.1", "::1"];

    /// Loads `<data_dir>/tls/{cert,key}.pem`, creating them (and `ca.pem`, the
    /// certificate clients trust) on first use. An existing certificate is never
    /// replaced; a directory holding only one of the two files is an error, not a reason
    /// to make a new pair. The key file is created with mode 0600.
    pub fn load_or_create(data_dir: &Path) -> Result<DevCertificate> {
        let dir = data_dir.join("tls");
        let (cert_path, key_path, ca_path) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("ca.pem"),
        );
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {}
            (false, false) => {
                std::fs::create_dir_all(&dir).map_err(|e| file_error("creating", &dir, e))?;
                let names = Self::SUBJECT_NAMES.map(str::to_owned).to_vec();
                let generated = rcgen::generate_simple_self_signed(names)
                    .map_err(|e| tls_error("generating the dev certificate", e))?;
                let cert_pem = generated.cert.pem();
                let key_pem = generated.signing_key.serialize_pem();
                write_private(&key_path, key_pem.as_bytes())?;
                std::fs::write(&cert_path, &cert_pem)
                    .map_err(|e| file_error("writing", &cert_path, e))?;
                std::fs::write(&ca_path, &cert_pem)
                    .map_err(|e| file_error("writing", &ca_path, e))?;
            }
            (has_cert, _) => {
                let (present, missing) = if has_cert {
                    (&cert_path, &key_path)
                } else {
                    (&key_path, &cert_path)
                };
                return Err(ProtocolError::Tls(format!(
                    "found {} but not {}: restore the missing file, or remove both to create \
                     a new dev certificate (clients will then need the new ca.pem)",
                    present.display(),
                    missing.display()
                )));
            }
        }
        if !ca_path.exists() {
            std::fs::copy(&cert_path, &ca_path).map_err(|e| file_error("writing", &ca_path, e))?;
        }
        let cert_pem =
            std::fs::read(&cert_path).map_err(|e| file_error("reading", &cert_path, e))?;
        let key_pem = std::fs::read(&key_path).map_err(|e| file_error("reading", &key_path, e))?;
        certificates_from_pem(&cert_pem)
            .map_err(|e| ProtocolError::Tls(format!("{}: {e}", cert_path.display())))?;
        private_key_from_pem(&key_pem)
            .map_err(|e| ProtocolError::Tls(format!("{}: {e}", key_path.display())))?;
        Ok(DevCertificate {
            cert_pem,
            key_pem,
            ca_path,
        })
    }
}

fn file_error(action: &str, path: &Path, error: std::io::Error) -> ProtocolError {
    ProtocolError::Tls(format!("{action} {}: {error}", path.display()))
}

/// Creates `path` (which must not exist) readable by its owner only, and writes `bytes`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| file_error("creating", path, e))?;
    file.write_all(bytes)
        .map_err(|e| file_error("writing", path, e))?;
    file.sync_all()
        .map_err(|e| file_error("writing", path, e))?;
    Ok(())
}

/// Parses every certificate in a PEM document.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error("reading certificates", e))?;
    if certs.is_empty() {
        return Err(ProtocolError::Tls(
            "no certificate found in the PEM data".into(),
        ));
    }
    Ok(certs)
}

/// Parses the private key of a PEM document.
pub fn private_key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| tls_error("reading the private key", e))
}

/// The server's TLS configuration (TLS 1.3, ALPN `runtara/1`).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("server config", e))?
        .with_no_client_auth()
        .with_single_cert(
            certificates_from_pem(cert_pem)?,
            private_key_from_pem(key_pem)?,
        )
        .map_err(|e| tls_error("server certificate", e))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// How a client checks the server's certificate.
#[derive(Clone)]
pub enum ClientTls {
    /// Verify the server against these trusted certificates (PEM), e.g. the server's
    /// `<data-dir>/tls/ca.pem`. There are no system roots: a CA is required.
    Verify {
        /// Trusted CA or self-signed certificates, PEM.
        ca_pem: Vec<u8>,
    },
    /// Accept any server certificate.
    ///
    /// **Dangerous**: anyone on the network path can impersonate the server and read or
    /// change every checkpoint. Only for local development (`SdkConfig::localhost()`,
    /// `RUNTARA_SKIP_CERT_VERIFICATION=true`). Handshake signatures are still checked.
    SkipVerification,
}

impl ClientTls {
    /// Verification against the CA certificate(s) in the PEM file at `path`.
    pub fn from_ca_file(path: &Path) -> Result<ClientTls> {
        let ca_pem = std::fs::read(path).map_err(|e| {
            ProtocolError::Tls(format!(
                "cannot read the CA certificate {}: {e}",
                path.display()
            ))
        })?;
        certificates_from_pem(&ca_pem)
            .map_err(|e| ProtocolError::Tls(format!("{}: {e}", path.display())))?;
        Ok(ClientTls::Verify { ca_pem })
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientTls::Verify { ca_pem } => f
                .debug_struct("Verify")
                .field("ca_pem_bytes", &ca_pem.len())
                .finish(),
            ClientTls::SkipVerification => f.write_str("SkipVerification"),
        }
    }
}

/// The client's TLS configuration.
pub fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("client config", e))?;
    let mut config = match tls {
        ClientTls::Verify { ca_pem } => {
            if ca_pem.iter().all(u8::is_ascii_whitespace) {
                return Err(ProtocolError::Tls(
                    "certificate verification needs a CA certificate to trust (the server's \
                     `<data-dir>/tls/ca.pem`); none was given"
                        .into(),
                ));
            }
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates_from_pem(ca_pem)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error("trusted certificate", e))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ClientTls::SkipVerification => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerification(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Accepts every server certificate (handshake signatures are still checked).
#[derive(Debug)]
struct SkipVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
