//! Queued signals are carried out even when no process is there to take them: a resume
//! a server acknowledged before it was killed (issue 15.7), a cancel or pause sent while
//! an instance waits for its crash relaunch (issue 15.3). Real processes and SIGKILL.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtara_management_sdk::{ManagementSdk, RegisterImageOptions, StartInstanceOptions};
use serde_json::json;
use support::*;

const TENANT: &str = "acme";

/// A resume queued for a suspended instance while no server ran (as when the server that
/// acknowledged it was killed before relaunching the instance) is carried out at start-up:
/// the instance completes, and no step runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_queued_before_a_server_crash_is_carried_out_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let (instance_port, management_port) = (free_port(), free_port());
    let mut server = Server::start(dir.path(), instance_port, management_port, &[]);
    let sdk = server.client().await;
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "order-workflow", binary))
        .await
        .unwrap()
        .image_id;
    let input = json!({"order_id": "R", "steps": 6, "step_delay_ms": 150, "log_file": log});
    let id = sdk
        .start_instance(StartInstanceOptions::new(&image_id, TENANT).with_input(input))
        .await
        .unwrap()
        .instance_id;
    wait_for(&sdk, &id, Duration::from_secs(30), |s| {
        s.checkpoint_count >= 2
    })
    .await;
    sdk.pause_instance(&id).await.unwrap();
    wait_status(&sdk, &id, "suspended").await;

    // The server dies; the resume it had acknowledged is in the database, not yet
    // acted on.
    server.kill();
    drop(sdk);
    let url = format!("sqlite://{}", dir.path().join("runtara.db").display());
    let store = runtara_sdk::persistence::connect(&url).await.unwrap();
    store
        .send_signal(&id, runtara_sdk::SignalType::Resume)
        .await
        .unwrap();
    drop(store);

    let server = Server::start(dir.path(), instance_port, management_port, &[]);
    let sdk = server.client().await;
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(done.checkpoint_count, 6);
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 6, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "a step ran twice: {runs:?}");
}

/// Registers the workflow and starts an instance of `steps` steps logging to `log`.
async fn start_workflow(sdk: &ManagementSdk, steps: u32, log: &std::path::Path) -> String {
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "order-workflow", binary))
        .await
        .unwrap()
        .image_id;
    let input = json!({"order_id": "C", "steps": steps, "step_delay_ms": 400, "log_file": log});
    sdk.start_instance(StartInstanceOptions::new(&image_id, TENANT).with_input(input))
        .await
        .unwrap()
        .instance_id
}

/// The pids of the instance's launched processes, in launch order.
async fn launched(sdk: &ManagementSdk, id: &str) -> Vec<u32> {
    sdk.list_events(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == "launched")
        .filter_map(|e| e.subtype.as_deref()?.parse().ok())
        .collect()
}

