//! The instance endpoint: handshake, then one request per bidirectional stream.

use std::sync::Arc;
use std::time::Duration;

use runtara_core::instance_handler::malformed_request;
use runtara_core::{handle_instance_request, InstanceIdentity, Persistence};
use runtara_protocol::{
    check_hello, read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest, Role,
    WireError, DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest hello accepted.
const MAX_HELLO_LEN: usize = 64 * 1024;

/// Accepts connections until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, store: Arc<dyn Persistence>) {
    while let Some(incoming) = endpoint.accept().await {
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(incoming, store).await {
                tracing::debug!(%error, "instance connection ended");
            }
        });
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    store: Arc<dyn Persistence>,
) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let Some(identity) = tokio::time::timeout(HELLO_TIMEOUT, handshake(&connection)).await?? else {
        return Ok(());
    };
    tracing::debug!(instance_id = %identity.instance_id, remote = %connection.remote_address(), "instance connected");
    let identity = Arc::new(identity);
    loop {
        let (send, recv) = connection.accept_bi().await?;
        let (store, identity) = (store.clone(), identity.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_request(send, recv, &*store, &identity).await {
                tracing::debug!(%error, "request stream failed");
            }
        });
    }
}

/// Reads the hello; answers it; returns the caller's identity if it was accepted.
async fn handshake(connection: &quinn::Connection) -> anyhow::Result<Option<InstanceIdentity>> {
    let (mut send, mut recv) = connection.accept_bi().await?;
    let refuse = |error: WireError| HelloReply::Refused(error);
    let (reply, identity) = match read_frame::<_, Hello>(&mut recv, MAX_HELLO_LEN).await {
        Ok(Some(hello)) => match (check_hello(&hello), hello.role) {
            (Err(error), _) => (refuse(WireError::from(&error)), None),
            (Ok(()), Role::Instance { instance_id, tenant_id, .. }) => (
                HelloReply::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    server: format!("runtara-server/{}", env!("CARGO_PKG_VERSION")),
                },
                Some(InstanceIdentity {
                    instance_id,
                    tenant_id,
                }),
            ),
            (Ok(()), Role::Management { .. }) => (
                refuse(WireError::new(
                    ErrorCode::Unsupported,
                    "this is the instance endpoint; management clients connect to the management endpoint",
                )),
                None,
            ),
        },
        Ok(None) => return Ok(None),
        Err(error) => (refuse(WireError::from(&error)), None),
    };
    write_frame(&mut send, &reply).await?;
    send.finish()?;
    if identity.is_none() {
        // Let the refusal reach the client before closing.
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
        connection.close(1u32.into(), b"handshake refused");
    }
    Ok(identity)
}

async fn serve_request(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    store: &dyn Persistence,
    identity: &InstanceIdentity,
) -> anyhow::Result<()> {
    let response = match read_frame::<_, InstanceRequest>(&mut recv, DEFAULT_MAX_FRAME_LEN).await {
        Ok(Some(request)) => handle_instance_request(store, identity, request).await,
        Ok(None) => return Ok(()),
        Err(error) => malformed_request(error.to_string()),
    };
    write_frame(&mut send, &response).await?;
    send.finish()?;
    Ok(())
}
