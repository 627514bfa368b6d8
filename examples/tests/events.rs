//! External events (issue 20, part 1), end to end with the `approval` example: a
//! workflow waits durably for `approved`, in embedded mode (a runtime in a process of
//! its own, over a SQLite file) and as an image of a real `runtara-server` (the event
//! sent with `runtara-ctl send`). Crashes are `kill -9` of the process that runs it.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_management_sdk::{
    InstanceStatus, ManagementSdk, RegisterImageOptions, StartInstanceOptions, WorkerPool,
};
use runtara_sdk::persistence::Persistence;
use serde_json::{json, Value};
use support::{appears, ctl, ctl_ok as ok, kill_9, wait_for, Server};

const APPROVAL: &str = env!("CARGO_BIN_EXE_approval");
const TENANT: &str = "acme";

/// How many of the instance's history events are of `kind` (with `subtype`, if given).
fn count(events: &[(String, Option<String>)], kind: &str) -> usize {
    events.iter().filter(|(k, _)| k == kind).count()
}

mod embedded {
    use super::*;

    /// The example as a user runs it, over `db`, for one order; no approver of its own.
    fn approval(db: &str, order: &Value) -> Child {
        Command::new(APPROVAL)
            .args(["--db", db, "--no-approver", "--input", &order.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    }

    fn finished(child: Child) -> Value {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "approval failed");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    async fn status_is(store: &Arc<dyn Persistence>, id: &str, status: InstanceStatus) {
        let start = Instant::now();
        loop {
            if let Some(record) = store.get_instance(id).await.unwrap() {
                if record.status == status {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{id} never {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn history(store: &Arc<dyn Persistence>, id: &str) -> Vec<(String, Option<String>)> {
        store
            .list_events(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind.as_str().to_owned(), e.subtype))
            .collect()
    }

    struct Case {
        _dir: tempfile::TempDir,
        db: String,
        marker: PathBuf,
        gate: PathBuf,
        store: Arc<dyn Persistence>,
    }

    async fn case() -> Case {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("approvals.db").display());
        let store = runtara_sdk::persistence::connect(&db).await.unwrap();
        Case {
            marker: dir.path().join("waited"),
            gate: dir.path().join("gate"),
            db,
            store,
            _dir: dir,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_received_before_a_crash_is_not_waited_for_again() {
        let case = case().await;
        let order = json!({"order_id": "E-1", "hold_after_wait": case.marker});
        let first = approval(&case.db, &order);
        status_is(&case.store, "E-1", InstanceStatus::Waiting).await;
        let payload = serde_json::to_vec(&json!({"by": "ana"})).unwrap();
        case.store
            .send_event("E-1", "approved", &payload, None)
            .await
            .unwrap();
        // Received and recorded; killed before the next step.
        let pid = appears(&case.marker).await;
        kill_9(&pid);
        let _ = first.wait_with_output();
        let outcome = finished(approval(&case.db, &order));
        assert_eq!(outcome["approved_by"], "ana", "{outcome}");
        assert_eq!(outcome["shipment"], "shipment-E-1");
        let events = history(&case.store, "E-1").await;
        assert_eq!(
            count(&events, "waiting"),
            1,
            "the rerun did not wait: {events:?}"
        );
        assert_eq!(count(&events, "received"), 1);
        assert_eq!(count(&events, "registered"), 2, "two runs: {events:?}");
        let stage = case.store.get_value("E-1", "stage").await.unwrap();
        assert_eq!(stage.as_deref(), Some(&b"\"shipped\""[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_sent_before_the_wait_is_kept_for_it() {
        let case = case().await;
        let order = json!({"order_id": "E-2", "gate": case.gate, "hold_after_wait": case.marker});
        let first = approval(&case.db, &order);
        appears(&case.gate.with_extension("ready")).await;
        let payload = serde_json::to_vec(&json!({"by": "bo"})).unwrap();
        case.store
            .send_event("E-2", "approved", &payload, Some("mail-1"))
            .await
            .unwrap();
        let again = case
            .store
            .send_event("E-2", "approved", &payload, Some("mail-1"))
            .await
            .unwrap();
        assert!(again.duplicate, "a repeated send with its key is a no-op");
        std::fs::write(case.gate.with_extension("go"), "").unwrap();
        let pid = appears(&case.marker).await;
        kill_9(&pid);
        let _ = first.wait_with_output();
        let outcome = finished(approval(&case.db, &order));
        assert_eq!(outcome["approved_by"], "bo", "{outcome}");
        let events = history(&case.store, "E-2").await;
        assert_eq!(
            count(&events, "waiting"),
            0,
            "the event was there: {events:?}"
        );
        assert_eq!(count(&events, "received"), 1, "{events:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_times_out_once_and_for_good() {
        let case = case().await;
        let order = json!({"order_id": "E-3", "timeout_ms": 2000, "hold_after_wait": case.marker});
        let started = Instant::now();
        let first = approval(&case.db, &order);
        let pid = appears(&case.marker).await;
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "timed out after {:?}",
            started.elapsed()
        );
        kill_9(&pid);
        let _ = first.wait_with_output();
        // An approval that comes too late does not undo the recorded timeout.
        let payload = serde_json::to_vec(&json!({"by": "late"})).unwrap();
        case.store
            .send_event("E-3", "approved", &payload, None)
            .await
            .unwrap();
        let outcome = finished(approval(&case.db, &order));
        assert_eq!(outcome["approved_by"], Value::Null, "{outcome}");
        let events = history(&case.store, "E-3").await;
        assert_eq!(
            count(&events, "waiting"),
            1,
            "the rerun did not wait: {events:?}"
        );
    }
}

mod server {
    use super::*;

    async fn setup(dir: &Path, extra: &[&str], pool: bool) -> (Server, ManagementSdk, String) {
        let server = Server::start(dir, 0, 0, extra);
        let sdk = server.client().await;
        let binary = std::fs::read(APPROVAL).unwrap();
        let image_id = sdk
            .register_image(RegisterImageOptions::new(TENANT, "approval", binary))
            .await
            .unwrap()
            .image_id;
        if pool {
            sdk.set_image_workers(&image_id, Some(WorkerPool::new(0, 1, 16)))
                .await
                .unwrap();
        }
        (server, sdk, image_id)
    }

    async fn start(sdk: &ManagementSdk, image_id: &str, id: &str, input: Value) {
        sdk.start_instance(
            StartInstanceOptions::new(image_id, TENANT)
                .with_instance_id(id)
                .with_input(input),
        )
        .await
        .unwrap();
    }

    async fn history(sdk: &ManagementSdk, id: &str) -> Vec<(String, Option<String>)> {
        sdk.list_events(id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind.as_str().to_owned(), e.subtype))
            .collect()
    }

    async fn outcome(sdk: &ManagementSdk, id: &str) -> Value {
        let done = sdk
            .wait_for_completion(id, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(done.status, InstanceStatus::Completed, "{done:#?}");
        done.output_json().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_sent_with_runtara_ctl_survives_a_kill_after_it_arrived() {
        let dir = tempfile::tempdir().unwrap();
        let (server, sdk, image_id) = setup(dir.path(), &[], false).await;
        let marker = dir.path().join("waited");
        start(
            &sdk,
            &image_id,
            "S-1",
            json!({"order_id": "S-1", "hold_after_wait": marker}),
        )
        .await;
        let waiting = wait_for(&sdk, "S-1", Duration::from_secs(60), |i| {
            i.status == InstanceStatus::Waiting
        })
        .await;
        assert_eq!(waiting.waiting_for.as_deref(), Some("approved"));
        let status = ok(&ctl(&server, &["status", "S-1"]));
        assert!(status.contains("event `approved`"), "{status}");
        let stage = ok(&ctl(&server, &["value", "S-1", "stage"]));
        assert_eq!(stage.trim(), "\"awaiting approval\"");
        let sent = ok(&ctl(
            &server,
            &["send", "S-1", "approved", "--data", r#"{"by": "ana"}"#],
        ));
        assert!(sent.contains("sent event `approved` to S-1"), "{sent}");
        let pid = appears(&marker).await;
        kill_9(&pid);
        let output = outcome(&sdk, "S-1").await;
        assert_eq!(output["approved_by"], "ana", "{output}");
        let events = history(&sdk, "S-1").await;
        assert_eq!(
            count(&events, "waiting"),
            1,
            "the rerun did not wait: {events:?}"
        );
        assert_eq!(count(&events, "received"), 1, "{events:?}");
        assert_eq!(
            count(&events, "launched"),
            2,
            "relaunched once after the kill: {events:?}"
        );
        let stage = ok(&ctl(&server, &["value", "S-1", "stage"]));
        assert_eq!(stage.trim(), "\"shipped\"");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_approval_sent_before_the_wait_is_taken_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (server, sdk, image_id) = setup(dir.path(), &[], false).await;
        let (gate, marker) = (dir.path().join("gate"), dir.path().join("waited"));
        let input = json!({"order_id": "S-2", "gate": gate, "hold_after_wait": marker});
        start(&sdk, &image_id, "S-2", input).await;
        appears(&gate.with_extension("ready")).await;
        let data = dir.path().join("approval.json");
        std::fs::write(&data, r#"{"by": "bo"}"#).unwrap();
        let from_file = format!("@{}", data.display());
        ok(&ctl(
            &server,
            &[
                "send", "S-2", "approved", "--data", &from_file, "--key", "k1",
            ],
        ));
        let repeat = ok(&ctl(
            &server,
            &[
                "send", "S-2", "approved", "--data", &from_file, "--key", "k1",
            ],
        ));
        assert!(repeat.contains("nothing changed"), "{repeat}");
        std::fs::write(gate.with_extension("go"), "").unwrap();
        let pid = appears(&marker).await;
        kill_9(&pid);
        let output = outcome(&sdk, "S-2").await;
        assert_eq!(output["approved_by"], "bo", "{output}");
        let events = history(&sdk, "S-2").await;
        assert_eq!(count(&events, "waiting"), 0, "{events:?}");
        assert_eq!(count(&events, "received"), 1, "{events:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_with_a_timeout_returns_none_after_it_and_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, sdk, image_id) = setup(dir.path(), &[], false).await;
        let marker = dir.path().join("waited");
        let input = json!({"order_id": "S-3", "timeout_ms": 2000, "hold_after_wait": marker});
        let started = Instant::now();
        start(&sdk, &image_id, "S-3", input).await;
        let pid = appears(&marker).await;
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Too late: the timeout is recorded, and a rerun keeps it.
        sdk.send_event("S-3", "approved", &json!({"by": "late"}))
            .await
            .unwrap();
        kill_9(&pid);
        let output = outcome(&sdk, "S-3").await;
        assert_eq!(output["approved_by"], Value::Null, "{output}");
        let events = history(&sdk, "S-3").await;
        assert_eq!(count(&events, "waiting"), 1, "{events:?}");
    }

    /// A wait held past the sleep-exit threshold lets go of its process (or worker
    /// slot); the event's arrival runs the instance again.
    async fn a_long_wait_frees_its_slot_and_the_event_wakes_it(pool: bool) {
        let dir = tempfile::tempdir().unwrap();
        let extra = ["--sleep-exit-threshold-ms", "300"];
        let (server, sdk, image_id) = setup(dir.path(), &extra, pool).await;
        start(&sdk, &image_id, "S-4", json!({"order_id": "S-4"})).await;
        // Its run ends while it waits: a process exits, or a worker's run of it ends.
        let start_wait = Instant::now();
        loop {
            let info = sdk.get_instance_status("S-4").await.unwrap();
            if info.status == InstanceStatus::Waiting && server_runs_nothing(&sdk).await {
                break;
            }
            assert!(start_wait.elapsed() < Duration::from_secs(60), "{info:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ok(&ctl(
            &server,
            &["send", "S-4", "approved", "--data", r#"{"by": "cy"}"#],
        ));
        let output = outcome(&sdk, "S-4").await;
        assert_eq!(output["approved_by"], "cy", "{output}");
        let events = history(&sdk, "S-4").await;
        assert_eq!(
            count(&events, "launched"),
            2,
            "run again for the event: {events:?}"
        );
    }

    /// Whether no instance holds a slot of the server.
    async fn server_runs_nothing(sdk: &ManagementSdk) -> bool {
        sdk.health().await.unwrap().running_processes == 0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_wait_in_its_own_process_frees_it() {
        a_long_wait_frees_its_slot_and_the_event_wakes_it(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_wait_in_a_worker_frees_its_slot() {
        a_long_wait_frees_its_slot_and_the_event_wakes_it(true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_that_cannot_be_delivered_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (server, sdk, image_id) = setup(dir.path(), &[], false).await;
        let unknown = ctl(&server, &["send", "nobody", "approved"]);
        assert_eq!(unknown.status.code(), Some(1));
        let message = String::from_utf8_lossy(&unknown.stderr);
        assert!(message.contains("not found"), "{message}");
        let bad_json = ctl(&server, &["send", "nobody", "approved", "--data", "{nope"]);
        assert_eq!(
            bad_json.status.code(),
            Some(2),
            "usage error before connecting"
        );
        let too_big = json!({"blob": "x".repeat(runtara_protocol::MAX_EVENT_PAYLOAD_LEN)});
        let error = sdk
            .send_event("nobody", "approved", &too_big)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("at most"), "{error}");
        // A finished instance takes no event, and nothing is recorded for it.
        start(
            &sdk,
            &image_id,
            "S-5",
            json!({"order_id": "S-5", "timeout_ms": 0}),
        )
        .await;
        outcome(&sdk, "S-5").await;
        let finished = ctl(&server, &["send", "S-5", "approved"]);
        assert_eq!(finished.status.code(), Some(1));
        let message = String::from_utf8_lossy(&finished.stderr);
        assert!(message.contains("completed"), "{message}");
        assert_eq!(count(&history(&sdk, "S-5").await, "received"), 0);
        let missing = ctl(&server, &["value", "S-5", "nothing-here"]);
        assert_eq!(missing.status.code(), Some(1));
    }
}
