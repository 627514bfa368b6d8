//! The instance endpoint on threads of its own: several endpoints share one port, every
//! instance is served whichever endpoint the kernel hands its connection to, and
//! shutdown stops the threads. Served on the main runtime (`instance_threads: Some(0)`)
//! it works the same.
#![allow(clippy::unwrap_used)]

use runtara_core::InstanceStatus;
use runtara_sdk::{RuntaraSdk, SdkConfig};
use runtara_server::{RunningServer, ServerConfig};

/// The tests count this process's threads: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Threads of this process whose name starts like the instance endpoint's (Linux keeps
/// the first 15 bytes of a thread's name).
fn endpoint_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("runtara-instanc"))
        .count()
}

async fn server(dir: &std::path::Path, threads: Option<usize>) -> RunningServer {
    let mut config = ServerConfig::new(dir);
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.instance_threads = threads;
    runtara_server::start(config).await.unwrap()
}

/// Runs `count` instances, each on a connection of its own, through a checkpoint to
/// completion, all at once.
async fn run_instances(server: &RunningServer, prefix: &str, count: usize) {
    let ca = server.ca_path.clone().unwrap();
    let tasks: Vec<_> = (0..count)
        .map(|n| {
            let config = SdkConfig::new(format!("{prefix}-{n}"), "t")
                .with_server_addr(server.instance_addr)
                .with_ca_cert(&ca)
                .with_heartbeat_interval(std::time::Duration::ZERO);
            tokio::spawn(async move {
                let sdk = RuntaraSdk::new(config).unwrap();
                sdk.connect().await.unwrap();
                sdk.register(None).await.unwrap();
                sdk.checkpoint("only", format!("state {n}").as_bytes())
                    .await
                    .unwrap();
                sdk.completed(b"done").await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for n in 0..count {
        let id = format!("{prefix}-{n}");
        let record = server.persistence.get_instance(&id).await.unwrap().unwrap();
        assert_eq!(record.status, InstanceStatus::Completed, "{id}");
        assert_eq!(
            server
                .persistence
                .get_checkpoint(&id, "only")
                .await
                .unwrap()
                .as_deref(),
            Some(format!("state {n}").as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_are_served_by_every_endpoint_thread_and_shutdown_stops_them() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let before = endpoint_threads();
    let server = server(dir.path(), Some(3)).await;
    assert_eq!(endpoint_threads(), before + 3);
    // Twenty connections from twenty client sockets: spread by the kernel over the
    // three endpoints, all on the one advertised port.
    run_instances(&server, "threads", 20).await;
    server.shutdown().await;
    assert_eq!(endpoint_threads(), before, "shutdown joined the threads");

    // The same data dir, the endpoint on the main runtime.
    let server = self::server(dir.path(), Some(0)).await;
    assert_eq!(endpoint_threads(), before);
    run_instances(&server, "main", 5).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_port_is_refused() {
    let _serial = SERIAL.lock().await;
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = server(first_dir.path(), Some(2)).await;
    let mut config = ServerConfig::new(second_dir.path());
    config.instance_addr = first.instance_addr;
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.instance_threads = Some(2);
    let error = runtara_server::start(config).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(&format!("binding {}", first.instance_addr)),
        "{message}"
    );
    // The first server still serves every instance.
    run_instances(&first, "alone", 6).await;
    first.shutdown().await;
}
