//! Command-line flags of `runtara-server`; every flag has an environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

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
        }
    }
}
