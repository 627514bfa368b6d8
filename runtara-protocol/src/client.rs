//! The one QUIC client of Runtara, under both SDKs: the connection cache, the hello,
//! connection attempts raced over a name's addresses, the backoff between attempts, the
//! trusted certificate, and one request per stream.
//!
//! A [`Client`] keeps one connection and makes a new one (with a new hello) when it is
//! lost. It does not decide what is worth sending again: each SDK knows which of its
//! requests are safe to repeat, and loops over [`Client::exchange`] with [`Backoff`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::endpoint::client_endpoint;
use crate::tls::ClientTls;
use crate::{ExchangeError, Hello, HelloReply, ProtocolError, WireError};

/// Longest one connection attempt may take before it counts as failed.
pub const CONNECT_ATTEMPT: Duration = Duration::from_secs(2);

/// Where and how a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The addresses of the server (several for a name with more than one); every
    /// connection attempt races them and keeps the first that completes the hello.
    pub addrs: Vec<SocketAddr>,
    /// How the server is named in errors (`127.0.0.1:8002`, `localhost (…)`).
    pub shown: String,
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// Which certificate to trust.
    pub tls: ClientTls,
    /// The hello sent first on every new connection.
    pub hello: Hello,
}

/// Why a [`Client`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection could not be made or broke (no answer, reset, the server went
    /// away): worth another attempt on a new connection.
    #[error("{0}")]
    Lost(String),
    /// The TLS handshake with `addr` failed (an untrusted certificate, another name):
    /// another attempt would fail the same way.
    #[error("handshake with {addr} failed")]
    Handshake {
        /// The address.
        addr: SocketAddr,
        /// What the handshake said.
        #[source]
        source: quinn::ConnectionError,
    },
    /// The server closed the connection during the handshake (it refuses this peer).
    #[error("the server closed the connection during the handshake")]
    ClosedByServer(#[source] quinn::ConnectionError),
    /// The server answered the hello with a refusal.
    #[error("the server refused the hello: {}", .0.message)]
    Refused(WireError),
    /// Setting up the client endpoint, or a reply that does not decode.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Waits between attempts: 20 ms, doubling up to 1 s.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(20);
    /// The longest wait.
    pub const MOST: Duration = Duration::from_secs(1);

    /// Starts at [`FIRST`](Self::FIRST).
    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt (and doubles the one after).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Why a certificate file cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaFileError {
    /// The file cannot be read.
    #[error("cannot read the CA certificate {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM certificate.
    #[error("the CA certificate file {} is not a PEM certificate", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: ProtocolError,
    },
}

/// Reads the certificate to trust from `path`, checking that it holds one; no
/// connection is tried either way.
pub fn trust_ca_file(path: &Path) -> Result<ClientTls, CaFileError> {
    let ca_pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    crate::tls::certificates_from_pem(&ca_pem).map_err(|source| CaFileError::NotPem {
        path: path.to_owned(),
        source,
    })?;
    Ok(ClientTls::Verify { ca_pem })
}

