//! The Runtara server as a library: start it, serve instances and operators over QUIC,
//! run instance processes, shut it down.
//!
//! The binary `runtara-server` is a thin shim over [`start`]; tests start servers
//! in-process the same way.

pub mod admission;
pub mod cli;
pub mod completions;
pub mod connection_limits;
pub mod credentials;
pub mod event_quota;
mod exit_decision;
pub mod heard_from;
pub mod image_store;
mod instance_answer;
mod instance_endpoint;
pub mod instance_process;
mod instance_threads;
pub mod log_tail;
pub mod log_text;
pub mod management;
mod management_endpoint;
pub mod management_tokens;
pub mod private_files;
pub mod process;
pub mod schedules;
pub mod supervisor;
mod tls_setup;
pub mod upload_limits;
pub mod valid_ids;
pub mod workers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtara_core::Persistence;
use tokio::task::JoinHandle;

use crate::admission::RunLimits;
use crate::connection_limits::{ConnectionLimits, Gate};
use crate::credentials::CredentialKey;
use crate::event_quota::EventLimits;
use crate::heard_from::HeardFrom;
use crate::image_store::ImageStore;
use crate::instance_threads::{InstanceThreads, Placement, ThreadStore};
use crate::management::Management;
use crate::management_tokens::ManagementTokens;
use crate::supervisor::{RunnerSettings, Supervisor};
use crate::upload_limits::{UploadLimits, Uploads};
use crate::workers::{WorkerLaunch, Workers, WORKER_FILES_DIR};

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory for the database, the TLS material, images and instance files.
    pub data_dir: PathBuf,
    /// Database URL; `None` means `sqlite://<data_dir>/runtara.db`.
    pub database_url: Option<String>,
    /// Instance endpoint address.
    pub instance_addr: SocketAddr,
    /// Management endpoint address.
    pub management_addr: SocketAddr,
    /// TLS certificate chain (PEM file); `None` uses the dev certificate.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM file).
    pub tls_key: Option<PathBuf>,
    /// Largest image accepted, in bytes.
    pub max_image_bytes: u64,
    /// Heartbeat interval given to launched instances.
    pub heartbeat_interval: Duration,
    /// A running instance silent for this long is considered crashed and relaunched.
    pub heartbeat_timeout: Duration,
    /// Durable sleeps longer than this end the instance's process until the wake time.
    pub sleep_exit_threshold: Duration,
    /// Time a cancelled process gets to stop on its own before it is killed.
    pub cancel_grace: Duration,
    /// Crashes in a row after which an instance is marked `failed`.
    pub max_restarts: u32,
    /// Wait before relaunching an instance that crashed twice in a row (a first crash is
    /// relaunched at once); doubles per further crash in a row.
    pub restart_backoff: Duration,
    /// File of management tokens (see [`management_tokens`]); `None`: no file.
    pub tokens_file: Option<PathBuf>,
    /// Management tokens given inline, in the tokens-file format; `None`: none.
    pub management_tokens: Option<String>,
    /// Refuse every instance without a valid credential, including instances the server
    /// did not launch (by default those are let in, for development).
    pub require_instance_credentials: bool,
    /// Threads serving the instance endpoint, each with a single-threaded runtime and an
    /// endpoint of its own on the shared port; `Some(0)` serves it on the main runtime.
    /// `None` (the default): one thread per core. With PostgreSQL each thread opens a
    /// connection pool of its own (16 connections shared out, at least 2 each: 8 each
    /// with two threads), and the main runtime keeps 4.
    pub instance_threads: Option<usize>,
    /// What one peer may make the server hold (connections, request bytes, time); each
    /// port applies them on its own.
    pub connection_limits: ConnectionLimits,
    /// Bounds on image uploads: a deadline, and per tenant how many and how many bytes
    /// at once.
    pub upload_limits: UploadLimits,
    /// Bounds on the custom events an instance records.
    pub event_limits: EventLimits,
    /// How many instance processes run at once (in all, per tenant, per image); starts
    /// beyond wait `pending`, first come first served.
    pub run_limits: RunLimits,
}

