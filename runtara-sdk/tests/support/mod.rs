//! Shared set-up for the SDK's integration tests: real backends and unique ids.
//!
//! A [`Fixture`] is one backend: embedded SQLite, embedded PostgreSQL, or a real
//! `runtara-server` process (the workspace's binary, over QUIC on loopback, with its dev
//! certificate pinned) on SQLite or PostgreSQL. `fixture.store` is the storage an
//! operator would see: the same database, opened by the test.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtara_sdk::{Persistence, RuntaraSdk, SdkConfig};
use runtara_server::process::ServerProcess;

/// One backend under test.
pub struct Fixture {
    /// The storage behind the SDKs (for setting up and checking).
    pub store: Arc<dyn Persistence>,
    server: Option<ServerProcess>,
    _dir: tempfile::TempDir,
}

fn postgres_url() -> Option<String> {
    std::env::var("RUNTARA_TEST_POSTGRES_URL").ok()
}

/// Starts the server binary on random loopback ports over `data_dir`.
fn start_server(data_dir: &std::path::Path, database_url: Option<&str>) -> ServerProcess {
    let mut command = Command::new(runtara_server::process::workspace_binary("runtara-server"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--instance-addr",
            "127.0.0.1:0",
            "--management-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    ServerProcess::spawn(command).unwrap()
}

impl Fixture {
    /// Embedded mode on a SQLite file.
    pub async fn sqlite() -> Option<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("runtara.db").display());
        let store = runtara_sdk::persistence::connect(&url).await.unwrap();
        Some(Fixture {
            store,
            server: None,
            _dir: dir,
        })
    }

    /// Embedded mode on PostgreSQL, when `RUNTARA_TEST_POSTGRES_URL` is set.
    pub async fn postgres() -> Option<Fixture> {
        let url = postgres_url()?;
        let store = runtara_sdk::persistence::connect(&url).await.unwrap();
        Some(Fixture {
            store,
            server: None,
            _dir: tempfile::tempdir().unwrap(),
        })
    }

    /// QUIC mode: a runtara-server on 127.0.0.1 (random port) over a SQLite file.
    pub async fn quic_sqlite() -> Option<Fixture> {
        Some(Fixture::quic(None).await)
    }

    /// QUIC mode: a runtara-server over PostgreSQL, when `RUNTARA_TEST_POSTGRES_URL` is set.
    pub async fn quic_postgres() -> Option<Fixture> {
        Some(Fixture::quic(Some(postgres_url()?)).await)
    }

    async fn quic(database_url: Option<String>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = start_server(dir.path(), database_url.as_deref());
        let url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("runtara.db").display()));
        let store = runtara_sdk::persistence::connect(&url).await.unwrap();
        Fixture {
            store,
            server: Some(server),
            _dir: dir,
        }
    }

    /// An unregistered SDK for `instance_id` of tenant `tests`.
    pub fn sdk(&self, instance_id: &str) -> RuntaraSdk {
        self.sdk_for(instance_id, "tests")
    }

    /// An unregistered SDK for `instance_id` of `tenant`.
    pub fn sdk_for(&self, instance_id: &str, tenant: &str) -> RuntaraSdk {
        match &self.server {
            None => RuntaraSdk::embedded(self.store.clone(), instance_id, tenant),
            Some(server) => {
                let config = SdkConfig::new(instance_id, tenant)
                    .with_server_addr(server.ready.instance_addr)
                    .with_ca_cert(server.ready.ca_path.clone().unwrap())
                    .with_heartbeat_interval(Duration::ZERO);
                RuntaraSdk::new(config).unwrap()
            }
        }
    }

    /// Whether the SDKs talk to a server over QUIC.
    pub fn is_quic(&self) -> bool {
        self.server.is_some()
    }

    /// A new run of `instance_id`: a fresh SDK, connected and registered (as after a restart).
    /// In embedded mode the run takes over explicitly (the earlier run's SDK may still be
    /// alive in the test, standing for a process that is gone or stuck).
    pub async fn run(&self, instance_id: &str) -> RuntaraSdk {
        let sdk = match &self.server {
            None => RuntaraSdk::embedded_takeover(self.store.clone(), instance_id, "tests"),
            Some(_) => self.sdk(instance_id),
        };
        sdk.connect().await.unwrap();
        sdk.register(None).await.unwrap();
        sdk
    }
}

/// An id no other test (or earlier run against the same database) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Generates one `#[tokio::test]` per backend for each named async test body taking a
/// [`Fixture`]. PostgreSQL variants run when `RUNTARA_TEST_POSTGRES_URL` is set (CI sets
/// it and fails if PostgreSQL does not answer).
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $crate::on_every_backend!(@backend sqlite, sqlite, any(), $($name),*);
        $crate::on_every_backend!(@backend postgres, postgres, not(runtara_test_postgres), $($name),*);
        $crate::on_every_backend!(@backend quic_sqlite, quic_sqlite, any(), $($name),*);
        $crate::on_every_backend!(@backend quic_postgres, quic_postgres, not(runtara_test_postgres), $($name),*);
    };
    (@backend $module:ident, $make:ident, $ignored:meta, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr($ignored, ignore = "RUNTARA_TEST_POSTGRES_URL is not set")]
                async fn $name() {
                    let Some(fixture) = $crate::support::Fixture::$make().await else {
                        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
                        return;
                    };
                    super::$name(fixture).await;
                }
            )*
        }
    };
}
