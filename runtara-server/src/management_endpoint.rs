//! The management endpoint: handshake, then one request per bidirectional stream.

use std::sync::Arc;
use std::time::Duration;

use runtara_protocol::{
    answer_hello, read_frame, write_frame, wrong_endpoint, Hello, HelloReply, ManagementRequest,
    ManagementResponse, Role, WireError, DEFAULT_MAX_FRAME_LEN,
};

use crate::connection_limits::{read_request, Budgets, Gate, Ticket};
use crate::management::{Caller, Management};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest hello accepted.
const MAX_HELLO_LEN: usize = 64 * 1024;

/// Accepts connections until the endpoint closes.
pub(crate) async fn serve(endpoint: quinn::Endpoint, management: Arc<Management>, gate: Arc<Gate>) {
    while let Some(incoming) = endpoint.accept().await {
        let Some(ticket) = gate.enter(incoming.remote_address().ip()) else {
            incoming.refuse();
            continue;
        };
        let (management, gate) = (management.clone(), gate.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_connection(incoming, management, &gate, ticket).await {
                tracing::debug!(%error, "management connection ended");
            }
        });
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    management: Arc<Management>,
    gate: &Gate,
    mut ticket: Ticket,
) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let Some(caller) =
        tokio::time::timeout(HELLO_TIMEOUT, handshake(&connection, &management)).await??
    else {
        return Ok(());
    };
    ticket.authenticated();
    let budgets = gate.budgets(&caller.budget_key());
    let caller = Arc::new(caller);
    let idle = gate.limits().idle_timeout;
    loop {
        let Ok(accepted) = tokio::time::timeout(idle, connection.accept_bi()).await else {
            // Idle unless a request is still being served (each holds a clone).
            if Arc::strong_count(&caller) > 1 {
                continue;
            }
            connection.close(0u32.into(), b"idle");
            return Ok(());
        };
        let (send, recv) = accepted?;
        let (management, caller, budgets) = (management.clone(), caller.clone(), budgets.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_request(send, recv, &management, &caller, &budgets).await {
                tracing::debug!(%error, "management stream failed");
            }
        });
    }
}

async fn handshake(
    connection: &quinn::Connection,
    management: &Management,
) -> anyhow::Result<Option<Caller>> {
    let (mut send, mut recv) = connection.accept_bi().await?;
    let server = format!("runtara-server/{}", env!("CARGO_PKG_VERSION"));
    let (reply, caller) = match read_frame::<_, Hello>(&mut recv, MAX_HELLO_LEN).await {
        Ok(Some(hello)) => match answer_hello(&hello, server) {
            HelloReply::Welcome { .. } if !matches!(hello.role, Role::Management { .. }) => {
                (HelloReply::Refused(wrong_endpoint(&hello.role)), None)
            }
            welcome @ HelloReply::Welcome { .. } => match management.authenticate(&hello) {
                Ok(caller) => (welcome, Some(caller)),
                Err(error) => (HelloReply::Refused(error), None),
            },
            refused => (refused, None),
        },
        Ok(None) => return Ok(None),
        Err(error) => (HelloReply::Refused(WireError::from(&error)), None),
    };
    if caller.is_some() {
        // Raised before the welcome goes out, so the client's next stream need not wait.
        runtara_protocol::endpoint::admit(connection);
    }
    write_frame(&mut send, &reply).await?;
    send.finish()?;
    if caller.is_none() {
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
        connection.close(1u32.into(), b"handshake refused");
    }
    Ok(caller)
}

async fn serve_request(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    management: &Management,
    caller: &Caller,
    budgets: &Budgets,
) -> anyhow::Result<()> {
    // The request's bytes stay reserved until it is answered.
    let (request, _held) =
        match read_request::<ManagementRequest>(&mut recv, DEFAULT_MAX_FRAME_LEN, budgets).await {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(()),
            Err(error) => {
                write_frame(&mut send, &ManagementResponse::Error(error)).await?;
                send.finish()?;
                let _ = recv.stop(0u32.into());
                return Ok(());
            }
        };
    let response = match request {
        ManagementRequest::RegisterImage {
            tenant_id,
            name,
            description,
            size_bytes,
            sha256,
        } => {
            management
                .register_image(
                    caller,
                    &mut recv,
                    tenant_id,
                    name,
                    description,
                    size_bytes,
                    &sha256,
                )
                .await
        }
        request => management.handle(caller, request).await,
    };
    write_frame(&mut send, &response).await?;
    send.finish()?;
    // Unread upload bytes (a refused image) must not hold the stream open.
    let _ = recv.stop(0u32.into());
    Ok(())
}