impl ServerConfig {
    /// Defaults: instances on 127.0.0.1:8001, management on 127.0.0.1:8002, images up
    /// to 1 GiB, heartbeats every 5 s with a 30 s timeout, sleeps over 60 s leave the
    /// process, 10 s cancel grace, 3 restarts with a 1 s backoff; no management tokens
    /// (the management endpoint is open) and instance credentials checked only for
    /// instances the server launched.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            database_url: None,
            instance_addr: SocketAddr::from(([127, 0, 0, 1], 8001)),
            management_addr: SocketAddr::from(([127, 0, 0, 1], 8002)),
            tls_cert: None,
            tls_key: None,
            max_image_bytes: 1 << 30,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            sleep_exit_threshold: Duration::from_secs(60),
            cancel_grace: Duration::from_secs(10),
            max_restarts: 3,
            restart_backoff: Duration::from_secs(1),
            tokens_file: None,
            management_tokens: None,
            require_instance_credentials: false,
            instance_threads: None,
            connection_limits: ConnectionLimits::default(),
            upload_limits: UploadLimits::default(),
            event_limits: EventLimits::default(),
            run_limits: RunLimits::default(),
        }
    }

    /// Reads and checks the configured management tokens (file and inline).
    pub fn load_management_tokens(&self) -> anyhow::Result<ManagementTokens> {
        let mut tokens = ManagementTokens::default();
        if let Some(path) = &self.tokens_file {
            private_files::check_not_writable_by_others(path, "tokens file")?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the tokens file {}", path.display()))?;
            tokens.add(&path.display().to_string(), &text)?;
        }
        if let Some(text) = &self.management_tokens {
            tokens.add("RUNTARA_MANAGEMENT_TOKENS", text)?;
        }
        Ok(tokens)
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
    /// Where the management endpoint listens.
    pub management_addr: SocketAddr,
    /// The certificate clients should trust, when the dev certificate is in use.
    pub ca_path: Option<PathBuf>,
    /// The server's storage.
    pub persistence: Arc<dyn Persistence>,
    endpoints: Vec<quinn::Endpoint>,
    accept_loops: Vec<JoinHandle<()>>,
    instance_threads: Option<InstanceThreads>,
}

/// PostgreSQL connections shared out among the instance endpoint threads (see
/// `instance_threads`), each getting at least 2: with two threads, 8 each.
const THREADS_POOL_BUDGET: usize = 16;

/// PostgreSQL connections of the main runtime when the instance endpoint threads have
/// their own: management and supervision only.
const MAIN_POOL_SIZE: usize = 4;

