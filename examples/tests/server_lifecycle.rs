//! End to end with real processes: a `runtara-server` process, the `order-workflow`
//! binary registered as an image and launched by the server, driven through the
//! management SDK.
//!
//! The lifecycle suite runs in both server modes (the `processes` and `workers`
//! modules): one process per instance, and the image's instances hosted by its worker
//! processes. A few tests are of one mode only: what only a process of its own shows
//! (its output as the log tail, a clean exit at a pause, a stopped process fenced out),
//! and what only workers do (a pool's minimum, a hung worker replaced).
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtara_management_sdk::{
    ManagementSdk, RegisterImageOptions, StartInstanceOptions, WorkerPool,
};
use serde_json::json;
use support::*;

const TENANT: &str = "acme";

/// How the server runs the image's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One process per instance.
    Processes,
    /// In worker processes of the image (at most 2, 64 instances each).
    Workers,
}

/// Each named test (an `async fn(Mode)`), once per server mode.
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        mod processes {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Mode::Processes).await;
                }
            )*
        }
        mod workers {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Mode::Workers).await;
                }
            )*
        }
    };
}

in_both_modes!(
    register_start_and_poll_to_completed,
    pause_then_resume_completes_without_rerunning_steps,
    pause_resume_cancel_back_to_back_ends_cancelled,
    cancel_ends_cancelled_with_the_run_gone,
    sigkill_of_the_runner_is_relaunched_and_completes,
    a_long_durable_sleep_ends_the_run_and_is_relaunched_on_time,
    instances_survive_a_server_sigkill_and_restart,
    bad_requests_get_clear_errors_and_change_nothing,
    a_crash_loop_ends_failed_with_the_reason_and_a_timeout_fails_the_run,
    wait_for_completion_answers_when_the_instance_ends,
);

async fn register(sdk: &ManagementSdk, mode: Mode) -> String {
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(
            RegisterImageOptions::new(TENANT, "order-workflow", binary).with_description("e2e"),
        )
        .await
        .unwrap()
        .image_id;
    if mode == Mode::Workers {
        sdk.set_image_workers(&image_id, Some(WorkerPool::new(0, 2, 64)))
            .await
            .unwrap();
    }
    image_id
}

/// A server over `dir` (test timings plus `extra` flags, any ports), a client, and the
/// workflow registered as an image: the image id.
async fn server_with_image(
    dir: &std::path::Path,
    extra: &[&str],
    mode: Mode,
) -> (Server, ManagementSdk, String) {
    let server = Server::start(dir, 0, 0, extra);
    let sdk = server.client().await;
    let image_id = register(&sdk, mode).await;
    (server, sdk, image_id)
}

/// Waits until the instance has recorded at least `n` checkpoints.
async fn wait_checkpoints(sdk: &ManagementSdk, instance_id: &str, n: i64) {
    wait_for(sdk, instance_id, Duration::from_secs(30), |s| {
        s.checkpoint_count >= n
    })
    .await;
}

async fn start(sdk: &ManagementSdk, image_id: &str, input: serde_json::Value) -> String {
    sdk.start_instance(StartInstanceOptions::new(image_id, TENANT).with_input(input))
        .await
        .unwrap()
        .instance_id
}

/// Pids of the processes the server launched for the instance, in order.
async fn launched_pids(sdk: &ManagementSdk, instance_id: &str) -> Vec<u32> {
    sdk.list_events(instance_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "launched")
        .filter_map(|e| e.subtype.and_then(|pid| pid.parse().ok()))
        .collect()
}

/// How many runs of the instance were launched (a process each, or a run sent to a
/// worker).
async fn launches(sdk: &ManagementSdk, instance_id: &str) -> usize {
    let events = sdk.list_events(instance_id).await.unwrap();
    events.iter().filter(|e| e.kind == "launched").count()
}

