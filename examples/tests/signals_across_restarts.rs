//! Signals a server acknowledged before it stopped are settled by the next server
//! (issue 15.7), with real processes and a SIGKILL of the server.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtara_management_sdk::{RegisterImageOptions, StartInstanceOptions};
use serde_json::json;
use support::*;

const TENANT: &str = "acme";

/// A resume queued for a suspended instance while no server ran (as when the server that
/// acknowledged it was killed before relaunching the instance) is carried out at start-up:
/// the instance completes, and no step runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_queued_before_a_server_crash_is_carried_out_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps.log");
    let (instance_port, management_port) = (free_port(), free_port());
    let mut server = Server::start(dir.path(), instance_port, management_port, &[]);
    let sdk = server.client().await;
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "order-workflow", binary))
        .await
        .unwrap()
        .image_id;
    let input = json!({"order_id": "R", "steps": 6, "step_delay_ms": 150, "log_file": log});
    let id = sdk
        .start_instance(StartInstanceOptions::new(&image_id, TENANT).with_input(input))
        .await
        .unwrap()
        .instance_id;
    wait_for(&sdk, &id, Duration::from_secs(30), |s| {
        s.checkpoint_count >= 2
    })
    .await;
    sdk.pause_instance(&id).await.unwrap();
    wait_status(&sdk, &id, "suspended").await;

    // The server dies; the resume it had acknowledged is in the database, not yet
    // acted on.
    server.kill();
    drop(sdk);
    let url = format!("sqlite://{}", dir.path().join("runtara.db").display());
    let store = runtara_sdk::persistence::connect(&url).await.unwrap();
    store
        .send_signal(&id, runtara_sdk::SignalType::Resume)
        .await
        .unwrap();
    drop(store);

    let server = Server::start(dir.path(), instance_port, management_port, &[]);
    let sdk = server.client().await;
    let done = wait_status(&sdk, &id, "completed").await;
    assert_eq!(done.checkpoint_count, 6);
    let runs = step_runs(&log);
    assert_eq!(runs.len(), 6, "{runs:?}");
    assert!(runs.values().all(|&n| n == 1), "a step ran twice: {runs:?}");
}
