//! Wire protocol of Runtara.
//!
//! Message types, length-prefixed framing with a size limit, one codec with one error
//! type, and the version handshake — shared by the server, the instance SDK and the
//! management SDK — plus the QUIC endpoints and TLS certificates they connect with.
//!
//! # Conversation
//!
//! A client connects over QUIC (ALPN [`ALPN`]), opens a bidirectional stream and sends a
//! [`Hello`] frame, answered by a [`HelloReply`]. Every later request uses a stream of
//! its own: one request frame, one response frame. An instance sends
//! [`InstanceRequest`]s and gets [`InstanceResponse`]s; an operator tool sends
//! [`ManagementRequest`]s and gets [`ManagementResponse`]s. Errors come back as a
//! [`WireError`] with a stable [`ErrorCode`]. An [`Envelope`] tags a message with a
//! request id, for several requests sharing one stream.
//!
//! # Frames
//!
//! A frame is a big-endian `u32` payload length followed by the payload, a message
//! encoded with [postcard](https://docs.rs/postcard). Readers refuse frames over their
//! limit ([`DEFAULT_MAX_FRAME_LEN`], 16 MiB) before allocating; truncated, oversized and
//! malformed frames are a [`ProtocolError`], never a panic.
//!
//! ```
//! use runtara_protocol::{decode_frame, encode_frame, ByteBuf, InstanceRequest, DEFAULT_MAX_FRAME_LEN};
//!
//! let request = InstanceRequest::Checkpoint {
//!     epoch: 1,
//!     checkpoint_id: "charge::order-42".into(),
//!     state: ByteBuf::from(b"{\"paid\":true}".to_vec()),
//! };
//! let frame = encode_frame(&request)?;
//! let back: InstanceRequest = decode_frame(&frame, DEFAULT_MAX_FRAME_LEN)?;
//! assert_eq!(back, request);
//! # Ok::<(), runtara_protocol::ProtocolError>(())
//! ```
//!
//! # Compatibility
//!
//! Both sides must speak the same [`PROTOCOL_VERSION`]; the handshake refuses any other
//! with `version_mismatch` and a message naming the side to upgrade. Within a version,
//! enums only grow at the end.

#[cfg(feature = "quic")]
pub mod client;
pub mod codec;
#[cfg(feature = "quic")]
pub mod endpoint;
pub mod envelope;
pub mod error;
pub mod error_code;
pub mod event_kind;
#[cfg(feature = "quic")]
pub mod exchange;
pub mod frame;
pub mod handshake;
pub mod instance;
pub mod management;
pub mod status;
#[cfg(feature = "quic")]
pub mod tls;
pub mod worker;

pub use codec::{decode_payload, encode_payload};
pub use envelope::{
    Envelope, InstanceRequestEnvelope, InstanceResponseEnvelope, ManagementRequestEnvelope,
    ManagementResponseEnvelope,
};
pub use error::{ProtocolError, Result};
pub use error_code::{ErrorCode, WireError};
pub use event_kind::EventKind;
#[cfg(feature = "quic")]
pub use exchange::{exchange, ExchangeError};
pub use frame::{
    decode_frame, encode_frame, read_frame, read_frame_len, read_frame_payload, write_frame,
    DEFAULT_MAX_FRAME_LEN, LENGTH_PREFIX_LEN,
};
pub use handshake::{answer_hello, check_hello, wrong_endpoint, Hello, HelloReply, Role};
pub use instance::{
    InstanceRequest, InstanceResponse, RecordedStep, WireSignal, WireSignalType, WireStatus,
    MAX_EVENT_HOLD_MS, MAX_EVENT_PAYLOAD_LEN, MAX_STATE_LEN, REPLAY_PAGE_BYTES,
};
pub use management::{
    ManagementRequest, ManagementResponse, MissedFires, UnknownMissedFires, WireCheckpoint,
    WireEvent, WireImage, WireInstance, WireSchedule, WireWorkerPool, MAX_EVENTS_PER_PAGE,
    MAX_INSTANCES_PER_PAGE, MAX_WAIT_MS,
};
pub use serde_bytes::ByteBuf;
pub use status::{InstanceStatus, ParseStatusError};
pub use worker::{WorkerCommand, WorkerMessage, WorkerReply};

/// Version of the wire protocol spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;

/// ALPN protocol id of Runtara's QUIC endpoints.
pub const ALPN: &[u8] = b"runtara/1";