/// Waits until `n` runs of the instance are over (an `exited` event each: its process
/// gone, or its run in a worker ended).
async fn wait_runs_over(sdk: &ManagementSdk, instance_id: &str, n: usize) {
    let start = std::time::Instant::now();
    loop {
        let events = sdk.list_events(instance_id).await.unwrap();
        if events.iter().filter(|e| e.kind == "exited").count() >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{instance_id}: fewer than {n} runs over: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process running the instance now: its own, or the worker hosting it (found by
/// its working directory, `<data>/worker-files/<worker id>`).
async fn runner_pid(sdk: &ManagementSdk, instance_id: &str, data: &std::path::Path) -> u32 {
    let events = sdk.list_events(instance_id).await.unwrap();
    let last = events.iter().rev().find(|e| e.kind == "launched").unwrap();
    let subtype = last.subtype.clone().unwrap();
    if let Ok(pid) = subtype.parse() {
        return pid;
    }
    let worker_id = subtype.strip_prefix("worker ").unwrap();
    let dir = std::fs::canonicalize(data.join("worker-files").join(worker_id)).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .find(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .unwrap_or_else(|| panic!("no live process of worker {worker_id}"))
}

fn output(status: &runtara_management_sdk::InstanceInfo) -> serde_json::Value {
    serde_json::from_slice(status.output.as_deref().unwrap()).unwrap()
}

/// The spec's complete example: register, start with input, poll to completed, read
/// the output. Starting again with the same instance id is idempotent.
async fn register_start_and_poll_to_completed(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], mode).await;

    let instance = sdk
        .start_instance(
            StartInstanceOptions::new(&image_id, TENANT)
                .with_instance_id("order-ORD-456")
                .with_input(json!({"order_id": "ORD-456", "items": ["a", "b"], "steps": 3})),
        )
        .await
        .unwrap();
    assert_eq!(instance.instance_id, "order-ORD-456");
    let status = wait_for(&sdk, &instance.instance_id, Duration::from_secs(30), |s| {
        matches!(s.status.as_str(), "completed" | "failed")
    })
    .await;
    assert_eq!(status.status, "completed", "{status:#?}");
    let out = output(&status);
    assert_eq!(out["order_id"], "ORD-456");
    assert_eq!(out["items"], json!(["a", "b"]));
    assert_eq!(status.checkpoint_count, 3);
    assert_eq!(status.image_id, image_id);
    assert!(!status.started_at.is_empty() && status.finished_at.is_some());
    if mode == Mode::Processes {
        // A process of its own: its output is the instance's.
        assert!(status.log_tail.unwrap_or_default().contains("step 3"));
    }

    // Idempotent start: the same id does not start a second run.
    let again = sdk
        .start_instance(
            StartInstanceOptions::new(&image_id, TENANT).with_instance_id("order-ORD-456"),
        )
        .await
        .unwrap();
    assert!(!again.created);
    let page = sdk
        .list_instances_page(
            runtara_management_sdk::ListInstancesOptions::new(TENANT).with_status("completed"),
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.instances[0].instance_id, "order-ORD-456");
    assert_eq!(launches(&sdk, "order-ORD-456").await, 1);
}

/// A server started as the README starts it, with the default, relative data dir
/// (`./runtara-data`): its instances run in their own folders, yet find their image
/// binary and the certificate to trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_the_default_relative_data_dir_runs_instances() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path());
    assert!(dir.path().join("runtara-data").is_dir());
    assert!(server.ca_path.is_absolute(), "{}", server.ca_path.display());
    let sdk = server.client().await;
    let image_id = register(&sdk, Mode::Processes).await;
    let instance_id = start(&sdk, &image_id, json!({"order_id": "ORD-1", "steps": 2})).await;
    let status = wait_for(&sdk, &instance_id, Duration::from_secs(30), |s| {
        matches!(s.status.as_str(), "completed" | "failed")
    })
    .await;
    assert_eq!(status.status, "completed", "{status:#?}");
    assert_eq!(output(&status)["order_id"], "ORD-1");
}

async fn pause_then_resume_completes_without_rerunning_steps(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], mode).await;
    let input = json!({"order_id": "P", "steps": 8, "step_delay_ms": 150, "log_file": log});
    let id = start(&sdk, &image_id, input).await;

    wait_checkpoints(&sdk, &id, 2).await;
    sdk.pause_instance(&id).await.unwrap();
    let paused = wait_status(&sdk, &id, "suspended").await;
    assert!(paused.checkpoint_count < 8, "paused before the end");
    wait_runs_over(&sdk, &id, 1).await;

    sdk.resume_instance(&id).await.unwrap();
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(output(&done)["steps"], 8);
    assert_eq!(done.checkpoint_count, 8);
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 8, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "a step ran twice: {runs:?}");
    assert_eq!(launches(&sdk, &id).await, 2);
}

