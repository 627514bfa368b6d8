//! The durable-execution engine of Runtara, as a library.
//!
//! [`Persistence`] is the one contract every backend honours; [`connect`] picks a
//! backend from a URL:
//!
//! | URL | backend |
//! |---|---|
//! | `sqlite:///abs/path.db` | SQLite file at an absolute path (WAL, `synchronous=FULL`) |
//! | `sqlite://relative/path.db` | SQLite file relative to the working directory |
//! | `sqlite::memory:` | in-memory SQLite (tests) |
//! | `postgres://user@host:port/db` (or `postgresql://`) | PostgreSQL |
//!
//! A run registers (taking an epoch that fences out older runs), records its steps
//! (insert-if-absent: a step recorded earlier comes back instead), and finishes:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> runtara_core::Result<()> {
//! use runtara_core::InstanceStatus;
//!
//! let store = runtara_core::connect("sqlite::memory:").await?;
//! let run = store.register_instance("order-42", "acme", None).await?;
//! let first = store.save_checkpoint("order-42", run.epoch, "charge::order-42", b"receipt-1").await?;
//! assert_eq!(first.existing_state, None); // recorded now
//!
//! // A later run (after a crash) gets the recorded step back instead of recording another.
//! let again = store.register_instance("order-42", "acme", None).await?;
//! let replayed = store.save_checkpoint("order-42", again.epoch, "charge::order-42", b"receipt-2").await?;
//! assert_eq!(replayed.existing_state.as_deref(), Some(&b"receipt-1"[..]));
//!
//! store.complete_instance("order-42", again.epoch, b"done").await?;
//! let record = store.get_instance("order-42").await?.expect("stored");
//! assert_eq!(record.status, InstanceStatus::Completed);
//! # Ok(()) }
//! ```
//!
//! Migrations are embedded and applied on connect.
//!
//! # Storage behaviour where the contract leaves room
//!
//! Both backends behave identically here (the parity suite in
//! `tests/persistence_parity.rs` checks every point against both):
//!
//! - Every id (instance, tenant, checkpoint, event kind) is validated on every method,
//!   reads included: empty or longer than [`MAX_ID_LEN`] bytes is
//!   [`Error::InvalidInput`] before anything is touched. Retry attempts are 1-based.
//! - A run's writes are refused in the order missing → fenced → terminal → not running,
//!   so an old run is told it was fenced out even after the new run finished the instance.
//!   A checkpoint id recorded earlier is still refused when the run may not write.
//! - A resume is never reported to a run; the register that relaunches a suspended
//!   instance settles every queued resume. `suspend_instance` settles queued pauses, as
//!   an acknowledged pause does, so a resumed run is not paused again by the same signal.
//! - A signal applied at once (cancel of `pending`/`suspended`/`sleeping`, pause of
//!   `sleeping`) clears the wake time; every signal records a `signal` event whose
//!   subtype is the signal's name, plus an event for the status it caused.
//! - `set_status` never leaves a terminal state, even when `from` lists it (it returns
//!   false); an unknown instance is [`Error::InstanceNotFound`]. Its event has subtype
//!   `server` and the error, if any, as payload.
//! - `save_sleep` over a checkpoint id first recorded without a wake time keeps the wake
//!   time given now. Registering clears the instance's wake time.
//! - Retry attempts and checkpoints are listed in the order they were recorded.
//! - Custom events (`record_custom_event`) are bounded by an [`EventQuota`] checked and
//!   counted with the insert, on the instance's row; a finished instance records none,
//!   and a refused event stores nothing. The system's own events (`record_event`) are
//!   neither bounded nor counted. Pages of events and checkpoints count their sizes in
//!   bytes alike in both backends, and always hold at least one record when any follow.
//! - External events (`send_event`) wait in the instance's inbox until a wait
//!   (`take_event`) takes the oldest of its name, once; a wait's outcome is a checkpoint
//!   ([`inbox::encode_outcome`]). A wait with nothing to take makes the instance
//!   `waiting` (heartbeats and the wait itself are still accepted from its run); taking
//!   makes it `running` again. Registering clears what it waited for.

