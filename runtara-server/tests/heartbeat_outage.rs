//! Automatic heartbeats survive a server outage longer than a request's deadline: once
//! the server is back (SIGKILLed, restarted on the same port and data dir), the stored
//! heartbeat moves again. Before, the task stopped for good at its first failure, and a
//! healthy instance in a long step was later killed as silent.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtara_sdk::{RuntaraSdk, SdkConfig};
use runtara_server::process::ServerProcess;

const SERVER: &str = env!("CARGO_BIN_EXE_runtara-server");

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

/// The stored heartbeat of `instance`, read from the server's SQLite file.
async fn heartbeat_at(dir: &Path, instance: &str) -> Option<i64> {
    let url = format!("sqlite://{}", dir.join("runtara.db").display());
    let store = runtara_sdk::persistence::connect(&url).await.unwrap();
    store
        .get_instance(instance)
        .await
        .unwrap()
        .and_then(|record| record.heartbeat_at_ms)
}

/// Waits until the stored heartbeat passes `after`.
async fn wait_for_a_heartbeat_after(dir: &Path, instance: &str, after: i64) {
    let started = Instant::now();
    loop {
        if heartbeat_at(dir, instance)
            .await
            .is_some_and(|at| at > after)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no heartbeat after {after}: the heartbeats stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_on_after_an_outage_longer_than_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let (mut server, ca) = start_server(dir.path(), port);
    let config = SdkConfig::new("beating-1", "tests")
        .with_server_addr(format!("127.0.0.1:{port}").parse().unwrap())
        .with_ca_cert(&ca)
        .with_heartbeat_interval(Duration::from_millis(100))
        .with_request_timeout(Duration::from_millis(300));
    let sdk = RuntaraSdk::new(config).unwrap();
    sdk.connect().await.unwrap();
    sdk.register(None).await.unwrap();
    sdk.heartbeat().await.unwrap();
    wait_for_a_heartbeat_after(dir.path(), "beating-1", now_ms()).await;

    // An outage several times the request deadline: heartbeats fail meanwhile.
    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_server, _) = start_server(dir.path(), port);
    let back = now_ms();
    wait_for_a_heartbeat_after(dir.path(), "beating-1", back).await;
    drop(sdk);
}
