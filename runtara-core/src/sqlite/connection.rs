//! Opening a SQLite database: pragmas (WAL, `synchronous=FULL`, busy timeout) and the
//! embedded migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::queries::db;
use crate::migrations::{check_not_newer, compare, Migration, Recorded, MIGRATIONS_TABLE, SQLITE};
use crate::model::now_ms;
use crate::url::SqliteTarget;
use crate::{Error, Result};

/// How long a write waits for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page size of a new database file (an existing file keeps its own).
///
/// Each commit appends every page it changed to the WAL and fsyncs it, and on a virtio
/// disk the fsync's cost grows with the bytes: a checkpoint changes three pages (the
/// checkpoint row, its key, the instance row), 12 KiB at SQLite's default 4 KiB pages
/// but 3 KiB at 1 KiB. Measured on the bench machine: 0.232 ms per checkpoint commit at
/// 4 KiB, 0.199 ms at 1 KiB, against 0.179 ms for a one-page commit. States over ~1 KiB
/// spill to overflow pages, which costs little more than the bytes themselves.
const PAGE_SIZE: i64 = 1024;

/// Page cache per connection: 16 MiB (a negative `cache_size` is in KiB), against
/// SQLite's default 2 MiB. A restart loads its instance's whole history (W3: 10,000
/// checkpoints); past the cache each page is a `pread`. Register plus load of 10,000
/// checkpoints went from 24-32 ms to 20-23 ms in 3 paired runs.
const CACHE_KIB: i64 = -16 * 1024;

/// Prepared statements kept per connection (the backend uses about forty).
const STATEMENT_CACHE: usize = 96;

/// Opens `target` (creating a file and its parent directories if needed), sets the
/// pragmas and applies the migrations.
pub(crate) fn open(target: &SqliteTarget) -> Result<Connection> {
    let connection = match target {
        SqliteTarget::Memory => Connection::open_in_memory().map_err(db)?,
        SqliteTarget::File(path) => open_file(path)?,
    };
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    connection
        .pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(db)?;

    migrate(&connection)?;
    Ok(connection)
}

fn open_file(path: &Path) -> Result<Connection> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::database(
                "sqlite",
                format!("could not create directory {}: {e}", parent.display()),
            )
        })?;
    }
    let connection = Connection::open(path).map_err(db)?;
    // Other processes may hold the lock for a moment (BEGIN IMMEDIATE waits this long).
    connection.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
    // Takes effect only while the file is still empty (before WAL mode and the tables).
    connection
        .pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(db)?;
    let mode = switch_to_wal(&connection).map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::database(
            "sqlite",
            format!(
                "could not switch {} to WAL mode (got `{mode}`)",
                path.display()
            ),
        ));
    }
    // A commit is acknowledged only after the WAL is fsync'd.
    connection
        .pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    // WAL checkpoints are run by the writer thread between batches (see `wal`), not
    // inside the commit that crosses the threshold.
    connection
        .pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(db)?;
    super::wal::preallocate(&connection);
    Ok(connection)
}

/// Switches the file to WAL mode (a no-op once it is), returning the mode now in force.
///
/// Switching a new file takes an exclusive lock and fails at once with `SQLITE_BUSY`
/// (the busy timeout does not apply) while another connection — say a second process
/// creating the same file — holds any lock; so it is retried for up to [`BUSY_TIMEOUT`].
fn switch_to_wal(connection: &Connection) -> rusqlite::Result<String> {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Applies every embedded migration not yet recorded in `runtara_migrations`, and
/// checks that those recorded are the ones embedded (see [`crate::migrations`]); a
/// database a newer build migrated is refused before anything is changed.
///
/// Each runs in a `BEGIN IMMEDIATE` transaction that re-checks the table, so several
/// processes opening the same file apply each migration exactly once.
fn migrate(connection: &Connection) -> Result<()> {
    connection.execute_batch(MIGRATIONS_TABLE).map_err(db)?;
    check_not_newer(SQLITE, newest(connection).map_err(db)?)?;
    add_checksum_column(connection).map_err(db)?;
    for migration in SQLITE {
        match compare(
            migration,
            recorded(connection, migration.version).map_err(db)?,
        )? {
            Recorded::Same => continue,
            Recorded::Backfill => {
                connection
                    .execute(
                        "UPDATE runtara_migrations SET checksum = ?1 \
                         WHERE version = ?2 AND checksum IS NULL",
                        params![migration.checksum_hex(), migration.version],
                    )
                    .map_err(db)?;
                continue;
            }
            Recorded::Apply => {}
        }
        if let Err(error) = apply(connection, migration) {
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            return Err(Error::Migration {
                version: migration.version,
                source: Box::new(error),
            });
        }
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied sqlite migration"
        );
    }
    Ok(())
}

/// Adds the `checksum` column to a migrations table made before it existed.
fn add_checksum_column(connection: &Connection) -> rusqlite::Result<()> {
    let has = |c: &Connection| {
        c.query_row(
            "SELECT 1 FROM pragma_table_info('runtara_migrations') WHERE name = 'checksum'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map(|row| row.is_some())
    };
    if has(connection)? {
        return Ok(());
    }
    connection.execute_batch("BEGIN IMMEDIATE")?;
    // Another process may have added it while this one waited for the lock.
    let added = if has(connection)? {
        Ok(())
    } else {
        connection.execute_batch("ALTER TABLE runtara_migrations ADD COLUMN checksum TEXT")
    };
    match added {
        Ok(()) => connection.execute_batch("COMMIT"),
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// The newest migration the table records (version and name), if any.
fn newest(connection: &Connection) -> rusqlite::Result<Option<(u32, String)>> {
    connection
        .query_row(
            "SELECT version, name FROM runtara_migrations ORDER BY version DESC LIMIT 1",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
}

/// What the table recorded for `version`: nothing (not applied), or its checksum (none
/// when applied before checksums were recorded).
fn recorded(connection: &Connection, version: u32) -> rusqlite::Result<Option<Option<String>>> {
    connection
        .query_row(
            "SELECT checksum FROM runtara_migrations WHERE version = ?1",
            [version],
            |row| row.get(0),
        )
        .optional()
}

fn is_applied(connection: &Connection, version: u32) -> rusqlite::Result<bool> {
    recorded(connection, version).map(|row| row.is_some())
}

fn apply(connection: &Connection, migration: &Migration) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    // Another process may have applied it while this one waited for the lock.
    if !is_applied(connection, migration.version)? {
        connection.execute_batch(migration.sql)?;
        connection.execute(
            "INSERT INTO runtara_migrations (version, name, applied_at_ms, checksum) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                migration.version,
                migration.name,
                now_ms(),
                migration.checksum_hex()
            ],
        )?;
    }
    connection.execute_batch("COMMIT")
}
