//! The QUIC connection to the management endpoint, on the shared
//! [`runtara_protocol::client::Client`].
//!
//! One connection per SDK, opened on first use (or by `connect`) and cached; one
//! bidirectional stream per request. Each request has a deadline (`request_timeout`). A
//! request that fails because the connection was lost is sent once more on a new
//! connection (management requests are safe to repeat; a repeated image upload just
//! registers one more version).

use std::net::SocketAddr;
use std::time::Duration;

use runtara_protocol::client::{
    trust_ca_file, warn_unverified, Backoff, CaFileError, Client, ClientError, ClientSettings,
};
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    Hello, ManagementRequest, ManagementResponse, ProtocolError, Role, WireError,
};
use tokio::time::Instant;

use crate::{Result, SdkConfig, SdkError};

/// The client name sent in the handshake.
const CLIENT: &str = concat!("runtara-management-sdk/", env!("CARGO_PKG_VERSION"));

/// The connection, its settings and its cache.
pub(crate) struct Connection {
    client: Client,
    /// The first address tried.
    addr: SocketAddr,
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt on a new connection.
    Transient(String),
    /// Final.
    Fatal(SdkError),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.client.shown())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Checks `config` and reads the CA file; no network I/O.
    pub(crate) fn new(config: SdkConfig) -> Result<Connection> {
        let addrs = config.resolve_addrs()?;
        let addr = *addrs
            .first()
            .ok_or_else(|| SdkError::Config(format!("no address for `{}`", config.addr)))?;
        let tls = if config.skip_cert_verification {
            warn_unverified(&addr);
            ClientTls::SkipVerification
        } else {
            let path = config.trusted_ca(&addrs).ok_or_else(|| {
                SdkError::Config(format!(
                    "no certificate to trust: pass the server's `<data-dir>/tls/ca.pem` with \
                     `SdkConfig::with_ca_cert` or the RUNTARA_CA_CERT environment variable; \
                     for a local development server, run from the directory holding \
                     `{}`, or use `SdkConfig::localhost()` (no verification)",
                    crate::config::DEFAULT_LOCAL_CA
                ))
            })?;
            // A file that cannot be read, or holds no certificate, is a mistake in the
            // configuration: no connection is tried.
            trust_ca_file(&path).map_err(|error| match error {
                CaFileError::Read { path, source } => SdkError::Io { path, source },
                not_pem => {
                    let cause = std::error::Error::source(&not_pem).map(ToString::to_string);
                    SdkError::Config(format!("{not_pem}: {}", cause.unwrap_or_default()))
                }
            })?
        };
        let shown = match addrs.as_slice() {
            [one] => one.to_string(),
            many => format!(
                "{} ({})",
                config.addr.trim(),
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let hello = Hello::new(
            CLIENT,
            Role::Management {
                token: config.token,
            },
        );
        Ok(Connection {
            client: Client::new(ClientSettings {
                addrs,
                shown,
                server_name: config.server_name,
                tls,
                hello,
            }),
            addr,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
    }

    /// The server address (the first one tried, when there are several).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects and says hello (unless connected already), retrying with backoff until
    /// the connect timeout. Returns the server's name and version.
    pub(crate) async fn connect(&self) -> Result<String> {
        match self.connection().await {
            Ok(server) => Ok(server),
            Err(Failure::Fatal(error)) => Err(error),
            Err(Failure::Transient(message)) => Err(self.connect_error(message)),
        }
    }

    /// Closes the connection, if any, and waits briefly for the server to see it.
    pub(crate) async fn close(&self) {
        self.client.close(Duration::from_secs(1)).await;
    }

    fn connect_error(&self, message: String) -> SdkError {
        SdkError::Connect {
            addr: self.client.shown().to_owned(),
            message,
        }
    }

    /// What a failed attempt means here: try again, or give up with this error.
    fn failure(&self, error: ClientError) -> Failure {
        match error {
            ClientError::Lost(message) => Failure::Transient(message),
            ClientError::Handshake { addr, source } => Failure::Fatal(SdkError::Tls(format!(
                "handshake with {addr} failed: {source}"
            ))),
            ClientError::ClosedByServer(source) => Failure::Fatal(self.connect_error(format!(
                "the server closed the connection during the handshake: {source}"
            ))),
            ClientError::Refused(error) => Failure::Fatal(refused("connect", error)),
            ClientError::Protocol(ProtocolError::Tls(message)) => {
                Failure::Fatal(SdkError::Tls(message))
            }
            ClientError::Protocol(other) => Failure::Fatal(SdkError::Protocol(other)),
            other => Failure::Fatal(self.connect_error(other.to_string())),
        }
    }

    /// The cached connection, or a new one; lost attempts are retried with backoff until
    /// the connect timeout. Returns the server's name.
    async fn connection(&self) -> Result<String, Failure> {
        let deadline = Instant::now() + self.connect_timeout;
        let mut backoff = Backoff::new();
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.client.connection()).await;
            let message = match attempt {
                Ok(Ok((_, server))) => return Ok(server),
                Ok(Err(error)) => match self.failure(error) {
                    Failure::Transient(message) => message,
                    fatal => return Err(fatal),
                },
                Err(_) => "no answer before the connect timeout".to_owned(),
            };
            tracing::debug!(addr = %self.client.shown(), error = %message, "connection attempt failed");
            let wait = backoff.next_wait();
            if Instant::now() + wait >= deadline {
                return Err(Failure::Fatal(self.connect_error(format!(
                    "{message} (gave up after {:?}; is runtara-server running?)",
                    self.connect_timeout
                ))));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends `request` (followed by `body`, raw, when given) and returns the response.
    /// A `ManagementResponse::Error` becomes [`SdkError::Server`].
    pub(crate) async fn call(
        &self,
        operation: &'static str,
        request: &ManagementRequest,
        body: Option<&[u8]>,
    ) -> Result<ManagementResponse> {
        self.call_within(operation, request, body, self.request_timeout)
            .await
    }

    /// The deadline of one request.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// [`call`](Self::call) with a deadline of its own (a long poll's).
    pub(crate) async fn call_within(
        &self,
        operation: &'static str,
        request: &ManagementRequest,
        body: Option<&[u8]>,
        within: Duration,
    ) -> Result<ManagementResponse> {
        let deadline = Instant::now() + within;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let exchanged = async {
                self.connection().await?;
                self.client
                    .exchange::<ManagementResponse>(request, body)
                    .await
                    .map_err(|e| self.failure(e))
            };
            let message = match tokio::time::timeout_at(deadline, exchanged).await {
                Err(_) => {
                    return Err(SdkError::Timeout {
                        operation,
                        after: within,
                    })
                }
                Ok(Ok(ManagementResponse::Error(error))) => return Err(refused(operation, error)),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(Failure::Fatal(error))) => return Err(error),
                Ok(Err(Failure::Transient(message))) => message,
            };
            tracing::debug!(operation, attempt, error = %message, "request failed");
            self.client.forget().await;
            if attempt >= 2 {
                return Err(self.connect_error(format!("{operation}: {message}")));
            }
        }
    }
}

/// The SDK error for a server's refusal.
fn refused(operation: &'static str, error: WireError) -> SdkError {
    SdkError::Server {
        operation,
        code: error.code,
        message: error.message,
    }
}
