//! Length-prefixed frames: a big-endian `u32` payload length, then the payload.
//!
//! Every reader has a maximum frame length ([`DEFAULT_MAX_FRAME_LEN`] unless it asks for
//! another); the prefix is checked against it before anything is allocated.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{decode_payload, encode_after};
use crate::{ProtocolError, Result};

/// Largest frame payload accepted by default (16 MiB).
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Room reserved up front when encoding; most requests fit.
const ENCODE_CAPACITY: usize = 256;

/// Most bytes allocated before any of them arrived: a peer announcing a large frame
/// has to send it to make the buffer grow.
const READ_CAPACITY: usize = 64 * 1024;

/// Encodes `message` as one frame (prefix and payload).
pub fn encode_frame<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>> {
    let mut buffer = Vec::with_capacity(ENCODE_CAPACITY);
    buffer.extend_from_slice(&[0; LENGTH_PREFIX_LEN]);
    let mut frame = encode_after(message, buffer)?;
    let len = frame.len() - LENGTH_PREFIX_LEN;
    let prefix = u32::try_from(len).map_err(|_| ProtocolError::FrameTooLarge {
        len,
        max: u32::MAX as usize,
    })?;
    frame[..LENGTH_PREFIX_LEN].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Decodes one frame held whole in `bytes` (prefix and payload, nothing after), with
/// payloads longer than `max` refused.
pub fn decode_frame<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T> {
    let Some((prefix, payload)) = bytes.split_first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Err(ProtocolError::Truncated {
            expected: LENGTH_PREFIX_LEN,
            got: bytes.len(),
        });
    };
    let len = payload_len(*prefix, max)?;
    if payload.len() < len {
        return Err(ProtocolError::Truncated {
            expected: len,
            got: payload.len(),
        });
    }
    if payload.len() > len {
        return Err(ProtocolError::Malformed(format!(
            "{} bytes after the end of the frame",
            payload.len() - len
        )));
    }
    decode_payload(payload)
}

/// The payload length a prefix announces, refused when over `max`.
pub fn payload_len(prefix: [u8; LENGTH_PREFIX_LEN], max: usize) -> Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(ProtocolError::FrameTooLarge { len, max });
    }
    Ok(len)
}

/// Reads one frame from `reader`, refusing payloads longer than `max`.
///
/// The prefix is checked before anything is allocated, and the buffer grows only as
/// bytes arrive. Returns `None` on a clean end of stream before the first byte; an end
/// of stream anywhere else is [`ProtocolError::Truncated`].
pub async fn read_frame<R, T>(reader: &mut R, max: usize) -> Result<Option<T>>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let Some(len) = read_frame_len(reader, max).await? else {
        return Ok(None);
    };
    read_frame_payload(reader, len).await.map(Some)
}

/// The first half of [`read_frame`]: reads and checks the length prefix. `None` on a
/// clean end of stream before the first byte. A server reads the prefix, reserves room
/// for the payload it announces (see `runtara-server`'s request budgets), then reads the
/// payload with [`read_frame_payload`].
pub async fn read_frame_len<R>(reader: &mut R, max: usize) -> Result<Option<usize>>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    let mut got = 0;
    while got < LENGTH_PREFIX_LEN {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(ProtocolError::Truncated {
                expected: LENGTH_PREFIX_LEN,
                got,
            });
        }
        got += n;
    }
    payload_len(prefix, max).map(Some)
}

/// The second half of [`read_frame`]: reads a payload of `len` bytes and decodes it.
pub async fn read_frame_payload<R, T>(reader: &mut R, len: usize) -> Result<T>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let mut payload = Vec::with_capacity(len.min(READ_CAPACITY));
    let got = (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut payload)
        .await?;
    if got < len {
        return Err(ProtocolError::Truncated { expected: len, got });
    }
    decode_payload(&payload)
}

/// Writes `message` as one frame, in one write.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize + ?Sized,
{
    let frame = encode_frame(message)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A reader that hands out one byte per read, to exercise partial reads.
    struct Trickle<'a>(&'a [u8]);

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some((first, rest)) = self.0.split_first() {
                buf.put_slice(&[*first]);
                self.0 = rest;
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_arriving_a_byte_at_a_time_are_read_whole() {
        let mut bytes = encode_frame(&("hello".to_string(), 7u64)).unwrap();
        bytes.extend(encode_frame(&("again".to_string(), 8u64)).unwrap());
        let mut reader = Trickle(&bytes);
        let first: (String, u64) = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        let second: (String, u64) = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(first, ("hello".into(), 7));
        assert_eq!(second, ("again".into(), 8));
        let end: Option<(String, u64)> = read_frame(&mut reader, 1024).await.unwrap();
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn a_short_payload_reports_what_arrived() {
        let mut input: &[u8] = &[0, 0, 0, 9, 1, 2, 3];
        let error = read_frame::<_, Vec<u8>>(&mut input, 1024)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                ProtocolError::Truncated {
                    expected: 9,
                    got: 3
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "truncated frame: expected 9 bytes, got 3"
        );
    }

    #[tokio::test]
    async fn the_limit_is_per_reader() {
        let frame = encode_frame(&vec![0u8; 100]).unwrap();
        let mut input: &[u8] = &frame;
        let error = read_frame::<_, Vec<u8>>(&mut input, 50).await.unwrap_err();
        assert!(matches!(
            error,
            ProtocolError::FrameTooLarge { len: 101, max: 50 }
        ));
        assert!(decode_frame::<Vec<u8>>(&frame, 101).is_ok());
        assert!(decode_frame::<Vec<u8>>(&frame, 100).is_err());
    }
}
