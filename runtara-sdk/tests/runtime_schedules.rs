//! Schedules of a runtime's workflows (SQLite files): created once for start-up code,
//! refused with the reason when wrong, fired as instances `sched-{id}-{fire ms}`, paused,
//! resumed and deleted; a runtime sees only its own. The restart and missed-fire
//! behaviour is shown across `kill -9` in `examples/tests/schedules.rs`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_sdk::runtime::{Runtime, ScheduleOptions};
use runtara_sdk::{MissedFires, Persistence, SdkError};
use serde_json::json;

async fn store(dir: &tempfile::TempDir) -> Arc<dyn Persistence> {
    let url = format!("sqlite://{}", dir.path().join("schedules.db").display());
    runtara_sdk::persistence::connect(&url).await.unwrap()
}

#[derive(serde::Deserialize)]
struct Job {
    report: String,
}

async fn report(job: Job) -> Result<String, SdkError> {
    Ok(format!("{} done", job.report))
}

/// Sleeps an hour (durably): its run keeps the runtime's tasks going.
async fn nap(_: serde_json::Value) -> Result<(), SdkError> {
    let sdk = runtara_sdk::sdk()?;
    sdk.sleep(Duration::from_secs(3600), "nap", b"").await
}

async fn runtime_named(store: Arc<dyn Persistence>, name: &str) -> Runtime {
    Runtime::builder(store)
        .name(name)
        .workflow("report", report)
        .workflow("nap", nap)
        .build()
        .await
        .unwrap()
}

fn every_second(id: &str) -> ScheduleOptions {
    ScheduleOptions::new(id, "report", "* * * * * *").with_input(json!({"report": "sales"}))
}

fn schedule_error(result: Result<impl std::fmt::Debug, SdkError>) -> String {
    match result {
        Err(error @ SdkError::Schedule { .. }) => error.to_string(),
        other => panic!("expected a schedule error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_with_the_reason_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_named(store(&dir).await, "reports").await;
    let unknown = runtime
        .create_schedule(ScheduleOptions::new("a", "nope", "* * * * *"))
        .await;
    assert!(
        matches!(unknown, Err(SdkError::UnknownWorkflow { .. })),
        "{unknown:?}"
    );
    let cron = schedule_error(
        runtime
            .create_schedule(ScheduleOptions::new("a", "report", "every day"))
            .await,
    );
    assert!(
        cron.contains("invalid cron expression `every day`"),
        "{cron}"
    );
    let zone = schedule_error(
        runtime
            .create_schedule(every_second("a").with_timezone("Mars/Olympus"))
            .await,
    );
    assert!(zone.contains("unknown time zone `Mars/Olympus`"), "{zone}");
    let never = schedule_error(
        runtime
            .create_schedule(ScheduleOptions::new("a", "report", "0 0 30 2 *"))
            .await,
    );
    assert!(never.contains("names no time after now"), "{never}");
    let id = schedule_error(runtime.create_schedule(every_second("")).await);
    assert!(id.contains("an id has 1 to 100 bytes"), "{id}");
    let input = runtime
        .create_schedule(every_second("a").with_input(json!({"rows": 3})))
        .await;
    assert!(
        matches!(input, Err(SdkError::StartInput { .. })),
        "{input:?}"
    );
    assert!(runtime.list_schedules().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_is_created_once_fires_and_is_paused_resumed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let runtime = runtime_named(Arc::clone(&store), "reports").await;
    let created = runtime
        .create_schedule(every_second("sales"))
        .await
        .unwrap();
    assert_eq!(created.workflow, "report");
    // Run-once (the default): should this run stall past the grace, the fire at `next`
    // is still started, as the catch-up run.
    assert_eq!(created.missed, MissedFires::RunOnce);
    assert_eq!(created.input, Some(json!({"report": "sales"})));
    let next = created.next_fire_ms.unwrap();
    // Start-up code creating it again gets it back; another definition is refused.
    let again = runtime
        .create_schedule(every_second("sales"))
        .await
        .unwrap();
    assert_eq!(again.schedule_id, "sales");
    let other = schedule_error(
        runtime
            .create_schedule(every_second("sales").with_missed(MissedFires::Skip))
            .await,
    );
    assert!(other.contains("holds another schedule"), "{other}");

    // The fire at `next` starts instance `sched-sales-{next}`, which runs the workflow.
    let fire = format!("sched-sales-{next}");
    let started = Instant::now();
    let handle = loop {
        if let Some(handle) = runtime.handle(&fire).await.unwrap() {
            break handle;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{fire} never fired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(handle.result::<String>().await.unwrap(), "sales done");

    // Another runtime on the database sees none of it, and cannot touch it.
    let other_runtime = runtime_named(Arc::clone(&store), "billing").await;
    assert!(other_runtime.list_schedules().await.unwrap().is_empty());
    schedule_error(other_runtime.delete_schedule("sales").await);
    schedule_error(other_runtime.pause_schedule("sales").await);

    let paused = runtime.pause_schedule("sales").await.unwrap();
    assert!(paused.paused && paused.next_fire_ms.is_none());
    let resumed = runtime.resume_schedule("sales").await.unwrap();
    assert!(!resumed.paused && resumed.next_fire_ms.is_some());
    assert_eq!(runtime.list_schedules().await.unwrap().len(), 1);
    runtime.delete_schedule("sales").await.unwrap();
    let gone = schedule_error(runtime.delete_schedule("sales").await);
    assert!(gone.contains("no such schedule"), "{gone}");
    assert!(runtime.list_schedules().await.unwrap().is_empty());
    schedule_error(runtime.resume_schedule("sales").await);
}

/// The instances of schedule `id` in the store.
async fn fires_of(store: &Arc<dyn Persistence>, id: &str) -> usize {
    let filter = runtara_sdk::persistence::InstanceFilter {
        tenant_id: "default".into(),
        status: None,
        limit: None,
        offset: 0,
    };
    let prefix = format!("sched-{id}-");
    let page = store.list_instances(&filter).await.unwrap();
    page.instances
        .iter()
        .filter(|i| i.instance_id.starts_with(&prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_runtime_fires_no_more_while_its_instances_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let runtime = runtime_named(Arc::clone(&store), "napper").await;
    runtime
        .create_schedule(ScheduleOptions::new("naps", "nap", "* * * * * *"))
        .await
        .unwrap();
    let started = Instant::now();
    while fires_of(&store, "naps").await == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The application lets go of the runtime; the nap it started runs on.
    drop(runtime);
    let at_drop = fires_of(&store, "naps").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = fires_of(&store, "naps").await;
    assert!(
        later <= at_drop + 1,
        "fired on after the drop: {at_drop} then {later}"
    );
}
