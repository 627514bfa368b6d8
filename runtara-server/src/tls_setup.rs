//! The server's TLS material: the configured certificate, or the dev certificate.

use std::path::PathBuf;

use anyhow::Context;
use runtara_protocol::endpoint::load_or_create_reset_secret;
use runtara_protocol::tls::DevCertificate;

use crate::ServerConfig;

/// Certificate, key and the endpoint's reset secret.
pub(crate) struct TlsMaterial {
    pub(crate) cert_pem: Vec<u8>,
    pub(crate) key_pem: Vec<u8>,
    pub(crate) ca_path: Option<PathBuf>,
    pub(crate) reset_secret: Vec<u8>,
}

pub(crate) fn load(config: &ServerConfig) -> anyhow::Result<TlsMaterial> {
    let reset_secret = load_or_create_reset_secret(&config.data_dir).context("reset key")?;
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(TlsMaterial {
            cert_pem: std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
            ca_path: None,
            reset_secret,
        }),
        (None, None) => {
            let dev = DevCertificate::load_or_create(&config.data_dir)
                .context("creating the dev certificate")?;
            Ok(TlsMaterial {
                cert_pem: dev.cert_pem,
                key_pem: dev.key_pem,
                ca_path: Some(dev.ca_path),
                reset_secret,
            })
        }
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    }
}
