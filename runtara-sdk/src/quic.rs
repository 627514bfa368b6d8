//! The QUIC backend: the instance talks to `runtara-server`.
//!
//! One connection per SDK, one bidirectional stream per request. Every request has a
//! deadline (`request_timeout`); a lost connection is re-established with backoff and the
//! request sent again until the deadline, so an instance rides out a server restart.
//! Checkpoints are idempotent by id; the SDK recognizes a repeated completion, failure,
//! suspension or signal acknowledgement that the server had already applied (see
//! [`Backend::send`]'s resent flag).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtara_core::wire::from_wire;
use runtara_core::Persistence;
use runtara_protocol::client::{
    trust_ca_file, warn_unverified, Backoff, Client, ClientError, ClientSettings,
};
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{Hello, InstanceRequest, InstanceResponse, Role, WireError};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::{Result, SdkConfig, SdkError};

/// The QUIC backend.
pub(crate) struct Quic {
    config: SdkConfig,
    client: Client,
    /// The requests under way, which [`Backend::close`] waits for.
    requests: UnderWay,
}

/// Counts the requests under way and wakes who waits for there to be none.
#[derive(Default)]
struct UnderWay {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request under way, until dropped.
struct Request<'a>(&'a UnderWay);

impl UnderWay {
    fn enter(&self) -> Request<'_> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Request(self)
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Returns once no request is under way.
    async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        let before = self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if before == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Longest [`Backend::close`] waits for requests under way and for the server to
/// acknowledge the close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

impl std::fmt::Debug for Quic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quic")
            .field("server_addr", &self.config.server_addr)
            .field("instance_id", &self.config.instance_id)
            .finish()
    }
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt on a new connection.
    Transient(String),
    /// Final.
    Fatal(SdkError),
}

impl Quic {
    /// Checks the TLS settings and builds the backend (no I/O beyond reading the CA file).
    pub(crate) fn new(config: SdkConfig) -> Result<Quic> {
        let tls = client_tls(&config)?;
        let hello = Hello::new(
            concat!("runtara-sdk/", env!("CARGO_PKG_VERSION")),
            Role::Instance {
                instance_id: config.instance_id.clone(),
                tenant_id: config.tenant_id.clone(),
                credential: config.credential.clone(),
            },
        );
        let client = Client::new(ClientSettings {
            addrs: vec![config.server_addr],
            shown: config.server_addr.to_string(),
            server_name: config.server_name.clone(),
            tls,
            hello,
        });
        Ok(Quic {
            config,
            client,
            requests: UnderWay::default(),
        })
    }

    /// What a failed attempt means for this SDK: try again, or give up with this error.
    /// The server closing a connection during the handshake is worth another attempt
    /// (it may be restarting or shedding load).
    fn failure(error: ClientError) -> Failure {
        match error {
            ClientError::Lost(message) => Failure::Transient(message),
            ClientError::ClosedByServer(source) => Failure::Transient(source.to_string()),
            ClientError::Handshake { addr, source } => Failure::Fatal(SdkError::Tls(format!(
                "handshake with {addr} failed: {source}"
            ))),
            ClientError::Refused(error) => Failure::Fatal(refused("hello", error)),
            ClientError::Protocol(error) => Failure::Fatal(error.into()),
            other => Failure::Fatal(SdkError::Tls(other.to_string())),
        }
    }

    /// Sends `request` until it gets an answer or its deadline passes; also says whether
    /// it was sent more than once.
    async fn call_tracked(
        &self,
        operation: &'static str,
        request: &InstanceRequest,
    ) -> (Result<InstanceResponse>, bool) {
        let mut attempts = 0u32;
        let _under_way = self.requests.enter();
        let result = self
            .send_until_deadline(operation, request, &mut attempts)
            .await;
        (result, attempts > 1)
    }

