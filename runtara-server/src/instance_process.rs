//! Which OS process runs an instance, known across server restarts.
//!
//! An instance must never run in two processes at once, and a server may be killed
//! while its instances' processes live on (they run in their own process groups and
//! reconnect to the next server). So the server that comes back must know, for every
//! instance, whether a process launched for it is still alive — and a process id read
//! back from storage cannot tell that on its own (the process may be gone and the id
//! reused, or the server may have died between the fork and writing the id down).
//!
//! The kernel tells it instead. A launch opens the instance's output file, takes an
//! exclusive lock on it ([`LogTail::claim`](crate::log_tail::LogTail::claim)) and gives
//! that open file to the process as its stdout and stderr; the server's own copy is
//! closed once the process is spawned. The lock belongs to the open file, so it is held
//! from the fork for exactly as long as the process (or a descendant sharing its output)
//! lives — after a `kill -9` of the server too — and released by the kernel when the
//! last holder ends. Every launch claims the lock first: while it is held, no second
//! process is started; the live one is adopted and watched until the lock is released.
//!
//! To kill an adopted process (its heartbeats stopped, a cancel's grace ran out), its
//! pid and start time are written beside the output file when it is launched
//! ([`record`], `process.pid`); the start time tells a reused pid apart. Should that file
//! be missing or stale (the server died between the spawn and the write), the holder is
//! found among the processes whose stdout is that file (Linux `/proc`).

use std::path::{Path, PathBuf};

/// The file, in the instance's folder, naming its last launched process.
pub const PROCESS_FILE: &str = "process.pid";

/// Writes the pid and start time of the process just launched in `dir`. Best effort: a
/// failure only means a later server must look the process up by its output file.
pub fn record(dir: &Path, pid: u32) {
    let line = match start_time(pid) {
        Some(start) => format!("{pid} {start}\n"),
        None => format!("{pid}\n"),
    };
    if let Err(error) = std::fs::write(dir.join(PROCESS_FILE), line) {
        tracing::warn!(dir = %dir.display(), %error, "cannot write the launched process's pid");
    }
}

/// The live process holding the output file `output` in `dir`, if one can be found: the
/// recorded one when its start time still matches, else any process whose stdout is
/// that file.
pub fn holder(dir: &Path, output: &Path) -> Option<u32> {
    recorded(dir).or_else(|| writing_to(output))
}

/// The recorded process, if it is still the same process (same start time).
fn recorded(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(PROCESS_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    (start_time(pid) == Some(start)).then_some(pid)
}

/// A process whose stdout is the file `output`.
fn writing_to(output: &Path) -> Option<u32> {
    let output = std::fs::canonicalize(output).ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| stdout_of(*pid).is_some_and(|path| path == output))
}

fn stdout_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/1")).ok()
}

/// When the process started, in clock ticks since boot (`/proc/<pid>/stat`, field 22);
/// `None` when it is gone (or this is not Linux).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields
    // from the last `)`. Field 3 (the state) comes first.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Kills the process and its process group (SIGKILL): instances run in their own group,
/// so whatever the process started goes with it. Best effort.
pub fn kill(pid: u32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let signal = rustix::process::Signal::KILL;
    // A launched process leads its own group; a descendant found by its output may not.
    if rustix::process::kill_process_group(pid, signal).is_err() {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    #[test]
    fn a_recorded_process_is_found_while_it_lives_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("output.log");
        let file = std::fs::File::create(&output).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdout(file)
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(
            holder(dir.path(), &output),
            Some(pid),
            "found by its stdout"
        );
        record(dir.path(), pid);
        assert_eq!(recorded(dir.path()), Some(pid));
        // Another start time is another process.
        std::fs::write(dir.path().join(PROCESS_FILE), format!("{pid} 1\n")).unwrap();
        assert_eq!(recorded(dir.path()), None);
        kill(pid);
        assert!(!child.wait().unwrap().success());
        assert_eq!(holder(dir.path(), &output), None);
    }
}

/// A command running an image binary with a clean environment: only `PATH`, `HOME`,
/// `RUST_LOG`, `RUST_BACKTRACE` and `TMPDIR` pass from the server's (the caller adds the
/// `RUNTARA_*` variables), in a process group of its own (so a Ctrl-C in the server's
/// terminal does not reach it and a server restart leaves it running), not killed when
/// the handle is dropped.
pub fn image_command(binary: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .envs(
            ["PATH", "HOME", "RUST_LOG", "RUST_BACKTRACE", "TMPDIR"]
                .iter()
                .filter_map(|var| std::env::var_os(var).map(|v| (*var, v))),
        )
        .kill_on_drop(false);
    #[cfg(unix)]
    command.process_group(0);
    command
}
