//! Management tokens: who may use the management endpoint, and for which tenants.
//!
//! The format (a `--tokens-file`, or `RUNTARA_MANAGEMENT_TOKENS` inline) is one token per
//! line, `<token> <tenant>[,<tenant>...]`, where `*` means every tenant; `#` starts a
//! comment and blank lines are ignored:
//!
//! ```text
//! # operators
//! 6f1c0a4e9b7d2c8e5a3f ops-team *
//! 0d9e8c7b6a5f4e3d2c1b acme,globex
//! ```
//!
//! Only SHA-256 digests of the tokens are kept; a presented token is hashed and compared
//! with every digest in constant time.

use std::collections::HashSet;

use ring::digest::{digest, SHA256};

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// A tokens file or variable that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name} line {line}: {reason}")]
pub struct TokensError {
    /// Where the text came from (a path, or `RUNTARA_MANAGEMENT_TOKENS`).
    pub source_name: String,
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// One configured token.
#[derive(Debug, Clone)]
struct Entry {
    digest: [u8; 32],
    /// `None`: every tenant.
    tenants: Option<HashSet<String>>,
}

/// The configured management tokens.
#[derive(Debug, Clone, Default)]
pub struct ManagementTokens {
    entries: Vec<Entry>,
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// Compares two digests without an early exit. The digests of guesses say nothing useful
/// about the configured token anyway; this keeps even the digest comparison timing-flat.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl ManagementTokens {
    /// Adds the tokens of `text`; `source_name` names it in errors.
    pub fn add(&mut self, source_name: &str, text: &str) -> Result<(), TokensError> {
        for (index, raw) in text.lines().enumerate() {
            let fail = |reason: String| TokensError {
                source_name: source_name.to_owned(),
                line: index + 1,
                reason,
            };
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (token, tenants) = line.split_once(char::is_whitespace).ok_or_else(|| {
                fail("expected `<token> <tenant>[,<tenant>...]` (or `*` for every tenant)".into())
            })?;
            if token.chars().count() < MIN_TOKEN_LEN {
                return Err(fail(format!(
                    "the token is shorter than {MIN_TOKEN_LEN} characters"
                )));
            }
            let tenants = tenants
                .split(',')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>();
            if let Some(bad) = tenants
                .iter()
                .find(|t| t.is_empty() || t.contains(char::is_whitespace))
            {
                return Err(fail(format!(
                    "invalid tenant `{bad}`: tenants are comma-separated, without spaces inside a name"
                )));
            }
            if let Some(error) = tenants
                .iter()
                .filter(|t| *t != "*")
                .find_map(|t| crate::valid_ids::check_id("tenant id", t).err())
            {
                return Err(fail(error.message));
            }
            let tenants = if tenants.iter().any(|t| t == "*") {
                if tenants.len() > 1 {
                    return Err(fail(
                        "`*` already means every tenant; list no others".into(),
                    ));
                }
                None
            } else {
                Some(tenants.into_iter().collect())
            };
            let digest = sha256(token.as_bytes());
            if self.entries.iter().any(|e| e.digest == digest) {
                return Err(fail("the token is listed twice".into()));
            }
            self.entries.push(Entry { digest, tenants });
        }
        Ok(())
    }

    /// Whether no token is configured (the management endpoint is open).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The tenants `token` may act for (`Some(None)`: every tenant), or `None` for an
    /// unknown token. Every configured digest is compared, in constant time.
    pub fn lookup(&self, token: &str) -> Option<Option<HashSet<String>>> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for entry in &self.entries {
            if digests_equal(&entry.digest, &presented) && found.is_none() {
                found = Some(entry.tenants.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TEXT: &str = "# operators\n\n\
        aaaaaaaaaaaaaaaa-admin *\n\
        bbbbbbbbbbbbbbbb-acme acme, globex   # two tenants\n";

    #[test]
    fn tokens_map_to_their_tenants() {
        let mut tokens = ManagementTokens::default();
        tokens.add("tokens.txt", TEXT).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens.lookup("aaaaaaaaaaaaaaaa-admin"), Some(None));
        let acme = tokens.lookup("bbbbbbbbbbbbbbbb-acme").unwrap().unwrap();
        assert!(acme.contains("acme") && acme.contains("globex") && acme.len() == 2);
        assert_eq!(tokens.lookup("bbbbbbbbbbbbbbbb-acm"), None);
        assert_eq!(tokens.lookup(""), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            ("short *", 1, "shorter than 16"),
            ("\n\naaaaaaaaaaaaaaaaaaaa", 3, "expected `<token>"),
            ("aaaaaaaaaaaaaaaaaaaa acme,,b", 1, "invalid tenant ``"),
            ("aaaaaaaaaaaaaaaaaaaa *,acme", 1, "`*` already means"),
            ("aaaaaaaaaaaaaaaaaaaa ../acme", 1, "invalid tenant id"),
            (
                "aaaaaaaaaaaaaaaaaaaa a\naaaaaaaaaaaaaaaaaaaa b",
                2,
                "listed twice",
            ),
        ];
        for (text, line, needle) in cases {
            let error = ManagementTokens::default().add("f", text).unwrap_err();
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.to_string().contains(needle), "{text:?}: {error}");
            assert!(error.to_string().starts_with(&format!("f line {line}: ")));
        }
    }
}
