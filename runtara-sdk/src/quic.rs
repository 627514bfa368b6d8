//! The QUIC backend: the instance talks to `runtara-server`.
//!
//! One connection per SDK, one bidirectional stream per request. Every request has a
//! deadline (`request_timeout`); a lost connection is re-established with backoff and the
//! request sent again until the deadline, so an instance rides out a server restart.
//! Checkpoints are idempotent by id; a repeated completion, failure, suspension or signal
//! acknowledgement that the server had already applied is recognized and treated as done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtara_core::wire::from_wire;
use runtara_core::{
    CheckpointOutcome, InstanceRecord, InstanceStatus, PendingSignal, Persistence, Producers,
    ReplayLog, SignalType,
};
use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    ByteBuf, ErrorCode, ExchangeError, Hello, HelloReply, InstanceRequest, InstanceResponse, Role,
    WireError,
};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::{Result, SdkConfig, SdkError};

/// Longest a single connection attempt may take before it is retried.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(2);
/// First and largest wait between retries.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));

/// The QUIC backend.
pub(crate) struct Quic {
    config: SdkConfig,
    tls: ClientTls,
    live: tokio::sync::Mutex<Option<Live>>,
}

struct Live {
    endpoint: quinn::Endpoint,
    connection: Option<quinn::Connection>,
}

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
        let tls = if config.skip_cert_verification {
            warn_unverified(&config.server_addr);
            ClientTls::SkipVerification
        } else {
            let path = config.ca_cert.as_ref().ok_or_else(|| {
                SdkError::Tls(
                    "no certificate to trust: set RUNTARA_CA_CERT to the server's \
                     `<data-dir>/tls/ca.pem` (or use `SdkConfig::localhost()` for local development)"
                        .into(),
                )
            })?;
            let ca_pem = std::fs::read(path).map_err(|e| {
                SdkError::Tls(format!(
                    "cannot read the CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            ClientTls::Verify { ca_pem }
        };
        Ok(Quic {
            config,
            tls,
            live: tokio::sync::Mutex::new(None),
        })
    }

    /// The current connection, or a new one (handshake included).
    async fn connection(&self) -> Result<quinn::Connection, Failure> {
        let mut live = self.live.lock().await;
        if let Some(connection) = live.as_ref().and_then(|l| l.connection.as_ref()) {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
        }
        let endpoint = match live.take() {
            Some(existing) => existing.endpoint,
            None => client_endpoint(&self.tls, self.config.server_addr)
                .map_err(|e| Failure::Fatal(e.into()))?,
        };
        let connecting = endpoint
            .connect(self.config.server_addr, &self.config.server_name)
            .map_err(|e| {
                Failure::Fatal(SdkError::Connect {
                    addr: self.config.server_addr,
                    message: e.to_string(),
                })
            });
        *live = Some(Live {
            endpoint,
            connection: None,
        });
        let connection = match tokio::time::timeout(CONNECT_ATTEMPT, connecting?).await {
            Err(_) => return Err(Failure::Transient("connection attempt timed out".into())),
            Ok(Err(quinn::ConnectionError::TransportError(error))) => {
                // A TLS or protocol failure: retrying will not change it.
                return Err(Failure::Fatal(SdkError::Tls(format!(
                    "handshake with {} failed: {error}",
                    self.config.server_addr
                ))));
            }
            Ok(Err(error)) => return Err(Failure::Transient(error.to_string())),
            Ok(Ok(connection)) => connection,
        };
        self.hello(&connection).await?;
        if let Some(live) = live.as_mut() {
            live.connection = Some(connection.clone());
        }
        Ok(connection)
    }

    async fn hello(&self, connection: &quinn::Connection) -> Result<(), Failure> {
        let hello = Hello::new(
            concat!("runtara-sdk/", env!("CARGO_PKG_VERSION")),
            Role::Instance {
                instance_id: self.config.instance_id.clone(),
                tenant_id: self.config.tenant_id.clone(),
                credential: self.config.credential.clone(),
            },
        );
        match exchange::<HelloReply>(connection, &hello).await? {
            HelloReply::Welcome { .. } => Ok(()),
            HelloReply::Refused(error) => Err(Failure::Fatal(refused("hello", error))),
        }
    }

    async fn forget_connection(&self) {
        if let Some(live) = self.live.lock().await.as_mut() {
            live.connection = None;
        }
    }

    /// Sends `request` until it gets an answer or its deadline passes.
    async fn call(
        &self,
        operation: &'static str,
        request: &InstanceRequest,
    ) -> Result<InstanceResponse> {
        self.call_tracked(operation, request).await.0
    }

    /// Like [`call`](Self::call), also saying whether the request was sent more than once.
    async fn call_tracked(
        &self,
        operation: &'static str,
        request: &InstanceRequest,
    ) -> (Result<InstanceResponse>, bool) {
        let mut attempts = 0u32;
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
        let mut backoff = BACKOFF.0;
        loop {
            *attempts += 1;
            let attempt = async {
                let connection = self.connection().await?;
                exchange::<InstanceResponse>(&connection, request).await
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
                    if Instant::now() + backoff >= deadline {
                        return Err(self.wire_error(operation, error));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
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
            self.forget_connection().await;
            if Instant::now() + backoff >= deadline {
                return Err(SdkError::Connect {
                    addr: self.config.server_addr,
                    message: last_error,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    fn wire_error(&self, operation: &'static str, error: WireError) -> SdkError {
        match from_wire(&self.config.instance_id, &error) {
            Some(engine) => SdkError::Persistence(engine),
            None => refused(operation, error),
        }
    }

    /// A state-changing write: when it had to be sent again (its first reply was lost)
    /// and the server reports the very state it asks for, the first send was applied.
    async fn settle(
        &self,
        operation: &'static str,
        request: InstanceRequest,
        already_done: InstanceStatus,
    ) -> Result<()> {
        match self.call_tracked(operation, &request).await {
            (Ok(_), _) => Ok(()),
            (
                Err(SdkError::Persistence(
                    runtara_core::Error::Terminal { status, .. }
                    | runtara_core::Error::NotRunning { status, .. },
                )),
                true,
            ) if status == already_done => Ok(()),
            (Err(error), _) => Err(error),
        }
    }

    /// `register` in one frame, for servers that do not page the replay log.
    async fn register_whole(&self, checkpoint_id: Option<String>) -> Result<(i64, ReplayLog)> {
        let request = InstanceRequest::Register { checkpoint_id };
        let response = self.call("register", &request).await?;
        Self::expect("register", response, |r| match r {
            InstanceResponse::Registered {
                epoch,
                checkpoints,
                retry_attempts,
            } => Some((
                epoch,
                ReplayLog {
                    checkpoints: recorded(checkpoints),
                    retry_attempts,
                    retry_at_ms: Vec::new(),
                    failures: Vec::new(),
                    producers: Producers::default(),
                    more_after: None,
                },
            )),
            _ => None,
        })
    }

    fn expect<T>(
        operation: &'static str,
        response: InstanceResponse,
        pick: impl FnOnce(InstanceResponse) -> Option<T>,
    ) -> Result<T> {
        pick(response).ok_or_else(|| SdkError::Server {
            operation,
            code: "unexpected_response".into(),
            message: "the server answered with a response of another kind".into(),
        })
    }
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

fn recorded(steps: Vec<runtara_protocol::RecordedStep>) -> Vec<(String, Vec<u8>)> {
    steps
        .into_iter()
        .map(|step| (step.checkpoint_id, step.state.into_vec()))
        .collect()
}

fn refused(operation: &'static str, error: WireError) -> SdkError {
    SdkError::Server {
        operation,
        code: error.code.as_str().to_owned(),
        message: error.message,
    }
}

/// One request, one response, on a new stream.
async fn exchange<R: serde::de::DeserializeOwned>(
    connection: &quinn::Connection,
    request: &impl serde::Serialize,
) -> Result<R, Failure> {
    runtara_protocol::exchange(connection, request, None)
        .await
        .map_err(|error| match error {
            ExchangeError::Transient(message) => Failure::Transient(message),
            ExchangeError::Fatal(error) => Failure::Fatal(error.into()),
        })
}

#[async_trait]
impl Backend for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }

    async fn connect(&self) -> Result<()> {
        let deadline = Instant::now() + self.config.connect_timeout;
        let mut backoff = BACKOFF.0;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.connection()).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(Failure::Fatal(error))) => return Err(error),
                Ok(Err(Failure::Transient(message))) => message,
                Err(_) => "no answer before the connect timeout".to_owned(),
            };
            if Instant::now() + backoff >= deadline {
                return Err(SdkError::Connect {
                    addr: self.config.server_addr,
                    message,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    async fn is_connected(&self) -> bool {
        let live = self.live.lock().await;
        live.as_ref()
            .and_then(|l| l.connection.as_ref())
            .is_some_and(|c| c.close_reason().is_none())
    }

    async fn register(
        &self,
        _instance_id: &str,
        _tenant_id: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<(i64, ReplayLog)> {
        let checkpoint_id = checkpoint_id.map(str::to_owned);
        let request = InstanceRequest::RegisterPaged {
            checkpoint_id: checkpoint_id.clone(),
        };
        let (epoch, mut log) = match self.call("register", &request).await {
            Err(SdkError::Server { code, .. }) if code == "malformed" => {
                // A server older than paged replay logs: ask for the log in one frame.
                return self.register_whole(checkpoint_id).await;
            }
            response => Self::expect("register", response?, |r| match r {
                InstanceResponse::RegisteredPage {
                    epoch,
                    checkpoints,
                    retry_attempts,
                    retry_at_ms,
                    failures,
                    producer_names,
                    produced_by,
                    more_after,
                } => Some((
                    epoch,
                    ReplayLog {
                        checkpoints: recorded(checkpoints),
                        retry_attempts,
                        retry_at_ms,
                        failures,
                        producers: Producers {
                            names: producer_names,
                            of: produced_by,
                        },
                        more_after,
                    },
                )),
                _ => None,
            })?,
        };
        while let Some(after_seq) = log.more_after {
            let request = InstanceRequest::ReplayPage { after_seq };
            let response = self.call("replay_page", &request).await?;
            let (checkpoints, producers, more_after) =
                Self::expect("replay_page", response, |r| match r {
                    InstanceResponse::ReplayPage {
                        checkpoints,
                        producer_names,
                        produced_by,
                        more_after,
                    } => Some((
                        checkpoints,
                        Producers {
                            names: producer_names,
                            of: produced_by,
                        },
                        more_after,
                    )),
                    _ => None,
                })?;
            if checkpoints.is_empty() && more_after.is_some() {
                return Err(SdkError::Server {
                    operation: "replay_page",
                    code: "unexpected_response".into(),
                    message: format!(
                        "an empty page of the replay log after {after_seq} that says more follow"
                    ),
                });
            }
            log.producers.extend(log.checkpoints.len(), producers);
            log.checkpoints.extend(recorded(checkpoints));
            log.more_after = more_after;
        }
        Ok((epoch, log))
    }

    async fn checkpoint(
        &self,
        _instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome> {
        check_state_len(checkpoint_id, state)?;
        let request = InstanceRequest::Checkpoint {
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            state: ByteBuf::from(state.to_vec()),
        };
        let response = self.call("checkpoint", &request).await?;
        Self::expect("checkpoint", response, |r| match r {
            InstanceResponse::Checkpointed {
                existing_state,
                signal,
            } => Some(CheckpointOutcome {
                existing_state: existing_state.map(ByteBuf::into_vec),
                existing_producer: None,
                signal: signal.map(PendingSignal::from),
            }),
            _ => None,
        })
    }

    async fn save_step(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome> {
        check_state_len(checkpoint_id, state)?;
        let request = InstanceRequest::CheckpointStep {
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            state: ByteBuf::from(state.to_vec()),
            producer: producer.to_owned(),
        };
        let response = match self.call("checkpoint", &request).await {
            Err(SdkError::Server { code, .. }) if code == "malformed" => {
                // A server older than producers: record the state alone.
                return self
                    .checkpoint(instance_id, epoch, checkpoint_id, state)
                    .await;
            }
            response => response?,
        };
        Self::expect("checkpoint", response, |r| match r {
            InstanceResponse::CheckpointedStep {
                existing_state,
                existing_producer,
                signal,
            } => Some(CheckpointOutcome {
                existing_state: existing_state.map(ByteBuf::into_vec),
                existing_producer,
                signal: signal.map(PendingSignal::from),
            }),
            _ => None,
        })
    }

    async fn get_checkpoint(
        &self,
        _instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let request = InstanceRequest::GetCheckpoint {
            checkpoint_id: checkpoint_id.to_owned(),
        };
        let response = self.call("get_checkpoint", &request).await?;
        Self::expect("get_checkpoint", response, |r| match r {
            InstanceResponse::Checkpoint { state } => Some(state.map(ByteBuf::into_vec)),
            _ => None,
        })
    }

    async fn sleep(
        &self,
        _instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        duration_ms: i64,
    ) -> Result<(Duration, Option<PendingSignal>)> {
        check_state_len(checkpoint_id, state)?;
        let request = InstanceRequest::Sleep {
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            state: ByteBuf::from(state.to_vec()),
            duration_ms: u64::try_from(duration_ms).unwrap_or(0),
        };
        let response = self.call("sleep", &request).await?;
        Self::expect("sleep", response, |r| match r {
            InstanceResponse::Slept {
                remaining_ms,
                signal,
                ..
            } => Some((
                Duration::from_millis(remaining_ms),
                signal.map(PendingSignal::from),
            )),
            _ => None,
        })
    }

    async fn heartbeat(&self, _instance_id: &str, epoch: i64) -> Result<()> {
        self.call("heartbeat", &InstanceRequest::Heartbeat { epoch })
            .await
            .map(|_| ())
    }

    async fn completed(&self, _instance_id: &str, epoch: i64, output: &[u8]) -> Result<()> {
        let request = InstanceRequest::Completed {
            epoch,
            output: ByteBuf::from(output.to_vec()),
        };
        self.settle("completed", request, InstanceStatus::Completed)
            .await
    }

    async fn failed(&self, _instance_id: &str, epoch: i64, error: &str) -> Result<()> {
        let request = InstanceRequest::Failed {
            epoch,
            error: error.to_owned(),
        };
        self.settle("failed", request, InstanceStatus::Failed).await
    }

    async fn suspended(&self, _instance_id: &str, epoch: i64) -> Result<()> {
        self.settle(
            "suspended",
            InstanceRequest::Suspended { epoch },
            InstanceStatus::Suspended,
        )
        .await
    }

    async fn sleeping(&self, _instance_id: &str, epoch: i64) -> Result<()> {
        self.settle(
            "sleeping",
            InstanceRequest::Sleeping { epoch },
            InstanceStatus::Sleeping,
        )
        .await
    }

    async fn custom_event(&self, _instance_id: &str, subtype: &str, payload: &[u8]) -> Result<()> {
        let request = InstanceRequest::CustomEvent {
            subtype: subtype.to_owned(),
            payload: ByteBuf::from(payload.to_vec()),
        };
        self.call("custom_event", &request).await.map(|_| ())
    }

    async fn pending_signal(&self, _instance_id: &str) -> Result<Option<PendingSignal>> {
        let response = self
            .call("poll_signal", &InstanceRequest::PollSignal)
            .await?;
        Self::expect("poll_signal", response, |r| match r {
            InstanceResponse::Signal(signal) => Some(signal.map(PendingSignal::from)),
            _ => None,
        })
    }

    async fn acknowledge_signal(
        &self,
        _instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()> {
        let request = InstanceRequest::AckSignal {
            epoch,
            signal_type: signal.into(),
            acknowledged,
        };
        let done = match (acknowledged, signal) {
            (true, SignalType::Cancel) => InstanceStatus::Cancelled,
            (true, SignalType::Pause) => InstanceStatus::Suspended,
            _ => return self.call("acknowledge_signal", &request).await.map(|_| ()),
        };
        self.settle("acknowledge_signal", request, done).await
    }

    async fn record_retry_attempt(
        &self,
        _instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<()> {
        let request = InstanceRequest::RetryAttempt {
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            attempt,
            error: error.map(str::to_owned),
        };
        self.call("record_retry_attempt", &request)
            .await
            .map(|_| ())
    }

    async fn record_step_failure(
        &self,
        _instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        error: &str,
    ) -> Result<()> {
        let request = InstanceRequest::StepFailed {
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            error: error.to_owned(),
        };
        self.call("step_failed", &request).await.map(|_| ())
    }

    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>> {
        let request = InstanceRequest::GetStatus {
            instance_id: Some(instance_id.to_owned()),
        };
        let response = match self.call("get_status", &request).await {
            Ok(response) => response,
            Err(SdkError::Persistence(runtara_core::Error::InstanceNotFound { .. })) => {
                return Ok(None)
            }
            Err(error) => return Err(error),
        };
        let status = Self::expect("get_status", response, |r| match r {
            InstanceResponse::Status(status) => Some(status),
            _ => None,
        })?;
        let parsed: InstanceStatus = status.status.parse().map_err(|_| SdkError::Server {
            operation: "get_status",
            code: format!("{:?}", ErrorCode::Malformed).to_lowercase(),
            message: format!("unknown status `{}`", status.status),
        })?;
        Ok(Some(InstanceRecord {
            instance_id: status.instance_id,
            tenant_id: self.config.tenant_id.clone(),
            image_id: None,
            status: parsed,
            epoch: 0,
            input: None,
            output: status.output.map(ByteBuf::into_vec),
            error: status.error,
            checkpoint_id: status.checkpoint_id,
            checkpoint_count: status.checkpoint_count,
            created_at_ms: status.started_at_ms.unwrap_or_default(),
            started_at_ms: status.started_at_ms,
            finished_at_ms: status.finished_at_ms,
            heartbeat_at_ms: status.heartbeat_at_ms,
            wake_at_ms: status.wake_at_ms,
        }))
    }

    fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        None
    }
}

/// Says once per process, on stderr and in the log, that the server's certificate is not
/// checked (`--insecure`, `RUNTARA_SKIP_CERT_VERIFICATION=true`, `SdkConfig::localhost`).
fn warn_unverified(addr: &dyn std::fmt::Display) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        let message = format!(
            "TLS certificate verification is OFF for {addr} (--insecure, \
             RUNTARA_SKIP_CERT_VERIFICATION=true or SdkConfig::localhost): anyone on the \
             network path can impersonate the server; for local development only"
        );
        eprintln!("warning: {message}");
        tracing::warn!("{message}");
    });
}