/// Waits until the instance has `n` launched processes and SIGKILLs the last.
async fn kill_launch(sdk: &ManagementSdk, id: &str, n: usize) {
    let started = std::time::Instant::now();
    let pid = loop {
        let pids = launched(sdk, id).await;
        if pids.len() >= n {
            break pids[n - 1];
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "launch {n} did not happen"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// Crashes the instance twice in a row — its process, then at once the relaunched one
/// before it records a step (a first crash is relaunched at once) — and waits until the
/// server has seen the second exit: it then waits out its restart backoff before the
/// next relaunch. Returns the steps run so far.
async fn crash_and_wait_for_the_relaunch_backoff(
    sdk: &ManagementSdk,
    id: &str,
    log: &std::path::Path,
) -> usize {
    let progress = wait_for(sdk, id, Duration::from_secs(30), |s| {
        s.checkpoint_count >= 2
    })
    .await;
    kill_launch(sdk, id, 1).await;
    kill_launch(sdk, id, 2).await;
    let started = std::time::Instant::now();
    loop {
        let events = sdk.list_events(id).await.unwrap();
        if events.iter().filter(|e| e.kind == "exited").count() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the exits were not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let now = sdk.get_instance_status(id).await.unwrap();
    assert_eq!(
        now.checkpoint_count, progress.checkpoint_count,
        "the relaunch recorded a step before it was killed: not two crashes in a row"
    );
    step_runs(log).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_a_crash_relaunch_waits_ends_it_without_a_relaunch() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let server = Server::start(dir.path(), 0, 0, &["--restart-backoff-ms", "1500"]);
    let sdk = server.client().await;
    let id = start_workflow(&sdk, 20, &log).await;
    let ran = crash_and_wait_for_the_relaunch_backoff(&sdk, &id, &log).await;

    let outcome = sdk.cancel_instance(&id).await.unwrap();
    assert!(!outcome.applied, "queued: the instance is still running");
    wait_status(&sdk, &id, "cancelled").await;
    let launches = sdk
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "launched")
        .count();
    assert_eq!(launches, 2, "relaunched after the cancel");
    assert_eq!(step_runs(&log).len(), ran, "a step ran after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_while_a_crash_relaunch_waits_suspends_it_and_a_resume_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let server = Server::start(dir.path(), 0, 0, &["--restart-backoff-ms", "1500"]);
    let sdk = server.client().await;
    let id = start_workflow(&sdk, 6, &log).await;
    let ran = crash_and_wait_for_the_relaunch_backoff(&sdk, &id, &log).await;

    sdk.pause_instance(&id).await.unwrap();
    wait_status(&sdk, &id, "suspended").await;
    assert_eq!(step_runs(&log).len(), ran, "a step ran after the pause");
    sdk.resume_instance(&id).await.unwrap();
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(done.checkpoint_count, 6);
}

/// Starts an instance that sleeps `sleep_ms` (durably) before its third of 4 steps, with
/// a second between steps, and waits until its second step is recorded: the window in
/// which a signal reaches it just before the sleep.
async fn start_sleeper(sdk: &ManagementSdk, log: &std::path::Path, sleep_ms: u64) -> String {
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "order-workflow", binary))
        .await
        .unwrap()
        .image_id;
    let input = json!({"order_id": "Z", "steps": 4, "step_delay_ms": 1000,
                       "sleep_ms": sleep_ms, "log_file": log});
    let id = sdk
        .start_instance(StartInstanceOptions::new(&image_id, TENANT).with_input(input))
        .await
        .unwrap()
        .instance_id;
    wait_for(sdk, &id, Duration::from_secs(30), |s| {
        s.checkpoint_count >= 2
    })
    .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_just_before_a_long_sleep_ends_the_instance_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let server = Server::start(dir.path(), 0, 0, &["--sleep-exit-threshold-ms", "1000"]);
    let sdk = server.client().await;
    let id = start_sleeper(&sdk, &log, 15_000).await;

    sdk.cancel_instance(&id).await.unwrap();
    let done = wait_status(&sdk, &id, "cancelled").await;
    assert_eq!(done.checkpoint_count, 3, "the two steps and the sleep");
    assert_eq!(step_runs(&log).len(), 2, "a step ran after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_just_before_a_long_sleep_suspends_at_once_and_keeps_the_wake_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let server = Server::start(dir.path(), 0, 0, &["--sleep-exit-threshold-ms", "1000"]);
    let sdk = server.client().await;
    let id = start_sleeper(&sdk, &log, 3_000).await;

    sdk.pause_instance(&id).await.unwrap();
    let paused = wait_status(&sdk, &id, "suspended").await;
    let wake_at = paused
        .wake_at
        .clone()
        .expect("the sleep's wake time is kept");
    assert_eq!(step_runs(&log).len(), 2);
    sdk.resume_instance(&id).await.unwrap();
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(
        done.wake_at.as_deref(),
        Some(wake_at.as_str()),
        "the wake time moved"
    );
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "a step ran twice: {runs:?}");
}
