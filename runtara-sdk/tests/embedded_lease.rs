//! Embedded mode: a live run holds a lease on its instance. A second process registering
//! the same instance is refused, with an error naming the holder, while the first lives;
//! once the first is killed with SIGKILL, a rerun takes over at once. On a SQLite file and
//! on PostgreSQL, with real processes.
//!
//! The processes are this test binary run again with `RUNTARA_LEASE_CHILD` set: the test
//! named on its command line then plays the holder instead (see [`child`]). It registers
//! the instance, prints `holding` (or `refused: <error>`), and holds on until its standard
//! input closes.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use runtara_sdk::{RuntaraSdk, SdkError};
use support::unique;

const CHILD: &str = "RUNTARA_LEASE_CHILD";

/// When this process is a child run: registers `RUNTARA_LEASE_CHILD`'s instance on its
/// database, reports, waits for standard input to close, completes the instance and
/// returns true. Otherwise false.
async fn child() -> bool {
    let Ok(spec) = std::env::var(CHILD) else {
        return false;
    };
    let (url, instance) = spec.split_once('|').unwrap();
    let persistence = runtara_sdk::persistence::connect(url).await.unwrap();
    let sdk = RuntaraSdk::embedded(persistence, instance, "lease-tests");
    let mut out = std::io::stdout();
    match sdk.clone().init(None).await {
        Ok(()) => writeln!(out, "holding").unwrap(),
        Err(error) => {
            writeln!(out, "refused: {error}").unwrap();
            out.flush().unwrap();
            return true;
        }
    }
    out.flush().unwrap();
    tokio::task::spawn_blocking(|| std::io::stdin().lines().count())
        .await
        .unwrap();
    sdk.completed(b"done").await.unwrap();
    true
}

/// A child run of the test `test`, and its first line (`holding` or `refused: …`).
struct Run {
    process: Child,
    first_line: String,
    _stdout: BufReader<ChildStdout>,
}

fn spawn(test: &str, url: &str, instance: &str) -> Run {
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{url}|{instance}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(process.stdout.take().unwrap());
    let mut first_line = String::new();
    // The harness prints `running 1 test` and `test <name> ... ` first; the child's
    // own words follow on that line.
    let said = loop {
        first_line.clear();
        assert!(
            stdout.read_line(&mut first_line).unwrap() > 0,
            "child ended silently"
        );
        let found = ["holding", "refused: "]
            .iter()
            .find_map(|word| first_line.find(word));
        if let Some(at) = found {
            break first_line[at..].trim_end().to_owned();
        }
    };
    Run {
        process,
        first_line: said,
        _stdout: stdout,
    }
}

/// The scenario, for a database at `url`; `test` is the calling test's full name.
async fn second_run_refused_then_taken_over_after_kill(test: &str, url: &str) {
    let instance = unique("leased");

    let mut first = spawn(test, url, &instance);
    assert_eq!(first.first_line, "holding");

    // A second process is refused, and told who holds the instance.
    let mut second = spawn(test, url, &instance);
    let refusal = second.first_line.clone();
    assert!(
        refusal.contains("is being run by another live process"),
        "{refusal}"
    );
    assert!(
        refusal.contains(&format!("process {}", first.process.id())),
        "the refusal does not name the holder's pid: {refusal}"
    );
    assert!(refusal.contains("since "), "{refusal}");
    assert!(second.process.wait().unwrap().success());

    // So is a second SDK in this process.
    let persistence = runtara_sdk::persistence::connect(url).await.unwrap();
    let here = RuntaraSdk::embedded(persistence.clone(), &instance, "lease-tests");
    let error = here.register(None).await.unwrap_err();
    assert!(
        matches!(
            error,
            SdkError::Persistence(runtara_core::Error::Leased { .. })
        ),
        "{error:?}"
    );
    let record = persistence.get_instance(&instance).await.unwrap().unwrap();
    assert_eq!(record.epoch, 1, "a refused run must not take a new epoch");

    // The holder dies: a rerun takes over at once.
    first.process.kill().unwrap();
    first.process.wait().unwrap();
    let started = Instant::now();
    let mut rerun = spawn(test, url, &instance);
    let took = started.elapsed();
    assert_eq!(rerun.first_line, "holding", "rerun after SIGKILL");
    assert!(
        took < Duration::from_secs(5),
        "the rerun took {took:?} to take over"
    );
    eprintln!("rerun after SIGKILL took over in {took:?} (process start included)");

    // It runs to completion; its lease is gone with it, and the instance is done.
    drop(rerun.process.stdin.take());
    assert!(rerun.process.wait().unwrap().success());
    let record = persistence.get_instance(&instance).await.unwrap().unwrap();
    assert_eq!(record.status, runtara_sdk::InstanceStatus::Completed);
    assert_eq!(record.epoch, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_second_process_is_refused_then_takes_over_after_kill() {
    if child().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("runtara.db").display());
    second_run_refused_then_taken_over_after_kill(
        "sqlite_second_process_is_refused_then_takes_over_after_kill",
        &url,
    )
    .await;
    // The lock files are tidied away once their runs end.
    let leases = dir.path().join("runtara.db.leases");
    let left: Vec<_> = std::fs::read_dir(&leases).unwrap().collect();
    assert!(left.is_empty(), "lock files left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn postgres_second_process_is_refused_then_takes_over_after_kill() {
    if child().await {
        return;
    }
    let url = std::env::var("RUNTARA_TEST_POSTGRES_URL").unwrap();
    second_run_refused_then_taken_over_after_kill(
        "postgres_second_process_is_refused_then_takes_over_after_kill",
        &url,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_run_lets_go_and_memory_needs_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("runtara.db").display());
    let persistence = runtara_sdk::persistence::connect(&url).await.unwrap();
    let instance = unique("suspends");
    let first = RuntaraSdk::embedded(persistence.clone(), &instance, "lease-tests");
    first.register(None).await.unwrap();
    let refused = RuntaraSdk::embedded(persistence.clone(), &instance, "lease-tests");
    assert!(refused.register(None).await.is_err());
    // A suspended run is over: the instance can be resumed by another SDK at once.
    first.suspended().await.unwrap();
    let resumed = RuntaraSdk::embedded(persistence.clone(), &instance, "lease-tests");
    resumed.register(None).await.unwrap();
    drop(resumed);
    // Dropping the SDK releases the lease too.
    RuntaraSdk::embedded(persistence, &instance, "lease-tests")
        .register(None)
        .await
        .unwrap();

    let memory = runtara_sdk::persistence::connect("sqlite::memory:")
        .await
        .unwrap();
    let one = RuntaraSdk::embedded(memory.clone(), "m", "lease-tests");
    one.register(None).await.unwrap();
    let _ = one;
}
