//! Child instances (issue 20, part 2), end to end with the `fan-out` example: a parent
//! starts 20 children and sums their outputs; it is killed (`kill -9`) half-way and run
//! again; no child is started twice and the sum is right. Embedded (a runtime in a
//! process of its own, over a SQLite file) and as an image of a real `runtara-server`;
//! cancelling a parent on the server cancels its children.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtara_management_sdk::{
    InstanceStatus, ListInstancesOptions, ManagementSdk, RegisterImageOptions, StartInstanceOptions,
};
use serde_json::{json, Value};
use support::{appears, kill_9, step_runs, Server};

const FAN_OUT: &str = env!("CARGO_BIN_EXE_fan-out");
const TENANT: &str = "acme";
const SUM: u64 = 2470; // 0² + 1² + … + 19²

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_parent_killed_half_way_starts_no_child_twice_and_sums_right() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("fan.db").display());
    let marker = dir.path().join("half");
    let input = json!({"children": 20, "hold_after": 10, "marker": marker});
    let run = || {
        Command::new(FAN_OUT)
            .args(["--db", &db, "--id", "P", "--input", &input.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = run();
    let pid = appears(&marker).await;
    kill_9(&pid);
    let _ = first.wait_with_output();
    let output = run().wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let result: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(result["sum"], SUM, "{text}");
    let store = runtara_sdk::persistence::connect(&db).await.unwrap();
    for n in 0..20 {
        let child = format!("P:n{n}");
        let record = store.get_instance(&child).await.unwrap().unwrap();
        assert_eq!(record.status, InstanceStatus::Completed, "{child}");
        let created = store
            .count_events(&child, &runtara_sdk::persistence::EventKind::Created)
            .await
            .unwrap();
        assert_eq!(created, 1, "{child} started once");
    }
    let all = store
        .list_instances(&runtara_sdk::persistence::InstanceFilter {
            tenant_id: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.total, 21, "the parent and its 20 children, no more");
}

async fn server_with_fan_out(dir: &Path) -> (Server, ManagementSdk, String) {
    let server = Server::start(dir, 0, 0, &[]);
    let sdk = server.client().await;
    let binary = std::fs::read(FAN_OUT).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "fan-out", binary))
        .await
        .unwrap()
        .image_id;
    (server, sdk, image_id)
}

async fn children_of(sdk: &ManagementSdk, parent: &str) -> Vec<(String, InstanceStatus)> {
    let page = sdk
        .list_instances_page(ListInstancesOptions::new(TENANT).with_limit(1000))
        .await
        .unwrap();
    let prefix = format!("{parent}:");
    let mut children: Vec<_> = page
        .instances
        .into_iter()
        .filter(|i| i.instance_id.starts_with(&prefix))
        .map(|i| (i.instance_id, i.status))
        .collect();
    children.sort_by(|a, b| a.0.cmp(&b.0));
    children
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_a_parent_killed_half_way_starts_no_child_twice_and_sums_right() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_fan_out(dir.path()).await;
    let (marker, trace) = (dir.path().join("half"), dir.path().join("trace"));
    let input = json!({
        "children": 20, "child_target": image_id, "hold_after": 10,
        "marker": marker, "trace": trace,
    });
    sdk.start_instance(
        StartInstanceOptions::new(&image_id, TENANT)
            .with_instance_id("P")
            .with_input(input),
    )
    .await
    .unwrap();
    let pid = appears(&marker).await;
    kill_9(&pid);
    let done = sdk
        .wait_for_completion("P", Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:#?}");
    assert_eq!(done.output_json(), Some(json!(SUM)));
    let children = children_of(&sdk, "P").await;
    assert_eq!(children.len(), 20, "{children:?}");
    assert!(
        children
            .iter()
            .all(|(_, s)| *s == InstanceStatus::Completed),
        "{children:?}"
    );
    // Each child's step ran once: no child was started (or run) twice.
    let runs = step_runs(&trace);
    assert_eq!(runs.len(), 20, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "{runs:?}");
    let sum = sdk.get_value("P", "sum").await.unwrap();
    assert_eq!(sum, Some(json!(SUM)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_cancelling_a_parent_cancels_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, sdk, image_id) = server_with_fan_out(dir.path()).await;
    // The last two children are detached: the cancel leaves them.
    let input = json!({"children": 5, "child_target": image_id, "child_sleep_ms": 3_600_000,
        "detached_children": 2});
    sdk.start_instance(
        StartInstanceOptions::new(&image_id, TENANT)
            .with_instance_id("C")
            .with_input(input),
    )
    .await
    .unwrap();
    let started = Instant::now();
    while children_of(&sdk, "C").await.len() < 5
        || sdk.get_instance_status("C").await.unwrap().status != InstanceStatus::Waiting
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "children never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sdk.cancel_instance("C").await.unwrap();
    let started = Instant::now();
    loop {
        let children = children_of(&sdk, "C").await;
        let (plain, detached) = children.split_at(3);
        if plain.iter().all(|(_, s)| *s == InstanceStatus::Cancelled) {
            assert!(
                detached
                    .iter()
                    .all(|(_, s)| *s != InstanceStatus::Cancelled),
                "a detached child was cancelled: {children:?}"
            );
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{children:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parent = sdk
        .wait_for_completion("C", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(parent.status, InstanceStatus::Cancelled);
    for (id, _) in &children_of(&sdk, "C").await[3..] {
        let kept = sdk.get_instance_status(id).await.unwrap();
        assert_ne!(kept.status, InstanceStatus::Cancelled, "{id}");
    }
}
