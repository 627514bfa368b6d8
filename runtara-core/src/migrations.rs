//! The schema migrations of both dialects, found at build time in
//! `migrations/sqlite` and `migrations/postgres` (files `NNNN_name.sql`, numbered 1, 2,
//! 3, … without gaps; the build fails otherwise) and embedded.
//!
//! Each applied migration is recorded in `runtara_migrations` with its checksum. A
//! database on which an applied migration's SQL differs from the one this build embeds
//! is refused ([`Error::MigrationChanged`](crate::Error::MigrationChanged)): a migration
//! is never edited once released; a change is a new migration. Databases from before
//! checksums were recorded get theirs filled in on first open.

/// One migration: its version, name, SQL and checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Increasing version number (the file's `NNNN` prefix).
    pub version: u32,
    /// What it does (the file's name after the prefix).
    pub name: &'static str,
    /// The SQL to run.
    pub sql: &'static str,
    /// [`checksum`] of [`sql`](Self::sql), recorded when it is applied.
    pub checksum: u64,
}

impl Migration {
    /// The checksum as recorded in `runtara_migrations`: 16 lowercase hex digits.
    pub fn checksum_hex(&self) -> String {
        format!("{:016x}", self.checksum)
    }
}

/// SQLite migrations, oldest first.
#[cfg(feature = "sqlite")]
pub const SQLITE: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations_sqlite.rs"));

/// PostgreSQL migrations, oldest first.
#[cfg(feature = "postgres")]
pub const POSTGRES: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations_postgres.rs"));

/// Migrations of one dialect only, by name: the rest must be in both, in the same order.
pub const DIALECT_ONLY: &[(&str, &str)] = &[
    // SQLite keeps queued signals in a partial index of its own.
    ("sqlite", "signals_pending"),
    // PostgreSQL's checkpoint key and derived progress columns (SQLite's schema had
    // both from `init` and `list_and_order`).
    ("postgres", "checkpoints_key"),
    ("postgres", "derived_progress"),
];

/// FNV-1a (64 bits) of `sql`: what the build records as [`Migration::checksum`].
pub fn checksum(sql: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The table recording applied migrations (same in both dialects); `checksum` is
/// added to tables created before it existed.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS runtara_migrations (\
     version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL, \
     checksum TEXT)";

/// What to do about a migration, given what the database recorded for its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Not applied yet: apply it.
    Apply,
    /// Applied with the same SQL: nothing.
    Same,
    /// Applied before checksums were recorded: record this one's.
    Backfill,
}

/// Compares what the database recorded for `migration` with the embedded one.
pub(crate) fn compare(
    migration: &Migration,
    recorded: Option<Option<String>>,
) -> crate::Result<Recorded> {
    match recorded {
        None => Ok(Recorded::Apply),
        Some(None) => Ok(Recorded::Backfill),
        Some(Some(stored)) if stored == migration.checksum_hex() => Ok(Recorded::Same),
        Some(Some(stored)) => Err(crate::Error::MigrationChanged {
            version: migration.version,
            name: migration.name,
            stored,
            embedded: migration.checksum_hex(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "sqlite", feature = "postgres"))]
    #[test]
    fn both_dialects_have_the_same_migrations_but_their_own() {
        let shared = |list: &[Migration], dialect: &str| -> Vec<&str> {
            list.iter()
                .map(|m| m.name)
                .filter(|name| !DIALECT_ONLY.contains(&(dialect, *name)))
                .collect()
        };
        assert_eq!(
            shared(SQLITE, "sqlite"),
            shared(POSTGRES, "postgres"),
            "a migration was added to one dialect only (add it to the other, or to \
             DIALECT_ONLY with the reason)"
        );
        for (dialect, name) in DIALECT_ONLY {
            let list = if *dialect == "sqlite" {
                SQLITE
            } else {
                POSTGRES
            };
            assert!(
                list.iter().any(|m| m.name == *name),
                "{dialect} has no migration `{name}`"
            );
        }
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn the_lists_come_from_the_folders_numbered_and_checksummed() {
        for (index, migration) in SQLITE.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
            assert_eq!(
                migration.checksum,
                checksum(migration.sql),
                "{}",
                migration.name
            );
        }
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let files = std::fs::read_dir(folder).map(Iterator::count).unwrap_or(0);
        assert_eq!(files, SQLITE.len());
        assert_eq!(SQLITE[0].name, "init");
    }

    #[test]
    fn a_changed_migration_is_refused_and_an_unrecorded_checksum_filled_in() {
        let migration = Migration {
            version: 3,
            name: "images",
            sql: "CREATE TABLE images (id TEXT)",
            checksum: checksum("CREATE TABLE images (id TEXT)"),
        };
        assert_eq!(compare(&migration, None).ok(), Some(Recorded::Apply));
        assert_eq!(
            compare(&migration, Some(None)).ok(),
            Some(Recorded::Backfill)
        );
        let same = Some(Some(migration.checksum_hex()));
        assert_eq!(compare(&migration, same).ok(), Some(Recorded::Same));
        let error = compare(&migration, Some(Some("0000000000000000".into())))
            .expect_err("a changed migration");
        let message = error.to_string();
        assert!(
            message.contains("0003_images") && message.contains("changed after it was applied"),
            "{message}"
        );
    }
}
