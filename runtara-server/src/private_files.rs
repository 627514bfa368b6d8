//! The data dir is private to the user the server runs as.
//!
//! It holds every tenant's inputs, outputs, checkpoints and uploads; with the usual
//! umask (022) the files a server created were readable by every local user (the dir
//! 0755, the database and instance files 0644). So the server sets its umask to 077 at
//! start — every file it (or SQLite, or a process it launches) creates is 0600 and every
//! folder 0700, whatever the umask it was started with — and makes the data dir itself
//! 0700, which also closes files an older server left readable. A tokens file writable
//! by group or others is refused: anyone who could write it could give themselves a
//! token.

use std::path::Path;

use anyhow::Context;

/// The umask the server runs with: nothing for group and others.
pub const UMASK: u32 = 0o077;

/// Sets the process umask to [`UMASK`] and creates `data_dir` (if needed) with mode
/// 0700, or restricts an existing one to 0700.
pub fn make_private(data_dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || format!("making the data dir {} private (0700)", data_dir.display()),
        )?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data dir {}", data_dir.display()))?;
    Ok(())
}

/// Refuses a file (`what`: "tokens file") that group or others may write.
pub fn check_not_writable_by_others(path: &Path, what: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the {what} {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            anyhow::bail!(
                "the {what} {} is writable by group or others (mode {:o}): anyone who can write it can give themselves a token; make it private with `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}
