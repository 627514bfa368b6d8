//! An instance process's output: written by the process straight to a file in its
//! folder (so it outlives the server that launched it: a pipe would break when a server
//! restart closes it, and the process's next print would fail), and its last lines read
//! back from there for status replies and failure reasons.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Lines kept.
const MAX_LINES: usize = 50;
/// Longest line kept (longer ones are cut).
const MAX_LINE: usize = 1024;
/// How much of the file's end is read for the tail.
const TAIL_BYTES: u64 = 64 * 1024;
/// The file's name in the instance's folder.
pub const OUTPUT_FILE: &str = "output.log";
/// Past this size the file is emptied ([`LogTail::limit`]).
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
/// What an emptied file starts with.
const DROPPED: &[u8] = b"[runtara-server: earlier output dropped (over 8 MiB)]\n";

/// What [`LogTail::claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// The file is the new process's: its stdout and stderr.
    Claimed(Stdio, Stdio),
    /// A live process holds it: the instance still runs.
    Held,
}

/// The output file of the instance whose folder is `dir`.
#[derive(Debug, Clone)]
pub struct LogTail {
    path: PathBuf,
}

impl LogTail {
    /// The output file in the instance folder `dir`.
    pub fn in_dir(dir: &Path) -> LogTail {
        LogTail {
            path: dir.join(OUTPUT_FILE),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Claims the file for a new process: takes its exclusive lock, empties it (a new
    /// process's output replaces the last one's) and returns it as the process's stdout
    /// and stderr, in append mode (so that [`limit`](Self::limit) can empty it under a
    /// writing process). The lock belongs to the open file, which the process inherits:
    /// it is held as long as the process (or a descendant sharing its output) lives,
    /// whoever launched it, and released by the kernel when the last one ends (see
    /// [`crate::instance_process`]). [`Claim::Held`] when a live process holds it.
    pub fn claim(&self) -> std::io::Result<Claim> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Claim::Held),
            Err(TryLockError::Error(error)) => return Err(error),
        }
        file.set_len(0)?;
        let err = file.try_clone()?;
        Ok(Claim::Claimed(Stdio::from(file), Stdio::from(err)))
    }

    /// Whether a live process holds the file ([`claim`](Self::claim)).
    pub fn in_use(&self) -> std::io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        match file.try_lock() {
            // Released when `file` closes.
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(error)) => Err(error),
        }
    }

    /// Empties the file, leaving a note, once it is larger than [`MAX_BYTES`]: a process
    /// that prints without end must not fill the disk. Best effort.
    pub fn limit(&self) {
        self.limit_to(MAX_BYTES);
    }

    fn limit_to(&self, max: u64) {
        let too_big = std::fs::metadata(&self.path).is_ok_and(|m| m.len() > max);
        if !too_big {
            return;
        }
        if let Ok(mut file) = OpenOptions::new().append(true).open(&self.path) {
            if file.set_len(0).is_ok() {
                let _ = file.write_all(DROPPED);
            }
        }
    }

    /// The last lines printed, joined by newlines (long lines cut), or `None` when there
    /// is nothing (or no file).
    pub fn text(&self) -> Option<String> {
        let mut file = File::open(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        let start = len.saturating_sub(TAIL_BYTES);
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut bytes = Vec::new();
        file.take(TAIL_BYTES).read_to_end(&mut bytes).ok()?;
        tail_of(&String::from_utf8_lossy(&bytes), start > 0)
    }
}

/// The last [`MAX_LINES`] lines of `text`, each cut at [`MAX_LINE`] bytes; with
/// `partial_start`, the first line (cut by the read) is dropped.
fn tail_of(text: &str, partial_start: bool) -> Option<String> {
    let mut lines: Vec<&str> = text.lines().collect();
    if partial_start && !lines.is_empty() {
        lines.remove(0);
    }
    let first = lines.len().saturating_sub(MAX_LINES);
    let kept: Vec<String> = lines[first..].iter().map(|line| cut(line)).collect();
    (!kept.is_empty()).then(|| kept.join("\n"))
}

fn cut(line: &str) -> String {
    if line.len() <= MAX_LINE {
        return line.to_owned();
    }
    let mut end = MAX_LINE;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(log: &LogTail) -> (Stdio, Stdio) {
        match log.claim().unwrap() {
            Claim::Claimed(stdout, stderr) => (stdout, stderr),
            Claim::Held => panic!("the file is held"),
        }
    }

    #[test]
    fn a_claimed_file_is_held_until_its_last_holder_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogTail::in_dir(dir.path());
        assert!(!log.in_use().unwrap(), "no file: nobody holds it");
        std::fs::write(dir.path().join(OUTPUT_FILE), "last run\n").unwrap();
        let (stdout, stderr) = claimed(&log);
        assert!(log.in_use().unwrap());
        assert!(matches!(log.claim().unwrap(), Claim::Held));
        assert_eq!(log.text(), None, "claiming empties the file");
        drop(stdout);
        assert!(log.in_use().unwrap(), "a copy still holds it");
        drop(stderr);
        assert!(!log.in_use().unwrap());
        drop(claimed(&log));
    }

    #[test]
    fn keeps_the_last_lines_and_cuts_long_ones() {
        assert_eq!(tail_of("", false), None);
        let mut text: String = (0..(MAX_LINES + 5))
            .map(|n| format!("line {n}\n"))
            .collect();
        text.push_str(&"é".repeat(MAX_LINE));
        let tail = tail_of(&text, false).unwrap();
        assert!(!tail.contains("line 5\n"));
        assert!(tail.starts_with("line 6\n"));
        assert!(tail.ends_with('…'));
        assert_eq!(tail_of("cut\nwhole\n", true).unwrap(), "whole");
    }

    #[test]
    fn reads_back_what_the_process_wrote_and_a_new_process_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogTail::in_dir(dir.path());
        assert_eq!(log.text(), None, "no file yet");
        std::fs::write(dir.path().join(OUTPUT_FILE), "a\nb\n").unwrap();
        assert_eq!(log.text().as_deref(), Some("a\nb"));
        let big: String = (0..20_000).map(|n| format!("line {n}\n")).collect();
        std::fs::write(dir.path().join(OUTPUT_FILE), big).unwrap();
        let tail = log.text().unwrap();
        assert!(tail.ends_with("line 19999"));
        assert_eq!(tail.lines().count(), MAX_LINES);
        drop(claimed(&log));
        assert_eq!(log.text(), None, "emptied for the next process");
    }

    #[test]
    fn a_file_over_the_limit_is_emptied_and_the_writer_carries_on_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogTail::in_dir(dir.path());
        let (stdout, _) = claimed(&log);
        let mut writer = OpenOptions::new()
            .append(true)
            .open(dir.path().join(OUTPUT_FILE))
            .unwrap();
        drop(stdout);
        writer.write_all(&[b'x'; 100]).unwrap();
        log.limit_to(1_000);
        assert_eq!(log.text().unwrap().len(), 100, "under the limit: kept");
        writer.write_all(&[b'y'; 1_000]).unwrap();
        log.limit_to(1_000);
        writer.write_all(b"\nafter\n").unwrap();
        let text = log.text().unwrap();
        assert!(
            text.starts_with("[runtara-server: earlier output dropped"),
            "{text}"
        );
        assert!(text.ends_with("after"), "{text}");
        assert!(!text.contains('x'), "{text}");
    }
}
