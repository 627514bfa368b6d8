//! WAL checkpoints, run by the writer thread between batches.
//!
//! A commit appends to the WAL; a checkpoint copies the WAL back into the database file,
//! after which the next transaction overwrites the WAL from its start. Overwriting
//! matters: on ext4 an fsync after appending also commits the file's new size to the
//! filesystem journal, which on the measured VM costs 0.23–0.37 ms against 0.11–0.17 ms
//! for an overwrite. So the WAL must be checkpointed *completely*, and often enough to
//! stay small.
//!
//! Only the writer's own connection can do that: a checkpoint from another connection
//! runs while the writer is inside a transaction (it nearly always is — waiting for its
//! fsync), stops at the writer's snapshot, and the WAL is then never restarted; it grows
//! without end. (The previous design, a checkpointer thread, did exactly that: a 48 MB
//! WAL after 3,500 checkpoints.) SQLite's own auto-checkpoint does it inside the commit
//! that crosses the threshold, delaying that batch's answers. Here the writer thread
//! checkpoints after answering a batch: as soon as the WAL holds [`IDLE_PAGES`] pages
//! and no job is waiting, or at [`MAX_PAGES`] regardless. A caller that committed on its
//! own thread asks the writer thread to do it, rather than delay its own answer.

use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use rusqlite::Connection;

/// WAL pages after which the writer checkpoints when it has nothing else to do (1 MiB
/// at the 1 KiB pages of a new file).
const IDLE_PAGES: i32 = 1_024;
/// WAL pages after which the writer checkpoints before the next batch (~4 MiB).
const MAX_PAGES: i32 = 4_000;

/// The WAL's size in pages after the last commit, as SQLite reports it.
#[derive(Debug, Clone, Default)]
pub(crate) struct WalPages(Arc<AtomicI32>);

impl WalPages {
    /// Turns SQLite's auto-checkpoint off on `connection` and follows its WAL's size.
    pub(crate) fn follow(connection: &mut Connection) -> rusqlite::Result<WalPages> {
        let pages = WalPages::default();
        let seen = pages.0.clone();
        // Replaces SQLite's auto-checkpoint hook (`wal_autocheckpoint`).
        connection.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n: i32| {
            seen.store(n, Ordering::Relaxed);
            Ok(())
        }))?;
        Ok(pages)
    }

    /// Whether a checkpoint is due: `idle` says no job is waiting.
    pub(crate) fn is_due(&self, idle: bool) -> bool {
        let pages = self.0.load(Ordering::Relaxed);
        pages >= if idle { IDLE_PAGES } else { MAX_PAGES }
    }

    /// Checkpoints the WAL when it is due: `idle` says no job is waiting.
    pub(crate) fn checkpoint_if_due(&self, connection: &Connection, idle: bool) {
        if !self.is_due(idle) {
            return;
        }
        let result = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match result {
            // Everything copied: the next transaction restarts the WAL.
            Ok((log, copied)) if log == copied => self.0.store(0, Ordering::Relaxed),
            // Another process reads an older snapshot; retried after the next commit.
            Ok((log, copied)) => {
                tracing::debug!(
                    log,
                    copied,
                    "WAL checkpoint incomplete (a reader holds an older snapshot)"
                );
            }
            Err(error) => {
                crate::storage_health::STORAGE.failed(&format!("WAL checkpoint failed: {error}"))
            }
        }
    }
}

/// WAL frames written ahead of the first commit: the idle checkpoint threshold plus
/// room for one more batch, so a WAL that is checkpointed when idle never grows.
const PREALLOCATED_FRAMES: u64 = IDLE_PAGES as u64 + 64;
/// A WAL file's header, and each frame's header, in bytes.
const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// Extends the WAL file of `connection` with zeros to hold [`PREALLOCATED_FRAMES`]
/// frames, so that the first megabyte of commits after an open overwrites written blocks
/// instead of appending (see the module docs: an append makes every fsync commit the
/// file's new size too).
///
/// SQLite deletes the WAL when the last connection closes, so a new process starts with
/// an empty one; without this, its first thousand commits pay the append. The zeros are
/// never read as frames: SQLite writes a new header with random salts at the start of
/// an empty WAL, and a frame counts only if its salts and running checksum match.
/// The file is only ever extended past its current end, under the write lock
/// (`BEGIN IMMEDIATE`), so no frame another connection wrote can be overwritten.
///
/// Only a speed-up: when anything fails (a read-only file, another process holding the
/// write lock), the WAL grows as it would have anyway.
pub(crate) fn preallocate(connection: &Connection) {
    let Some(wal_path) = connection.path().map(|db| format!("{db}-wal")) else {
        return;
    };
    if let Err(error) = preallocate_at(connection, Path::new(&wal_path)) {
        tracing::debug!(%error, path = %wal_path, "could not preallocate the WAL");
    }
}

fn preallocate_at(
    connection: &Connection,
    wal_path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let wanted = WAL_HEADER + PREALLOCATED_FRAMES * (FRAME_HEADER + u64::try_from(page_size)?);
    // SQLite creates the file in the first transaction; until then it is empty.
    let current = std::fs::metadata(wal_path).map_or(0, |m| m.len());
    if current >= wanted {
        // Already as large (another connection is using it): no need to take the lock.
        return Ok(());
    }
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let extended = extend_with_zeros(wal_path, wanted);
    connection.execute_batch("ROLLBACK")?;
    Ok(extended?)
}

/// Writes zeros from the end of the file at `path` up to `wanted` bytes and syncs them.
fn extend_with_zeros(path: &Path, wanted: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut at = file.metadata()?.len();
    if at >= wanted {
        return Ok(());
    }
    file.seek(SeekFrom::Start(at))?;
    let zeros = vec![0u8; 64 * 1024];
    while at < wanted {
        let len = (wanted - at).min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..len])?;
        at += len as u64;
    }
    file.sync_all()
}
