//! Errors as they travel: a stable code, a human message, and structured details.

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// Stable error codes of the protocol.
///
/// On the wire a code is its variant index, so new codes are only ever appended. In
/// logs and CLIs a code is shown by its [`as_str`](ErrorCode::as_str) name
/// (`not_found`, `fenced`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `not_found`: the instance (or image) does not exist, or belongs to another tenant.
    NotFound,
    /// `tenant_mismatch`: the instance is registered for another tenant.
    TenantMismatch,
    /// `terminal`: the instance is finished (completed, failed or cancelled); nothing can
    /// change it. [`WireError::status`] names the status.
    Terminal,
    /// `fenced`: a newer run holds the instance; this run is fenced out and must exit.
    /// [`WireError::epoch`] and [`WireError::current`] carry both epochs.
    Fenced,
    /// `not_running`: the request needs a running instance. [`WireError::status`] names
    /// the status it is in.
    NotRunning,
    /// `signal_rejected`: the signal makes no sense in the instance's state.
    SignalRejected,
    /// `already_exists`: the id is taken.
    AlreadyExists,
    /// `invalid_input`: an argument was rejected; the message says which and why.
    InvalidInput,
    /// `unauthorized`: missing or wrong credentials.
    Unauthorized,
    /// `version_mismatch`: the peer speaks another protocol version.
    VersionMismatch,
    /// `frame_too_large`: a frame over the size limit.
    FrameTooLarge,
    /// `malformed`: a frame that does not decode.
    Malformed,
    /// `unsupported`: the request is not supported on this endpoint.
    Unsupported,
    /// `internal`: the server failed; the request may be retried.
    Internal,
    /// `unavailable`: the server is shutting down or overloaded; retry, possibly on a
    /// new connection.
    Unavailable,
    /// `in_use`: the thing cannot be removed while something still uses it (an image
    /// with unfinished instances).
    InUse,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::NotFound,
        ErrorCode::TenantMismatch,
        ErrorCode::Terminal,
        ErrorCode::Fenced,
        ErrorCode::NotRunning,
        ErrorCode::SignalRejected,
        ErrorCode::AlreadyExists,
        ErrorCode::InvalidInput,
        ErrorCode::Unauthorized,
        ErrorCode::VersionMismatch,
        ErrorCode::FrameTooLarge,
        ErrorCode::Malformed,
        ErrorCode::Unsupported,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::InUse,
    ];

    /// The code's stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::TenantMismatch => "tenant_mismatch",
            ErrorCode::Terminal => "terminal",
            ErrorCode::Fenced => "fenced",
            ErrorCode::NotRunning => "not_running",
            ErrorCode::SignalRejected => "signal_rejected",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InUse => "in_use",
        }
    }

    /// Whether sending the same request again may succeed (`internal`, `unavailable`).
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Internal | ErrorCode::Unavailable)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An error reply: the `Error` response of every request family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What kind of error.
    pub code: ErrorCode,
    /// The message to show, lowercase, complete on its own.
    pub message: String,
    /// The instance's status (`completed`, `suspended`, …), for `terminal`,
    /// `not_running` and `signal_rejected`.
    pub status: Option<crate::InstanceStatus>,
    /// The caller's epoch, for `fenced`.
    pub epoch: Option<i64>,
    /// The instance's current epoch, for `fenced`.
    pub current: Option<i64>,
}

impl WireError {
    /// An error with just a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
            status: None,
            epoch: None,
            current: None,
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// The reply a server sends for a frame it could not accept (`version_mismatch`,
/// `frame_too_large`, `malformed`; anything else is `internal`).
impl From<&ProtocolError> for WireError {
    fn from(error: &ProtocolError) -> Self {
        let code = match error {
            ProtocolError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::Malformed(_) | ProtocolError::Truncated { .. } => ErrorCode::Malformed,
            _ => ErrorCode::Internal,
        };
        WireError::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_in_wire_order() {
        for (index, code) in ErrorCode::ALL.iter().enumerate() {
            // Fails to compile when a code is added without a place in `ALL`.
            let position = match code {
                ErrorCode::NotFound => 0,
                ErrorCode::TenantMismatch => 1,
                ErrorCode::Terminal => 2,
                ErrorCode::Fenced => 3,
                ErrorCode::NotRunning => 4,
                ErrorCode::SignalRejected => 5,
                ErrorCode::AlreadyExists => 6,
                ErrorCode::InvalidInput => 7,
                ErrorCode::Unauthorized => 8,
                ErrorCode::VersionMismatch => 9,
                ErrorCode::FrameTooLarge => 10,
                ErrorCode::Malformed => 11,
                ErrorCode::Unsupported => 12,
                ErrorCode::Internal => 13,
                ErrorCode::Unavailable => 14,
                ErrorCode::InUse => 15,
            };
            assert_eq!(index, position, "{code:?}");
            assert_eq!(
                postcard::to_allocvec(code).ok(),
                Some(vec![index as u8]),
                "{code:?} is not at its wire index"
            );
        }
    }

    #[test]
    fn names_are_snake_case_and_distinct() {
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for name in names {
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(ErrorCode::NotFound.to_string(), "not_found");
    }
}
