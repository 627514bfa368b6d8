//! Workflows that talk, in one process: events sent through the runtime reach a waiting
//! instance at once; a parent starts children as tasks of the same runtime, waits for
//! them, and takes them along when it is cancelled (SQLite files).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use runtara_sdk::runtime::Runtime;
use runtara_sdk::{ChildOptions, InstanceStatus, Persistence, SdkError};

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Persistence> {
    let url = format!("sqlite://{}", dir.path().join("talk.db").display());
    runtara_sdk::persistence::connect(&url).await.unwrap()
}

/// Waits for `approved` (a string), with a timeout in ms when given.
async fn approval(timeout_ms: Option<u64>) -> Result<Option<String>, SdkError> {
    let sdk = runtara_sdk::sdk()?;
    sdk.set_value("stage", "waiting").await?;
    let timeout = timeout_ms.map(Duration::from_millis);
    sdk.wait_for_event::<String>("approved", timeout).await
}

/// `n` squared, after a durable sleep of `sleep_ms`.
async fn square((n, sleep_ms): (u64, u64)) -> Result<u64, SdkError> {
    if sleep_ms > 0 {
        runtara_sdk::sdk()?
            .sleep(Duration::from_millis(sleep_ms), "nap", b"")
            .await?;
    }
    Ok(n * n)
}

/// Starts `count` children (`square`), each sleeping `sleep_ms`, and sums their outputs.
async fn fan_out((count, sleep_ms): (u64, u64)) -> Result<u64, SdkError> {
    let sdk = runtara_sdk::sdk()?;
    let mut children = Vec::new();
    for n in 0..count {
        let key = format!("n{n}");
        children.push(sdk.start_child("square", &(n, sleep_ms), &key).await?);
    }
    let mut sum = 0;
    for child in &children {
        sum += sdk.wait_for_child::<u64>(child).await?;
    }
    Ok(sum)
}

/// Starts a plain child and a detached one (`square`, each sleeping an hour), and
/// waits for both.
async fn with_detached(_: ()) -> Result<u64, SdkError> {
    let sdk = runtara_sdk::sdk()?;
    let plain = sdk
        .start_child("square", &(2u64, 3_600_000u64), "plain")
        .await?;
    let detached = ChildOptions::new().with_detached(true);
    let kept = sdk
        .start_child_with("square", &(3u64, 3_600_000u64), "kept", detached)
        .await?;
    Ok(sdk.wait_for_child::<u64>(&plain).await? + sdk.wait_for_child::<u64>(&kept).await?)
}

async fn runtime(store: Arc<dyn Persistence>, name: &str) -> Runtime {
    Runtime::builder(store)
        .name(name)
        .max_running(8)
        .workflow("approval", approval)
        .workflow("square", square)
        .workflow("fan-out", fan_out)
        .workflow("with-detached", with_detached)
        .build()
        .await
        .unwrap()
}

async fn status_becomes(store: &Arc<dyn Persistence>, id: &str, status: InstanceStatus) {
    for _ in 0..3000 {
        if store.get_instance(id).await.unwrap().map(|i| i.status) == Some(status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_through_the_runtime_reaches_the_waiting_instance() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let runtime = runtime(store.clone(), "events").await;
    let handle = runtime
        .start("approval", "a-1", &None::<u64>)
        .await
        .unwrap();
    status_becomes(&store, "a-1", InstanceStatus::Waiting).await;
    assert_eq!(
        runtime.running(),
        0,
        "a waiting instance gives its slot back"
    );
    let stage = runtime.get_value("a-1", "stage").await.unwrap();
    assert_eq!(stage, Some(serde_json::json!("waiting")));
    assert!(runtime
        .send_event_once("a-1", "approved", "ana", "k1")
        .await
        .unwrap());
    assert!(!runtime
        .send_event_once("a-1", "approved", "bo", "k1")
        .await
        .unwrap());
    let got: Option<String> = handle.result().await.unwrap();
    assert_eq!(got.as_deref(), Some("ana"));
    // A timed-out wait, and an event for a finished instance.
    let timed = runtime
        .start("approval", "a-2", &Some(50u64))
        .await
        .unwrap();
    let got: Option<String> = timed.result().await.unwrap();
    assert_eq!(got, None);
    let refused = runtime.send_event("a-2", "approved", "late").await;
    assert!(
        matches!(refused, Err(SdkError::Persistence(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_sums_its_children_each_started_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let runtime = runtime(store.clone(), "fan").await;
    let handle = runtime
        .start("fan-out", "p-1", &(20u64, 0u64))
        .await
        .unwrap();
    let sum: u64 = handle.result().await.unwrap();
    assert_eq!(sum, (0..20u64).map(|n| n * n).sum::<u64>());
    for n in 0..20 {
        let child = format!("p-1:n{n}");
        let record = store.get_instance(&child).await.unwrap().unwrap();
        assert_eq!(record.status, InstanceStatus::Completed, "{child}");
        let created = store
            .count_events(&child, &runtara_sdk::persistence::EventKind::Created)
            .await
            .unwrap();
        assert_eq!(created, 1, "{child} started once");
    }
    // Starting the parent again starts nothing (it is finished), and no child either.
    let again = runtime
        .start("fan-out", "p-1", &(20u64, 0u64))
        .await
        .unwrap();
    assert_eq!(again.result::<u64>().await.unwrap(), sum);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let runtime = runtime(store.clone(), "cascade").await;
    let handle = runtime
        .start("fan-out", "p-2", &(5u64, 3_600_000u64))
        .await
        .unwrap();
    for n in 0..5 {
        let child = format!("p-2:n{n}");
        status_becomes(&store, &child, InstanceStatus::Running).await;
    }
    status_becomes(&store, "p-2", InstanceStatus::Waiting).await;
    runtime.cancel("p-2").await.unwrap();
    for n in 0..5 {
        let child = format!("p-2:n{n}");
        status_becomes(&store, &child, InstanceStatus::Cancelled).await;
    }
    let ended = handle.result::<u64>().await;
    assert!(
        matches!(ended, Err(SdkError::InstanceCancelled { .. })),
        "{ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_child_outlives_its_cancelled_parent() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let runtime = runtime(store.clone(), "detached").await;
    let handle = runtime.start("with-detached", "p-3", &()).await.unwrap();
    status_becomes(&store, "p-3:plain", InstanceStatus::Running).await;
    status_becomes(&store, "p-3:kept", InstanceStatus::Running).await;
    status_becomes(&store, "p-3", InstanceStatus::Waiting).await;
    runtime.cancel("p-3").await.unwrap();
    status_becomes(&store, "p-3:plain", InstanceStatus::Cancelled).await;
    let ended = handle.result::<u64>().await;
    assert!(
        matches!(ended, Err(SdkError::InstanceCancelled { .. })),
        "{ended:?}"
    );
    // The cancel took the plain child and not the detached one: no cancel is queued
    // for it, and it runs on.
    let kept = store.get_instance("p-3:kept").await.unwrap().unwrap();
    assert_eq!(kept.status, InstanceStatus::Running);
    assert!(store.pending_signal("p-3:kept").await.unwrap().is_none());
    runtime.cancel("p-3:kept").await.unwrap();
    status_becomes(&store, "p-3:kept", InstanceStatus::Cancelled).await;
}
