//! How `#[durable]` behaves, embedded and over QUIC, on a real SQLite file and on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_sdk::{durable, InstanceStatus, Retryable, SdkError, SignalType};
use serde::{Deserialize, Serialize};
use support::{unique, Fixture};

on_every_backend!(
    hit_does_not_run_the_body,
    miss_runs_the_body_once_and_records_it,
    retries_wait_with_backoff_and_are_recorded,
    attempt_count_survives_a_restart,
    non_retryable_error_is_not_retried,
    stale_value_is_an_error_naming_key_and_type,
    failed_record_is_an_error_not_a_silent_success,
    cancel_is_reported_at_the_record_step,
    pause_is_reported_after_the_value_is_recorded,
    concurrent_calls_are_each_recorded_exactly_once,
    another_functions_result_is_an_error_naming_both,
    a_result_recorded_elsewhere_by_another_function_is_an_error,
    a_result_recorded_without_a_producer_is_taken,
    two_calls_with_one_key_run_the_body_once,
    a_final_failure_is_recorded_and_a_rerun_returns_it,
    a_non_retryable_error_is_recorded_at_once,
    the_retry_budget_and_delay_span_a_restart,
    a_cancel_queued_before_a_sleep_wins_over_it,
    a_pause_queued_before_a_sleep_suspends_and_keeps_the_wake_time,
    a_step_without_retries_records_its_final_failure,
    a_call_waiting_on_its_key_gets_the_recorded_failure,
    a_run_stopped_after_two_attempts_leaves_the_rest_of_the_budget,
);

#[durable]
async fn counted(key: String, calls: &AtomicUsize) -> Result<u64, SdkError> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(40 + key.len() as u64)
}

async fn hit_does_not_run_the_body(fx: Fixture) {
    let instance = unique("hit");
    let calls = AtomicUsize::new(0);
    let first = fx.run(&instance).await;
    let value = first.scope(counted("ab".into(), &calls)).await.unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 1));

    // Same run, same key: replayed from memory.
    let again = fx.run(&instance).await;
    let value = again
        .clone()
        .scope(counted("ab".into(), &calls))
        .await
        .unwrap();
    assert_eq!(
        (value, calls.load(Ordering::SeqCst)),
        (42, 1),
        "body ran on a hit"
    );
    let value = again.scope(counted("ab".into(), &calls)).await.unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 1));
}

async fn miss_runs_the_body_once_and_records_it(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("miss");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    assert_eq!(
        store
            .get_checkpoint(&instance, "counted::abc")
            .await
            .unwrap(),
        None
    );
    let value = sdk.scope(counted("abc".into(), &calls)).await.unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (43, 1));
    let stored = store
        .get_checkpoint(&instance, "counted::abc")
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(&b"43"[..]),
        "checkpoint id is `{{fn_name}}::{{key}}`"
    );
}

#[derive(Debug)]
enum FlakyError {
    Transient(u32),
    Permanent,
    Sdk(SdkError),
}

impl std::fmt::Display for FlakyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlakyError::Transient(n) => write!(f, "transient failure #{n}"),
            FlakyError::Permanent => f.write_str("permanent failure"),
            FlakyError::Sdk(e) => write!(f, "sdk: {e}"),
        }
    }
}

impl From<SdkError> for FlakyError {
    fn from(error: SdkError) -> Self {
        FlakyError::Sdk(error)
    }
}

impl Retryable for FlakyError {
    fn is_retryable(&self) -> bool {
        !matches!(self, FlakyError::Permanent | FlakyError::Sdk(_))
    }
}

/// Fails `failures` times, then succeeds.
#[durable(max_retries = 3, strategy = ExponentialBackoff, delay = 40)]
async fn flaky(key: String, calls: &AtomicUsize, failures: usize) -> Result<String, FlakyError> {
    let call = calls.fetch_add(1, Ordering::SeqCst);
    if call < failures {
        return Err(FlakyError::Transient(call as u32 + 1));
    }
    Ok(format!("{key} done"))
}

