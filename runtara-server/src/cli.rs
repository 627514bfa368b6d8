//! Command-line flags of `runtara-server`; every flag has an environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::admission::RunLimits;
use crate::connection_limits::ConnectionLimits;
use crate::event_quota::EventLimits;
use crate::upload_limits::UploadLimits;
use crate::ServerConfig;

/// The Runtara server: stores durable state and serves instances over QUIC.
#[derive(Debug, Parser)]
#[command(name = "runtara-server", version, about)]
pub struct Cli {
    /// Directory for the database, the TLS certificate and images.
    #[arg(long, env = "RUNTARA_DATA_DIR", default_value = "./runtara-data")]
    pub data_dir: PathBuf,
    /// Database URL (`sqlite://…` or `postgres://…`); default `sqlite://<data-dir>/runtara.db`.
    #[arg(long, env = "RUNTARA_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address of the instance endpoint.
    #[arg(long, env = "RUNTARA_INSTANCE_ADDR", default_value = "127.0.0.1:8001")]
    pub instance_addr: SocketAddr,
    /// Address of the management endpoint.
    #[arg(
        long,
        env = "RUNTARA_MANAGEMENT_ADDR",
        default_value = "127.0.0.1:8002"
    )]
    pub management_addr: SocketAddr,
    /// TLS certificate chain (PEM); default: a self-signed dev certificate in the data dir.
    #[arg(long, env = "RUNTARA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `--tls-cert`.
    #[arg(long, env = "RUNTARA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest image accepted, in bytes.
    #[arg(long, env = "RUNTARA_MAX_IMAGE_BYTES", default_value_t = 1 << 30)]
    pub max_image_bytes: u64,
    /// Heartbeat interval given to launched instances, in milliseconds.
    #[arg(long, env = "RUNTARA_HEARTBEAT_INTERVAL_MS", default_value_t = 5_000)]
    pub heartbeat_interval_ms: u64,
    /// A running instance silent this long (ms) is considered crashed and relaunched.
    #[arg(long, env = "RUNTARA_HEARTBEAT_TIMEOUT_MS", default_value_t = 30_000)]
    pub heartbeat_timeout_ms: u64,
    /// Durable sleeps longer than this (ms) end the instance's process until the wake time.
    #[arg(
        long,
        env = "RUNTARA_SLEEP_EXIT_THRESHOLD_MS",
        default_value_t = 60_000
    )]
    pub sleep_exit_threshold_ms: u64,
    /// Time (ms) a cancelled instance gets to stop on its own before it is killed.
    #[arg(long, env = "RUNTARA_CANCEL_GRACE_MS", default_value_t = 10_000)]
    pub cancel_grace_ms: u64,
    /// Crashes in a row after which an instance is marked failed.
    #[arg(long, env = "RUNTARA_MAX_RESTARTS", default_value_t = 3)]
    pub max_restarts: u32,
    /// Wait (ms) before relaunching an instance that crashed again right after a relaunch
    /// (a first crash is relaunched at once); doubles per further crash in a row.
    #[arg(long, env = "RUNTARA_RESTART_BACKOFF_MS", default_value_t = 1_000)]
    pub restart_backoff_ms: u64,
    /// File of management tokens, one per line: `<token> <tenant>[,<tenant>...]` (`*`: every
    /// tenant). Without any token the management endpoint is open to whoever reaches it.
    #[arg(long, env = "RUNTARA_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Management tokens inline, in the tokens-file format (prefer the environment variable
    /// to the flag: command lines are visible to other local users).
    #[arg(long, env = "RUNTARA_MANAGEMENT_TOKENS", hide_env_values = true)]
    pub management_tokens: Option<String>,
    /// Refuse instances without a valid credential, including ones the server did not
    /// launch (by default those may connect without one, for development).
    #[arg(long, env = "RUNTARA_REQUIRE_INSTANCE_CREDENTIALS")]
    pub require_instance_credentials: bool,
    /// Threads serving the instance endpoint, each with an endpoint of its own on the
    /// same port (0: the main runtime); default: one per core. With PostgreSQL each
    /// thread has a connection pool of its own (16 connections shared out, at least 2
    /// each).
    #[arg(long, env = "RUNTARA_INSTANCE_THREADS")]
    pub instance_threads: Option<usize>,
    /// What one peer may make the server hold.
    #[command(flatten)]
    pub connection_limits: ConnectionLimits,
    /// Bounds on image uploads.
    #[command(flatten)]
    pub upload_limits: UploadLimits,
    /// Bounds on custom events.
    #[command(flatten)]
    pub event_limits: EventLimits,
    /// How many instance processes run at once.
    #[command(flatten)]
    pub run_limits: RunLimits,
}

impl From<Cli> for ServerConfig {
    fn from(cli: Cli) -> Self {
        ServerConfig {
            data_dir: cli.data_dir,
            database_url: cli.database_url,
            instance_addr: cli.instance_addr,
            management_addr: cli.management_addr,
            tls_cert: cli.tls_cert,
            tls_key: cli.tls_key,
            max_image_bytes: cli.max_image_bytes,
            heartbeat_interval: Duration::from_millis(cli.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(cli.heartbeat_timeout_ms),
            sleep_exit_threshold: Duration::from_millis(cli.sleep_exit_threshold_ms),
            cancel_grace: Duration::from_millis(cli.cancel_grace_ms),
            max_restarts: cli.max_restarts,
            restart_backoff: Duration::from_millis(cli.restart_backoff_ms),
            tokens_file: cli.tokens_file,
            management_tokens: cli.management_tokens,
            require_instance_credentials: cli.require_instance_credentials,
            instance_threads: cli.instance_threads,
            connection_limits: cli.connection_limits,
            upload_limits: cli.upload_limits,
            event_limits: cli.event_limits,
            run_limits: cli.run_limits,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn auth_flags_reach_the_config() {
        let cli = Cli::try_parse_from([
            "runtara-server",
            "--tokens-file",
            "tokens.txt",
            "--require-instance-credentials",
        ])
        .unwrap();
        let config = ServerConfig::from(cli);
        assert_eq!(config.tokens_file, Some(PathBuf::from("tokens.txt")));
        assert!(config.require_instance_credentials);
        let defaults = ServerConfig::new("d");
        assert_eq!(defaults.tokens_file, None);
        assert_eq!(defaults.management_tokens, None);
        assert!(!defaults.require_instance_credentials);
    }
}
