//! Persistence for embedded mode: open a SQLite file or a PostgreSQL database.

use std::sync::Arc;

pub use runtara_core::{
    CheckpointRecord, EventKind, EventRecord, InstanceFilter, InstanceRecord, InstanceStatus,
    NewRuntimeInstance, Persistence, RetryAttemptRecord, RuntimeInstance, RuntimeStart,
    SignalOutcome, SignalType,
};

use crate::SdkError;

/// Opens the persistence named by `url` and applies its migrations.
///
/// | URL | backend |
/// |---|---|
/// | `sqlite:///abs/path.db` | SQLite file at an absolute path (created if missing) |
/// | `sqlite://relative/path.db` | SQLite file relative to the working directory |
/// | `sqlite::memory:` | in-memory SQLite, gone when dropped |
/// | `postgres://user@host:5432/db` | PostgreSQL |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), runtara_sdk::SdkError> {
/// # let dir = tempfile::tempdir().expect("a temporary directory");
/// # std::env::set_current_dir(dir.path()).expect("cd");
/// let persistence = runtara_sdk::persistence::connect("sqlite://runtara.db").await?;
/// # assert!(dir.path().join("runtara.db").exists());
/// # let _ = persistence; Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Persistence>, SdkError> {
    Ok(runtara_core::connect(url).await?)
}