/// The reference's checkpoint loop answers a pause by returning cleanly, without
/// acknowledging it: the instance is suspended (not relaunched as a crash), and a resume
/// completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_exit_at_a_pause_without_an_ack_suspends() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], Mode::Processes).await;
    let input =
        json!({"order_id": "M", "steps": 8, "step_delay_ms": 150, "manual_checkpoints": true});
    let id = start(&sdk, &image_id, input).await;

    wait_checkpoints(&sdk, &id, 2).await;
    sdk.pause_instance(&id).await.unwrap();
    let paused = wait_status(&sdk, &id, "suspended").await;
    assert!(paused.checkpoint_count < 8, "paused before the end");
    let pid = launched_pids(&sdk, &id).await[0];
    wait_for(&sdk, &id, Duration::from_secs(10), |_| !process_alive(pid)).await;
    let events = sdk.list_events(&id).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "exited"), "{events:#?}");
    assert_eq!(
        sdk.get_instance_status(&id).await.unwrap().status,
        "suspended",
        "the clean exit was handled as a pause, not a crash"
    );
    assert_eq!(launched_pids(&sdk, &id).await.len(), 1, "not relaunched");

    sdk.resume_instance(&id).await.unwrap();
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(output(&done)["steps"], 8);
    assert_eq!(launched_pids(&sdk, &id).await.len(), 2);
}

/// The management README's "Sending Signals" snippet as written: pause, resume and
/// cancel back to back on a running instance. The resume withdraws the pause the
/// process has not taken yet; the cancel ends the instance.
async fn pause_resume_cancel_back_to_back_ends_cancelled(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], mode).await;
    let input = json!({"order_id": "S", "steps": 50, "step_delay_ms": 200});
    let id = start(&sdk, &image_id, input).await;
    wait_checkpoints(&sdk, &id, 1).await;

    sdk.pause_instance(&id).await.unwrap();
    let resumed = sdk.resume_instance(&id).await.unwrap();
    assert!(
        resumed.applied || resumed.status == "suspended",
        "{resumed:?}"
    );
    sdk.cancel_instance(&id).await.unwrap();
    let done = wait_for(&sdk, &id, Duration::from_secs(30), |s| {
        !matches!(s.status.as_str(), "running" | "pending" | "suspended")
    })
    .await;
    assert_eq!(done.status, "cancelled", "{done:#?}");
}

/// A resume that arrives after the process has taken the pause, but before it is gone:
/// the pause is withdrawn, and the process, which stops anyway, is relaunched at once
/// rather than handled as a crash (here a crash would fail the instance: no restarts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_the_pause_was_taken_relaunches_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) =
        server_with_image(dir.path(), &["--max-restarts", "0"], Mode::Processes).await;
    let input = json!({
        "order_id": "W", "steps": 6, "step_delay_ms": 100,
        "manual_checkpoints": true, "pause_exit_delay_ms": 500,
    });
    let id = start(&sdk, &image_id, input).await;
    wait_checkpoints(&sdk, &id, 1).await;

    sdk.pause_instance(&id).await.unwrap();
    wait_for(&sdk, &id, Duration::from_secs(30), |s| {
        s.log_tail
            .as_deref()
            .unwrap_or_default()
            .contains("pause seen")
    })
    .await;
    let resumed = sdk.resume_instance(&id).await.unwrap();
    assert!(resumed.applied, "{resumed:?}");
    assert_eq!(resumed.status, "running");

    let done = wait_for(&sdk, &id, Duration::from_secs(30), |s| {
        matches!(s.status.as_str(), "completed" | "failed" | "suspended")
    })
    .await;
    assert_eq!(done.status, "completed", "{done:#?}");
    assert_eq!(launched_pids(&sdk, &id).await.len(), 2);
}

