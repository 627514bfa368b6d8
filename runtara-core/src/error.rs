//! The error type of `runtara-core`.

use crate::model::InstanceStatus;

/// Result type of `runtara-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the durable engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No instance with this id exists (or it belongs to another tenant).
    #[error("instance `{instance_id}` not found")]
    InstanceNotFound {
        /// The instance id that was looked up.
        instance_id: String,
    },
    /// The instance exists but is registered for another tenant.
    #[error("instance `{instance_id}` is not registered for tenant `{tenant_id}`")]
    TenantMismatch {
        /// The instance id.
        instance_id: String,
        /// The tenant the caller claimed.
        tenant_id: String,
    },
    /// The instance is in a terminal state; nothing can change it any more.
    #[error("instance `{instance_id}` is {status}; a finished instance cannot change")]
    Terminal {
        /// The instance id.
        instance_id: String,
        /// Its terminal status.
        status: InstanceStatus,
    },
    /// A newer run of the instance registered; this run's writes are refused.
    #[error(
        "instance `{instance_id}` was taken over by a newer run (epoch {current}); \
         this run (epoch {epoch}) is fenced out"
    )]
    Fenced {
        /// The instance id.
        instance_id: String,
        /// The epoch the caller holds.
        epoch: i64,
        /// The instance's current epoch.
        current: i64,
    },
    /// The operation needs a running instance.
    #[error("instance `{instance_id}` is {status}, not running")]
    NotRunning {
        /// The instance id.
        instance_id: String,
        /// Its current status.
        status: InstanceStatus,
    },
    /// A signal cannot be delivered in the instance's current state.
    #[error("cannot {signal} instance `{instance_id}`: it is {status}")]
    SignalRejected {
        /// The instance id.
        instance_id: String,
        /// The signal that was refused.
        signal: crate::model::SignalType,
        /// The instance's status.
        status: InstanceStatus,
    },
    /// An instance with this id already exists.
    #[error("instance `{instance_id}` already exists")]
    InstanceExists {
        /// The instance id.
        instance_id: String,
    },
    /// No image with this id exists.
    #[error("image `{image_id}` not found")]
    ImageNotFound {
        /// The image id that was looked up.
        image_id: String,
    },
    /// The image is used by instances that have not finished.
    #[error("image `{image_id}` is used by {instances} unfinished instance(s); cancel or finish them first")]
    ImageInUse {
        /// The image id.
        image_id: String,
        /// How many unfinished instances use it.
        instances: i64,
    },
    /// A custom event would take its instance past a quota
    /// ([`EventQuota`](crate::EventQuota)); nothing was stored.
    #[error("instance `{instance_id}` {reason}; nothing was stored")]
    QuotaExceeded {
        /// The instance id.
        instance_id: String,
        /// Which quota, and how far the instance is into it.
        reason: String,
    },
    /// The database URL names no backend this crate knows.
    #[error(
        "unsupported database url `{url}`: expected `sqlite:///absolute/path.db`, \
         `sqlite://relative/path.db`, `sqlite::memory:` or `postgres://…`"
    )]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
    },
    /// The backend named by the URL was not compiled in.
    #[error("the `{backend}` backend is not compiled in; enable the `{backend}` feature of runtara-core")]
    BackendDisabled {
        /// `sqlite` or `postgres`.
        backend: &'static str,
    },
    /// An argument was rejected before anything was stored.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was invalid (`checkpoint id`, `limit`, …).
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The database returned something this version cannot read.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Applying the embedded schema migrations failed.
    #[error("database migration {version} failed: {}", chain(source.as_ref()))]
    Migration {
        /// The migration that failed.
        version: u32,
        /// The database error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An applied migration's SQL differs from the one this build embeds: the database
    /// was migrated by a build whose migration was later edited (or this build's was).
    #[error(
        "migration {version:04}_{name} was changed after it was applied to this database \
         (recorded checksum {stored}, this build's {embedded}); a released migration must \
         never change: restore it and put the change in a new migration"
    )]
    MigrationChanged {
        /// Its version.
        version: u32,
        /// Its name.
        name: &'static str,
        /// The checksum the database recorded.
        stored: String,
        /// The checksum of the SQL this build embeds.
        embedded: String,
    },
    /// The database records a migration this build does not have: a newer build of
    /// runtara migrated it. It is refused before anything is changed.
    #[error(
        "this database was migrated by a newer build of runtara: it has migration \
         {version:04}_{name}, and this build knows migrations up to {latest:04}; open it \
         with that build or a newer one"
    )]
    DatabaseNewer {
        /// The newest migration the database records.
        version: u32,
        /// Its name, as recorded.
        name: String,
        /// The last migration this build embeds.
        latest: u32,
    },
    /// The database reported an error; the message carries the driver's (a read-only or
    /// corrupt file, a refused connection, a value the database cannot store).
    #[error("database error ({backend}): {}", chain(source.as_ref()))]
    Database {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another live run holds the instance's lease (embedded mode): a second run of one
    /// instance is refused while the first lives. The lease dies with its holder's
    /// process, so a run whose process died is taken over at once.
    #[error(
        "instance `{instance_id}` is being run by another live process ({holder}); \
         a second run is refused while that one lives"
    )]
    Leased {
        /// The instance id.
        instance_id: String,
        /// Who holds the lease: process id, host and since when, as far as known.
        holder: String,
    },
    /// The persistence backend has shut down.
    #[error("the persistence backend has shut down")]
    Closed,
}

/// `error` and its sources, `: ` between, each said once (drivers often print only a
/// kind, such as `db error`, and keep the server's words in a source).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let part = source.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = source.source();
    }
    text
}

impl Error {
    /// Wraps a driver error as [`Error::Database`].
    pub fn database(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Database {
            backend,
            source: source.into(),
        }
    }
}
