//! Fault injection with real processes: a 50-step durable workflow on a SQLite file is
//! killed with SIGKILL at every checkpoint boundary in turn (right after step N is
//! acknowledged), and then inside every step's body (after its side effect, before its
//! result is recorded). Each kill is followed by a rerun of the same instance. The final
//! output equals an uninterrupted run's; a step body runs again only when it was killed
//! before its checkpoint was acknowledged — exactly once per such crash, never otherwise.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_durable-steps");

/// 50 steps; `RUNTARA_FAULT_SCALE=N` runs the long variant (N × 50 steps, 2 × N × 50 kills).
fn steps() -> u32 {
    let scale: u32 = std::env::var("RUNTARA_FAULT_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    50 * scale.max(1)
}

fn command(db: &Path, effects: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .args(["--instance", "boundaries", "--steps", &steps().to_string()])
        .arg("--side-effects")
        .arg(effects);
    command
}

/// Runs until the process prints `wait_for`, then SIGKILLs it.
fn kill_at(mut command: Command, wait_for: &str) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("process ended before `{wait_for}`"))
            .unwrap();
        if line == wait_for {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
}

fn finish(mut command: Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("output: ").map(str::to_owned))
        .unwrap()
}

fn runs(effects: &Path) -> BTreeMap<u32, usize> {
    let mut runs = BTreeMap::new();
    for line in std::fs::read_to_string(effects).unwrap_or_default().lines() {
        let step: u32 = line.strip_prefix("step ").unwrap().parse().unwrap();
        *runs.entry(step).or_insert(0) += 1;
    }
    runs
}

#[test]
fn sigkill_at_every_boundary_and_inside_every_step() {
    let steps = steps();
    let dir = tempfile::tempdir().unwrap();
    let reference = finish(command(
        &dir.path().join("reference.db"),
        &dir.path().join("ref.log"),
    ));

    // After every acknowledged checkpoint: nothing may run twice.
    let (db, effects) = (dir.path().join("after.db"), dir.path().join("after.log"));
    for n in 1..steps {
        let mut run = command(&db, &effects);
        run.args(["--hang-after", &n.to_string()]);
        kill_at(run, &format!("hanging after step {n}"));
    }
    assert_eq!(finish(command(&db, &effects)), reference);
    let after = runs(&effects);
    assert_eq!(after.len() as u32, steps);
    assert!(
        after.values().all(|&count| count == 1),
        "re-ran an acknowledged step: {after:?}"
    );

    // Inside every step, before its checkpoint: that step runs again, exactly once.
    let (db, effects) = (dir.path().join("inside.db"), dir.path().join("inside.log"));
    for n in 1..=steps {
        let mut run = command(&db, &effects);
        run.args(["--hang-in", &n.to_string()]);
        kill_at(run, &format!("hanging in step {n}"));
    }
    assert_eq!(finish(command(&db, &effects)), reference);
    let inside = runs(&effects);
    assert_eq!(inside.len() as u32, steps);
    assert!(
        inside.values().all(|&count| count == 2),
        "each killed step runs once more, and only it: {inside:?}"
    );
    // The database file is intact after 100 kills.
    let connection = rusqlite::Connection::open(&db).unwrap();
    let check: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
