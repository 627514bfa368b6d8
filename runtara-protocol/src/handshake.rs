//! The first exchange on a connection: who is calling, and in which protocol version.
//!
//! The client opens a bidirectional stream, sends a [`Hello`] frame and reads a
//! [`HelloReply`]; the server answers with [`answer_hello`]. After a welcome, the
//! caller's identity holds for every request on the connection; the server keeps
//! nothing else per connection, so a client that lost its connection (a server restart)
//! just connects again and says hello.

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, ProtocolError, WireError, PROTOCOL_VERSION};

/// Who is connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// An instance process; every request on the connection acts on this instance.
    Instance {
        /// The instance id.
        instance_id: String,
        /// Its tenant.
        tenant_id: String,
        /// The credential the server issued the process at launch, if any.
        credential: Option<String>,
    },
    /// An operator tool on the management endpoint.
    Management {
        /// The access token, if the server requires one.
        token: Option<String>,
    },
    /// A worker process: it runs the instances of one image and tenant that the server
    /// sends it ([`crate::worker`]), all on this connection.
    Worker {
        /// The worker's id, given by the server at launch.
        worker_id: String,
        /// The tenant of every instance it runs.
        tenant_id: String,
        /// The image it is.
        image_id: String,
        /// The credential the server issued the worker at launch.
        credential: Option<String>,
    },
}

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub protocol_version: u32,
    /// Client name and version, for logs (`runtara-sdk/1.0.0`).
    pub client: String,
    /// Who is calling.
    pub role: Role,
}

impl Hello {
    /// A hello in this crate's protocol version.
    pub fn new(client: impl Into<String>, role: Role) -> Self {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            client: client.into(),
            role,
        }
    }

    /// The secret the caller presents: an instance's credential or a management token.
    pub fn credential(&self) -> Option<&str> {
        match &self.role {
            Role::Instance { credential, .. } | Role::Worker { credential, .. } => {
                credential.as_deref()
            }
            Role::Management { token } => token.as_deref(),
        }
    }
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted.
    Welcome {
        /// The server's protocol version.
        protocol_version: u32,
        /// Server name and version (`runtara-server/1.0.0`).
        server: String,
    },
    /// Refused, with the reason (`version_mismatch`, `unauthorized`, `unsupported`, …).
    Refused(WireError),
}

impl HelloReply {
    /// A welcome in this crate's protocol version.
    pub fn welcome(server: impl Into<String>) -> Self {
        HelloReply::Welcome {
            protocol_version: PROTOCOL_VERSION,
            server: server.into(),
        }
    }

    /// Client side: the server's name on a welcome, the server's error on a refusal.
    pub fn into_result(self) -> Result<String, WireError> {
        match self {
            HelloReply::Welcome { server, .. } => Ok(server),
            HelloReply::Refused(error) => Err(error),
        }
    }
}

/// Checks a client's hello against this crate's protocol version.
pub fn check_hello(hello: &Hello) -> Result<(), ProtocolError> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ProtocolError::VersionMismatch {
            client: hello.protocol_version,
            server: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// The server's reply to `hello` as far as the protocol goes: a welcome naming `server`,
/// or a `version_mismatch` refusal. Credentials and roles are the server's to check.
pub fn answer_hello(hello: &Hello, server: impl Into<String>) -> HelloReply {
    match check_hello(hello) {
        Ok(()) => HelloReply::welcome(server),
        Err(error) => HelloReply::Refused(WireError::from(&error)),
    }
}

/// A refusal for a client that connected to the wrong endpoint.
pub fn wrong_endpoint(role: &Role) -> WireError {
    let message = match role {
        Role::Instance { .. } | Role::Worker { .. } => {
            "this is the management endpoint; instances and workers connect to the instance endpoint"
        }
        Role::Management { .. } => {
            "this is the instance endpoint; management clients connect to the management endpoint"
        }
    };
    WireError::new(ErrorCode::Unsupported, message)
}
