//! The schema migrations of both dialects, found at build time in
//! `migrations/sqlite` and `migrations/postgres` (files `NNNN_name.sql`, numbered 1, 2,
//! 3, … without gaps; the build fails otherwise) and embedded.
//!
//! Each applied migration is recorded in `runtara_migrations` with its checksum. A
//! database on which an applied migration's SQL differs from the one this build embeds
//! is refused ([`Error::MigrationChanged`](crate::Error::MigrationChanged)): a migration
//! is never edited once released; a change is a new migration. Databases from before
//! checksums were recorded get theirs filled in on first open. A database that has a
//! migration this build does not know — it was opened by a newer build — is refused too
//! ([`Error::DatabaseNewer`](crate::Error::DatabaseNewer)), before anything is changed.

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
    // The order of starts: SQLite has it as the rowid.
    ("postgres", "start_order"),
];

/// FNV-1a (64 bits) of `sql`, each `\r\n` read as `\n`: what the build records as
/// [`Migration::checksum`]. Line endings do not count, so a checkout whose files got
/// CRLF line endings embeds the same checksums as one with LF.
pub fn checksum(sql: &str) -> u64 {
    let bytes = sql.as_bytes();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'\r' && bytes.get(index + 1) == Some(&b'\n') {
            continue;
        }
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Refuses a database whose newest recorded migration, `newest` (version and name), is
/// past the last of `known`: a newer build migrated it, and this one would misread it.
pub(crate) fn check_not_newer(
    known: &[Migration],
    newest: Option<(u32, String)>,
) -> crate::Result<()> {
    let latest = known.last().map_or(0, |m| m.version);
    match newest {
        Some((version, name)) if version > latest => Err(crate::Error::DatabaseNewer {
            version,
            name,
            latest,
        }),
        _ => Ok(()),
    }
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

/// The build's rules for a migrations folder, compiled here to be tested.
#[cfg(test)]
#[path = "../build/migration_files.rs"]
mod migration_files;

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

    #[cfg(feature = "postgres")]
    #[test]
    fn the_postgres_list_comes_from_its_folder_numbered_and_checksummed() {
        for (index, migration) in POSTGRES.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1);
            assert_eq!(
                migration.checksum,
                checksum(migration.sql),
                "{}",
                migration.name
            );
        }
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let files = migration_files::scan(&folder).expect("the folder follows the rules");
        let names: Vec<(u32, &str)> = files.iter().map(|f| (f.version, f.name.as_str())).collect();
        let embedded: Vec<(u32, &str)> = POSTGRES.iter().map(|m| (m.version, m.name)).collect();
        assert_eq!(names, embedded);
    }

    /// A folder holding `files` (name, contents) for the build's rules.
    fn folder_of(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary folder");
        for (name, sql) in files {
            std::fs::write(dir.path().join(name), sql).expect("writes a migration");
        }
        dir
    }

    /// What the build says about a folder holding `files`.
    fn problems_of(files: &[(&str, &str)]) -> String {
        let dir = folder_of(files);
        match migration_files::scan(dir.path()) {
            Ok(found) => panic!("accepted: {found:?}"),
            Err(problems) => problems,
        }
    }

    #[test]
    fn the_build_embeds_a_well_formed_folder_in_order_and_skips_hidden_files() {
        let dir = folder_of(&[
            ("0002_second.sql", "CREATE TABLE b (x INTEGER);"),
            ("0001_first.sql", "CREATE TABLE a (x INTEGER);"),
            (".0002_second.sql.swp", "editor state"),
            ("0003_v3_index.sql", "CREATE INDEX a_x ON a (x);"),
        ]);
        let found = migration_files::scan(dir.path()).expect("follows the rules");
        let names: Vec<(u32, &str)> = found.iter().map(|f| (f.version, f.name.as_str())).collect();
        assert_eq!(names, [(1, "first"), (2, "second"), (3, "v3_index")]);
        assert_eq!(found[0].checksum, checksum("CREATE TABLE a (x INTEGER);"));
        let list = migration_files::render(&found);
        assert!(list.starts_with("&[\n") && list.ends_with(']'), "{list}");
        assert!(
            list.contains("Migration { version: 1, name: \"first\", sql: include_str!("),
            "{list}"
        );
        assert!(
            list.contains(&format!("checksum: {:#018x} }}", found[2].checksum)),
            "{list}"
        );
    }

    #[test]
    fn the_build_refuses_repeats_gaps_and_badly_named_files() {
        let sql = "SELECT 1;";
        let repeat = problems_of(&[
            ("0001_a.sql", sql),
            ("0002_b.sql", sql),
            ("0002_c.sql", sql),
        ]);
        assert_eq!(
            repeat,
            "two migrations are numbered 0002: `0002_b.sql` and `0002_c.sql` (each number \
             is used once)"
        );
        let gap = problems_of(&[("0001_a.sql", sql), ("0004_d.sql", sql)]);
        assert_eq!(
            gap,
            "migration 0002 to 0003 are missing before `0004_d.sql` (the numbers run 1, 2, \
             3, … without gaps)"
        );
        let late_start = problems_of(&[("0002_b.sql", sql)]);
        assert!(
            late_start.contains("migration 0001 is missing before `0002_b.sql`"),
            "{late_start}"
        );
        let zero = problems_of(&[("0000_a.sql", sql), ("0001_b.sql", sql)]);
        assert_eq!(zero, "`0000_a.sql`: the numbers start at 0001");
        for bad in [
            "1_a.sql",
            "0001-a.sql",
            "0001_.sql",
            "0001_Images.sql",
            "0001_a.txt",
            "notes.md",
        ] {
            let problem = problems_of(&[(bad, sql)]);
            assert!(
                problem.starts_with(&format!("`{bad}` is not named `NNNN_name.sql`")),
                "{bad}: {problem}"
            );
        }
        let both = problems_of(&[("0001_a.sql", sql), ("0003_c.sql", sql), ("README", "")]);
        assert_eq!(both.lines().count(), 2, "every problem is told: {both}");
        assert!(problems_of(&[]).contains("no migrations"));
    }

    #[test]
    fn the_build_and_the_library_agree_on_checksums_whatever_the_line_endings() {
        let lf = "CREATE TABLE a (\n    x INTEGER\n);\n";
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(migration_files::checksum(lf.as_bytes()), checksum(lf));
        assert_eq!(migration_files::checksum(crlf.as_bytes()), checksum(&crlf));
        assert_eq!(checksum(&crlf), checksum(lf), "line endings do not count");
        assert_ne!(checksum(lf), checksum("CREATE TABLE a (x INTEGER);\n"));
        // A lone `\r` is part of the text.
        assert_ne!(checksum("a\rb"), checksum("ab"));
        // FNV-1a/64 of the empty input is its offset basis.
        assert_eq!(checksum(""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn a_database_a_newer_build_migrated_is_refused() {
        let known = [
            Migration {
                version: 1,
                name: "init",
                sql: "",
                checksum: checksum(""),
            },
            Migration {
                version: 2,
                name: "images",
                sql: "",
                checksum: checksum(""),
            },
        ];
        assert!(check_not_newer(&known, None).is_ok(), "a new database");
        assert!(check_not_newer(&known, Some((1, "init".into()))).is_ok());
        assert!(check_not_newer(&known, Some((2, "images".into()))).is_ok());
        let error =
            check_not_newer(&known, Some((3, "webhooks".into()))).expect_err("a newer database");
        assert!(
            matches!(
                error,
                crate::Error::DatabaseNewer {
                    version: 3,
                    latest: 2,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "this database was migrated by a newer build of runtara: it has migration \
             0003_webhooks, and this build knows migrations up to 0002; open it with that \
             build or a newer one"
        );
    }
}
