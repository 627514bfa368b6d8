//! Admission control: 2,000 starts against `--max-running 50`. Never more than 50
//! instance processes alive at once; every start completes, none is lost, launches come
//! in the order of the starts; a queued instance's status says where it waits; a queued
//! instance is cancelled or paused without ever being launched; and a server killed
//! (`kill -9`) halfway loses no queued start.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_management_sdk::{
    InstanceStatus, ListInstancesOptions, ManagementSdk, RegisterImageOptions, StartInstanceOptions,
};
use serde_json::json;
use support::*;

const TENANT: &str = "acme";
const STARTS: usize = 2_000;
const MAX_RUNNING: usize = 50;
/// Queued deep enough never to have run when they are cancelled or paused.
const CANCELLED: usize = 1_990;
const PAUSED: usize = 1_991;

fn id(n: usize) -> String {
    format!("adm-{n:04}")
}

/// Counts, every few milliseconds, the live processes running `binary`; keeps the most.
fn watch_processes(binary: PathBuf, stop: Arc<AtomicBool>, most: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let alive = std::fs::read_dir("/proc")
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                        .filter(|e| {
                            std::fs::read_link(e.path().join("exe")).is_ok_and(|exe| exe == binary)
                        })
                        .count()
                })
                .unwrap_or(0);
            most.fetch_max(alive, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
}

async fn count(sdk: &ManagementSdk, status: InstanceStatus) -> u64 {
    sdk.list_instances_page(
        ListInstancesOptions::new(TENANT)
            .with_status(status)
            .with_limit(1),
    )
    .await
    .unwrap()
    .total
}

async fn wait_completed(sdk: &ManagementSdk, at_least: u64, limit: Duration) {
    let start = Instant::now();
    loop {
        let done = count(sdk, InstanceStatus::Completed).await;
        if done >= at_least {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "only {done} of {at_least} completed in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(instance, kind)` of every `launched` and `exited` event, in the order recorded.
fn launch_events(db: &Path) -> Vec<(String, String)> {
    let connection = rusqlite::Connection::open(db).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT instance_id, kind FROM events WHERE kind IN ('launched', 'exited') \
             ORDER BY event_id",
        )
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_starts_run_at_most_fifty_at_once_in_order_and_survive_a_server_kill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (instance_port, management_port) = (free_port(), free_port());
    let flags = ["--max-running", "50"];
    let log = dir.path().join("server.log");
    let mut server = Server::start_logging_to(&data, instance_port, management_port, &flags, &log);
    let sdk = server.client().await;
    let image = sdk
        .register_image(RegisterImageOptions::new(
            TENANT,
            "order-workflow",
            std::fs::read(WORKFLOW).unwrap(),
        ))
        .await
        .unwrap();
    let binary = std::fs::canonicalize(data.join("images").join(&image.sha256)).unwrap();
    let (stop, most) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    watch_processes(binary, stop.clone(), most.clone());

    // The starts, one after another: their order is the queue's.
    for n in 0..STARTS {
        let input = json!({"order_id": id(n), "steps": 1, "step_delay_ms": 1000});
        sdk.start_instance(
            StartInstanceOptions::new(image.image_id.as_str(), TENANT)
                .with_instance_id(id(n))
                .with_input(input),
        )
        .await
        .unwrap();
    }
    // Deep in the queue: its status says so, and where.
    let waiting = sdk.get_instance_status(&id(STARTS - 1)).await.unwrap();
    assert_eq!(waiting.status, InstanceStatus::Pending);
    let place = waiting
        .queue
        .expect("a queued instance says where it waits");
    assert!(
        place.position > 0 && place.position <= place.waiting,
        "{place:?}"
    );
    assert_eq!(place.max_running, MAX_RUNNING as u64);
    // Cancelled and paused while queued: never launched.
    let cancelled = sdk.cancel_instance(&id(CANCELLED)).await.unwrap();
    assert_eq!(cancelled.status, InstanceStatus::Cancelled);
    let paused = sdk.pause_instance(&id(PAUSED)).await.unwrap();
    assert_eq!(paused.status, InstanceStatus::Suspended);
    for n in [CANCELLED, PAUSED] {
        let info = sdk.get_instance_status(&id(n)).await.unwrap();
        assert_eq!((info.launches, info.queue), (0, None), "{info:#?}");
    }

    // Halfway: the server dies; its queue lives in the store.
    wait_completed(&sdk, (STARTS / 2) as u64, Duration::from_secs(300)).await;
    let last_event_before_kill = launch_events(&data.join("runtara.db")).len();
    let seen_before_kill = most.swap(0, Ordering::Relaxed);
    server.kill();
    drop(sdk);
    let log = dir.path().join("server-2.log");
    let server = Server::start_logging_to(&data, instance_port, management_port, &flags, &log);
    let sdk = server.client().await;
    sdk.resume_instance(&id(PAUSED)).await.unwrap();
    wait_completed(&sdk, (STARTS - 1) as u64, Duration::from_secs(300)).await;
    stop.store(true, Ordering::Relaxed);

    // None lost: every start completed, but the cancelled one, which never ran.
    assert_eq!(
        count(&sdk, InstanceStatus::Completed).await,
        (STARTS - 1) as u64
    );
    let info = sdk.get_instance_status(&id(CANCELLED)).await.unwrap();
    assert_eq!((info.status, info.launches), (InstanceStatus::Cancelled, 0));
    assert_eq!(
        sdk.get_instance_status(&id(PAUSED)).await.unwrap().launches,
        1
    );

    // Never more than 50 alive: seen from the process table all along, and exactly from
    // the launch and exit events of the first server (every launch of it had its exit
    // recorded while it lived; a slot is taken before the launch and given back after
    // the exit).
    let seen_after_kill = most.load(Ordering::Relaxed);
    assert!(
        seen_before_kill <= MAX_RUNNING,
        "{seen_before_kill} instance processes alive at once"
    );
    assert!(
        seen_after_kill <= MAX_RUNNING,
        "{seen_after_kill} instance processes alive at once after the server's restart"
    );
    let seen = seen_before_kill.max(seen_after_kill);
    assert!(
        seen > MAX_RUNNING / 2,
        "the limit was never reached ({seen}): a weak test"
    );
    let events = launch_events(&data.join("runtara.db"));
    let (mut alive, mut most_alive) = (0i64, 0i64);
    for (_, kind) in &events[..last_event_before_kill] {
        alive += if kind == "launched" { 1 } else { -1 };
        most_alive = most_alive.max(alive);
    }
    assert!(
        most_alive <= MAX_RUNNING as i64,
        "{most_alive} launched and not exited"
    );

    // In the order of the starts: each instance's first launch is within the window of
    // launches under way at once of its place among the starts.
    let mut first_launch: HashMap<&str, usize> = HashMap::new();
    for (instance, kind) in &events {
        if kind == "launched" && !first_launch.contains_key(instance.as_str()) {
            let rank = first_launch.len();
            first_launch.insert(instance, rank);
        }
    }
    // A launch cut off by the kill between its spawn and its event has none (the
    // process was adopted by the next server).
    assert!(
        first_launch.len() >= STARTS - 1 - MAX_RUNNING,
        "{}",
        first_launch.len()
    );
    for n in (0..STARTS).filter(|&n| n != CANCELLED && n != PAUSED) {
        let Some(&launched) = first_launch.get(id(n).as_str()) else {
            continue;
        };
        assert!(
            launched.abs_diff(n) <= MAX_RUNNING,
            "start {n} was launched {launched}th: not first come, first served"
        );
    }
}
