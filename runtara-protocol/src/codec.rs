//! Payload encoding: serde with postcard, a compact binary format.
//!
//! A payload is one message and nothing else; framing (the length prefix) is in
//! [`frame`](crate::frame).

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ProtocolError, Result};

/// Encodes `message` as a payload.
pub fn encode_payload<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>> {
    encode_after(message, Vec::new())
}

/// Appends the encoding of `message` to `buffer` (which may already hold a prefix).
pub(crate) fn encode_after<T: Serialize + ?Sized>(message: &T, buffer: Vec<u8>) -> Result<Vec<u8>> {
    postcard::to_extend(message, buffer).map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// Decodes a payload (a frame without its prefix). Trailing bytes are an error.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let (message, rest) =
        postcard::take_from_bytes(payload).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed(format!(
            "{} bytes after the end of the message",
            rest.len()
        )));
    }
    Ok(message)
}
