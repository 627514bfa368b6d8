//! The QUIC connection to the management endpoint.
//!
//! One connection per SDK, opened on first use (or by `connect`) and cached; one
//! bidirectional stream per request. Each request has a deadline (`request_timeout`). A
//! request that fails because the connection was lost is sent once more on a new
//! connection (management requests are safe to repeat; a repeated image upload just
//! registers one more version).

use std::net::SocketAddr;
use std::time::Duration;

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    ExchangeError, Hello, HelloReply, ManagementRequest, ManagementResponse, ProtocolError, Role,
    WireError,
};
use tokio::time::Instant;

use crate::{Result, SdkConfig, SdkError};

/// Longest a single connection attempt may take before it is tried again.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(2);
/// First and largest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// The client name sent in the handshake.
const CLIENT: &str = concat!("runtara-management-sdk/", env!("CARGO_PKG_VERSION"));

/// The connection, its settings and its cache.
pub(crate) struct Connection {
    /// The addresses to try (more than one for `localhost` or a name with several);
    /// each connection attempt races them and keeps the first that answers.
    addrs: Vec<SocketAddr>,
    /// How the server address is shown in errors.
    shown: String,
    server_name: String,
    token: Option<String>,
    tls: ClientTls,
    connect_timeout: Duration,
    request_timeout: Duration,
    live: tokio::sync::Mutex<Option<Live>>,
}