async fn retries_wait_with_backoff_and_are_recorded(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("retry");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    let started = Instant::now();
    let value = sdk.scope(flaky("k".into(), &calls, 2)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(value, "k done");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );

    let attempts = store.list_retry_attempts(&instance).await.unwrap();
    let numbers: Vec<u32> = attempts.iter().map(|a| a.attempt).collect();
    assert_eq!(numbers, [1, 2]);
    assert!(attempts.iter().all(|a| a.checkpoint_id == "flaky::k"));
    assert_eq!(attempts[0].error.as_deref(), Some("transient failure #1"));
    assert_eq!(attempts[1].error.as_deref(), Some("transient failure #2"));
    // Retry 1 waits 40 ms, retry 2 waits 80 ms (exponential backoff): lower bounds only.
    assert!(attempts[1].created_at_ms - attempts[0].created_at_ms >= 40);
    assert!(
        elapsed >= Duration::from_millis(120),
        "waited only {elapsed:?}"
    );
}

#[durable(max_retries = 2, delay = 1)]
async fn always_fails(
    key: String,
    calls: &AtomicUsize,
    crash_on_call: usize,
) -> Result<u8, FlakyError> {
    let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
    if call == crash_on_call {
        panic!("simulated crash in {key}");
    }
    Err(FlakyError::Transient(call as u32))
}

async fn attempt_count_survives_a_restart(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("restart-retry");
    // First run: fails, retry 1 fails, retry 2 crashes the task (panic) mid-attempt.
    let calls = Arc::new(AtomicUsize::new(0));
    let first = fx.run(&instance).await;
    let task_calls = calls.clone();
    let crashed =
        tokio::spawn(first.scope(async move { always_fails("k".into(), &task_calls, 3).await }))
            .await;
    assert!(crashed.is_err(), "the first run must crash");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(store.list_retry_attempts(&instance).await.unwrap().len(), 2);

    // Restart: both retries are used up, so the body runs once more and the error is final.
    let calls = AtomicUsize::new(0);
    let second = fx.run(&instance).await;
    let result = second.scope(always_fails("k".into(), &calls, 0)).await;
    assert!(
        matches!(result, Err(FlakyError::Transient(1))),
        "{result:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "retries restarted from zero after a restart"
    );
    assert_eq!(store.list_retry_attempts(&instance).await.unwrap().len(), 2);
}

#[durable(max_retries = 5, delay = 1)]
async fn rejects(key: String, calls: &AtomicUsize) -> Result<u8, FlakyError> {
    calls.fetch_add(1, Ordering::SeqCst);
    let _ = key;
    Err(FlakyError::Permanent)
}

