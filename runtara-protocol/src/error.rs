//! The one error type of the protocol crate.

/// Result type of `runtara-protocol`.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;

/// Everything framing, decoding, the handshake and the endpoints can fail with.
///
/// Decoding never panics: truncated, oversized and malformed input all end up here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The input ended before the frame did.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the frame announced (or the 4-byte length prefix).
        expected: usize,
        /// Bytes available.
        got: usize,
    },
    /// A frame's announced length is over the limit; nothing was allocated for it.
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced (or, when encoding, actual) payload length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not a valid message (the decoder's message says why).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The peer speaks another protocol version.
    #[error(
        "protocol version mismatch: the client speaks runtara protocol v{client}, the server \
         speaks v{server}; {hint}",
        hint = upgrade_hint(*.client, *.server)
    )]
    VersionMismatch {
        /// Client's version.
        client: u32,
        /// Server's version.
        server: u32,
    },
    /// Reading or writing the stream (or a file) failed.
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    /// A TLS or certificate problem.
    #[error("tls: {0}")]
    Tls(String),
    /// Setting up or using a QUIC endpoint failed.
    #[error("quic: {0}")]
    Quic(String),
}

/// Which side to upgrade, in words.
fn upgrade_hint(client: u32, server: u32) -> String {
    if client > server {
        format!(
            "upgrade runtara-server to a release that speaks v{client}, or use a client built \
             for v{server}"
        )
    } else {
        format!(
            "upgrade the client (runtara-sdk / runtara-management-sdk) to a release that speaks \
             v{server}"
        )
    }
}
