//! The in-process runtime: many instances in one process, each with its own SDK, a
//! concurrency limit, idempotent starts, panics that fail one instance only, signals,
//! and recovery of what an earlier process left unfinished (SQLite files).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtara_sdk::runtime::Runtime;
use runtara_sdk::{durable, InstanceStatus, Persistence, SdkError};

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Persistence> {
    let url = format!("sqlite://{}", dir.path().join("runtime.db").display());
    runtara_sdk::persistence::connect(&url).await.unwrap()
}

/// How often each step body ran, by `instance/step`.
static RUNS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

fn ran(key: &str) {
    *RUNS
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .entry(key.to_owned())
        .or_default() += 1;
}

fn runs(key: &str) -> usize {
    RUNS.lock()
        .unwrap()
        .as_ref()
        .and_then(|runs| runs.get(key).copied())
        .unwrap_or(0)
}

#[durable(max_retries = 0)]
async fn step(key: String, n: u64) -> Result<u64, SdkError> {
    ran(&key);
    Ok(n * 2)
}

/// Three steps; returns the instance id `sdk()` gave it and the sum.
async fn three_steps(n: u64) -> Result<(String, u64), SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    let mut sum = 0;
    for s in 0..3 {
        sum += step(format!("{id}/{s}"), n).await?;
        tokio::task::yield_now().await;
    }
    Ok((id, sum))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_has_its_own_sdk_and_result() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("own-sdk")
        .workflow("three", three_steps)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for n in 0..50u64 {
        handles.push(
            runtime
                .start("three", format!("own-{n}"), &n)
                .await
                .unwrap(),
        );
    }
    for (n, handle) in (0..50u64).zip(handles) {
        let (id, sum): (String, u64) = handle.result().await.unwrap();
        assert_eq!(
            id,
            format!("own-{n}"),
            "sdk() inside resolved to another instance"
        );
        assert_eq!(sum, n * 6);
        for s in 0..3 {
            assert_eq!(runs(&format!("own-{n}/{s}")), 1);
        }
    }
    let record = runtime
        .persistence()
        .get_instance("own-7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, InstanceStatus::Completed);
    assert_eq!(record.checkpoint_count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_a_taken_id_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("idempotent")
        .workflow("three", three_steps)
        .workflow("other", three_steps)
        .build()
        .await
        .unwrap();
    let first = runtime.start("three", "same", &5u64).await.unwrap();
    let second = runtime.start("three", "same", &5u64).await.unwrap();
    let (a, b) = (
        first.result::<(String, u64)>().await.unwrap(),
        second.result::<(String, u64)>().await.unwrap(),
    );
    assert_eq!(a, b);
    // Finished: the same start returns its output from the store.
    let third = runtime.start("three", "same", &5u64).await.unwrap();
    assert_eq!(third.status(), InstanceStatus::Completed);
    assert_eq!(third.result::<(String, u64)>().await.unwrap(), a);
    for s in 0..3 {
        assert_eq!(
            runs(&format!("same/{s}")),
            1,
            "a repeated start ran steps again"
        );
    }
    // Another workflow under the id is refused.
    let error = runtime.start("other", "same", &5u64).await.unwrap_err();
    assert!(matches!(error, SdkError::IdTaken { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "instance `same` already exists and runs workflow `three`; a start with its id starts nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_starts_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("bad-starts")
        .workflow("three", three_steps)
        .build()
        .await
        .unwrap();
    let error = runtime.start("nope", "bad-1", &1u64).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "no workflow `nope` is registered with this runtime (registered: `three`)"
    );
    let error = runtime.start("three", "bad-2", "text").await.unwrap_err();
    assert!(matches!(error, SdkError::StartInput { .. }), "{error:?}");
    assert!(std::error::Error::source(&error).is_some());
    for id in ["bad-1", "bad-2"] {
        assert!(runtime
            .persistence()
            .get_instance(id)
            .await
            .unwrap()
            .is_none());
    }
    // An id an embedded run holds is not a runtime's.
    let persistence = Arc::clone(runtime.persistence());
    runtara_sdk::RuntaraSdk::embedded(persistence, "plain", "default")
        .register(None)
        .await
        .unwrap();
    let error = runtime.start("three", "plain", &1u64).await.unwrap_err();
    assert!(
        error.to_string().contains("was not started by a runtime"),
        "{error}"
    );
}

async fn panics_on_three(n: u64) -> Result<u64, SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    let doubled = step(format!("{id}/0"), n).await?;
    if n == 3 {
        panic!("three is right out");
    }
    Ok(doubled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_fails_its_instance_only() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("panics")
        .workflow("p", panics_on_three)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for n in 0..6u64 {
        handles.push(runtime.start("p", format!("panic-{n}"), &n).await.unwrap());
    }
    for (n, handle) in (0..6u64).zip(handles) {
        let result = handle.result::<u64>().await;
        if n == 3 {
            let error = result.unwrap_err();
            assert_eq!(
                error.to_string(),
                "instance `panic-3` failed: workflow `p` panicked: three is right out"
            );
        } else {
            assert_eq!(result.unwrap(), n * 2);
        }
    }
    let failed = runtime
        .persistence()
        .get_instance("panic-3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, InstanceStatus::Failed);
    assert_eq!(
        failed.error.as_deref(),
        Some("workflow `p` panicked: three is right out")
    );
}

static IN_BODY: AtomicUsize = AtomicUsize::new(0);
static MOST_IN_BODY: AtomicUsize = AtomicUsize::new(0);

#[durable(max_retries = 0)]
async fn counted(key: String) -> Result<(), SdkError> {
    let now = IN_BODY.fetch_add(1, Ordering::SeqCst) + 1;
    MOST_IN_BODY.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    IN_BODY.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

async fn counted_steps(_: ()) -> Result<(), SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    for s in 0..3 {
        counted(format!("{id}/{s}")).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_running_run_at_once_and_the_rest_wait_pending() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("capacity")
        .max_running(3)
        .workflow("counted", counted_steps)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for n in 0..20 {
        handles.push(
            runtime
                .start("counted", format!("cap-{n}"), &())
                .await
                .unwrap(),
        );
    }
    // The last ones were stored as waiting for a slot.
    let last = runtime
        .persistence()
        .get_instance("cap-19")
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            last.status,
            InstanceStatus::Pending | InstanceStatus::Running | InstanceStatus::Completed
        ),
        "{:?}",
        last.status
    );
    let waiting = handles
        .iter()
        .filter(|h| h.status() == InstanceStatus::Pending)
        .count();
    assert!(waiting >= 10, "only {waiting} of 20 waited for a slot of 3");
    for handle in handles {
        handle.result::<()>().await.unwrap();
    }
    assert!(
        MOST_IN_BODY.load(Ordering::SeqCst) <= 3,
        "more than 3 ran at once"
    );
    assert_eq!(runtime.running(), 0);
}

async fn sleeps_an_hour(_: ()) -> Result<(), SdkError> {
    let sdk = runtara_sdk::sdk()?;
    step(format!("{}/0", sdk.instance_id()), 1).await?;
    sdk.sleep(Duration::from_secs(3600), "nap", b"").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_instance_frees_its_slot_and_takes_a_cancel_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("sleepers")
        .max_running(1)
        .workflow("sleepy", sleeps_an_hour)
        .workflow("three", three_steps)
        .build()
        .await
        .unwrap();
    let sleeper = runtime.start("sleepy", "sleeper", &()).await.unwrap();
    // With the only slot's holder asleep, another instance runs to its end.
    let other = runtime
        .start("three", "beside-the-sleeper", &2u64)
        .await
        .unwrap();
    assert_eq!(other.result::<(String, u64)>().await.unwrap().1, 12);
    assert_eq!(sleeper.status(), InstanceStatus::Running);
    runtime.cancel("sleeper").await.unwrap();
    let error = sleeper.output().await.unwrap_err();
    assert!(
        matches!(error, SdkError::InstanceCancelled { .. }),
        "{error:?}"
    );
    let record = runtime
        .persistence()
        .get_instance("sleeper")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, InstanceStatus::Cancelled);
}

static GATE: tokio::sync::Notify = tokio::sync::Notify::const_new();

async fn waits_at_the_gate(_: ()) -> Result<u64, SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    let a = step(format!("{id}/a"), 1).await?;
    if runs(&format!("{id}/b")) == 0 {
        GATE.notified().await;
    }
    let b = step(format!("{id}/b"), 2).await?;
    Ok(a + b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_suspends_and_a_resume_runs_it_on_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::builder(store(&dir).await)
        .name("pauses")
        .workflow("gate", waits_at_the_gate)
        .build()
        .await
        .unwrap();
    let handle = runtime.start("gate", "paused", &()).await.unwrap();
    while runs("paused/a") == 0 {
        tokio::task::yield_now().await;
    }
    runtime.pause("paused").await.unwrap();
    GATE.notify_one();
    while handle.status() != InstanceStatus::Suspended {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let record = runtime
        .persistence()
        .get_instance("paused")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, InstanceStatus::Suspended);
    assert_eq!(runtime.running(), 0, "a paused instance kept its slot");
    runtime.resume("paused").await.unwrap();
    assert_eq!(handle.result::<u64>().await.unwrap(), 6);
    assert_eq!(runs("paused/a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_resumes_what_an_earlier_process_left_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = store(&dir).await;
    // What a process that died left: one instance with a step recorded, one still waiting
    // for a slot, one finished, and one of another runtime.
    for (id, run_now) in [("left-1", true), ("left-2", false), ("left-done", true)] {
        persistence
            .start_runtime_instance(runtara_sdk::persistence::NewRuntimeInstance {
                instance_id: id.into(),
                tenant_id: "default".into(),
                runtime: "recovers".into(),
                workflow: "three".into(),
                input: b"10".to_vec(),
                run_now,
                parent_id: None,
                detached: false,
            })
            .await
            .unwrap();
    }
    persistence
        .save_step("left-1", 1, "step::left-1/0", b"20", "runtime::step")
        .await
        .unwrap();
    persistence
        .complete_instance("left-done", 1, b"[]")
        .await
        .unwrap();

    let runtime = Runtime::builder(Arc::clone(&persistence))
        .name("recovers")
        .workflow("three", three_steps)
        .build()
        .await
        .unwrap();
    for id in ["left-1", "left-2"] {
        let handle = runtime
            .handle(id)
            .await
            .unwrap()
            .expect("a left instance was not taken up");
        let (ran_as, sum): (String, u64) = handle.result().await.unwrap();
        assert_eq!((ran_as.as_str(), sum), (id, 60));
    }
    assert_eq!(runs("left-1/0"), 0, "a recorded step ran again");
    assert_eq!(runs("left-1/1"), 1);
    assert_eq!(runs("left-2/0"), 1);
    // A finished one's handle comes from the store.
    let done = runtime.handle("left-done").await.unwrap().unwrap();
    assert_eq!(done.status(), InstanceStatus::Completed);
    assert_eq!(done.output().await.unwrap(), b"[]");
    assert!(runtime.handle("nobody").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_at_a_time_runs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = store(&dir).await;
    let _first = Runtime::builder(Arc::clone(&persistence))
        .name("single")
        .build()
        .await
        .unwrap();
    let error = Runtime::builder(Arc::clone(&persistence))
        .name("single")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::RuntimeInUse { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("runtime `single` of tenant `default` is already running (process "),
        "{error}"
    );
    // Another name is another runtime.
    Runtime::builder(persistence)
        .name("single-2")
        .build()
        .await
        .unwrap();
}
