//! What a mode runs against: embedded storage, or a `runtara-server` process (this
//! binary in `serve` mode) over QUIC.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtara_core::Persistence;
use runtara_sdk::{RuntaraSdk, SdkConfig};
use runtara_server::process::ServerProcess;

/// The tenant every benchmark instance belongs to.
pub const TENANT: &str = "bench";

/// A benchmark mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `RuntaraSdk::embedded` on a SQLite file.
    EmbeddedSqlite,
    /// `RuntaraSdk::embedded` on PostgreSQL.
    EmbeddedPostgres,
    /// QUIC to a server process on SQLite.
    QuicSqlite,
    /// QUIC to a server process on PostgreSQL.
    QuicPostgres,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 4] = [
        Mode::EmbeddedSqlite,
        Mode::EmbeddedPostgres,
        Mode::QuicSqlite,
        Mode::QuicPostgres,
    ];

    /// The mode's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::EmbeddedSqlite => "embedded-sqlite",
            Mode::EmbeddedPostgres => "embedded-postgres",
            Mode::QuicSqlite => "quic-sqlite",
            Mode::QuicPostgres => "quic-postgres",
        }
    }

    /// Whether the mode needs PostgreSQL.
    pub fn postgres(self) -> bool {
        matches!(self, Mode::EmbeddedPostgres | Mode::QuicPostgres)
    }

    /// Whether the mode talks to a server.
    pub fn quic(self) -> bool {
        matches!(self, Mode::QuicSqlite | Mode::QuicPostgres)
    }
}

/// Starts this binary in `serve` mode over `data_dir` (with `extra` flags) and waits
/// until it is ready.
fn start_server(
    data_dir: &Path,
    database_url: &str,
    extra: &[&str],
) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--database-url", database_url])
        .args([
            "--instance-addr",
            "127.0.0.1:0",
            "--management-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("RUST_LOG", "error")
        .stderr(Stdio::inherit());
    // A diagnostic: the server's threading, for paired comparisons.
    if let Ok(threads) = std::env::var("RUNTARA_BENCH_INSTANCE_THREADS") {
        command.args(["--instance-threads", &threads]);
    }
    ServerProcess::spawn(command).context("starting the server process")
}

/// A mode, opened.
#[derive(Debug)]
pub struct Target {
    /// The mode.
    pub mode: Mode,
    /// The storage (opened by this process too, for embedded mode and set-up).
    pub store: Arc<dyn Persistence>,
    /// The server, in QUIC modes.
    pub server: Option<ServerProcess>,
}

impl Target {
    /// Opens `mode` over `dir` (SQLite) or `postgres_url`.
    pub async fn open(
        mode: Mode,
        dir: &Path,
        postgres_url: Option<&str>,
    ) -> anyhow::Result<Target> {
        Target::open_with(mode, dir, postgres_url, &[]).await
    }

    /// [`open`](Self::open), the server started with `server_flags` too.
    pub async fn open_with(
        mode: Mode,
        dir: &Path,
        postgres_url: Option<&str>,
        server_flags: &[&str],
    ) -> anyhow::Result<Target> {
        let url = match (mode.postgres(), postgres_url) {
            (true, Some(url)) => url.to_owned(),
            (true, None) => anyhow::bail!("{} needs RUNTARA_BENCH_POSTGRES_URL", mode.name()),
            (false, _) => format!("sqlite://{}", dir.join("runtara.db").display()),
        };
        let store = runtara_core::connect(&url).await?;
        if !mode.quic() {
            // As a long-running embedding service would (the server does the same).
            store.warm_up().await?;
        }
        let server = if mode.quic() {
            Some(start_server(dir, &url, server_flags)?)
        } else {
            None
        };
        Ok(Target {
            mode,
            store,
            server,
        })
    }

    /// An unregistered SDK for `instance_id`.
    pub fn sdk(&self, instance_id: &str) -> anyhow::Result<RuntaraSdk> {
        Ok(match &self.server {
            None => RuntaraSdk::embedded(self.store.clone(), instance_id, TENANT),
            Some(server) => RuntaraSdk::new(
                SdkConfig::new(instance_id, TENANT)
                    .with_server_addr(server.ready.instance_addr)
                    .with_ca_cert(
                        server
                            .ready
                            .ca_path
                            .clone()
                            .context("no CA in the ready line")?,
                    )
                    .with_heartbeat_interval(Duration::ZERO),
            )?,
        })
    }

    /// A connected, registered SDK for `instance_id`.
    pub async fn run(&self, instance_id: &str) -> anyhow::Result<RuntaraSdk> {
        let sdk = self.sdk(instance_id)?;
        sdk.connect().await?;
        sdk.register(None).await?;
        Ok(sdk)
    }
}

/// A prefix unique to this run, so runs against one PostgreSQL database never collide.
pub fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("b{}-{nanos:x}", std::process::id())
}
