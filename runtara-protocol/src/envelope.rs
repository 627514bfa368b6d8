//! The envelope that tags a message with its request id.
//!
//! A response carries the id of the request it answers, so several requests can share
//! one stream and be answered out of order. With one request per stream the id is still
//! sent; any value works.

use serde::{Deserialize, Serialize};

use crate::{InstanceRequest, InstanceResponse, ManagementRequest, ManagementResponse};

/// A message and the id of the request it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Chosen by the client, unique among its requests in flight on the connection;
    /// echoed in the response.
    pub request_id: u64,
    /// The message.
    pub body: T,
}

impl<T> Envelope<T> {
    /// Wraps `body`.
    pub fn new(request_id: u64, body: T) -> Self {
        Envelope { request_id, body }
    }

    /// The envelope of the answer to this message: same id, new body.
    pub fn reply<U>(&self, body: U) -> Envelope<U> {
        Envelope {
            request_id: self.request_id,
            body,
        }
    }
}

/// An instance request in its envelope.
pub type InstanceRequestEnvelope = Envelope<InstanceRequest>;
/// An instance response in its envelope.
pub type InstanceResponseEnvelope = Envelope<InstanceResponse>;
/// A management request in its envelope.
pub type ManagementRequestEnvelope = Envelope<ManagementRequest>;
/// A management response in its envelope.
pub type ManagementResponseEnvelope = Envelope<ManagementResponse>;
