//! A real process running a 20-step durable workflow on a SQLite file is killed with
//! SIGKILL after step 10; rerun with the same instance id it completes, steps 1–10 ran
//! exactly once, and the output equals an uninterrupted run's.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_durable-steps");

fn steps_command(db: &Path, instance: &str, side_effects: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .args(["--instance", instance, "--steps", "20"])
        .arg("--side-effects")
        .arg(side_effects);
    command
}

/// Runs to completion and returns the `output: …` line.
fn run_to_completion(mut command: Command) -> String {
    let result = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    assert!(
        result.status.success(),
        "run failed: {stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("output: "))
        .unwrap_or_else(|| panic!("no output line in {stdout}"))
        .to_owned()
}

fn count_runs(side_effects: &Path, step: u32) -> usize {
    let log = std::fs::read_to_string(side_effects).unwrap_or_default();
    let wanted = format!("step {step}");
    log.lines().filter(|line| *line == wanted).count()
}

#[test]
fn sigkill_after_step_10_then_rerun_completes_without_repeating_steps() {
    let dir = tempfile::tempdir().unwrap();

    // Reference: an uninterrupted run in its own database.
    let reference_effects = dir.path().join("reference.log");
    let reference = run_to_completion(steps_command(
        &dir.path().join("reference.db"),
        "crash-test",
        &reference_effects,
    ));
    assert!((1..=20).all(|step| count_runs(&reference_effects, step) == 1));

    // Crash run: wait (on the process's own output) until step 10 is recorded, then SIGKILL.
    let db = dir.path().join("crash.db");
    let effects = dir.path().join("crash.log");
    let mut child = steps_command(&db, "crash-test", &effects)
        .args(["--step-delay-ms", "25"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("process ended before step 10").unwrap();
        if line == "step 10 recorded" {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the process must have been killed, not finished"
    );
    drop(lines);
    assert!(
        count_runs(&effects, 20) == 0,
        "the first run must not have reached step 20"
    );

    // Rerun with the same instance id: it completes with the reference output.
    let resumed = run_to_completion(steps_command(&db, "crash-test", &effects));
    assert_eq!(
        resumed, reference,
        "resumed output differs from an uninterrupted run"
    );
    for step in 1..=10 {
        assert_eq!(
            count_runs(&effects, step),
            1,
            "step {step} ran more than once"
        );
    }
    // Step 11 may have been in flight when the process died (at most one re-run).
    assert!((1..=2).contains(&count_runs(&effects, 11)));
    for step in 12..=20 {
        assert_eq!(count_runs(&effects, step), 1, "step {step}");
    }
}
