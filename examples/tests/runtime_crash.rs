//! The in-process runtime survives `kill -9`: a `job-runner` process with 500 durable
//! instances of 10 steps each is SIGKILLed mid-run and started again with the same
//! command. Every instance completes with the right result, and no step whose result
//! was recorded (acknowledged) before the kill runs again. On a SQLite file, and on
//! PostgreSQL when `RUNTARA_TEST_POSTGRES_URL` is set (CI always sets it).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_job-runner");
const JOBS: u64 = 500;
const STEPS: u64 = 10;

fn job_runner(db: &str, runtime: &str, prefix: &str, trace: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["--db", db, "--runtime", runtime, "--prefix", prefix])
        .args(["--jobs", &JOBS.to_string(), "--steps", &STEPS.to_string()])
        .args(["--step-delay-ms", "20"])
        .arg("--trace")
        .arg(trace);
    command
}

/// The `{id}/{step}` keys of the trace's lines that start with `what`.
fn keys(trace: &Path, what: &str) -> Vec<String> {
    let prefix = format!("{what} ");
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

fn kill_mid_run_and_finish(db: &str, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.log"), dir.path().join("second.log"));

    // Run 1: killed once 1,000 of the 5,000 step results are recorded.
    let mut child = job_runner(db, name, name, &first)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while keys(&first, "acked").len() < 1_000 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended before the kill"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acked: BTreeSet<String> = keys(&first, "acked").into_iter().collect();
    assert!(
        acked.len() < (JOBS * STEPS) as usize,
        "the kill came after the end ({} steps acknowledged)",
        acked.len()
    );

    // Run 2: the same command; the runtime resumes every job, the starts start nothing.
    let output = job_runner(db, name, name, &second).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the second run failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: u64 = (0..JOBS)
        .flat_map(|n| (0..STEPS).map(move |s| (n + s) * (n + s)))
        .sum();
    assert!(
        stdout.contains(&format!("done {JOBS} sum {expected}")),
        "{stdout}"
    );

    // No acknowledged step ran again; every step ran.
    let rerun: Vec<String> = keys(&second, "ran")
        .into_iter()
        .filter(|key| acked.contains(key))
        .collect();
    assert!(
        rerun.is_empty(),
        "{} acknowledged steps ran again, such as {:?}",
        rerun.len(),
        rerun.first()
    );
    let ran: BTreeSet<String> = keys(&first, "ran")
        .into_iter()
        .chain(keys(&second, "ran"))
        .collect();
    assert_eq!(ran.len(), (JOBS * STEPS) as usize);
    // Each step's body ran at most twice: once more only if the kill cut it off.
    let second_runs = keys(&second, "ran").len();
    assert!(second_runs + acked.len() <= (JOBS * STEPS + JOBS) as usize);
}

#[test]
fn sqlite_a_killed_runtime_resumes_every_instance_without_repeating_steps() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("jobs.db").display());
    kill_mid_run_and_finish(&db, "jobs");
}

#[test]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
fn postgres_a_killed_runtime_resumes_every_instance_without_repeating_steps() {
    let url = std::env::var("RUNTARA_TEST_POSTGRES_URL").unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    kill_mid_run_and_finish(&url, &format!("jobs-{}-{nanos}", std::process::id()));
}