async fn non_retryable_error_is_not_retried(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("permanent");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    let result = sdk.scope(rejects("k".into(), &calls)).await;
    assert!(matches!(result, Err(FlakyError::Permanent)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(store
        .list_retry_attempts(&instance)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.get_checkpoint(&instance, "rejects::k").await.unwrap(),
        None
    );
}

mod v1 {
    use super::*;
    #[durable]
    pub async fn price(key: String) -> Result<u64, SdkError> {
        let _ = key;
        Ok(1999)
    }
}

mod v2 {
    use super::*;
    #[derive(Debug, Serialize, Deserialize)]
    pub struct Money {
        pub cents: u64,
        pub currency: String,
    }
    /// The same function in a new version of the program (the two live in one test
    /// crate, so the new one names the old one's identity).
    #[durable(name = "durable_behaviour::v1::price")]
    pub async fn price(key: String, calls: &AtomicUsize) -> Result<Money, SdkError> {
        calls.fetch_add(1, Ordering::SeqCst);
        let _ = key;
        Ok(Money {
            cents: 1999,
            currency: "EUR".into(),
        })
    }
}

async fn stale_value_is_an_error_naming_key_and_type(fx: Fixture) {
    let instance = unique("stale");
    let old = fx.run(&instance).await;
    assert_eq!(old.scope(v1::price("sku-1".into())).await.unwrap(), 1999);

    // A new version of the program changed the return type.
    let calls = AtomicUsize::new(0);
    let new = fx.run(&instance).await;
    let error = new
        .scope(v2::price("sku-1".into(), &calls))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SdkError::Decode { .. }), "{error:?}");
    assert!(message.contains("price::sku-1"), "{message}");
    assert!(message.contains("Money"), "{message}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "never a silent re-run");
}

async fn failed_record_is_an_error_not_a_silent_success(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("fenced");
    let calls = AtomicUsize::new(0);
    let stale = fx.run(&instance).await;
    // Another run takes the instance over: the stale run's record must fail.
    let _newer = fx.run(&instance).await;
    let result = stale.scope(counted("x".into(), &calls)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the body ran");
    let error = result.unwrap_err();
    assert!(
        matches!(
            error,
            SdkError::Persistence(runtara_core::Error::Fenced { .. })
        ),
        "{error:?}"
    );
    assert_eq!(
        store.get_checkpoint(&instance, "counted::x").await.unwrap(),
        None
    );
}

async fn cancel_is_reported_at_the_record_step(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("cancel");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    store
        .send_signal(&instance, SignalType::Cancel)
        .await
        .unwrap();
    let result = sdk.clone().scope(counted("c".into(), &calls)).await;
    assert!(matches!(result, Err(SdkError::Cancelled)), "{result:?}");
    let status = sdk.get_status().await.unwrap().status;
    assert_eq!(status, InstanceStatus::Cancelled);
    // Terminal: a new run is refused.
    let restart = fx.sdk(&instance);
    assert!(restart.register(None).await.is_err());
}

async fn pause_is_reported_after_the_value_is_recorded(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("pause");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    store
        .send_signal(&instance, SignalType::Pause)
        .await
        .unwrap();
    let result = sdk.clone().scope(counted("p".into(), &calls)).await;
    assert!(matches!(result, Err(SdkError::Paused)), "{result:?}");
    assert_eq!(
        sdk.get_status().await.unwrap().status,
        InstanceStatus::Suspended
    );
    assert_eq!(
        store
            .get_checkpoint(&instance, "counted::p")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"41"[..])
    );
    // Resume: a new run replays the recorded value without running the body.
    let resumed = fx.run(&instance).await;
    assert_eq!(
        resumed
            .clone()
            .scope(counted("p".into(), &calls))
            .await
            .unwrap(),
        41
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        resumed.get_status().await.unwrap().status,
        InstanceStatus::Running
    );
}

async fn concurrent_calls_are_each_recorded_exactly_once(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("concurrent");
    let calls = Arc::new(AtomicUsize::new(0));
    let sdk = fx.run(&instance).await;
    let run_all = |sdk: runtara_sdk::RuntaraSdk, calls: Arc<AtomicUsize>| async move {
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let calls = calls.clone();
                tokio::spawn(
                    sdk.clone()
                        .scope(async move { counted(format!("task-{i}"), &calls).await }),
                )
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    };
    run_all(sdk, calls.clone()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 200);
    let checkpoints = store.list_checkpoints(&instance).await.unwrap();
    let mut ids: Vec<_> = checkpoints
        .iter()
        .map(|c| c.checkpoint_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!((checkpoints.len(), ids.len()), (200, 200));

    // After a restart all 200 are replayed; no body runs again.
    run_all(fx.run(&instance).await, calls.clone()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 200);
}

// ---- which function produced a result (issue 14.5) ----

mod shapes_v1 {
    use super::*;

    #[durable(max_retries = 0)]
    pub async fn shape(key: String, calls: &AtomicUsize) -> Result<u64, SdkError> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(42 + key.len() as u64 - 1)
    }
}

mod shapes_v3 {
    use super::*;

    /// Another function of the same name in another module, with another return type.
    #[durable(max_retries = 0)]
    pub async fn shape(key: String, calls: &AtomicUsize) -> Result<Option<u8>, SdkError> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Some(key.len() as u8))
    }
}

mod shapes_moved {
    use super::*;

    /// `shapes_v1::shape` after a move and a rename: `name` keeps its identity.
    #[durable(name = "durable_behaviour::shapes_v1::shape", max_retries = 0)]
    pub async fn form(key: String, calls: &AtomicUsize) -> Result<u64, SdkError> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(0)
    }
}

async fn another_functions_result_is_an_error_naming_both(fx: Fixture) {
    let instance = unique("producer");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    let value = sdk
        .clone()
        .scope(shapes_v1::shape("k".into(), &calls))
        .await
        .unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 1));

    // Same run (replay cache), then a new run (replay log from storage).
    for run in [sdk, fx.run(&instance).await] {
        let error = run
            .clone()
            .scope(shapes_v3::shape("k".into(), &calls))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, SdkError::WrongProducer { .. }), "{error:?}");
        assert!(
            message.contains("durable_behaviour::shapes_v1::shape")
                && message.contains("durable_behaviour::shapes_v3::shape"),
            "the error names both functions: {message}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the other body ran");

        // A renamed and moved function that names the old identity takes the result.
        let value = run
            .scope(shapes_moved::form("k".into(), &calls))
            .await
            .unwrap();
        assert_eq!((value, calls.load(Ordering::SeqCst)), (42, 1));
    }
    let recorded = fx.store.list_checkpoints(&instance).await.unwrap();
    assert_eq!(
        recorded[0].producer.as_deref(),
        Some("durable_behaviour::shapes_v1::shape")
    );
}

