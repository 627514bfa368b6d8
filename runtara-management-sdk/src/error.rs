//! The one error type of the management SDK.

use std::path::PathBuf;
use std::time::Duration;

use runtara_protocol::{ErrorCode, ProtocolError};

/// Result type of `runtara-management-sdk`.
pub type Result<T, E = SdkError> = std::result::Result<T, E>;

/// Everything a management call can fail with.
///
/// [`SdkError::Server`] is the server refusing a request (unknown id, invalid input, …):
/// its [`code`](SdkError::code) is the protocol's stable error code (`not_found`,
/// `invalid_input`, `in_use`, `unauthorized`, …). Every other variant is a problem on
/// this side or on the way to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// The configuration given in code is not usable (a bad address, no certificate to
    /// trust, …); the message says what to change.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An environment variable has a value that cannot be used.
    #[error("invalid value {value:?} for {var}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A TLS problem while connecting (the server's certificate does not chain to the
    /// trusted one, a failed handshake, …). A CA file that cannot be read or holds no PEM
    /// certificate is [`Io`](Self::Io) or [`Config`](Self::Config): nothing was tried.
    #[error("tls: {0}")]
    Tls(String),
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why it failed.
        message: String,
    },
    /// A wait for an instance to finish ([`wait_for_completion`]) ran out: the
    /// instance is still going, in `status`.
    ///
    /// [`wait_for_completion`]: crate::ManagementSdk::wait_for_completion
    #[error("instance `{instance_id}` did not finish within {after:?} (status: {status})")]
    WaitTimedOut {
        /// The instance.
        instance_id: String,
        /// The wait given.
        after: Duration,
        /// Its status when the wait ended.
        status: runtara_protocol::InstanceStatus,
    },
    /// No answer before the deadline.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The call (`get_instance_status`, …).
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The server refused the request.
    #[error("{operation} failed: {message} ({code})")]
    Server {
        /// The call (`get_instance_status`, …).
        operation: &'static str,
        /// The protocol's error code (`not_found`, `invalid_input`, `in_use`, …); it
        /// compares with its name (`code == "not_found"`).
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server answered a request with a response of another kind.
    #[error("{operation}: unexpected response from the server ({response})")]
    UnexpectedResponse {
        /// The call.
        operation: &'static str,
        /// The kind of response received.
        response: String,
    },
    /// An argument was rejected before anything was sent.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Framing, decoding or QUIC setup failed (shown as the protocol error itself).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A local file could not be read.
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SdkError {
    /// The server's error code (`not_found`, `invalid_input`, `in_use`, `unauthorized`, …)
    /// when the server refused the request; `None` for every other error.
    pub fn code(&self) -> Option<&str> {
        match self {
            SdkError::Server { code, .. } => Some(code.as_str()),
            _ => None,
        }
    }

    /// The server's error code, typed, when the server refused the request.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the server reported that the instance or image does not exist (or
    /// belongs to a tenant the caller may not act for).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("not_found")
    }

    /// True for errors reaching the server: connecting, TLS, deadlines and broken
    /// frames, as opposed to the server refusing a request or a local mistake.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            SdkError::Connect { .. }
                | SdkError::Tls(_)
                | SdkError::Timeout { .. }
                | SdkError::Protocol(_)
                | SdkError::UnexpectedResponse { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_expose_their_code() {
        let error = SdkError::Server {
            operation: "get_instance_status",
            code: ErrorCode::NotFound,
            message: "instance `x` not found".into(),
        };
        assert_eq!(error.code(), Some("not_found"));
        assert!(error.is_not_found());
        assert!(!error.is_connection_error());
        assert_eq!(
            error.to_string(),
            "get_instance_status failed: instance `x` not found (not_found)"
        );
    }

    #[test]
    fn errors_convert_into_boxed_std_errors() {
        fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
            Err(SdkError::Config("x".into()))?
        }
        assert!(boxed().is_err());
        let timeout = SdkError::Timeout {
            operation: "health",
            after: Duration::from_secs(3),
        };
        assert!(timeout.is_connection_error());
        assert_eq!(timeout.code(), None);
    }
}
