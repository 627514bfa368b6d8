//! The one rule every id reaching the server must pass, and the folder name the server
//! derives for an instance.
//!
//! Instance, tenant and image ids come from clients (the instance endpoint's hello and
//! requests, management requests) and from stored data (read back at start-up). Each one
//! goes through [`check_id`] before the server acts on it. A valid id is 1 to
//! [`MAX_ID_LEN`] bytes of ASCII letters, digits, `-`, `_`, `.` and `:`, does not start
//! with `.` and holds no `..`: so no `/`, `\`, NUL, space or other control character can
//! appear, and an id can never name a parent or hidden folder.
//!
//! Even so, no id is ever used as a file-system path component: the folder of an
//! instance's files is [`instance_folder`], a digest of its id (instance ids are one
//! namespace across tenants, so the id alone names one instance).

use runtara_protocol::{ErrorCode, WireError};

/// Longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// What the rule allows, for error messages.
const RULE: &str = "use 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `:`, \
                    not starting with `.` and without `..`";

/// Checks an instance, tenant or image id (`what` names it in the error, e.g.
/// "instance id"). An invalid id is an `invalid_input` error that quotes it (escaped, and
/// cut when long).
pub fn check_id(what: &str, id: &str) -> Result<(), WireError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && !id.contains("..")
        && id.bytes().all(allowed);
    if valid {
        return Ok(());
    }
    let shown: String = id.chars().take(64).collect();
    let cut = if shown.len() < id.len() { "…" } else { "" };
    Err(WireError::new(
        ErrorCode::InvalidInput,
        format!(
            "invalid {what} {:?}{cut} ({} bytes): {RULE}",
            shown,
            id.len()
        ),
    ))
}

/// The name of the folder (under `<data-dir>/instance-files/`) holding an instance's
/// files: 32 lowercase hex digits of SHA-256 over the instance id. Derived only, so no
/// id is ever a path component.
pub fn instance_folder(instance_id: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"runtara-instance-folder\0");
    context.update(instance_id.as_bytes());
    let digest = context.finish();
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ids_in_use_are_valid() {
        for id in [
            "inst-0123456789abcdef01234567",
            "img-0123456789abcdef01234567",
            "order-42",
            "restart-1",
            "many-99",
            "tenant-123",
            "my_tenant",
            "acme",
            "a",
            "i-1",
            "v1.2",
            "order:2024:7",
            "b1234-18c3f0a2b4d5e6f7-w2p-12",
            &"x".repeat(MAX_ID_LEN),
        ] {
            assert!(check_id("instance id", id).is_ok(), "{id}");
        }
    }

    #[test]
    fn traversal_and_odd_ids_are_refused() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        for id in [
            "",
            ".",
            "..",
            "./victim1",
            "../victim1",
            "a/../b",
            "a..b",
            ".hidden",
            "/etc/passwd",
            "a/b",
            "a\\b",
            "..\\x",
            "a\0b",
            "a b",
            "tab\t",
            "new\nline",
            "é",
            "C:\\Windows",
            "~root",
            "$HOME",
            long.as_str(),
        ] {
            let error = check_id("instance id", id).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidInput, "{id:?}");
            assert!(error.message.contains("invalid instance id"), "{error:?}");
        }
        let error = check_id("tenant id", "a\0b").unwrap_err();
        assert!(error.message.contains("\\0"), "escaped: {error:?}");
        let error = check_id("instance id", &"y".repeat(10_000)).unwrap_err();
        assert!(error.message.len() < 400, "cut: {}", error.message);
    }

    #[test]
    fn folders_are_derived_hex_and_differ_by_id() {
        let a = instance_folder("inst-1");
        assert_eq!(a.len(), 32);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(a, instance_folder("inst-1"), "stable");
        assert_ne!(a, instance_folder("inst-2"));
        assert_ne!(instance_folder("../x"), instance_folder("x"));
    }
}
