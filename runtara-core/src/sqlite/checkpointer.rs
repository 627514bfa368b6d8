//! WAL checkpoints off the commit path.
//!
//! By default SQLite copies the WAL back into the database file inside whichever commit
//! crosses 1,000 WAL pages, so one step in a few hundred pays for a copy and an extra
//! fsync of the database file. The writer connection turns that off
//! (`wal_autocheckpoint=0`); this thread, with a connection of its own, runs `PASSIVE`
//! checkpoints instead — they never block the writer — every [`PERIOD`], and a `RESTART`
//! one (which waits for the writer briefly) if the WAL still grows past [`MAX_WAL_PAGES`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed.
const PERIOD: Duration = Duration::from_millis(100);
/// WAL pages after which a checkpoint may wait for the writer.
const MAX_WAL_PAGES: i64 = 20_000;

/// The checkpointer thread; dropping it stops the thread (after one last checkpoint).
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`.
    pub(crate) fn spawn(path: &Path) -> std::io::Result<Checkpointer> {
        let stop = Arc::new(AtomicBool::new(false));
        let path = path.to_path_buf();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("runtara-sqlite-checkpoint".into())
            .spawn(move || run(&path, &flag))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(path: &PathBuf, stop: &AtomicBool) {
    let connection = match Connection::open(path) {
        Ok(connection) => connection,
        Err(error) => {
            tracing::warn!(%error, "WAL checkpointer could not open the database; the WAL is not checkpointed in the background");
            return;
        }
    };
    let _ = connection.busy_timeout(Duration::from_secs(5));
    loop {
        let stopping = stop.load(Ordering::Acquire);
        match checkpoint(&connection, "PASSIVE") {
            Ok(pages) if pages > MAX_WAL_PAGES => {
                if let Err(error) = checkpoint(&connection, "RESTART") {
                    tracing::warn!(%error, "WAL checkpoint (RESTART) failed");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
        }
        if stopping {
            return;
        }
        std::thread::park_timeout(PERIOD);
    }
}

/// Runs one checkpoint; returns the WAL's size in pages.
fn checkpoint(connection: &Connection, mode: &str) -> rusqlite::Result<i64> {
    connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get::<_, i64>(1)
    })
}
