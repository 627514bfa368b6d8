//! Schedules (issue 20, part 4) against a real `runtara-server`: a schedule every second
//! fires on time across a server `kill -9` and restart, never twice, and the fires missed
//! while the server was down follow the schedule's policy (`run_once`: one instance for
//! them; `skip`: none). Managed with `runtara-ctl schedule` and the management SDK.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use runtara_management_sdk::{
    CreateScheduleOptions, ErrorCode, ListInstancesOptions, ManagementSdk, MissedFires,
    RegisterImageOptions, SdkError, StartInstanceOptions,
};
use runtara_sdk::persistence::{InstanceFilter, Persistence};
use runtara_sdk::runtime::{Runtime, ScheduleOptions};
use serde_json::json;
use support::{ctl, ctl_ok as ok, free_port, kill_9, Server};

/// The example the README schedules nightly.
const NIGHTLY: &str = env!("CARGO_BIN_EXE_nightly-report");
const TENANT: &str = "acme";

async fn register(sdk: &ManagementSdk) -> String {
    let binary = std::fs::read(NIGHTLY).unwrap();
    sdk.register_image(RegisterImageOptions::new(TENANT, "nightly-report", binary))
        .await
        .unwrap()
        .image_id
}

/// The fire times of `schedule_id`'s instances, with each instance's creation time of
/// day (ms), from their ids `sched-{id}-{fire ms}`.
async fn fires(sdk: &ManagementSdk, schedule_id: &str) -> Vec<(i64, i64)> {
    let prefix = format!("sched-{schedule_id}-");
    let page = sdk
        .list_instances_page(ListInstancesOptions::new(TENANT).with_limit(1000))
        .await
        .unwrap();
    let mut fires: Vec<(i64, i64)> = page
        .instances
        .iter()
        .filter_map(|i| {
            let fire = i.instance_id.strip_prefix(&prefix)?.parse().ok()?;
            Some((fire, ms_of_day(&i.created_at)))
        })
        .collect();
    fires.sort_unstable();
    fires
}

/// Milliseconds since midnight of an RFC 3339 UTC time (`…THH:MM:SS.mmmZ`).
fn ms_of_day(rfc3339: &str) -> i64 {
    let time = rfc3339.split('T').nth(1).unwrap().trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: i64 = parts.next().unwrap().parse().unwrap();
    let minutes: i64 = parts.next().unwrap().parse().unwrap();
    let seconds: f64 = parts.next().unwrap().parse().unwrap();
    (hours * 3600 + minutes * 60) * 1000 + (seconds * 1000.0).round() as i64
}

/// How late (ms) an instance was created after its fire time.
fn lateness((fire, created_of_day): (i64, i64)) -> i64 {
    (created_of_day - fire.rem_euclid(86_400_000)).rem_euclid(86_400_000)
}

/// The fires of an every-second `run_once` schedule (fire time, creation time of day)
/// whose host was down from `killed_at` for more than the grace: each on a whole
/// second, none twice, one a second before the stop and after the restart, and one late
/// run for the missed fires, at the first of them.
fn assert_run_once_across_a_stop(after: &[(i64, i64)], killed_at: i64) {
    let before: Vec<(i64, i64)> = after
        .iter()
        .copied()
        .filter(|(t, _)| *t <= killed_at)
        .collect();
    // Every fire is on a whole second, and none started twice (one instance per time).
    let times: Vec<i64> = after.iter().map(|(fire, _)| *fire).collect();
    assert!(times.iter().all(|t| t % 1000 == 0), "{times:?}");
    assert_eq!(times.len(), times.iter().collect::<BTreeSet<_>>().len());
    assert!(before.len() >= 3, "{before:?}");
    // `run_once`: one late run for the missed fires, at the first of them; every other
    // fire on time, one a second before the kill and again after the restart.
    let late: Vec<(i64, i64)> = after
        .iter()
        .copied()
        .filter(|f| lateness(*f) >= 2000)
        .collect();
    assert_eq!(late.len(), 1, "one run for the missed fires: {after:?}");
    let catch_up = late[0].0;
    let on_time: Vec<i64> = times.iter().copied().filter(|t| *t != catch_up).collect();
    let (pre, post): (Vec<i64>, Vec<i64>) = on_time.iter().partition(|t| **t < catch_up);
    assert_eq!(
        catch_up,
        pre.last().unwrap() + 1000,
        "from the first missed: {after:?}"
    );
    assert!(post.len() >= 2, "{after:?}");
    assert!(
        post[0] - catch_up >= 3000,
        "the downtime ran once: {after:?}"
    );
    for segment in [&pre, &post] {
        for pair in segment.windows(2) {
            assert_eq!(
                pair[1] - pair[0],
                1000,
                "a fire missed or doubled: {after:?}"
            );
        }
    }
}

