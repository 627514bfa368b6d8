//! What a mode runs against: embedded storage, or a `runtara-server` process (this
//! binary in `serve` mode) over QUIC.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use runtara_core::Persistence;
use runtara_sdk::{RuntaraSdk, SdkConfig};

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

/// A server process, killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Instance endpoint.
    pub instance_addr: SocketAddr,
    /// Management endpoint.
    pub management_addr: SocketAddr,
    /// The CA to trust.
    pub ca_path: PathBuf,
}

impl ServerProcess {
    /// Starts this binary in `serve` mode over `data_dir` and waits until it is ready.
    pub fn start(data_dir: &Path, database_url: &str) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
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
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server process")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let ready = BufReader::new(stdout)
            .lines()
            .next()
            .context("the server exited before it was ready")??;
        let field = |name: &str| {
            ready
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .map(str::to_owned)
                .with_context(|| format!("no {name} in `{ready}`"))
        };
        Ok(ServerProcess {
            instance_addr: field("instance=")?.parse()?,
            management_addr: field("management=")?.parse()?,
            ca_path: field("ca=")?.into(),
            child,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let url = match (mode.postgres(), postgres_url) {
            (true, Some(url)) => url.to_owned(),
            (true, None) => anyhow::bail!("{} needs RUNTARA_BENCH_POSTGRES_URL", mode.name()),
            (false, _) => format!("sqlite://{}", dir.join("runtara.db").display()),
        };
        let store = runtara_core::connect(&url).await?;
        let server = if mode.quic() {
            Some(ServerProcess::start(dir, &url)?)
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
                    .with_server_addr(server.instance_addr)
                    .with_ca_cert(server.ca_path.clone())
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
