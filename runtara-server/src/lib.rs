//! The Runtara server as a library: start it, serve instances over QUIC, shut it down.
//!
//! The binary `runtara-server` is a thin shim over [`start`]; tests start servers
//! in-process the same way.

pub mod cli;
mod instance_endpoint;
mod tls_setup;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use runtara_core::Persistence;
use tokio::task::JoinHandle;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory for the database, the TLS material and images.
    pub data_dir: PathBuf,
    /// Database URL; `None` means `sqlite://<data_dir>/runtara.db`.
    pub database_url: Option<String>,
    /// Instance endpoint address.
    pub instance_addr: SocketAddr,
    /// Management endpoint address (served from the management release on).
    pub management_addr: SocketAddr,
    /// TLS certificate chain (PEM file); `None` uses the dev certificate.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM file).
    pub tls_key: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults: data dir `./runtara-data`, instances on 127.0.0.1:8001, management on 127.0.0.1:8002.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            database_url: None,
            instance_addr: SocketAddr::from(([127, 0, 0, 1], 8001)),
            management_addr: SocketAddr::from(([127, 0, 0, 1], 8002)),
            tls_cert: None,
            tls_key: None,
        }
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("runtara.db").display()))
    }
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the instance endpoint listens (the real port when 0 was asked for).
    pub instance_addr: SocketAddr,
    /// The certificate clients should trust, when the dev certificate is in use.
    pub ca_path: Option<PathBuf>,
    /// The server's storage.
    pub persistence: Arc<dyn Persistence>,
    endpoint: quinn::Endpoint,
    accept_loop: JoinHandle<()>,
}

/// Opens the database, sets up TLS and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let url = config.database_url();
    let persistence = runtara_core::connect(&url)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    let tls = tls_setup::load(&config)?;
    let endpoint = runtara_protocol::endpoint::server_endpoint(
        config.instance_addr,
        &tls.cert_pem,
        &tls.key_pem,
        Some(&tls.reset_secret),
    )
    .context("starting the instance endpoint")?;
    let instance_addr = endpoint.local_addr().context("reading the bound address")?;
    let accept_loop = tokio::spawn(instance_endpoint::serve(
        endpoint.clone(),
        persistence.clone(),
    ));
    tracing::info!(%instance_addr, database = %persistence.backend_name(), "instance endpoint listening");
    Ok(RunningServer {
        instance_addr,
        ca_path: tls.ca_path,
        persistence,
        endpoint,
        accept_loop,
    })
}

impl RunningServer {
    /// Stops accepting, tells connected instances the server is going away (they
    /// reconnect to the next server), and waits briefly for in-flight replies.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"server shutting down");
        let idle = self.endpoint.wait_idle();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), idle).await;
        self.accept_loop.abort();
    }
}
