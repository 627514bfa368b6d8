//! The backend of an instance hosted by a worker process: its requests travel on the
//! worker's one connection to `runtara-server`, each in a [`WorkerMessage::Instance`]
//! envelope naming the instance.
//!
//! No request is sent twice: a worker whose connection is lost stops (the server runs
//! its instances again elsewhere), so a lost answer is an error here, never a retry.

use std::sync::Arc;

use async_trait::async_trait;
use runtara_core::wire::from_wire;
use runtara_core::Persistence;
use runtara_protocol::{
    read_frame, write_frame, InstanceRequest, InstanceResponse, WorkerMessage,
    DEFAULT_MAX_FRAME_LEN,
};

use crate::backend::Backend;
use crate::{Result, SdkError};

/// One instance's requests over its worker's connection.
pub(crate) struct Hosted {
    connection: quinn::Connection,
    instance_id: String,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("instance_id", &self.instance_id)
            .field("server", &self.connection.remote_address())
            .finish()
    }
}

impl Hosted {
    pub(crate) fn new(connection: quinn::Connection, instance_id: String) -> Hosted {
        Hosted {
            connection,
            instance_id,
        }
    }

    /// Sends `message` on a stream of its own and reads the answer.
    pub(crate) async fn exchange(
        connection: &quinn::Connection,
        message: &WorkerMessage,
    ) -> std::result::Result<InstanceResponse, String> {
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        write_frame(&mut send, message)
            .await
            .map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        match read_frame::<_, InstanceResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN).await {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err("the server closed the stream without an answer".into()),
            Err(error) => Err(error.to_string()),
        }
    }
}

#[async_trait]
impl Backend for Hosted {
    fn name(&self) -> &'static str {
        "worker"
    }

    async fn connect(&self) -> Result<()> {
        Ok(())
    }

    async fn is_connected(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    async fn send(&self, request: InstanceRequest) -> (Result<InstanceResponse>, bool) {
        let operation = request.operation();
        let message = WorkerMessage::Instance {
            instance_id: self.instance_id.clone(),
            request,
        };
        let result = match Hosted::exchange(&self.connection, &message).await {
            Ok(InstanceResponse::Error(error)) => Err(match from_wire(&self.instance_id, &error) {
                Some(engine) => SdkError::Persistence(engine),
                None => SdkError::Server {
                    operation,
                    code: error.code,
                    message: error.message,
                },
            }),
            Ok(response) => Ok(response),
            Err(message) => Err(SdkError::Connect {
                addr: self.connection.remote_address(),
                message,
            }),
        };
        (result, false)
    }

    async fn close(&self) {
        // The worker's connection outlives its instances.
    }

    fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        None
    }
}
