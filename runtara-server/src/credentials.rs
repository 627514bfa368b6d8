//! Instance credentials: the secret each launched process proves its instance id with.
//!
//! A credential is bound to one launch: `<epoch>.<hex(HMAC-SHA256(key,
//! "runtara-instance-credential:v2:" + epoch + ":" + instance_id))>`, where `epoch` is the
//! epoch the launched process takes when it registers (the instance's epoch at launch,
//! plus one). The instance endpoint admits it only while no newer run has registered and
//! the instance is not finished, and lets it register only that epoch, once: a credential
//! of an earlier launch, or of a finished instance, admits nothing. The 32-byte key lives
//! in `<data-dir>/tls/credential.key` (mode 0600, created on first start), so the server
//! stores nothing per instance and a restarted server accepts the credentials its
//! predecessor issued. Whoever holds the key can mint a credential for any instance id.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ring::hmac;

/// Bytes of the credential key.
pub const CREDENTIAL_KEY_LEN: usize = 32;

/// What the launch and instance id are prefixed with before they are signed.
const CONTEXT: &str = "runtara-instance-credential:v2:";

/// The credential `secret` issues for the launch of `instance_id` that registers
/// `epoch`: the epoch, a dot and 64 lowercase hex digits.
pub fn instance_credential(secret: &[u8], instance_id: &str, epoch: i64) -> String {
    CredentialKey::from_secret(secret).issue(instance_id, epoch)
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

    /// The credential for the launch of `instance_id` that will register `epoch`.
    pub fn issue(&self, instance_id: &str, epoch: i64) -> String {
        let tag = hmac::sign(&self.key, &message(instance_id, epoch));
        format!("{epoch}.{}", hex(tag.as_ref()))
    }

    /// The epoch of the launch `credential` was issued for, if it is one issued for
    /// `instance_id` (the tag is checked in constant time).
    pub fn verify(&self, instance_id: &str, credential: &str) -> Option<i64> {
        let (epoch, tag) = credential.split_once('.')?;
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let epoch: i64 = epoch.parse().ok()?;
        let tag = unhex(tag)?;
        hmac::verify(&self.key, &message(instance_id, epoch), &tag)
            .ok()
            .map(|()| epoch)
    }
}

fn message(instance_id: &str, epoch: i64) -> Vec<u8> {
    format!("{CONTEXT}{epoch}:{instance_id}").into_bytes()
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
    fn a_credential_verifies_only_for_its_instance_and_launch() {
        let key = CredentialKey::from_secret(&[7; CREDENTIAL_KEY_LEN]);
        let credential = key.issue("inst-a", 3);
        assert!(credential.starts_with("3."), "{credential}");
        assert_eq!(credential.len(), 2 + 64);
        assert_eq!(credential, instance_credential(&[7; 32], "inst-a", 3));
        assert_eq!(key.verify("inst-a", &credential), Some(3));
        assert_eq!(key.verify("inst-b", &credential), None);
        // Another launch's epoch with this tag is not a credential.
        let forged = credential.replacen("3.", "4.", 1);
        assert_eq!(key.verify("inst-a", &forged), None);
        assert_eq!(
            key.verify("inst-a", &credential[..credential.len() - 2]),
            None
        );
        assert_eq!(key.verify("inst-a", "zz"), None);
        assert_eq!(key.verify("inst-a", "+3.00"), None);
        assert_eq!(
            CredentialKey::from_secret(&[8; 32]).verify("inst-a", &credential),
            None
        );
    }

    #[test]
    fn the_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = CredentialKey::load_or_create(dir.path())
            .unwrap()
            .issue("i", 1);
        let again = CredentialKey::load_or_create(dir.path())
            .unwrap()
            .issue("i", 1);
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