/// Says once per process, on stderr and in the log, that the server's certificate is not
/// checked (`--insecure`, `RUNTARA_SKIP_CERT_VERIFICATION=true`, `SdkConfig::localhost`).
pub fn warn_unverified(addr: &dyn std::fmt::Display) {
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

/// One cached connection to a server.
pub struct Client {
    settings: ClientSettings,
    live: tokio::sync::Mutex<Option<Live>>,
}

struct Live {
    /// One endpoint per address of the settings, same order.
    endpoints: Vec<quinn::Endpoint>,
    connection: Option<(quinn::Connection, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.settings.shown)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client that connects on first use.
    pub fn new(settings: ClientSettings) -> Client {
        Client {
            settings,
            live: tokio::sync::Mutex::new(None),
        }
    }

    /// How the server is named in errors.
    pub fn shown(&self) -> &str {
        &self.settings.shown
    }

    /// The first address tried.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.settings.addrs.first().copied()
    }

    /// The cached connection and the server's name, or one new attempt at a connection
    /// (raced over the addresses) and its hello.
    pub async fn connection(&self) -> Result<(quinn::Connection, String), ClientError> {
        let mut live = self.live.lock().await;
        if let Some((connection, server)) = live.as_ref().and_then(|l| l.connection.as_ref()) {
            if connection.close_reason().is_none() {
                return Ok((connection.clone(), server.clone()));
            }
        }
        let endpoints = match live.take() {
            Some(existing) => existing.endpoints,
            None => self
                .settings
                .addrs
                .iter()
                .map(|addr| client_endpoint(&self.settings.tls, *addr))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let attempt = self.race(&endpoints).await;
        *live = Some(Live {
            endpoints,
            connection: attempt.as_ref().ok().cloned(),
        });
        attempt
    }

    /// Whether a connection is open now.
    pub async fn is_connected(&self) -> bool {
        let live = self.live.lock().await;
        live.as_ref()
            .and_then(|l| l.connection.as_ref())
            .is_some_and(|(c, _)| c.close_reason().is_none())
    }

    /// Drops the cached connection: the next call makes a new one.
    pub async fn forget(&self) {
        if let Some(live) = self.live.lock().await.as_mut() {
            live.connection = None;
        }
    }

    /// Closes the connection, if any, and waits up to `grace` for the server to see it.
    pub async fn close(&self, grace: Duration) {
        let Some(live) = self.live.lock().await.take() else {
            return;
        };
        if let Some((connection, _)) = live.connection {
            connection.close(0u32.into(), b"bye");
        }
        for endpoint in &live.endpoints {
            let _ = tokio::time::timeout(grace, endpoint.wait_idle()).await;
        }
    }

    /// One request (and its raw `body`, if any) and its response, on a new stream of the
    /// cached connection (or a new one). A broken connection is forgotten and reported
    /// as [`ClientError::Lost`].
    pub async fn exchange<R: DeserializeOwned>(
        &self,
        request: &impl Serialize,
        body: Option<&[u8]>,
    ) -> Result<R, ClientError> {
        let (connection, _) = self.connection().await?;
        match crate::exchange(&connection, request, body).await {
            Ok(response) => Ok(response),
            Err(ExchangeError::Transient(message)) => {
                self.forget().await;
                Err(ClientError::Lost(message))
            }
            Err(ExchangeError::Fatal(error)) => Err(error.into()),
        }
    }

    /// One connection attempt to every address at once: the first that completes the
    /// hello wins (the others are dropped, which closes them). When all fail, a failure
    /// that another attempt would not change is reported before a lost one.
    async fn race(
        &self,
        endpoints: &[quinn::Endpoint],
    ) -> Result<(quinn::Connection, String), ClientError> {
        type Attempt<'a> = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<(quinn::Connection, String), ClientError>>
                    + Send
                    + 'a,
            >,
        >;
        let mut attempts: Vec<Attempt<'_>> = self
            .settings
            .addrs
            .iter()
            .zip(endpoints)
            .map(|(addr, endpoint)| Box::pin(self.attempt(endpoint, *addr)) as Attempt<'_>)
            .collect();
        let mut final_error = None;
        let mut lost = None;
        std::future::poll_fn(|cx| {
            let mut i = 0;
            while i < attempts.len() {
                match attempts[i].as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(connected)) => {
                        return std::task::Poll::Ready(Ok(connected))
                    }
                    std::task::Poll::Ready(Err(error)) => {
                        match error {
                            ClientError::Lost(message) => lost = Some(message),
                            other => final_error = final_error.take().or(Some(other)),
                        }
                        drop(attempts.swap_remove(i));
                    }
                    std::task::Poll::Pending => i += 1,
                }
            }
            if attempts.is_empty() {
                let error = match (final_error.take(), lost.take()) {
                    (Some(error), _) => error,
                    (None, Some(message)) => ClientError::Lost(message),
                    (None, None) => ClientError::Lost("no address to connect to".into()),
                };
                return std::task::Poll::Ready(Err(error));
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// One connection attempt to `addr`, and the hello.
    async fn attempt(
        &self,
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
    ) -> Result<(quinn::Connection, String), ClientError> {
        let connecting = endpoint
            .connect(addr, &self.settings.server_name)
            .map_err(|e| ClientError::Lost(format!("cannot connect to {addr}: {e}")))?;
        let connection = match tokio::time::timeout(CONNECT_ATTEMPT, connecting).await {
            Err(_) => return Err(ClientError::Lost("connection attempt timed out".into())),
            Ok(Err(source @ quinn::ConnectionError::TransportError(_))) => {
                return Err(ClientError::Handshake { addr, source });
            }
            Ok(Err(source @ quinn::ConnectionError::ConnectionClosed(_))) => {
                return Err(ClientError::ClosedByServer(source));
            }
            Ok(Err(error)) => return Err(ClientError::Lost(error.to_string())),
            Ok(Ok(connection)) => connection,
        };
        match crate::exchange::<HelloReply>(&connection, &self.settings.hello, None).await {
            Ok(HelloReply::Welcome { server, .. }) => Ok((connection, server)),
            Ok(HelloReply::Refused(error)) => Err(ClientError::Refused(error)),
            Err(ExchangeError::Transient(message)) => Err(ClientError::Lost(message)),
            Err(ExchangeError::Fatal(error)) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_a_second() {
        let mut backoff = Backoff::new();
        let waits: Vec<_> = (0..8).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_before_connecting() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let missing = trust_ca_file(&dir.path().join("nope.pem"));
        assert!(
            matches!(missing, Err(CaFileError::Read { .. })),
            "{missing:?}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate").expect("writes");
        let empty = trust_ca_file(&empty);
        assert!(
            matches!(empty, Err(CaFileError::NotPem { .. })),
            "{empty:?}"
        );
    }
}