pub mod error;
mod guard;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod in_progress;
pub mod inbox;
pub mod instance_handler;
pub mod migrations;
pub mod model;
pub mod persistence;
pub mod run_lease;
#[cfg(feature = "cron")]
pub mod scheduler;
pub mod schedules;
pub mod storage_health;
pub mod url;
pub mod wire;

#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

use std::sync::Arc;

pub use error::{Error, Result};
pub use guard::MAX_ID_LEN;
pub use inbox::{EventSent, EventTake, MAX_EVENT_PAYLOAD_LEN};
pub use instance_handler::{
    handle_instance_request, handle_instance_request_within, InstanceIdentity, RequestLimits,
};
pub use model::*;
pub use persistence::Persistence;
pub use run_lease::RunLease;
pub use schedules::{MissedFires, NewSchedule, ScheduleRecord};
pub use url::{DatabaseUrl, SqliteTarget};

/// Opens the backend named by `url`, applies migrations, and returns it.
///
/// See the crate docs for the accepted URLs.
pub async fn connect(url: &str) -> Result<Arc<dyn Persistence>> {
    connect_with(url, ConnectOptions::default()).await
}

/// How [`connect_with`] opens a backend; the default is what [`connect`] does.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// SQLite: run every write on the writer thread, including that of a caller alone in
    /// progress (which by default commits on its own thread, saving two thread
    /// wake-ups). For a server whose runtime threads each serve many connections, where
    /// a commit on such a thread would stall all of them for its fsync.
    pub sqlite_commits_on_writer_thread: bool,
    /// PostgreSQL: connections kept in the pool (`None`: 16).
    pub postgres_pool_size: Option<usize>,
    /// PostgreSQL: how long opening a connection keeps being retried while the server
    /// refuses it for capacity (`too many clients`, SQLSTATE 53300; `cannot_connect_now`,
    /// 57P03), with backoff, before the error is returned (`None`: 30 s).
    pub postgres_connect_deadline: Option<std::time::Duration>,
}

impl ConnectOptions {
    /// The defaults.
    pub fn new() -> Self {
        ConnectOptions::default()
    }

    /// Sets [`sqlite_commits_on_writer_thread`](Self::sqlite_commits_on_writer_thread).
    pub fn sqlite_commits_on_writer_thread(mut self, on_writer_thread: bool) -> Self {
        self.sqlite_commits_on_writer_thread = on_writer_thread;
        self
    }

    /// Sets [`postgres_connect_deadline`](Self::postgres_connect_deadline).
    pub fn postgres_connect_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.postgres_connect_deadline = Some(deadline);
        self
    }

    /// Sets [`postgres_pool_size`](Self::postgres_pool_size) (at least 1).
    pub fn postgres_pool_size(mut self, size: usize) -> Self {
        self.postgres_pool_size = Some(size.max(1));
        self
    }
}

/// [`connect`] with `options`.
pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Arc<dyn Persistence>> {
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    let _ = options;
    match DatabaseUrl::parse(url)? {
        #[cfg(feature = "sqlite")]
        DatabaseUrl::Sqlite(target) => Ok(Arc::new(
            sqlite::SqlitePersistence::open_with(target, &options).await?,
        )),
        #[cfg(not(feature = "sqlite"))]
        DatabaseUrl::Sqlite(_) => Err(Error::BackendDisabled { backend: "sqlite" }),
        #[cfg(feature = "postgres")]
        DatabaseUrl::Postgres(url) => Ok(Arc::new(
            postgres::PostgresPersistence::connect_with(&url, &options).await?,
        )),
        #[cfg(not(feature = "postgres"))]
        DatabaseUrl::Postgres(_) => Err(Error::BackendDisabled {
            backend: "postgres",
        }),
    }
}
