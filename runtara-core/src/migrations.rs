//! The schema migrations, embedded in both dialects.

/// One migration: its version and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Increasing version number (the file's `NNNN` prefix).
    pub version: u32,
    /// What it does (the file's name after the prefix).
    pub name: &'static str,
    /// The SQL to run.
    pub sql: &'static str,
}

/// SQLite migrations, oldest first.
#[cfg(feature = "sqlite")]
pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "list_and_order",
        sql: include_str!("../migrations/sqlite/0002_list_and_order.sql"),
    },
    Migration {
        version: 3,
        name: "images",
        sql: include_str!("../migrations/sqlite/0003_images.sql"),
    },
    Migration {
        version: 4,
        name: "signals_pending",
        sql: include_str!("../migrations/sqlite/0004_signals_pending.sql"),
    },
    Migration {
        version: 5,
        name: "step_failures",
        sql: include_str!("../migrations/sqlite/0005_step_failures.sql"),
    },
    Migration {
        version: 6,
        name: "checkpoint_producer",
        sql: include_str!("../migrations/sqlite/0006_checkpoint_producer.sql"),
    },
    Migration {
        version: 7,
        name: "custom_event_quota",
        sql: include_str!("../migrations/sqlite/0007_custom_event_quota.sql"),
    },
];

/// PostgreSQL migrations, oldest first.
#[cfg(feature = "postgres")]
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "list_and_order",
        sql: include_str!("../migrations/postgres/0002_list_and_order.sql"),
    },
    Migration {
        version: 3,
        name: "images",
        sql: include_str!("../migrations/postgres/0003_images.sql"),
    },
    Migration {
        version: 4,
        name: "checkpoints_key",
        sql: include_str!("../migrations/postgres/0004_checkpoints_key.sql"),
    },
    Migration {
        version: 5,
        name: "derived_progress",
        sql: include_str!("../migrations/postgres/0005_derived_progress.sql"),
    },
    Migration {
        version: 6,
        name: "step_failures",
        sql: include_str!("../migrations/postgres/0006_step_failures.sql"),
    },
    Migration {
        version: 7,
        name: "checkpoint_producer",
        sql: include_str!("../migrations/postgres/0007_checkpoint_producer.sql"),
    },
    Migration {
        version: 8,
        name: "custom_event_quota",
        sql: include_str!("../migrations/postgres/0008_custom_event_quota.sql"),
    },
];

/// The table recording applied migrations (same in both dialects).
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS runtara_migrations (\
     version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";