/// Opens the database, sets up TLS, adopts unfinished instances and starts serving.
pub async fn start(mut config: ServerConfig) -> anyhow::Result<RunningServer> {
    private_files::make_private(&config.data_dir)?;
    make_paths_absolute(&mut config)?;
    let tokens = config
        .load_management_tokens()
        .context("loading the management tokens")?;
    let credential_key = CredentialKey::load_or_create(&config.data_dir)
        .context("loading the instance credential key")?;
    let placement = Placement::auto(config.instance_threads);
    let storage = open_storage(&config, placement).await?;
    let persistence = storage.persistence.clone();
    let tls = tls_setup::load(&config)?;
    let management_endpoint = bind(config.management_addr, &tls, "management")?;
    let management_addr = management_endpoint
        .local_addr()
        .context("reading the bound address")?;
    let heard_from = Arc::new(HeardFrom::default());
    let workers = Workers::new(credential_key.clone());
    let completions = completions::Completions::new();
    let (children, started_children) = tokio::sync::mpsc::unbounded_channel();
    let auth = instance_endpoint::InstanceAuth {
        key: credential_key.clone(),
        require_credentials: config.require_instance_credentials,
        heard_from: heard_from.clone(),
        gate: Gate::new(
            config.connection_limits.clone(),
            "instance connection refused",
        ),
        events: config.event_limits.quota(),
        workers: workers.clone(),
        completions: completions.clone(),
        children,
    };
    let instances = serve_instances(&config, placement, &storage, &tls, auth).await?;
    let instance_addr = instances.addr;
    let mut endpoints = instances.endpoint.into_iter().collect::<Vec<_>>();
    let mut accept_loops = instances.accept_loop.into_iter().collect::<Vec<_>>();

    let images = ImageStore::open(config.data_dir.join("images"), config.max_image_bytes)
        .context("opening the image store")?;
    let ca_path = tls.ca_path.clone().or_else(|| config.tls_cert.clone());
    workers.configure(WorkerLaunch {
        images_dir: images.dir().to_path_buf(),
        workers_dir: config.data_dir.join(WORKER_FILES_DIR),
        instance_addr: reachable(instance_addr),
        ca_path: ca_path.clone(),
        heartbeat_interval: config.heartbeat_interval,
        heartbeat_timeout: config.heartbeat_timeout,
        sleep_exit_threshold: config.sleep_exit_threshold,
        store: persistence.clone(),
        events: config.event_limits.quota(),
    });
    let settings = RunnerSettings {
        heard_from,
        completions,
        images_dir: images.dir().to_path_buf(),
        instances_dir: config.data_dir.join(supervisor::INSTANCE_FILES_DIR),
        legacy_instances_dir: config.data_dir.join(supervisor::LEGACY_INSTANCES_DIR),
        live_dir: config.data_dir.join(supervisor::LIVE_PROCESSES_DIR),
        instance_addr: reachable(instance_addr),
        ca_path,
        heartbeat_interval: config.heartbeat_interval,
        heartbeat_timeout: config.heartbeat_timeout,
        sleep_exit_threshold: config.sleep_exit_threshold,
        cancel_grace: config.cancel_grace,
        max_restarts: config.max_restarts,
        restart_backoff: config.restart_backoff,
        credential_key,
        limits: config.run_limits.limits(),
        workers,
    };
    let supervisor = Supervisor::new(persistence.clone(), settings);
    supervisor.launch_children(started_children);
    log_management_access(&tokens, management_addr);
    let management = Arc::new(Management::new(
        persistence.clone(),
        images,
        supervisor.clone(),
        tokens,
        Uploads::new(&config.upload_limits, config.max_image_bytes),
    ));
    accept_loops.push(tokio::spawn(management_endpoint::serve(
        management_endpoint.clone(),
        management.clone(),
        Gate::new(
            config.connection_limits.clone(),
            "management connection refused",
        ),
    )));
    endpoints.push(management_endpoint);
    supervisor
        .recover()
        .await
        .context("adopting unfinished instances")?;
    let changed = management.schedules_changed.clone();
    accept_loops.push(tokio::spawn(schedules::run_scheduler(
        management.clone(),
        changed,
    )));
    tracing::info!(
        %instance_addr,
        %management_addr,
        database = %persistence.backend_name(),
        require_instance_credentials = config.require_instance_credentials,
        "runtara-server listening"
    );
    Ok(RunningServer {
        instance_addr,
        management_addr,
        ca_path: tls.ca_path,
        persistence,
        endpoints,
        accept_loops,
        instance_threads: instances.threads,
    })
}

/// Instances run in their own folders, so every path handed to them or derived from the
/// data dir (the image binaries, the CA certificate to trust) must not be relative.
fn make_paths_absolute(config: &mut ServerConfig) -> anyhow::Result<()> {
    config.data_dir = std::path::absolute(&config.data_dir)
        .with_context(|| format!("resolving the data dir {}", config.data_dir.display()))?;
    if let Some(cert) = &config.tls_cert {
        config.tls_cert = Some(
            std::path::absolute(cert)
                .with_context(|| format!("resolving the certificate path {}", cert.display()))?,
        );
    }
    Ok(())
}

/// The database, opened for the server.
struct Storage {
    persistence: Arc<dyn Persistence>,
    url: String,
    is_postgres: bool,
}