struct Live {
    /// One endpoint per address of [`Connection::addrs`], same order.
    endpoints: Vec<quinn::Endpoint>,
    connection: Option<quinn::Connection>,
    server: String,
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
            .field("addrs", &self.addrs)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Checks `config` and reads the CA file; no network I/O.
    pub(crate) fn new(config: SdkConfig) -> Result<Connection> {
        let addrs = config.resolve_addrs()?;
        let tls = if config.skip_cert_verification {
            warn_unverified(&addrs.first().map(ToString::to_string).unwrap_or_default());
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
            let ca_pem = std::fs::read(&path).map_err(|source| SdkError::Io {
                path: path.clone(),
                source,
            })?;
            // A file that holds no certificate is a mistake in the configuration, like a
            // missing file: no connection was tried.
            runtara_protocol::tls::certificates_from_pem(&ca_pem).map_err(|e| {
                SdkError::Config(format!(
                    "the CA certificate file {} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            ClientTls::Verify { ca_pem }
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
        Ok(Connection {
            addrs,
            shown,
            server_name: config.server_name,
            token: config.token,
            tls,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            live: tokio::sync::Mutex::new(None),
        })
    }

    /// The server address (the first one tried, when there are several).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Connects and says hello (unless connected already), retrying with backoff until
    /// the connect timeout. Returns the server's name and version.
    pub(crate) async fn connect(&self) -> Result<String> {
        match self.connection().await {
            Ok((_, server)) => Ok(server),
            Err(Failure::Fatal(error)) => Err(error),
            Err(Failure::Transient(message)) => Err(self.connect_error(message)),
        }
    }

    /// Closes the connection, if any, and waits briefly for the server to see it.
    pub(crate) async fn close(&self) {
        let live = self.live.lock().await.take();
        if let Some(live) = live {
            if let Some(connection) = live.connection {
                connection.close(0u32.into(), b"bye");
            }
            for endpoint in &live.endpoints {
                let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
            }
        }
    }

    fn connect_error(&self, message: String) -> SdkError {
        SdkError::Connect {
            addr: self.shown.clone(),
            message,
        }
    }

    /// The cached connection, or a new one; transient failures are retried until the
    /// connect timeout.
    async fn connection(&self) -> Result<(quinn::Connection, String), Failure> {
        let mut live = self.live.lock().await;
        if let Some(state) = live.as_ref() {
            if let Some(connection) = &state.connection {
                if connection.close_reason().is_none() {
                    return Ok((connection.clone(), state.server.clone()));
                }
            }
        }
        let endpoints = match live.take() {
            Some(existing) => existing.endpoints,
            None => self
                .addrs
                .iter()
                .map(|addr| {
                    client_endpoint(&self.tls, *addr).map_err(|e| {
                        Failure::Fatal(match e {
                            ProtocolError::Tls(message) => SdkError::Tls(message),
                            other => SdkError::Protocol(other),
                        })
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let deadline = Instant::now() + self.connect_timeout;
        let mut backoff = BACKOFF.0;
        let result = loop {
            let message = match tokio::time::timeout_at(deadline, self.race(&endpoints)).await {
                Ok(Ok(connected)) => break Ok(connected),
                Ok(Err(Failure::Fatal(error))) => break Err(Failure::Fatal(error)),
                Ok(Err(Failure::Transient(message))) => message,
                Err(_) => "no answer before the connect timeout".to_owned(),
            };
            tracing::debug!(addr = %self.shown, error = %message, "connection attempt failed");
            if Instant::now() + backoff >= deadline {
                break Err(Failure::Fatal(self.connect_error(format!(
                    "{message} (gave up after {:?}; is runtara-server running?)",
                    self.connect_timeout
                ))));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF.1);
        };
        let (connection, server) = match result {
            Ok(connected) => connected,
            Err(failure) => {
                *live = Some(Live {
                    endpoints,
                    connection: None,
                    server: String::new(),
                });
                return Err(failure);
            }
        };
        *live = Some(Live {
            endpoints,
            connection: Some(connection.clone()),
            server: server.clone(),
        });
        Ok((connection, server))
    }

    /// One connection attempt to every address at once: the first that completes the
    /// handshake wins (the others are dropped, which closes them). When all fail, a fatal
    /// failure (TLS, a refused hello) is reported before a transient one.
    async fn race(
        &self,
        endpoints: &[quinn::Endpoint],
    ) -> Result<(quinn::Connection, String), Failure> {
        type Attempt<'a> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<(quinn::Connection, String), Failure>>
                    + Send
                    + 'a,
            >,
        >;
        let mut attempts: Vec<Attempt<'_>> = self
            .addrs
            .iter()
            .zip(endpoints)
            .map(|(addr, endpoint)| Box::pin(self.attempt(endpoint, *addr)) as Attempt<'_>)
            .collect();
        let mut fatal = None;
        let mut transient = None;
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < attempts.len() {
                match attempts[i].as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(connected)) => {
                        return std::task::Poll::Ready(Ok(connected))
                    }
                    std::task::Poll::Ready(Err(failure)) => {
                        match failure {
                            Failure::Fatal(error) => fatal = fatal.take().or(Some(error)),
                            Failure::Transient(message) => transient = Some(message),
                        }
                        drop(attempts.swap_remove(i));
                    }
                    std::task::Poll::Pending => i += 1,
                }
            }
            if attempts.is_empty() {
                let failure = match (fatal.take(), transient.take()) {
                    (Some(error), _) => Failure::Fatal(error),
                    (None, Some(message)) => Failure::Transient(message),
                    (None, None) => Failure::Transient("no address to connect to".into()),
                };
                return std::task::Poll::Ready(Err(failure));
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// One connection attempt to `addr` and the handshake.
    async fn attempt(
        &self,
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
    ) -> Result<(quinn::Connection, String), Failure> {
        let connecting = endpoint
            .connect(addr, &self.server_name)
            .map_err(|e| Failure::Fatal(self.connect_error(e.to_string())))?;
        let connection = match tokio::time::timeout(CONNECT_ATTEMPT, connecting).await {
            Err(_) => return Err(Failure::Transient("connection attempt timed out".into())),
            Ok(Err(quinn::ConnectionError::TransportError(error))) => {
                // A TLS or protocol failure: trying again will not change it.
                return Err(Failure::Fatal(SdkError::Tls(format!(
                    "handshake with {addr} failed: {error}"
                ))));
            }
            Ok(Err(quinn::ConnectionError::ConnectionClosed(close))) => {
                return Err(Failure::Fatal(self.connect_error(format!(
                    "the server closed the connection during the handshake: {close}"
                ))));
            }
            Ok(Err(error)) => return Err(Failure::Transient(error.to_string())),
            Ok(Ok(connection)) => connection,
        };
        let hello = Hello::new(
            CLIENT,
            Role::Management {
                token: self.token.clone(),
            },
        );
        match exchange::<HelloReply>(&connection, &hello, None).await? {
            HelloReply::Welcome { server, .. } => Ok((connection, server)),
            HelloReply::Refused(error) => Err(Failure::Fatal(refused("connect", error))),
        }
    }

    async fn forget_connection(&self) {
        if let Some(live) = self.live.lock().await.as_mut() {
            live.connection = None;
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
        let deadline = Instant::now() + self.request_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let exchanged = async {
                let (connection, _) = self.connection().await?;
                exchange::<ManagementResponse>(&connection, request, body).await
            };
            let message = match tokio::time::timeout_at(deadline, exchanged).await {
                Err(_) => {
                    return Err(SdkError::Timeout {
                        operation,
                        after: self.request_timeout,
                    })
                }
                Ok(Ok(ManagementResponse::Error(error))) => return Err(refused(operation, error)),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(Failure::Fatal(error))) => return Err(error),
                Ok(Err(Failure::Transient(message))) => message,
            };
            tracing::debug!(operation, attempt, error = %message, "request failed");
            self.forget_connection().await;
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
        code: error.code.as_str().to_owned(),
        message: error.message,
    }
}

/// One request (and its raw body) and one response, on a new stream.
async fn exchange<R: serde::de::DeserializeOwned>(
    connection: &quinn::Connection,
    request: &impl serde::Serialize,
    body: Option<&[u8]>,
) -> Result<R, Failure> {
    runtara_protocol::exchange(connection, request, body)
        .await
        .map_err(|error| match error {
            ExchangeError::Transient(message) => Failure::Transient(message),
            ExchangeError::Fatal(error) => Failure::Fatal(error.into()),
        })
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