async fn cancel_ends_cancelled_with_the_run_gone(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], mode).await;
    let id = start(&sdk, &image_id, json!({"steps": 200, "step_delay_ms": 100})).await;

    wait_checkpoints(&sdk, &id, 1).await;
    sdk.cancel_instance(&id).await.unwrap();
    let cancelled = wait_status(&sdk, &id, "cancelled").await;
    assert!(cancelled.checkpoint_count < 200);
    wait_runs_over(&sdk, &id, 1).await;
    // Terminal is final: further signals are refused with a clear error.
    let error = sdk.resume_instance(&id).await.unwrap_err();
    assert!(error.to_string().contains("cancelled"), "{error}");
}

/// `kill -9` of the process running the instance: its own, or its worker.
async fn sigkill_of_the_runner_is_relaunched_and_completes(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], mode).await;
    let input = json!({"order_id": "K", "steps": 8, "step_delay_ms": 150, "log_file": log});
    let id = start(&sdk, &image_id, input).await;

    wait_checkpoints(&sdk, &id, 3).await;
    let pid = runner_pid(&sdk, &id, dir.path()).await;
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(done.checkpoint_count, 8);
    assert_eq!(launches(&sdk, &id).await, 2, "relaunched once");
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 8, "{runs:?}");
    let repeated: Vec<_> = runs.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.len() <= 1 && repeated.iter().all(|(_, &n)| n == 2),
        "only the step in flight at the kill may run again: {runs:?}"
    );
}

async fn a_long_durable_sleep_ends_the_run_and_is_relaunched_on_time(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--sleep-exit-threshold-ms", "300"];
    let (_server, sdk, image_id) = server_with_image(dir.path(), &flags, mode).await;
    let id = start(&sdk, &image_id, json!({"steps": 2, "sleep_ms": 2000})).await;

    let sleeping = wait_status(&sdk, &id, "sleeping").await;
    wait_runs_over(&sdk, &id, 1).await;
    assert!(sleeping.wake_at.is_some());
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(done.checkpoint_count, 3, "two steps and the sleep");
    assert_eq!(launches(&sdk, &id).await, 2);
    // Woken no earlier than the wake time.
    let checkpoints = sdk.list_checkpoints(&id).await.unwrap();
    let nap = checkpoints
        .iter()
        .find(|c| c.checkpoint_id == "nap")
        .unwrap();
    let wake_at = nap.wake_at.clone().unwrap();
    let last = checkpoints.last().unwrap();
    assert!(
        last.created_at >= wake_at,
        "{} ran before {wake_at}",
        last.checkpoint_id
    );
}

/// A server killed with `kill -9` while instances run. Processes of their own carry on
/// and are adopted by the next server; instances in workers (whose workers end with
/// their server's connection) are run again at once by the next server from their last
/// checkpoint — not after a heartbeat timeout, which is two minutes here.
async fn instances_survive_a_server_sigkill_and_restart(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let (instance_port, management_port) = (free_port(), free_port());
    let flags = ["--heartbeat-timeout-ms", "120000"];
    let mut server = Server::start(dir.path(), instance_port, management_port, &flags);
    let sdk = server.client().await;
    let image_id = register(&sdk, mode).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let log = dir.path().join(format!("steps-{n}.log"));
        let input = json!({"order_id": format!("S{n}"), "steps": 10, "step_delay_ms": 150, "log_file": log});
        ids.push(start(&sdk, &image_id, input).await);
    }
    for id in &ids {
        wait_checkpoints(&sdk, id, 2).await;
    }
    server.kill();
    drop(sdk);
    let _server = Server::start(dir.path(), instance_port, management_port, &flags);
    let sdk = _server.client().await;
    if mode == Mode::Processes {
        // At once, while they still run: the new server counts the launch of the old one.
        for id in &ids {
            let status = sdk.get_instance_status(id).await.unwrap();
            assert_eq!(
                status.launches, 1,
                "{id} ({}) right after the restart",
                status.status
            );
        }
    }
    for (n, id) in ids.iter().enumerate() {
        let done = wait_status(&sdk, id, "completed").await;
        assert_eq!(done.checkpoint_count, 10);
        let runs = step_runs(&dir.path().join(format!("steps-{n}.log")));
        assert_eq!(runs.len(), 10, "{runs:?}");
        if mode == Mode::Workers {
            let repeated: Vec<_> = runs.iter().filter(|(_, &c)| c > 1).collect();
            assert!(
                repeated.len() <= 1 && repeated.iter().all(|(_, &c)| c == 2),
                "only the step in flight at the kill may run again: {runs:?}"
            );
            assert_eq!(launches(&sdk, id).await, 2, "{id}: run again once");
            continue;
        }
        assert!(
            runs.values().all(|&c| c == 1),
            "the first process carried on, so no step re-ran: {runs:?}"
        );
        // Adopted, not relaunched: it kept printing after its server was gone (its
        // output goes to a file, not to a pipe that closed with the server).
        assert_eq!(launches(&sdk, id).await, 1, "{id} was relaunched");
        // The launch count survives the restart (it is read from the stored events).
        assert_eq!(done.launches, 1, "{id}: launches after the restart");
        let tail = done.log_tail.unwrap_or_default();
        assert!(tail.contains("step 10"), "{tail}");
    }
}