async fn a_result_recorded_elsewhere_by_another_function_is_an_error(fx: Fixture) {
    // Recorded behind this run's cache (as by an earlier run it never replayed): the
    // save finds it, with its producer.
    let instance = unique("producer-save");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    let epoch = fx
        .store
        .get_instance(&instance)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    fx.store
        .save_step(&instance, epoch, "shape::k", b"42", "elsewhere::shape")
        .await
        .unwrap();
    let error = sdk
        .scope(shapes_v3::shape("k".into(), &calls))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SdkError::WrongProducer { .. }), "{error:?}");
    assert!(message.contains("elsewhere::shape"), "{message}");
}

async fn a_result_recorded_without_a_producer_is_taken(fx: Fixture) {
    // Recorded by `RuntaraSdk::checkpoint` (or by a version before producers).
    let instance = unique("producer-legacy");
    let calls = AtomicUsize::new(0);
    let sdk = fx.run(&instance).await;
    sdk.checkpoint("shape::k", b"7").await.unwrap();
    let again = fx.run(&instance).await;
    let value = again
        .scope(shapes_v3::shape("k".into(), &calls))
        .await
        .unwrap();
    assert_eq!((value, calls.load(Ordering::SeqCst)), (Some(7), 0));
}

// ---- one call per key at a time within a process (issue 14.6) ----

#[durable(max_retries = 0)]
async fn joined(key: String, calls: &AtomicUsize) -> Result<u64, SdkError> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    // Let the other call of the join run while this body is in progress.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    Ok(100 + n as u64)
}

#[durable]
async fn joined_with_retries(key: String, calls: &AtomicUsize) -> Result<u64, SdkError> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    Ok(200 + n as u64)
}

/// Both bodies must be running at once to pass the barrier.
#[durable(max_retries = 0)]
async fn meets(key: String, barrier: &tokio::sync::Barrier) -> Result<u8, SdkError> {
    barrier.wait().await;
    Ok(1)
}

async fn two_calls_with_one_key_run_the_body_once(fx: Fixture) {
    let instance = unique("join");
    let sdk = fx.run(&instance).await;
    let calls = AtomicUsize::new(0);
    let (a, b) = sdk
        .clone()
        .scope(async { tokio::join!(joined("k".into(), &calls), joined("k".into(), &calls)) })
        .await;
    assert_eq!(
        (a.unwrap(), b.unwrap(), calls.load(Ordering::SeqCst)),
        (100, 100, 1)
    );
    let retrying = AtomicUsize::new(0);
    let (a, b) = sdk
        .clone()
        .scope(async {
            tokio::join!(
                joined_with_retries("k".into(), &retrying),
                joined_with_retries("k".into(), &retrying)
            )
        })
        .await;
    assert_eq!(
        (a.unwrap(), b.unwrap(), retrying.load(Ordering::SeqCst)),
        (200, 200, 1)
    );

    // Different keys still run at the same time: each body waits for the other.
    let barrier = tokio::sync::Barrier::new(2);
    let both =
        sdk.scope(async { tokio::join!(meets("x".into(), &barrier), meets("y".into(), &barrier)) });
    let (x, y) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("calls with different keys waited for each other");
    assert_eq!((x.unwrap(), y.unwrap()), (1, 1));
}

// ---- a step's final failure is recorded; the retry budget spans restarts (issue 14.3) ----

