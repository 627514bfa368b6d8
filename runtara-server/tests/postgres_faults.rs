//! PostgreSQL connections dropped under load (`pg_terminate_backend`): the server keeps
//! serving, instances complete, and no acknowledged checkpoint is lost. Runs when
//! `RUNTARA_TEST_POSTGRES_URL` is set (CI always sets it).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runtara_sdk::{durable, RuntaraSdk, SdkConfig, SdkError};
use runtara_server::ServerConfig;

#[durable(max_retries = 0)]
async fn step(key: String, instance: usize, n: u32) -> Result<String, SdkError> {
    Ok(format!("{instance}/{n}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn terminated_database_connections_lose_nothing() {
    let Ok(base) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL fault test not run");
        return;
    };
    const INSTANCES: usize = 20;
    const STEPS: u32 = 30;
    // Tag the server's connections so only they are terminated.
    let tag = format!("runtara_fault_{}", std::process::id());
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}application_name={tag}");
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.database_url = Some(url);
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    let server = runtara_server::start(config).await.unwrap();

    let run = format!("pgfault-{}-{}", std::process::id(), runtara_core::now_ms());
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel::<(usize, u32, String)>();
    let mut workflows = Vec::new();
    for instance in 0..INSTANCES {
        let sdk = RuntaraSdk::new(
            SdkConfig::new(format!("{run}-{instance}"), "tests")
                .with_server_addr(server.instance_addr)
                .with_ca_cert(server.ca_path.clone().unwrap())
                .with_heartbeat_interval(Duration::ZERO),
        )
        .unwrap();
        sdk.connect().await.unwrap();
        sdk.register(None).await.unwrap();
        let acked = acked.clone();
        workflows.push(tokio::spawn(sdk.clone().scope(async move {
            for n in 1..=STEPS {
                let value = step(n.to_string(), instance, n).await?;
                let _ = acked.send((instance, n, value));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            runtara_sdk::current_sdk()?.completed(b"done").await
        })));
    }
    drop(acked);

    // Terminate the server's connections again and again while the instances run.
    let (killer, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut terminated = 0i64;
    let mut acknowledged = Vec::new();
    for _ in 0..5 {
        let target = acknowledged.len() + INSTANCES * STEPS as usize / 8;
        while acknowledged.len() < target {
            match acks.recv().await {
                Some(ack) => acknowledged.push(ack),
                None => break,
            }
        }
        let row = killer
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&tag],
            )
            .await
            .unwrap();
        terminated += row.get::<_, i64>(0);
    }
    assert!(terminated > 0, "no connection was terminated");
    for workflow in workflows {
        workflow.await.unwrap().unwrap();
    }
    while let Some(ack) = acks.recv().await {
        acknowledged.push(ack);
    }
    assert_eq!(acknowledged.len(), INSTANCES * STEPS as usize);
    for (instance, n, value) in &acknowledged {
        let stored = server
            .persistence
            .get_checkpoint(&format!("{run}-{instance}"), &format!("step::{n}"))
            .await
            .unwrap();
        assert_eq!(stored, Some(serde_json::to_vec(value).unwrap()));
    }
    for instance in 0..INSTANCES {
        let record = server
            .persistence
            .get_instance(&format!("{run}-{instance}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.status, runtara_core::InstanceStatus::Completed);
    }
    eprintln!("terminated {terminated} database connections under load; nothing lost");
    server.shutdown().await;
}
