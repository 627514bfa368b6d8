//! Instance credentials: the secret each launched process proves its instance id with.
//!
//! A credential is `hex(HMAC-SHA256(key, "runtara-instance-credential:" + instance_id))`.
//! The 32-byte key lives in `<data-dir>/tls/credential.key` (mode 0600, created on first
//! start), so the server stores nothing per instance and a restarted server accepts the
//! credentials its predecessor issued. Whoever holds the key can mint a credential for any
//! instance id.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ring::hmac;

/// Bytes of the credential key.
pub const CREDENTIAL_KEY_LEN: usize = 32;

/// What the instance id is prefixed with before it is signed.
const CONTEXT: &str = "runtara-instance-credential:";

/// The credential `secret` issues for `instance_id`: 64 lowercase hex digits.
pub fn instance_credential(secret: &[u8], instance_id: &str) -> String {
    CredentialKey::from_secret(secret).issue(instance_id)
}

/// Where the credential key of a data dir lives.
pub fn credential_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("credential.key")
}

/// The server's credential key.
#[derive(Clone)]
pub struct CredentialKey {
    key: hmac::Key,
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

impl CredentialKey {
    /// A key over `secret`.
    pub fn from_secret(secret: &[u8]) -> CredentialKey {
        CredentialKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Loads `<data_dir>/tls/credential.key`, creating it (32 random bytes, mode 0600) on
    /// first use. A key of the wrong length is an error, not replaced: replacing it would
    /// lock out every running instance.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<CredentialKey> {
        let path = credential_key_path(data_dir);
        match std::fs::read(&path) {
            Ok(secret) if secret.len() == CREDENTIAL_KEY_LEN => {
                return Ok(CredentialKey::from_secret(&secret))
            }
            Ok(secret) => anyhow::bail!(
                "{} holds {} bytes, expected {CREDENTIAL_KEY_LEN}: remove it to create a new \
                 key (running instances will then need a relaunch)",
                path.display(),
                secret.len()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let mut secret = [0u8; CREDENTIAL_KEY_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| anyhow::anyhow!("no system randomness for the credential key"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_private(&path, &secret)?;
        Ok(CredentialKey::from_secret(&secret))
    }

    /// The credential for `instance_id`.
    pub fn issue(&self, instance_id: &str) -> String {
        hex(hmac::sign(&self.key, &message(instance_id)).as_ref())
    }

    /// Whether `credential` is the one issued for `instance_id` (constant time).
    pub fn verify(&self, instance_id: &str, credential: &str) -> bool {
        let Some(tag) = unhex(credential) else {
            return false;
        };
        hmac::verify(&self.key, &message(instance_id), &tag).is_ok()
    }
}

fn message(instance_id: &str) -> Vec<u8> {
    [CONTEXT.as_bytes(), instance_id.as_bytes()].concat()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .chars()
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<Vec<u8>>>()?;
    if digits.len() % 2 != 0 {
        return None;
    }
    Some(
        digits
            .chunks(2)
            .map(|pair| pair[0] << 4 | pair[1])
            .collect(),
    )
}

/// Creates `path` readable by the owner only and writes `bytes` to it.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_credential_verifies_only_for_its_instance() {
        let key = CredentialKey::from_secret(&[7; CREDENTIAL_KEY_LEN]);
        let credential = key.issue("inst-a");
        assert_eq!(credential.len(), 64);
        assert_eq!(credential, instance_credential(&[7; 32], "inst-a"));
        assert!(key.verify("inst-a", &credential));
        assert!(!key.verify("inst-b", &credential));
        assert!(!key.verify("inst-a", &credential[..62]));
        assert!(!key.verify("inst-a", "zz"));
        assert!(!CredentialKey::from_secret(&[8; 32]).verify("inst-a", &credential));
    }

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = CredentialKey::load_or_create(dir.path())
            .unwrap()
            .issue("i");
        let again = CredentialKey::load_or_create(dir.path())
            .unwrap()
            .issue("i");
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(credential_key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(credential_key_path(dir.path()), b"short").unwrap();
        let error = CredentialKey::load_or_create(dir.path()).unwrap_err();
        assert!(format!("{error:#}").contains("expected 32"), "{error:#}");
    }
}