    async fn send_until_deadline(
        &self,
        operation: &'static str,
        request: &InstanceRequest,
        attempts: &mut u32,
    ) -> Result<InstanceResponse> {
        let deadline = Instant::now() + self.config.request_timeout;
        let mut backoff = Backoff::new();
        loop {
            *attempts += 1;
            let attempt = async {
                self.client
                    .exchange::<InstanceResponse>(request, None)
                    .await
                    .map_err(Self::failure)
            };
            let last_error = match tokio::time::timeout_at(deadline, attempt).await {
                Err(_) => {
                    return Err(SdkError::Timeout {
                        operation,
                        after: self.config.request_timeout,
                    })
                }
                Ok(Ok(InstanceResponse::Error(error))) if error.code.is_retryable() => {
                    // The server is up but could not do it now (its database connection
                    // dropped, it is shutting down): every instance request is safe to
                    // send again, so retry until the deadline on the same connection.
                    tracing::debug!(operation, attempts, code = %error.code, message = %error.message, "server could not answer now; retrying");
                    let wait = backoff.next_wait();
                    if Instant::now() + wait >= deadline {
                        return Err(self.wire_error(operation, error));
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Ok(Ok(InstanceResponse::Error(error))) => {
                    return Err(self.wire_error(operation, error));
                }
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(Failure::Fatal(error))) => return Err(error),
                Ok(Err(Failure::Transient(message))) => message,
            };
            tracing::debug!(operation, attempts, error = %last_error, "request failed; reconnecting");
            self.client.forget().await;
            let wait = backoff.next_wait();
            if Instant::now() + wait >= deadline {
                return Err(SdkError::Connect {
                    addr: self.config.server_addr,
                    message: last_error,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn wire_error(&self, operation: &'static str, error: WireError) -> SdkError {
        match from_wire(&self.config.instance_id, &error) {
            Some(engine) => SdkError::Persistence(engine),
            None => refused(operation, error),
        }
    }
}

/// What the client trusts: the config's CA file, or nothing when verification is off.
pub(crate) fn client_tls(config: &SdkConfig) -> Result<ClientTls> {
    if config.skip_cert_verification {
        warn_unverified(&config.server_addr);
        return Ok(ClientTls::SkipVerification);
    }
    let path = config.ca_cert.as_ref().ok_or_else(|| {
        SdkError::Tls(
            "no certificate to trust: set RUNTARA_CA_CERT to the server's \
             `<data-dir>/tls/ca.pem` (or use `SdkConfig::localhost()` for local development)"
                .into(),
        )
    })?;
    trust_ca_file(path).map_err(|e| {
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        SdkError::Tls(format!("{e}: {}", cause.unwrap_or_default()))
    })
}

/// Refuses, before sending, a state the server would refuse: one that could not be
/// replayed in one frame.
fn check_state_len(checkpoint_id: &str, state: &[u8]) -> Result<()> {
    if state.len() > runtara_protocol::MAX_STATE_LEN {
        return Err(SdkError::Persistence(runtara_core::Error::InvalidInput {
            what: "checkpoint state",
            reason: format!(
                "the state of `{checkpoint_id}` is {} bytes; the limit over QUIC is {}",
                state.len(),
                runtara_protocol::MAX_STATE_LEN
            ),
        }));
    }
    Ok(())
}

fn refused(operation: &'static str, error: WireError) -> SdkError {
    SdkError::Server {
        operation,
        code: error.code,
        message: error.message,
    }
}

#[async_trait]
impl Backend for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }

    async fn connect(&self) -> Result<()> {
        let deadline = Instant::now() + self.config.connect_timeout;
        let mut backoff = Backoff::new();
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.client.connection()).await;
            let message = match attempt.map(|a| a.map_err(Self::failure)) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(Failure::Fatal(error))) => return Err(error),
                Ok(Err(Failure::Transient(message))) => message,
                Err(_) => "no answer before the connect timeout".to_owned(),
            };
            let wait = backoff.next_wait();
            if Instant::now() + wait >= deadline {
                return Err(SdkError::Connect {
                    addr: self.config.server_addr,
                    message,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn is_connected(&self) -> bool {
        self.client.is_connected().await
    }

    async fn close(&self) {
        // Let the requests under way finish (their writes are stored before the process
        // ends), then close the connection so the server sees a goodbye, not a silence.
        let drained = tokio::time::timeout(CLOSE_GRACE, self.requests.idle()).await;
        if drained.is_err() {
            tracing::warn!("requests still under way when the connection was closed");
        }
        self.client.close(CLOSE_GRACE).await;
    }

    async fn send(&self, request: InstanceRequest) -> (Result<InstanceResponse>, bool) {
        if let Some((checkpoint_id, state)) = request.checkpoint_state() {
            if let Err(error) = check_state_len(checkpoint_id, state) {
                return (Err(error), false);
            }
        }
        self.call_tracked(request.operation(), &request).await
    }

    fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    /// A server on loopback ports of its own, in this process.
    async fn server(dir: &std::path::Path) -> runtara_server::RunningServer {
        let mut config = runtara_server::ServerConfig::new(dir);
        config.instance_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.management_addr = SocketAddr::from(([127, 0, 0, 1], 0));
        config.instance_threads = Some(0);
        runtara_server::start(config)
            .await
            .expect("the server starts")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_lets_the_requests_under_way_finish_on_their_connection() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = server(dir.path()).await;
        let ca = server.ca_path.clone().expect("the dev certificate");
        let config = SdkConfig::new("closing", "acme")
            .with_server_addr(server.instance_addr)
            .with_ca_cert(ca);
        let quic = Arc::new(Quic::new(config).expect("a usable config"));
        quic.connect().await.expect("connects");
        let (registered, _) = quic
            .send(InstanceRequest::RegisterPaged {
                checkpoint_id: None,
            })
            .await;
        let epoch = match registered.expect("registers") {
            InstanceResponse::RegisteredPage { epoch, .. } => epoch,
            other => panic!("unexpected {other:?}"),
        };
        let sends: Vec<_> = (0..20)
            .map(|i| {
                let quic = quic.clone();
                tokio::spawn(async move {
                    quic.send(InstanceRequest::Checkpoint {
                        epoch,
                        checkpoint_id: format!("step-{i}"),
                        state: runtara_protocol::ByteBuf::from(vec![7; 1024 * 1024]),
                    })
                    .await
                })
            })
            .collect();
        // Let the sends get under way, then close as a long sleep's exit does.
        while quic.requests.count() < 20 {
            tokio::task::yield_now().await;
        }
        quic.close().await;
        for send in sends {
            let (result, resent) = send.await.expect("the task ends");
            result.expect("the checkpoint is stored");
            assert!(
                !resent,
                "a request under way was cut off by the close and sent again"
            );
        }
        let stored = server
            .persistence
            .list_checkpoints("closing")
            .await
            .expect("reads");
        assert_eq!(stored.len(), 20);
        assert!(
            !quic.is_connected().await,
            "a request reconnected after the close"
        );
        server.shutdown().await;
    }
}
