//! A server killed (`kill -9`) during a burst of starts, restarted on the same ports:
//! the processes it launched live on and reconnect, and the new server must adopt them,
//! not launch a second process for their instances. Every instance completes; none ever
//! runs in two processes at once (each process of the `order-workflow` holds an
//! exclusive lock on its instance's file for its whole life and records any overlap);
//! no step body runs after its result was recorded.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use runtara_management_sdk::{ManagementSdk, RegisterImageOptions, StartInstanceOptions};
use serde_json::json;
use support::*;

const TENANT: &str = "acme";
const ROUNDS: usize = 5;
const STARTS: usize = 100;
const AT_ONCE: usize = 20;
const STEPS: u32 = 4;
/// How long after the first start the server is killed.
const KILL_AFTER: Duration = Duration::from_millis(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_during_a_burst_of_starts_never_runs_an_instance_twice() {
    for round in 0..ROUNDS {
        one_round(round).await;
    }
}

async fn one_round(round: usize) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let traces = dir.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let (instance_port, management_port) = (free_port(), free_port());
    let mut server = Server::start(&data, instance_port, management_port, &[]);
    let sdk = Arc::new(server.client().await);
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "order-workflow", binary))
        .await
        .unwrap()
        .image_id;

    let next = Arc::new(AtomicUsize::new(0));
    let starters: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (sdk, next, image_id, traces) =
                (sdk.clone(), next.clone(), image_id.clone(), traces.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= STARTS {
                        return;
                    }
                    let id = instance_id(round, n);
                    let trace = traces.join(format!("{id}.log"));
                    let input = json!({
                        "order_id": id,
                        "steps": STEPS,
                        "step_delay_ms": 25,
                        "log_file": trace,
                        "trace_file": trace,
                        "overlap_lock": traces.join(format!("{id}.lock")),
                    });
                    let options = StartInstanceOptions::new(image_id.as_str(), TENANT)
                        .with_instance_id(id)
                        .with_input(input);
                    // Starts cut off by the kill fail; those are not checked.
                    let _ = sdk.start_instance(options).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(KILL_AFTER).await;
    server.kill();
    for starter in starters {
        starter.abort();
    }
    drop(sdk);

    let server = Server::start(&data, instance_port, management_port, &[]);
    let sdk = server.client().await;
    let mut checked = 0;
    for n in 0..STARTS {
        let id = instance_id(round, n);
        if sdk.get_instance_status(&id).await.is_err() {
            continue; // never stored: its start was cut off
        }
        let status = wait_for(&sdk, &id, Duration::from_secs(120), |s| {
            s.status == "completed" || s.status == "failed"
        })
        .await;
        assert_eq!(status.status, "completed", "round {round}: {status:#?}");
        check_step_trace(&traces.join(format!("{id}.log")), &id, STEPS);
        checked += 1;
    }
    assert!(
        checked > 0,
        "round {round}: no start was stored before the kill"
    );
    eprintln!(
        "round {round}: {checked} of {STARTS} starts stored, all completed, each in one process at a time; {} launches",
        total_launches(&sdk, round).await
    );
}

fn instance_id(round: usize, n: usize) -> String {
    format!("burst-{round}-{n}")
}

/// Processes launched in the round, for the record.
async fn total_launches(sdk: &ManagementSdk, round: usize) -> u32 {
    let mut total = 0;
    for n in 0..STARTS {
        if let Ok(status) = sdk.get_instance_status(&instance_id(round, n)).await {
            total += status.launches;
        }
    }
    total
}
