//! The run lease on SQLite: an OS file lock on a per-instance lock file beside the
//! database file, which the kernel releases when its holder's process ends.
//!
//! Lock files live in the folder `<database file>.leases/`, one per instance, named by a
//! digest of tenant and instance id (never the raw id). The holder writes who it is into
//! its file, so that a refused run can name it, and removes the file when it lets go. A
//! holder killed outright leaves its file behind, unlocked; the next run takes it over.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::run_lease::{lease_digest, LeaseHolder, RunLease};
use crate::{Error, Result};

/// How often an acquirer tries again when the lock file it locked was removed under it.
const ATTEMPTS: usize = 8;

/// The folder holding the lock files of the database at `database`.
pub(crate) fn lease_dir(database: &Path) -> PathBuf {
    let mut name = database
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "runtara.db".into());
    name.push(".leases");
    database.with_file_name(name)
}

/// A locked lock file; removing the file and then closing it releases the lease.
struct LockedFile {
    path: PathBuf,
    file: File,
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // Remove while still locked, so that no one locks a file that is on its way out
        // and believes it holds the lease (acquirers check the path still names their file).
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %self.path.display(), %error, "could not remove a lease file");
            }
        }
        let _ = self.file.unlock();
    }
}

/// Takes the lease of `(tenant_id, instance_id)` in `dir`, or fails with
/// [`Error::Leased`] naming the live holder.
pub(crate) fn acquire(dir: &Path, tenant_id: &str, instance_id: &str) -> Result<RunLease> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        Error::database(
            "sqlite",
            format!("cannot {what} lease file {}: {e}", path.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create the folder of the", dir, e))?;
    let digest = lease_digest(tenant_id, instance_id);
    let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{name}.lock"));
    for _ in 0..ATTEMPTS {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("open the", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(Error::Leased {
                    instance_id: instance_id.to_owned(),
                    holder: LeaseHolder::decode(&text).to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("lock the", &path, e)),
        }
        if !still_named(&file, &path) {
            // The holder before us removed this file as we opened it; try a fresh one.
            continue;
        }
        let holder = LeaseHolder::this_process();
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(holder.encode().as_bytes())
        };
        write(&mut file).map_err(|e| io("write the", &path, e))?;
        let describe = format!("lock file {}", path.display());
        return Ok(RunLease::new(LockedFile { path, file }, describe));
    }
    Err(Error::database(
        "sqlite",
        format!(
            "lease file {} kept being replaced while locking it",
            path.display()
        ),
    ))
}

/// Whether `path` still names the very file `file` is open on.
#[cfg(unix)]
fn still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Whether `path` still names the file `file` is open on (elsewhere: whether it exists;
/// an open file there cannot be removed).
#[cfg(not(unix))]
fn still_named(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_named_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = acquire(dir.path(), "t", "i").unwrap_or_else(|e| panic!("{e}"));
        let refused = acquire(dir.path(), "t", "i").expect_err("second holder");
        let message = refused.to_string();
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        // Another tenant's instance of the same id is another lease.
        let other = acquire(dir.path(), "u", "i").unwrap_or_else(|e| panic!("{e}"));
        drop(first);
        drop(other);
        // Released: taken again at once, and the folder is left empty.
        let again = acquire(dir.path(), "t", "i").unwrap_or_else(|e| panic!("{e}"));
        drop(again);
        let left = std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(usize::MAX);
        assert_eq!(left, 0);
    }

    #[test]
    fn lock_files_go_in_a_folder_beside_the_database() {
        assert_eq!(
            lease_dir(Path::new("/data/runtara.db")),
            PathBuf::from("/data/runtara.db.leases")
        );
    }
}