async fn bad_requests_get_clear_errors_and_change_nothing(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--max-image-bytes", "100000000"];
    let (_server, sdk, image_id) = server_with_image(dir.path(), &flags, mode).await;

    let unknown = sdk
        .start_instance(StartInstanceOptions::new("img-nope", TENANT))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some("not_found"), "{unknown}");
    let other_tenant = sdk
        .start_instance(StartInstanceOptions::new(&image_id, "someone-else"))
        .await
        .unwrap_err();
    assert_eq!(other_tenant.code(), Some("not_found"), "{other_tenant}");
    let bad_id = sdk
        .start_instance(StartInstanceOptions::new(&image_id, TENANT).with_instance_id("../etc"))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Some("invalid_input"), "{bad_id}");
    let status = sdk
        .get_instance_status("no-such-instance")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Some("not_found"), "{status}");
    let too_big = sdk
        .register_image(RegisterImageOptions::new(
            TENANT,
            "big",
            vec![0u8; 100_000_001],
        ))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Some("invalid_input"), "{too_big}");
    assert!(too_big.to_string().contains("at most"), "{too_big}");

    // Nothing was created by the refused calls.
    let page = sdk
        .list_instances_page(runtara_management_sdk::ListInstancesOptions::new(TENANT))
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    assert_eq!(sdk.list_images(TENANT).await.unwrap().len(), 1);
    assert!(sdk.list_images("someone-else").await.unwrap().is_empty());

    // An image in use cannot be deleted.
    let id = start(&sdk, &image_id, json!({"steps": 100, "step_delay_ms": 100})).await;
    let in_use = sdk.delete_image(&image_id).await.unwrap_err();
    assert_eq!(in_use.code(), Some("in_use"), "{in_use}");
    sdk.cancel_instance(&id).await.unwrap();
    wait_status(&sdk, &id, "cancelled").await;
    sdk.delete_image(&image_id).await.unwrap();
    assert!(sdk.list_images(TENANT).await.unwrap().is_empty());
}

/// A binary that dies before doing anything (a worker of it never connects) fails its
/// instance after the restarts, with the exit and the output; a run over its timeout
/// fails.
async fn a_crash_loop_ends_failed_with_the_reason_and_a_timeout_fails_the_run(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &["--max-restarts", "2"]);
    let sdk = server.client().await;

    // A binary that dies before doing anything: relaunched twice, then failed.
    let script = b"#!/bin/sh\necho 'boom: missing configuration' >&2\nexit 3\n".to_vec();
    let broken = sdk
        .register_image(RegisterImageOptions::new(TENANT, "broken", script))
        .await
        .unwrap()
        .image_id;
    if mode == Mode::Workers {
        sdk.set_image_workers(&broken, Some(WorkerPool::new(0, 1, 8)))
            .await
            .unwrap();
    }
    let id = start(&sdk, &broken, json!({})).await;
    let failed = wait_status(&sdk, &id, "failed").await;
    let reason = failed.error.unwrap();
    assert!(
        reason.contains("exit status: 3") && reason.contains("3 times"),
        "{reason}"
    );
    assert!(reason.contains("boom: missing configuration"), "{reason}");
    assert_eq!(launches(&sdk, &id).await, 3);

    // A run over its timeout is killed and failed.
    let image_id = register(&sdk, mode).await;
    let slow = sdk
        .start_instance(
            StartInstanceOptions::new(&image_id, TENANT)
                .with_input(json!({"steps": 100, "step_delay_ms": 100}))
                .with_timeout(Duration::from_millis(700)),
        )
        .await
        .unwrap()
        .instance_id;
    let timed_out = wait_status(&sdk, &slow, "failed").await;
    assert!(timed_out.error.unwrap().contains("timed out"));
    assert!(timed_out.checkpoint_count < 100);

    // An id taken by another tenant is not reused or revealed.
    sdk.start_instance(StartInstanceOptions::new(&image_id, TENANT).with_instance_id("shared-id"))
        .await
        .unwrap();
    let other = sdk
        .register_image(RegisterImageOptions::new(
            "other",
            "w",
            std::fs::read(WORKFLOW).unwrap(),
        ))
        .await
        .unwrap()
        .image_id;
    let taken = sdk
        .start_instance(StartInstanceOptions::new(&other, "other").with_instance_id("shared-id"))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Some("already_exists"), "{taken}");
    let status = sdk.get_instance_status("shared-id").await.unwrap();
    assert_eq!(status.tenant_id, TENANT);
}