/// Opens the database (its connections warm up in the background while serving starts).
async fn open_storage(config: &ServerConfig, placement: Placement) -> anyhow::Result<Storage> {
    let url = config.database_url();
    // The instance endpoint's threads each serve many connections: an SQLite commit must
    // not block one of them (see `instance_threads`).
    let options = runtara_core::ConnectOptions::new().sqlite_commits_on_writer_thread(true);
    let is_postgres = matches!(
        runtara_core::DatabaseUrl::parse(&url),
        Ok(runtara_core::DatabaseUrl::Postgres(_))
    );
    // With PostgreSQL each instance endpoint thread has a pool of its own, and the main
    // runtime's serves only management and supervision.
    let options = match (is_postgres, placement) {
        (true, Placement::Threads(_)) => options.postgres_pool_size(MAIN_POOL_SIZE),
        _ => options,
    };
    let persistence = runtara_core::connect_with(&url, options)
        .await
        .with_context(|| format!("opening the database {url}"))?;
    let warming = persistence.clone();
    tokio::spawn(async move {
        if let Err(error) = warming.warm_up().await {
            tracing::warn!(%error, "warming up the database connections failed");
        }
    });
    Ok(Storage {
        persistence,
        url,
        is_postgres,
    })
}

/// A QUIC server endpoint on `addr`.
fn bind(
    addr: SocketAddr,
    tls: &tls_setup::TlsMaterial,
    what: &str,
) -> anyhow::Result<quinn::Endpoint> {
    runtara_protocol::endpoint::server_endpoint(
        addr,
        &tls.cert_pem,
        &tls.key_pem,
        Some(&tls.reset_secret),
    )
    .with_context(|| format!("starting the {what} endpoint on {addr}"))
}

/// The instance endpoint, served on the main runtime or on threads of its own.
struct ServedInstances {
    addr: SocketAddr,
    endpoint: Option<quinn::Endpoint>,
    accept_loop: Option<JoinHandle<()>>,
    threads: Option<InstanceThreads>,
}

async fn serve_instances(
    config: &ServerConfig,
    placement: Placement,
    storage: &Storage,
    tls: &tls_setup::TlsMaterial,
    auth: instance_endpoint::InstanceAuth,
) -> anyhow::Result<ServedInstances> {
    match placement {
        Placement::MainRuntime => {
            let endpoint = bind(config.instance_addr, tls, "instance")?;
            let accept_loop = tokio::spawn(instance_endpoint::serve(
                endpoint.clone(),
                storage.persistence.clone(),
                auth,
            ));
            let addr = endpoint.local_addr().context("reading the bound address")?;
            Ok(ServedInstances {
                addr,
                endpoint: Some(endpoint),
                accept_loop: Some(accept_loop),
                threads: None,
            })
        }
        Placement::Threads(count) => {
            let store = match storage.is_postgres {
                true => ThreadStore::Own {
                    url: storage.url.clone(),
                    pool_size: (THREADS_POOL_BUDGET / count).max(2),
                },
                false => ThreadStore::Shared(storage.persistence.clone()),
            };
            let (addr, threads) =
                InstanceThreads::start(config.instance_addr, count, tls, store, auth)
                    .await
                    .with_context(|| {
                        format!("starting the instance endpoint on {}", config.instance_addr)
                    })?;
            Ok(ServedInstances {
                addr,
                endpoint: None,
                accept_loop: None,
                threads: Some(threads),
            })
        }
    }
}

/// Says whether the management endpoint needs a token.
fn log_management_access(tokens: &ManagementTokens, management_addr: SocketAddr) {
    if tokens.is_empty() {
        tracing::warn!(
            %management_addr,
            "no management tokens configured: the management endpoint is open to every client that reaches it (set --tokens-file or RUNTARA_MANAGEMENT_TOKENS)"
        );
    } else {
        tracing::info!(tokens = tokens.len(), "management tokens required");
    }
}

/// The address launched instances dial: a wildcard bind is reached over loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => {
            let loopback = if ip.is_ipv4() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
            };
            SocketAddr::new(loopback, addr.port())
        }
        _ => addr,
    }
}

impl RunningServer {
    /// Stops accepting, tells connected clients the server is going away (instances
    /// reconnect to the next server), and waits briefly for in-flight replies. Instance
    /// processes keep running: the next server adopts them.
    pub async fn shutdown(self) {
        for endpoint in &self.endpoints {
            endpoint.close(0u32.into(), b"server shutting down");
        }
        if let Some(threads) = &self.instance_threads {
            threads.close();
        }
        for endpoint in &self.endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        }
        for accept_loop in &self.accept_loops {
            accept_loop.abort();
        }
        if let Some(threads) = self.instance_threads {
            // Each thread lets its clients see the close before it ends.
            threads.stop().await;
        }
    }
}