async fn a_final_failure_is_recorded_and_a_rerun_returns_it(fx: Fixture) {
    let instance = unique("failed-for-good");
    let calls = AtomicUsize::new(0);
    let first = fx.run(&instance).await;
    let result = first.scope(always_fails("k".into(), &calls, 0)).await;
    assert!(
        matches!(result, Err(FlakyError::Transient(3))),
        "{result:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "1 attempt + 2 retries");
    let log = fx.store.load_replay(&instance).await.unwrap();
    assert_eq!(
        log.failures,
        [(
            "always_fails::k".to_owned(),
            "transient failure #3".to_owned()
        )]
    );

    // Every later run returns the recorded failure and never runs the body again.
    for _ in 0..2 {
        let again = fx.run(&instance).await;
        let result = again.scope(always_fails("k".into(), &calls, 0)).await;
        match result {
            Err(FlakyError::Sdk(SdkError::StepFailed {
                checkpoint_id,
                message,
            })) => {
                assert_eq!(checkpoint_id, "always_fails::k");
                assert_eq!(message, "transient failure #3");
            }
            other => panic!("expected the recorded failure, got {other:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "the body ran again");
    }
}

async fn a_non_retryable_error_is_recorded_at_once(fx: Fixture) {
    let instance = unique("declined");
    let calls = AtomicUsize::new(0);
    let first = fx.run(&instance).await;
    let result = first.scope(rejects("k".into(), &calls)).await;
    assert!(matches!(result, Err(FlakyError::Permanent)), "{result:?}");
    let again = fx.run(&instance).await;
    let error = again.scope(rejects("k".into(), &calls)).await.unwrap_err();
    assert!(
        error.to_string().contains("permanent failure"),
        "the original message is carried: {error}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a declined payment ran again"
    );
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Always fails; notes when each attempt started.
#[durable(max_retries = 2, strategy = FixedDelay, delay = 400)]
async fn slow_retries(key: String, started: &std::sync::Mutex<Vec<i64>>) -> Result<u8, FlakyError> {
    let mut started = started.lock().unwrap();
    started.push(now_ms());
    Err(FlakyError::Transient(started.len() as u32))
}

async fn the_retry_budget_and_delay_span_a_restart(fx: Fixture) {
    let instance = unique("delay-restart");
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = fx.run(&instance).await;
    let task_started = started.clone();
    let task =
        tokio::spawn(first.scope(async move { slow_retries("k".into(), &task_started).await }));
    // The process "dies" during retry 1's delay: once the retry is recorded.
    let recorded_at = loop {
        let attempts = fx.store.list_retry_attempts(&instance).await.unwrap();
        if let Some(retry) = attempts.first() {
            break retry.created_at_ms;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    task.abort();
    let _ = task.await;
    assert_eq!(started.lock().unwrap().len(), 1);

    let again = fx.run(&instance).await;
    let result = again.scope(slow_retries("k".into(), &started)).await;
    assert!(
        matches!(result, Err(FlakyError::Transient(3))),
        "{result:?}"
    );
    let started = started.lock().unwrap().clone();
    assert_eq!(
        started.len(),
        3,
        "1 + max_retries attempts across both runs"
    );
    assert!(
        started[1] >= recorded_at + 400,
        "attempt 2 began {} ms after retry 1 was recorded; its delay is 400 ms",
        started[1] - recorded_at
    );
}

// ---- a queued cancel or pause wins over a durable sleep (issue 15.2) ----

async fn a_cancel_queued_before_a_sleep_wins_over_it(fx: Fixture) {
    let instance = unique("sleep-cancel");
    let sdk = fx.run(&instance).await;
    fx.store
        .send_signal(&instance, SignalType::Cancel)
        .await
        .unwrap();
    // Without the signal this would sleep a minute and return Ok.
    let error = sdk
        .sleep(Duration::from_secs(60), "nap", b"")
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::Cancelled), "{error:?}");
    let record = fx.store.get_instance(&instance).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Cancelled);
}

async fn a_pause_queued_before_a_sleep_suspends_and_keeps_the_wake_time(fx: Fixture) {
    let instance = unique("sleep-pause");
    let sdk = fx.run(&instance).await;
    fx.store
        .send_signal(&instance, SignalType::Pause)
        .await
        .unwrap();
    let error = sdk
        .sleep(Duration::from_millis(1500), "nap", b"")
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::Paused), "{error:?}");
    let record = fx.store.get_instance(&instance).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Suspended);
    let wake_at = record
        .wake_at_ms
        .expect("the sleep's wake time is recorded");

    // Resumed: the run sleeps only what is left, to the same wake time.
    fx.store
        .send_signal(&instance, SignalType::Resume)
        .await
        .unwrap();
    let again = fx.run(&instance).await;
    again
        .sleep(Duration::from_secs(60), "nap", b"")
        .await
        .unwrap();
    assert!(now_ms() >= wake_at, "woke before the recorded wake time");
    let record = fx.store.get_instance(&instance).await.unwrap().unwrap();
    assert_eq!(record.wake_at_ms, Some(wake_at), "the wake time was kept");
}

