//! The server is killed with SIGKILL mid-workflow and restarted on the same data dir:
//! the instance reconnects and completes, no acknowledged checkpoint is lost, and at most
//! the one in-flight step runs again.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use runtara_sdk::{durable, RuntaraSdk, SdkConfig, SdkError};
use runtara_server::process::ServerProcess;

const SERVER: &str = env!("CARGO_BIN_EXE_runtara-server");
const STEPS: u32 = 30;

/// Starts the server binary and waits for its ready line; returns it and its CA path.
fn start_server(data_dir: &Path, port: u16) -> (ServerProcess, String) {
    let mut command = Command::new(SERVER);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--instance-addr", &format!("127.0.0.1:{port}")])
        .args(["--management-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    let server = ServerProcess::spawn(command).unwrap();
    let ca = server.ready.ca_path.clone().unwrap().display().to_string();
    (server, ca)
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[durable(max_retries = 0)]
async fn step(key: String, n: u32, runs: &Mutex<HashMap<u32, u32>>) -> Result<u64, SdkError> {
    *runs.lock().unwrap().entry(n).or_insert(0) += 1;
    Ok(u64::from(n) * 1_000_003 % 7_919)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_server_mid_workflow_loses_no_acknowledged_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let (mut server, ca) = start_server(dir.path(), port);

    let config = SdkConfig::new("restart-1", "tests")
        .with_server_addr(format!("127.0.0.1:{port}").parse().unwrap())
        .with_ca_cert(&ca)
        .with_heartbeat_interval(Duration::ZERO);
    let sdk = RuntaraSdk::new(config).unwrap();
    sdk.connect().await.unwrap();
    sdk.register(None).await.unwrap();

    let runs: &'static Mutex<HashMap<u32, u32>> = Box::leak(Box::new(Mutex::new(HashMap::new())));
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel::<(u32, u64)>();
    let workflow = tokio::spawn(sdk.clone().scope(async move {
        for n in 1..=STEPS {
            let value = step(n.to_string(), n, runs).await?;
            acked.send((n, value)).unwrap();
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        runtara_sdk::current_sdk()?
            .completed(b"all steps done")
            .await
    }));

    // Kill the server once ten steps are acknowledged.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 10 {
        acknowledged.push(acks.recv().await.unwrap());
    }
    server.kill(); // SIGKILL
    let (_server, _) = start_server(dir.path(), port);

    workflow.await.unwrap().unwrap();
    while let Ok(ack) = acks.try_recv() {
        acknowledged.push(ack);
    }
    assert_eq!(acknowledged.len() as u32, STEPS);

    // Every acknowledged checkpoint is stored, byte for byte.
    let store = runtara_core::connect(&format!(
        "sqlite://{}",
        dir.path().join("runtara.db").display()
    ))
    .await
    .unwrap();
    for (n, value) in &acknowledged {
        let stored = store
            .get_checkpoint("restart-1", &format!("step::{n}"))
            .await
            .unwrap();
        assert_eq!(stored, Some(value.to_string().into_bytes()), "step {n}");
    }
    let record = store.get_instance("restart-1").await.unwrap().unwrap();
    assert_eq!(record.status, runtara_core::InstanceStatus::Completed);
    assert_eq!(record.checkpoint_count, i64::from(STEPS));

    // Each body ran once, but for at most one step in flight during the crash.
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len() as u32, STEPS);
    let repeated: Vec<_> = runs.iter().filter(|(_, &count)| count > 1).collect();
    assert!(
        repeated.len() <= 1 && repeated.iter().all(|(_, &c)| c == 2),
        "{repeated:?}"
    );
}

#[durable(max_retries = 0)]
async fn payload_step(key: String, instance: usize, n: u32) -> Result<String, SdkError> {
    // A payload unique to (instance, step), so a mixed-up checkpoint would show.
    Ok(format!("{instance}:{n}:{}", "p".repeat(64)))
}

/// 100 instances checkpoint concurrently while the server is SIGKILLed and restarted:
/// every acknowledged checkpoint is stored byte for byte, every instance completes, and
/// the database passes SQLite's integrity check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_server_with_100_instances_in_flight() {
    // `RUNTARA_FAULT_SCALE=N` runs the long variant with N × 100 instances.
    let scale: usize = std::env::var("RUNTARA_FAULT_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let instances_count = 100 * scale.max(1);
    const STEPS: u32 = 15;
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let (mut server, ca) = start_server(dir.path(), port);
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel::<(usize, u32, String)>();
    let mut workflows = Vec::new();
    for instance in 0..instances_count {
        let config = SdkConfig::new(format!("many-{instance}"), "tests")
            .with_server_addr(format!("127.0.0.1:{port}").parse().unwrap())
            .with_ca_cert(&ca)
            .with_heartbeat_interval(Duration::ZERO);
        let sdk = RuntaraSdk::new(config).unwrap();
        sdk.connect().await.unwrap();
        sdk.register(None).await.unwrap();
        let acked = acked.clone();
        workflows.push(tokio::spawn(sdk.clone().scope(async move {
            for n in 1..=STEPS {
                let value = payload_step(n.to_string(), instance, n).await?;
                let _ = acked.send((instance, n, value));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            runtara_sdk::current_sdk()?.completed(b"done").await
        })));
    }
    drop(acked);
    // Kill once a third of all checkpoints are acknowledged: the rest are in flight.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < instances_count * STEPS as usize / 3 {
        acknowledged.push(acks.recv().await.unwrap());
    }
    server.kill();
    let (_server, _) = start_server(dir.path(), port);
    for workflow in workflows {
        workflow.await.unwrap().unwrap();
    }
    while let Some(ack) = acks.recv().await {
        acknowledged.push(ack);
    }
    assert_eq!(acknowledged.len(), instances_count * STEPS as usize);

    let path = dir.path().join("runtara.db");
    let store = runtara_core::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for (instance, n, value) in &acknowledged {
        let stored = store
            .get_checkpoint(&format!("many-{instance}"), &format!("payload_step::{n}"))
            .await
            .unwrap();
        let expected = serde_json::to_vec(value).unwrap();
        assert_eq!(stored, Some(expected), "instance {instance} step {n}");
    }
    for instance in 0..instances_count {
        let record = store
            .get_instance(&format!("many-{instance}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, runtara_core::InstanceStatus::Completed);
        assert_eq!(record.checkpoint_count, i64::from(STEPS));
    }
    let check: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
