//! The instance API of `RuntaraSdk`, embedded and over QUIC, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use runtara_sdk::{InstanceStatus, SdkError, SignalType};
use support::{unique, Fixture};

on_every_backend!(
    calls_before_register_are_refused,
    checkpoint_saves_then_returns_the_earlier_state,
    lifecycle_methods_are_recorded,
    completed_instance_cannot_be_registered_again,
    durable_sleep_sleeps_only_the_remaining_time,
    signals_are_polled_and_acknowledged,
    status_of_another_tenants_instance_is_not_found,
);

async fn calls_before_register_are_refused(fx: Fixture) {
    let sdk = fx.sdk(&unique("unregistered"));
    assert!(!sdk.is_registered());
    let error = sdk.checkpoint("a", b"1").await.unwrap_err();
    assert!(matches!(error, SdkError::NotRegistered { .. }), "{error:?}");
    assert!(error.to_string().contains("call `register`"), "{error}");
}

async fn checkpoint_saves_then_returns_the_earlier_state(fx: Fixture) {
    let instance = unique("raw");
    let sdk = fx.run(&instance).await;
    assert!(sdk.is_registered());
    let first = sdk.checkpoint("item-0", b"state-a").await.unwrap();
    assert_eq!(first.existing_state(), None);
    assert!(!first.should_cancel() && !first.should_pause());
    assert_eq!(
        sdk.get_checkpoint("item-0").await.unwrap().as_deref(),
        Some(&b"state-a"[..])
    );
    assert_eq!(sdk.get_checkpoint("item-1").await.unwrap(), None);

    // A restarted run gets the earlier state back; the new state is not written.
    let restarted = fx.run(&instance).await;
    let again = restarted.checkpoint("item-0", b"state-b").await.unwrap();
    assert_eq!(again.existing_state(), Some(&b"state-a"[..]));
    assert_eq!(
        restarted.get_checkpoint("item-0").await.unwrap().as_deref(),
        Some(&b"state-a"[..])
    );
}

async fn lifecycle_methods_are_recorded(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("life");
    let sdk = fx.run(&instance).await;
    assert_eq!(sdk.instance_id(), instance);
    assert_eq!(
        sdk.heartbeat_interval_ms(),
        0,
        "embedded default: no automatic heartbeats"
    );
    sdk.heartbeat().await.unwrap();
    sdk.custom_event("progress", b"{\"pct\":50}".to_vec())
        .await
        .unwrap();
    sdk.checkpoint("one", b"1").await.unwrap();
    let status = sdk.get_status().await.unwrap();
    assert_eq!(status.status, InstanceStatus::Running);
    assert_eq!(status.checkpoint_id.as_deref(), Some("one"));
    assert!(status.heartbeat_at_ms.is_some());

    sdk.completed(b"{\"ok\":true}").await.unwrap();
    let status = sdk.get_status().await.unwrap();
    assert_eq!(status.status, InstanceStatus::Completed);
    assert_eq!(status.output.as_deref(), Some(&b"{\"ok\":true}"[..]));
    assert!(status.finished_at_ms.is_some());

    let events = store.list_events(&instance).await.unwrap();
    let custom = events.iter().find(|e| e.kind == "custom").unwrap();
    assert_eq!(custom.subtype.as_deref(), Some("progress"));
    assert_eq!(custom.payload.as_deref(), Some(&b"{\"pct\":50}"[..]));
    assert!(events.iter().any(|e| e.kind == "completed"));
}

async fn completed_instance_cannot_be_registered_again(fx: Fixture) {
    let instance = unique("terminal");
    let sdk = fx.run(&instance).await;
    sdk.failed("boom").await.unwrap();
    // Terminal states are final: no completion after failure, no new run.
    assert!(sdk.completed(b"late").await.is_err());
    let again = fx.sdk(&instance);
    let error = again.register(None).await.unwrap_err();
    assert!(error.to_string().contains("failed"), "{error}");
    let status = sdk.get_status().await.unwrap();
    assert_eq!(
        (status.status, status.error.as_deref()),
        (InstanceStatus::Failed, Some("boom"))
    );
}

async fn durable_sleep_sleeps_only_the_remaining_time(fx: Fixture) {
    let instance = unique("sleep");
    let nap = Duration::from_millis(600);
    let first = fx.run(&instance).await;
    // The first run records the sleep and is "killed" while sleeping.
    let killed =
        tokio::time::timeout(Duration::from_millis(50), first.sleep(nap, "nap", b"s")).await;
    assert!(killed.is_err(), "the first run should still be sleeping");
    let wake_at = first.get_status().await.unwrap().wake_at_ms.unwrap();
    // Wait until the recorded wake time has passed.
    while runtara_core::now_ms() < wake_at {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = fx.run(&instance).await;
    let started = Instant::now();
    second.sleep(nap, "nap", b"s").await.unwrap();
    assert!(
        started.elapsed() < nap / 2,
        "slept {:?} again after restart",
        started.elapsed()
    );
    assert_eq!(
        second.get_checkpoint("nap").await.unwrap().as_deref(),
        Some(&b"s"[..])
    );
}

async fn signals_are_polled_and_acknowledged(fx: Fixture) {
    let store = fx.store.clone();
    let instance = unique("signals");
    let sdk = fx.run(&instance).await;
    assert_eq!(sdk.poll_signal_now().await.unwrap(), None);
    store
        .send_signal(&instance, SignalType::Pause)
        .await
        .unwrap();
    store
        .send_signal(&instance, SignalType::Cancel)
        .await
        .unwrap();
    // Cancel outranks pause.
    let signal = sdk.poll_signal_now().await.unwrap().unwrap();
    assert_eq!(signal.signal_type, SignalType::Cancel);
    let result = sdk.checkpoint("c", b"").await.unwrap();
    assert!(result.should_cancel());

    // Dropping the cancel leaves the pause; check_paused acknowledges it.
    sdk.acknowledge_signal(SignalType::Cancel, false)
        .await
        .unwrap();
    assert_eq!(
        sdk.get_status().await.unwrap().status,
        InstanceStatus::Running
    );
    let error = sdk.check_paused().await.unwrap_err();
    assert!(matches!(error, SdkError::Paused));
    assert_eq!(
        sdk.get_status().await.unwrap().status,
        InstanceStatus::Suspended
    );
}

async fn status_of_another_tenants_instance_is_not_found(fx: Fixture) {
    let mine = fx.run(&unique("mine")).await;
    let theirs_id = unique("theirs");
    let theirs = fx.sdk_for(&theirs_id, "other-tenant");
    theirs.register(None).await.unwrap();
    let error = mine.get_instance_status(&theirs_id).await.unwrap_err();
    assert!(error.to_string().contains("not found"), "{error}");
}