/// No retries: every error is final, retryable or not.
#[durable(max_retries = 0)]
async fn fails_once(key: String, calls: &AtomicUsize) -> Result<u8, FlakyError> {
    let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
    // Let a concurrent call of the same key run while this body is in progress.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let _ = key;
    Err(FlakyError::Transient(call as u32))
}

/// The recorded failure a later call must return: `StepFailed` with the original message.
fn assert_recorded_failure(result: Result<u8, FlakyError>, checkpoint: &str, original: &str) {
    match result {
        Err(FlakyError::Sdk(SdkError::StepFailed {
            checkpoint_id,
            message,
        })) => assert_eq!(
            (checkpoint_id.as_str(), message.as_str()),
            (checkpoint, original)
        ),
        other => panic!("expected the recorded failure of {checkpoint}, got {other:?}"),
    }
}

async fn a_step_without_retries_records_its_final_failure(fx: Fixture) {
    let instance = unique("once-failed");
    let calls = AtomicUsize::new(0);
    let first = fx.run(&instance).await;
    let result = first.scope(fails_once("k".into(), &calls)).await;
    assert!(
        matches!(result, Err(FlakyError::Transient(1))),
        "{result:?}"
    );
    let log = fx.store.load_replay(&instance).await.unwrap();
    assert_eq!(
        log.failures,
        [(
            "fails_once::k".to_owned(),
            "transient failure #1".to_owned()
        )]
    );

    let again = fx.run(&instance).await;
    let result = again.scope(fails_once("k".into(), &calls)).await;
    assert_recorded_failure(result, "fails_once::k", "transient failure #1");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the body ran again");
}

async fn a_call_waiting_on_its_key_gets_the_recorded_failure(fx: Fixture) {
    let instance = unique("join-failed");
    let sdk = fx.run(&instance).await;
    let calls = AtomicUsize::new(0);
    let (a, b) = sdk
        .scope(async {
            tokio::join!(
                fails_once("k".into(), &calls),
                fails_once("k".into(), &calls)
            )
        })
        .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "both calls ran the body");
    // One call ran the body and got its error; the other got the recorded failure.
    let (ran, waited) = if matches!(a, Err(FlakyError::Transient(_))) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(matches!(ran, Err(FlakyError::Transient(1))), "{ran:?}");
    assert_recorded_failure(waited, "fails_once::k", "transient failure #1");
}

/// Always fails; notes when each attempt started. Three retries, 600 ms apart.
#[durable(max_retries = 3, strategy = FixedDelay, delay = 600)]
async fn four_tries(key: String, started: &std::sync::Mutex<Vec<i64>>) -> Result<u8, FlakyError> {
    let mut started = started.lock().unwrap();
    started.push(now_ms());
    let _ = key;
    Err(FlakyError::Transient(started.len() as u32))
}

async fn a_run_stopped_after_two_attempts_leaves_the_rest_of_the_budget(fx: Fixture) {
    let instance = unique("budget-restart");
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let first = fx.run(&instance).await;
    let task_started = started.clone();
    let task =
        tokio::spawn(first.scope(async move { four_tries("k".into(), &task_started).await }));
    // The run stops during retry 2's delay: once retry 2 (after attempt 2) is recorded.
    let recorded_at = loop {
        let attempts = fx.store.list_retry_attempts(&instance).await.unwrap();
        if let Some(retry) = attempts.iter().find(|retry| retry.attempt == 2) {
            break retry.created_at_ms;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    task.abort();
    let _ = task.await;
    assert_eq!(
        started.lock().unwrap().len(),
        2,
        "the first run made 2 attempts"
    );

    // The rerun makes the 2 attempts left (1 + max_retries = 4 in all), the first of them
    // no sooner than retry 2's delay after it was recorded, and records the failure.
    let again = fx.run(&instance).await;
    let result = again.scope(four_tries("k".into(), &started)).await;
    assert!(
        matches!(result, Err(FlakyError::Transient(4))),
        "{result:?}"
    );
    let times = started.lock().unwrap().clone();
    assert_eq!(times.len(), 4, "1 + max_retries attempts across both runs");
    assert!(
        times[2] >= recorded_at + 600,
        "attempt 3 began {} ms after retry 2 was recorded; its delay is 600 ms",
        times[2] - recorded_at
    );

    // A third run runs nothing.
    let third = fx.run(&instance).await;
    let result = third.scope(four_tries("k".into(), &started)).await;
    assert_recorded_failure(result, "four_tries::k", "transient failure #4");
    assert_eq!(started.lock().unwrap().len(), 4);
}