/// A process that stops answering is relaunched; when the stale one wakes up, its writes
/// are refused (fenced by the newer run's epoch) and it exits. The instance completes
/// once, with the new run's result, and never has two live runners writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_process_is_fenced_out_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let flags = ["--heartbeat-timeout-ms", "1000"];
    let (_server, sdk, image_id) = server_with_image(dir.path(), &flags, Mode::Processes).await;
    let input = json!({"order_id": "F", "steps": 10, "step_delay_ms": 100, "log_file": log});
    let id = start(&sdk, &image_id, input).await;

    wait_checkpoints(&sdk, &id, 2).await;
    let stale = launched_pids(&sdk, &id).await[0];
    let signal = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &stale.to_string()])
            .status()
            .unwrap()
    };
    signal("-STOP"); // hangs: no heartbeats, no progress
    wait_for(&sdk, &id, Duration::from_secs(30), |s| s.launches >= 2).await;
    let done = wait_status(&sdk, &id, "completed").await;
    signal("-CONT"); // the stale run wakes up and tries to write
    wait_for(&sdk, &id, Duration::from_secs(15), |_| {
        !process_alive(stale)
    })
    .await;

    let after = sdk.get_instance_status(&id).await.unwrap();
    assert_eq!(after.status, "completed", "the stale run changed nothing");
    assert_eq!(after.output, done.output);
    assert_eq!(after.checkpoint_count, 10);
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 10, "{runs:?}");
    assert!(
        runs.values().filter(|&&n| n > 1).count() <= 1,
        "only the step the stale run was in may have run twice: {runs:?}"
    );
}

/// The live processes running the stored binary of `image_id` (its workers).
fn workers_of(data: &std::path::Path, sha256: &str) -> Vec<u32> {
    let binary = std::fs::canonicalize(data.join("images").join(sha256)).unwrap();
    support::processes_of(&binary)
}

/// Waits until `count` workers of the image run.
async fn wait_workers(data: &std::path::Path, sha256: &str, count: usize) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        let workers = workers_of(data, sha256);
        if workers.len() == count {
            return workers;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} workers, not {count}",
            workers.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pool's minimum of workers runs before any start, a killed one is replaced, and a
