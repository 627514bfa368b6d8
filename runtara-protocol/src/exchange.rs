//! One request and its response on a new bidirectional QUIC stream: the client side
//! shared by the instance SDK and the management SDK.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{read_frame, write_frame, ProtocolError, DEFAULT_MAX_FRAME_LEN};

/// Bytes per write when streaming a raw body after the request frame.
pub const BODY_CHUNK: usize = 256 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The connection or stream broke (the server went away, restarted, reset the
    /// stream): worth another attempt on a new connection.
    #[error("{0}")]
    Transient(String),
    /// The reply cannot be understood; another attempt would not help. Shown as the
    /// protocol error itself, whose sources follow.
    #[error(transparent)]
    Fatal(ProtocolError),
}

/// Opens a stream, writes `request` as one frame, then `body` raw (if any), finishes the
/// stream and reads one response frame.
///
/// The server may answer before reading all of `body` (refusing an upload early): its
/// answer wins over the failed write.
pub async fn exchange<R: DeserializeOwned>(
    connection: &quinn::Connection,
    request: &impl Serialize,
    body: Option<&[u8]>,
) -> Result<R, ExchangeError> {
    let transient = |e: &dyn std::fmt::Display| ExchangeError::Transient(e.to_string());
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| transient(&e))?;
    let written: Result<(), ExchangeError> = async {
        write_frame(&mut send, request).await.map_err(|e| match e {
            ProtocolError::Io(io) => transient(&io),
            other => ExchangeError::Fatal(other),
        })?;
        for chunk in body.unwrap_or_default().chunks(BODY_CHUNK) {
            send.write_all(chunk).await.map_err(|e| transient(&e))?;
        }
        send.finish().map_err(|e| transient(&e))?;
        Ok(())
    }
    .await;
    let response = read_frame::<_, R>(&mut recv, DEFAULT_MAX_FRAME_LEN).await;
    match (written, response) {
        (_, Ok(Some(response))) => Ok(response),
        (Err(failure), _) => Err(failure),
        (Ok(()), Ok(None)) => Err(ExchangeError::Transient(
            "the server closed the stream without answering".into(),
        )),
        (Ok(()), Err(ProtocolError::Io(io))) => Err(transient(&io)),
        (Ok(()), Err(ProtocolError::Truncated { .. })) => {
            Err(ExchangeError::Transient("the reply was cut short".into()))
        }
        (Ok(()), Err(other)) => Err(ExchangeError::Fatal(other)),
    }
}