/// Waits until each schedule of `counts` has fired at least its count of times later
/// than `after`.
async fn server_fired_at_least(sdk: &ManagementSdk, counts: &[(&str, usize)], after: i64) {
    let started = std::time::Instant::now();
    for (schedule_id, count) in counts {
        loop {
            let fires = fires(sdk, schedule_id).await;
            if fires.iter().filter(|(t, _)| *t > after).count() >= *count {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{schedule_id} never fired {count} times after {after}: {fires:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn start_server(dir: &Path, ports: (u16, u16)) -> Server {
    Server::start(dir, ports.0, ports.1, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_every_second_fires_on_time_across_a_restart_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port());
    let mut server = start_server(dir.path(), ports);
    let sdk = server.client().await;
    let image_id = register(&sdk).await;
    let every_second = |id: &str, missed| {
        CreateScheduleOptions::new(&image_id, TENANT, "* * * * * *")
            .with_input(json!({"report": "sales"}))
            .with_missed(missed)
            .with_schedule_id(id)
    };
    let once = sdk
        .create_schedule(every_second("tick", MissedFires::RunOnce))
        .await
        .unwrap();
    assert_eq!(once.missed, MissedFires::RunOnce);
    assert!(once.next_fire_ms.is_some());
    sdk.create_schedule(every_second("tock", MissedFires::Skip))
        .await
        .unwrap();
    // Three fires of each, a second apart, then the kill.
    server_fired_at_least(&sdk, &[("tick", 3), ("tock", 3)], i64::MIN).await;
    server.kill();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    drop(sdk);
    // Down for five seconds: fires are missed (a fire more than 2 s late is).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let server = start_server(dir.path(), ports);
    let sdk = server.client().await;
    // `tick`: the catch-up run and two on time; `tock`: two on time.
    server_fired_at_least(&sdk, &[("tick", 3), ("tock", 2)], killed_at).await;
    sdk.delete_schedule("tick").await.unwrap();
    sdk.delete_schedule("tock").await.unwrap();
    let after = fires(&sdk, "tick").await;
    let after_skip = fires(&sdk, "tock").await;
    let before_skip: Vec<(i64, i64)> = after_skip
        .iter()
        .copied()
        .filter(|(t, _)| *t <= killed_at)
        .collect();

    assert_run_once_across_a_stop(&after, killed_at);
    // Each fire ran the nightly report.
    let first = format!("sched-tick-{}", after[0].0);
    let done = sdk
        .wait_for_completion(&first, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        done.output_json(),
        Some(json!({"report": "sales", "rows": 500}))
    );
    // `skip`: nothing late, nothing for the downtime.
    assert!(
        after_skip.iter().all(|f| lateness(*f) < 2000),
        "{after_skip:?}"
    );
    let gaps = after_skip
        .windows(2)
        .filter(|p| p[1].0 - p[0].0 > 1000)
        .count();
    assert_eq!(gaps, 1, "one gap, the downtime: {after_skip:?}");
    assert!(!before_skip.is_empty());
}

/// A fire started just before the server died, the schedule not yet moved on: after the
/// restart that time is not a missed one (its instance exists), and `run_once`'s catch-up
/// run is at the first time that was truly missed, the one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_started_just_before_a_crash_does_not_stand_for_the_missed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ports = (free_port(), free_port());
    let mut server = start_server(dir.path(), ports);
    let sdk = server.client().await;
    let image_id = register(&sdk).await;
    // Created on a yearly time, so it does not fire while the stage is set.
    sdk.create_schedule(
        CreateScheduleOptions::new(&image_id, TENANT, "0 0 1 1 *")
            .with_input(json!({"report": "sales"}))
            .with_schedule_id("tick"),
    )
    .await
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The next whole second: the fire at `due` starts on time (as the scheduler starts
    // it, a little before or after its time)…
    let due = now / 1000 * 1000 + 1000;
    sdk.start_instance(
        StartInstanceOptions::new(&image_id, TENANT)
            .with_instance_id(format!("sched-tick-{due}"))
            .with_input(json!({"report": "sales"})),
    )
    .await
    .unwrap();
    // …and the server died before the schedule (every second) moved on past it.
    server.kill();
    drop(sdk);
    let db = rusqlite::Connection::open(dir.path().join("runtara.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE schedules SET cron = '* * * * * *', next_fire_ms = ?1 WHERE schedule_id = 'tick'",
            [due],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    // Down until `due` is five seconds past: its time and the four after it are late.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(
        u64::try_from(due + 5_000 - now).unwrap_or(0),
    ))
    .await;

    let server = start_server(dir.path(), ports);
    let sdk = server.client().await;
    let catch_up = format!("sched-tick-{}", due + 1000);
    // The scheduler's first look comes just after the restart. (Before the fix the
    // catch-up was keyed at `due`, whose instance existed: there was none.)
    let started = std::time::Instant::now();
    let done = loop {
        match sdk
            .wait_for_completion(&catch_up, Some(Duration::from_secs(60)))
            .await
        {
            Err(SdkError::Server {
                code: ErrorCode::NotFound,
                ..
            }) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other.unwrap_or_else(|e| panic!("no catch-up run {catch_up}: {e}")),
        }
    };
    assert_eq!(
        done.output_json(),
        Some(json!({"report": "sales", "rows": 500}))
    );
    sdk.delete_schedule("tick").await.unwrap();
    let times: Vec<i64> = fires(&sdk, "tick").await.iter().map(|f| f.0).collect();
    // `due`, the one catch-up run, then on-time fires from the restart on: nothing for
    // the seconds in between.
    assert_eq!(times[..2], [due, due + 1000], "{times:?}");
    assert!(times[2..].iter().all(|t| *t >= due + 6_000), "{times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_managed_with_runtara_ctl_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);
    let sdk = server.client().await;
    let image_id = register(&sdk).await;
    let id = ok(&ctl(
        &server,
        &[
            "schedule",
            "add",
            &image_id,
            "--tenant",
            TENANT,
            "--cron",
            "0 2 * * *",
            "--tz",
            "Europe/Berlin",
            "--input",
            r#"{"report": "sales"}"#,
            "--missed",
            "skip",
            "--id",
            "nightly",
        ],
    ));
    assert_eq!(id.trim(), "nightly");
    let listed = ok(&ctl(&server, &["schedule", "list", "--tenant", TENANT]));
    assert!(
        listed.contains("nightly") && listed.contains("Europe/Berlin"),
        "{listed}"
    );
    let paused = ok(&ctl(&server, &["--json", "schedule", "pause", "nightly"]));
    let paused: serde_json::Value = serde_json::from_str(&paused).unwrap();
    assert_eq!(paused[0]["paused"], true, "{paused}");
    assert_eq!(paused[0]["next_fire_ms"], serde_json::Value::Null);
    let resumed = sdk.resume_schedule("nightly").await.unwrap();
    assert!(!resumed.paused);
    // 02:00 in Berlin: 01:00 UTC in winter, 00:00 UTC in summer.
    let next = resumed.next_fire_ms.unwrap();
    assert!(
        matches!(next.rem_euclid(86_400_000), 0 | 3_600_000),
        "{next}"
    );
    ok(&ctl(&server, &["schedule", "rm", "nightly"]));
    assert!(sdk.list_schedules(TENANT).await.unwrap().is_empty());

    let refused = |result: Result<(), SdkError>, code: ErrorCode, words: &str| match result {
        Err(SdkError::Server {
            code: got, message, ..
        }) => {
            assert_eq!(got, code, "{message}");
            assert!(message.contains(words), "{message}");
        }
        other => panic!("expected {code}, got {other:?}"),
    };
    let bad_cron = CreateScheduleOptions::new(&image_id, TENANT, "every day");
    refused(
        sdk.create_schedule(bad_cron).await.map(drop),
        ErrorCode::InvalidInput,
        "invalid cron expression",
    );
    let bad_zone =
        CreateScheduleOptions::new(&image_id, TENANT, "* * * * *").with_timezone("Mars/Base");
    refused(
        sdk.create_schedule(bad_zone).await.map(drop),
        ErrorCode::InvalidInput,
        "unknown time zone",
    );
    let never = CreateScheduleOptions::new(&image_id, TENANT, "0 0 30 2 *");
    refused(
        sdk.create_schedule(never).await.map(drop),
        ErrorCode::InvalidInput,
        "names no time after now",
    );
    let no_image = CreateScheduleOptions::new("img-nope", TENANT, "* * * * *");
    refused(
        sdk.create_schedule(no_image).await.map(drop),
        ErrorCode::NotFound,
        "img-nope",
    );
    let first =
        CreateScheduleOptions::new(&image_id, TENANT, "0 0 1 1 *").with_schedule_id("yearly");
    sdk.create_schedule(first.clone()).await.unwrap();
    refused(
        sdk.create_schedule(first).await.map(drop),
        ErrorCode::AlreadyExists,
        "yearly",
    );
    refused(
        sdk.delete_schedule("nope").await,
        ErrorCode::NotFound,
        "nope",
    );
    let missing = ctl(&server, &["schedule", "pause", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
}

/// The same schedule in embedded mode: the `nightly-report` example runs a runtime over a
/// SQLite file that schedules the workflow itself every second (`run_once`); the
/// program is killed with `kill -9`, down five seconds, and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_schedule_every_second_fires_on_time_across_a_kill_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("nightly.db").display());
    let store = runtara_sdk::persistence::connect(&db).await.unwrap();
    let program = || {
        Command::new(NIGHTLY)
            .args(["--db", &db, "--cron", "* * * * * *", "--tz", "UTC"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut first = program();
    // Three fires, a second apart, then the kill.
    fired_at_least(&store, 3, i64::MIN).await;
    kill_9(&first.id().to_string());
    let _ = first.wait();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Down for five seconds: fires are missed (a fire more than 2 s late is).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut second = program();
    // The catch-up run and two fires on time after it.
    fired_at_least(&store, 3, killed_at).await;
    kill_9(&second.id().to_string());
    let _ = second.wait();

    let after = embedded_fires(&store).await;
    assert_run_once_across_a_stop(&after, killed_at);
    // The fires ran the report (the ones the kills cut short resume on a next start).
    let first_fire = format!("sched-nightly-sales-{}", after[0].0);
    let record = store.get_instance(&first_fire).await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&record.output.unwrap()).unwrap(),
        json!({"report": "sales", "rows": 500})
    );
}

/// The fires of the embedded `nightly-report`'s schedule: (fire time, creation time of
/// day), in order.
async fn embedded_fires(store: &Arc<dyn Persistence>) -> Vec<(i64, i64)> {
    let filter = InstanceFilter {
        tenant_id: "default".into(),
        status: None,
        limit: None,
        offset: 0,
    };
    let page = store.list_instances(&filter).await.unwrap();
    let mut fires: Vec<(i64, i64)> = page
        .instances
        .iter()
        .filter_map(|i| {
            let fire = i
                .instance_id
                .strip_prefix("sched-nightly-sales-")?
                .parse()
                .ok()?;
            Some((fire, i.created_at_ms.rem_euclid(86_400_000)))
        })
        .collect();
    fires.sort_unstable();
    fires
}

/// Waits until `count` fires later than `after` are in the store.
async fn fired_at_least(store: &Arc<dyn Persistence>, count: usize, after: i64) {
    let started = std::time::Instant::now();
    loop {
        let fires = embedded_fires(store).await;
        if fires.iter().filter(|(t, _)| *t > after).count() >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never {count} fires after {after}: {fires:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server and a runtime on one database: the server neither shows, nor lets anyone
/// pause, nor fires a runtime's schedule (nor takes its workflow for a missing image,
/// which would pause it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_leaves_a_runtimes_schedules_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path(), (free_port(), free_port()));
    let sdk = server.client().await;
    let db = format!("sqlite://{}", dir.path().join("runtara.db").display());
    let store = runtara_sdk::persistence::connect(&db).await.unwrap();
    let runtime = Runtime::builder(Arc::clone(&store))
        .tenant(TENANT)
        .name("reports")
        .workflow("nightly", |_: serde_json::Value| async {
            Ok::<_, runtara_sdk::SdkError>("done")
        })
        .build()
        .await
        .unwrap();
    let schedule = runtime
        .create_schedule(ScheduleOptions::new("in-runtime", "nightly", "* * * * * *"))
        .await
        .unwrap();
    assert!(sdk.list_schedules(TENANT).await.unwrap().is_empty());
    let refused = sdk.pause_schedule("in-runtime").await;
    assert!(
        matches!(
            &refused,
            Err(SdkError::Server {
                code: ErrorCode::NotFound,
                ..
            })
        ),
        "{refused:?}"
    );
    // The runtime stops (its scheduler with it); its schedule comes due with only the
    // server looking, every second. Were it the server's, the server would fire it, or
    // pause it for its image (`nightly` is none) — it does neither.
    drop(runtime);
    let due = schedule.next_fire_ms.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let after_two_looks = u64::try_from(due + 2_500 - now).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(after_two_looks)).await;
    let stored = store.get_schedule("in-runtime").await.unwrap().unwrap();
    assert_eq!(stored.next_fire_ms, Some(due), "the server moved it on");
    assert!(store
        .get_instance(&format!("sched-in-runtime-{due}"))
        .await
        .unwrap()
        .is_none());
    assert!(!stored.paused, "the server paused the runtime's schedule");
}
