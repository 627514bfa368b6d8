//! Requests of operator tools on the management endpoint.
//!
//! Only the frame of the family for now: the calls of `runtara-management-sdk`
//! (images, start, list, signals) are added here as they are built. New variants are
//! appended, never inserted, so that existing ones keep their wire index.

use serde::{Deserialize, Serialize};

use crate::{WireError, WireStatus};

/// A request from an operator tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagementRequest {
    /// Is the server there? Answered by [`ManagementResponse::Pong`].
    Ping,
    /// Status of one instance of a tenant. Answered by [`ManagementResponse::Status`].
    GetInstanceStatus {
        /// The tenant the caller acts for.
        tenant_id: String,
        /// The instance.
        instance_id: String,
    },
}

/// The server's response to a [`ManagementRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagementResponse {
    /// Reply to `Ping`.
    Pong {
        /// Server name and version (`runtara-server/0.1.0`).
        server: String,
        /// The server's clock, milliseconds since the Unix epoch.
        server_time_ms: i64,
    },
    /// Reply to `GetInstanceStatus`.
    Status(WireStatus),
    /// The request failed.
    Error(WireError),
}
