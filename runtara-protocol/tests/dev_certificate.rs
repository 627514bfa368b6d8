//! The dev certificate and the reset secret are created once, kept private, and reused.
#![allow(clippy::unwrap_used)]

use runtara_protocol::endpoint::{load_or_create_reset_secret, RESET_SECRET_LEN};
use runtara_protocol::tls::{certificates_from_pem, ClientTls, DevCertificate};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_dev_certificate_is_created_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = DevCertificate::load_or_create(dir.path()).unwrap();
    let second = DevCertificate::load_or_create(dir.path()).unwrap();
    assert_eq!(first.cert_pem, second.cert_pem);
    assert_eq!(first.key_pem, second.key_pem);
    assert_eq!(first.ca_path, dir.path().join("tls/ca.pem"));
    assert_eq!(std::fs::read(&first.ca_path).unwrap(), first.cert_pem);
    assert_eq!(certificates_from_pem(&first.cert_pem).unwrap().len(), 1);
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("tls/key.pem")), 0o600);
}

#[test]
fn a_lost_ca_file_is_written_again_from_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = DevCertificate::load_or_create(dir.path()).unwrap();
    std::fs::remove_file(&first.ca_path).unwrap();
    let second = DevCertificate::load_or_create(dir.path()).unwrap();
    assert_eq!(second.cert_pem, first.cert_pem);
    assert_eq!(std::fs::read(&second.ca_path).unwrap(), first.cert_pem);
}

#[test]
fn half_a_certificate_is_an_error_not_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let first = DevCertificate::load_or_create(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("tls/cert.pem")).unwrap();
    let error = DevCertificate::load_or_create(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("key.pem") && message.contains("cert.pem"),
        "{message}"
    );
    // Nothing was replaced.
    assert_eq!(
        std::fs::read(dir.path().join("tls/key.pem")).unwrap(),
        first.key_pem
    );
}

#[test]
fn a_corrupt_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    DevCertificate::load_or_create(dir.path()).unwrap();
    std::fs::write(dir.path().join("tls/cert.pem"), b"not pem").unwrap();
    let message = DevCertificate::load_or_create(dir.path())
        .unwrap_err()
        .to_string();
    assert!(message.contains("cert.pem"), "{message}");
}

#[test]
fn the_reset_secret_is_created_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let first = load_or_create_reset_secret(dir.path()).unwrap();
    assert_eq!(first.len(), RESET_SECRET_LEN);
    assert_eq!(load_or_create_reset_secret(dir.path()).unwrap(), first);
    #[cfg(unix)]
    assert_eq!(mode(&dir.path().join("tls/reset.key")), 0o600);
    // A damaged secret is replaced.
    std::fs::write(dir.path().join("tls/reset.key"), b"short").unwrap();
    let replaced = load_or_create_reset_secret(dir.path()).unwrap();
    assert_eq!(replaced.len(), RESET_SECRET_LEN);
    assert_ne!(replaced, first);
}

#[test]
fn a_missing_ca_file_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nowhere/ca.pem");
    let message = ClientTls::from_ca_file(&path).unwrap_err().to_string();
    assert!(message.contains("nowhere/ca.pem"), "{message}");
    let cert = DevCertificate::load_or_create(dir.path()).unwrap();
    assert!(matches!(
        ClientTls::from_ca_file(&cert.ca_path).unwrap(),
        ClientTls::Verify { .. }
    ));
}
