//! Management SDK of Runtara: register workflow images, start instances, watch them,
//! read their output, and pause, resume or cancel them.
//!
//! [`ManagementSdk`] talks to the management endpoint of `runtara-server` (QUIC with TLS,
//! `127.0.0.1:8002` by default). Every call is one request on its own stream of one
//! cached connection; a lost connection is re-established and the request sent again
//! once. This crate also ships the `runtara-ctl` command-line tool (feature `cli`, on by
//! default).
//!
//! # Example
//!
//! ```
//! use runtara_management_sdk::{
//!     InstanceStatus, ManagementSdk, RegisterImageOptions, SdkConfig, StartInstanceOptions,
//! };
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let data = tempfile::tempdir()?;
//! # let mut server = runtara_server::ServerConfig::new(data.path());
//! # server.instance_addr = "127.0.0.1:0".parse()?;
//! # server.management_addr = "127.0.0.1:0".parse()?;
//! # let server = runtara_server::start(server).await?;
//! # let addr = server.management_addr.to_string();
//! # let ca = server.ca_path.clone().expect("the dev certificate");
//! # let workflow = b"#!/bin/sh\nexit 0\n".to_vec();
//! // Trust the server's certificate: its `<data-dir>/tls/ca.pem`. Without
//! // `with_ca_cert`, `RUNTARA_CA_CERT` is used, and on loopback `./runtara-data/tls/ca.pem`.
//! let sdk = ManagementSdk::new(SdkConfig::new(addr).with_ca_cert(ca))?;
//! sdk.connect().await?;
//!
//! // `workflow`: the bytes of a compiled workflow binary.
//! let image = sdk
//!     .register_image(RegisterImageOptions::new("tenant-123", "orders", workflow))
//!     .await?;
//! let started = sdk
//!     .start_instance(
//!         StartInstanceOptions::new(&image.image_id, "tenant-123")
//!             .with_input(serde_json::json!({ "order_id": "ORD-456" })),
//!     )
//!     .await?;
//! let status = sdk.get_instance_status(&started.instance_id).await?;
//! println!("{} is {}", status.instance_id, status.status);
//! if status.status == InstanceStatus::Completed {
//!     println!("output: {:?}", status.output_json());
//! }
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! [`SdkConfig::new`] takes the address; [`SdkConfig::from_env`] reads
//! `RUNTARA_ENVIRONMENT_ADDR`, `RUNTARA_CA_CERT`, `RUNTARA_SKIP_CERT_VERIFICATION`,
//! `RUNTARA_MANAGEMENT_TOKEN`, `RUNTARA_SERVER_NAME`, `RUNTARA_REQUEST_TIMEOUT_MS` and
//! `RUNTARA_CONNECT_TIMEOUT_MS` (see [`config`]). Certificate verification is always on
//! unless skipped explicitly ([`SdkConfig::localhost`] is for local development only).
//!
//! # Errors
//!
//! Every call returns [`SdkError`]. When the server refuses a request the error is
//! [`SdkError::Server`] and [`SdkError::code`] gives the protocol's stable code
//! (`not_found`, `invalid_input`, `in_use`, `unauthorized`, …).
//!
//! # Timestamps
//!
//! Times are RFC 3339 UTC strings with millisecond precision
//! (`2024-05-01T12:30:05.250Z`); [`InstanceInfo::started_at`] is empty while the
//! instance has not started.
//!
//! # `runtara-ctl`
//!
//! ```text
//! runtara-ctl [--addr A] [--ca-cert PEM | --insecure] [--token T] [--json] <command>
//!
//!   list --tenant T [--status S] [--limit N] [--offset N]
//!   status <id>            cancel <id>           pause <id>           resume <id>
//!   register <binary> --tenant T --name N [--description D]     (prints the image id)
//!   start <image-id> --tenant T [--input <json|@file>] [--instance-id ID] [--timeout-secs N]
//!   images --tenant T      delete-image <id>     events <id>          checkpoints <id>
//!   wait <id> [--timeout-secs N] [--interval-ms N]
//!   retry-step <id> <fn>::<key>   (let a durable call that failed for good run again)
//!   health
//! ```
//!
//! Flags fall back to the same environment variables as [`SdkConfig::from_env`]. Without
//! `--ca-cert` or `--insecure`, a loopback address uses `./runtara-data/tls/ca.pem` when
//! that file exists (the server's default data directory), is owned by the user and is not
//! writable by group or others. `--json` prints one JSON
//! document per result on stdout. Errors go to stderr as `runtara-ctl: <message>`.
//!
//! Exit codes: `0` success; `1` the server refused the request (not found, invalid
//! input, …) or the waited-for instance ended `failed` or `cancelled`; `2` usage error
//! (bad arguments, configuration or local input such as invalid JSON or an unreadable
//! file); `3` cannot connect, TLS failure or timeout; `4` `wait` timed out.
//!
//! # Both SDKs in one program
//!
//! `runtara-sdk` and `runtara-management-sdk` each have an `SdkConfig`, an `SdkError`
//! and a `Result`. Where one program uses both (a service that runs workflows and also
//! starts them), import each crate under a short alias rather than its types by name:
//!
//! ```
//! use runtara_management_sdk as management;
//! use runtara_sdk as instance;
//!
//! let worker = instance::SdkConfig::localhost("order-42", "acme");
//! let operator = management::SdkConfig::localhost();
//! # let _ = (worker, operator);
//! fn step() -> instance::Result<()> { Ok(()) }
//! fn admin() -> management::Result<()> { Ok(()) }
//! # step().unwrap(); admin().unwrap();
//! ```
//!
//! Both errors are `std::error::Error + Send + Sync`, so `?` takes either into
//! `Box<dyn Error>`, `anyhow::Error`, or an application error with a `From` for each.

pub mod config;
mod connection;
mod error;
mod options;
mod responses;
mod sdk;
mod time;

pub use config::SdkConfig;
pub use error::{Result, SdkError};
pub use options::{
    CreateScheduleOptions, ListInstancesOptions, MissedFires, RegisterImageOptions,
    SendEventOptions, StartInstanceOptions, WorkerPool,
};
pub use responses::{
    Checkpoint, Event, EventPage, EventSent, Health, Image, InstanceInfo, InstancePage,
    InstanceSummary, QueuePlace, RegisterImageResult, Schedule, SignalOutcome, StartInstanceResult,
    TERMINAL_STATUSES,
};
pub use runtara_protocol::{ErrorCode, EventKind, InstanceStatus, ParseStatusError};
pub use sdk::{sha256_hex, ManagementSdk};
pub use time::rfc3339_from_millis;