/// restarted server launches the minimum again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_keeps_its_minimum_of_workers_running() {
    let dir = tempfile::tempdir().unwrap();
    let (instance_port, management_port) = (free_port(), free_port());
    let mut server = Server::start(dir.path(), instance_port, management_port, &[]);
    let sdk = server.client().await;
    let image_id = register(&sdk, Mode::Processes).await;
    let sha256 = sdk.get_image(&image_id).await.unwrap().sha256;
    sdk.set_image_workers(&image_id, Some(WorkerPool::new(2, 3, 16)))
        .await
        .unwrap();
    let workers = wait_workers(dir.path(), &sha256, 2).await;

    std::process::Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap();
    let since = std::time::Instant::now();
    let replaced = loop {
        let now = workers_of(dir.path(), &sha256);
        if now.len() == 2 && !now.contains(&workers[0]) {
            break now;
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "not replaced: {now:?} (killed {})",
            workers[0]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // They run instances as any worker does.
    let id = start(&sdk, &image_id, json!({"steps": 2})).await;
    wait_status(&sdk, &id, "completed").await;

    // A new server keeps the minimum too (the old workers end with their server).
    server.kill();
    drop(sdk);
    let server = Server::start(dir.path(), instance_port, management_port, &[]);
    let _sdk = server.client().await;
    let start = std::time::Instant::now();
    loop {
        let now = workers_of(dir.path(), &sha256);
        if now.len() == 2 && now.iter().all(|pid| !replaced.contains(pid)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "workers after the restart: {now:?} (before: {replaced:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A worker that stops answering (`SIGSTOP`) sends no heartbeats: it is killed, and the
/// instance it hosted runs again on a new worker from its last checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_worker_is_killed_and_its_runs_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let flags = ["--heartbeat-timeout-ms", "1000"];
    let (_server, sdk, image_id) = server_with_image(dir.path(), &flags, Mode::Workers).await;
    let input = json!({"order_id": "H", "steps": 10, "step_delay_ms": 100, "log_file": log});
    let id = start(&sdk, &image_id, input).await;

    wait_checkpoints(&sdk, &id, 2).await;
    let hung = runner_pid(&sdk, &id, dir.path()).await;
    std::process::Command::new("kill")
        .args(["-STOP", &hung.to_string()])
        .status()
        .unwrap();
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(done.checkpoint_count, 10);
    assert_eq!(launches(&sdk, &id).await, 2, "run again once");
    wait_for(&sdk, &id, Duration::from_secs(10), |_| !process_alive(hung)).await;
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 10, "{runs:?}");
    assert!(
        runs.values().filter(|&&n| n > 1).count() <= 1,
        "only the step the hung worker was in may have run twice: {runs:?}"
    );
}

/// `wait_for_completion` is answered by the server when the instance ends (completed,
/// cancelled while waited for), `wait_until_settled` at a pause too; a wait that runs
/// out names the status then, and an unknown instance is `not_found`.
async fn wait_for_completion_answers_when_the_instance_ends(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_image(dir.path(), &[], mode).await;
    let sdk = std::sync::Arc::new(sdk);

    let input = json!({"order_id": "C", "steps": 6, "step_delay_ms": 100});
    let id = start(&sdk, &image_id, input).await;
    let done = sdk
        .wait_for_completion(&id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(done.status, "completed", "{done:#?}");
    assert_eq!(output(&done)["steps"], 6);
    assert_eq!(done.checkpoint_count, 6);
    // Finished already: answered at once, the same.
    let again = sdk.wait_for_completion(&id, None).await.unwrap();
    assert_eq!(again.output, done.output);

    // Running past the wait: the wait runs out and says how it stands.
    let long = start(&sdk, &image_id, json!({"steps": 200, "step_delay_ms": 100})).await;
    let error = sdk
        .wait_for_completion(&long, Some(Duration::from_millis(500)))
        .await
        .unwrap_err();
    match &error {
        runtara_management_sdk::SdkError::WaitTimedOut { status, .. } => {
            assert!(matches!(status.as_str(), "running" | "pending"), "{error}")
        }
        other => panic!("not a wait timeout: {other}"),
    }
    // A pause settles a `wait_until_settled`; a cancel ends a `wait_for_completion`
    // that was waiting when it came.
    wait_checkpoints(&sdk, &long, 1).await;
    let settled = {
        let (sdk, long) = (sdk.clone(), long.clone());
        tokio::spawn(async move { sdk.wait_until_settled(&long, None).await })
    };
    sdk.pause_instance(&long).await.unwrap();
    assert_eq!(settled.await.unwrap().unwrap().status, "suspended");
    let waiting = {
        let (sdk, long) = (sdk.clone(), long.clone());
        tokio::spawn(async move { sdk.wait_for_completion(&long, None).await })
    };
    sdk.cancel_instance(&long).await.unwrap();
    let cancelled = waiting.await.unwrap().unwrap();
    assert_eq!(cancelled.status, "cancelled");

    let unknown = sdk
        .wait_for_completion("no-such-instance", Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some("not_found"), "{unknown}");
}
