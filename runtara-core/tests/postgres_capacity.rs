//! A PostgreSQL connection refused for capacity (`too many connections`, SQLSTATE 53300)
//! is retried with backoff until the connect deadline; if the server still refuses, the
//! error says why. Capacity is made scarce deterministically: a role of its own with
//! `CONNECTION LIMIT 1`, whose one connection the test holds.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runtara_core::ConnectOptions;
use tokio_postgres::NoTls;

/// Creates a login role limited to one connection, owning a schema of its own (so its
/// migrations stay apart); returns its URL and an admin connection to drop it with.
async fn scarce_role(tag: &str) -> (String, String, tokio_postgres::Client) {
    let admin_url = std::env::var("RUNTARA_TEST_POSTGRES_URL").unwrap();
    let (admin, connection) = tokio_postgres::connect(&admin_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let role = format!("runtara_cap_{tag}_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {role} CASCADE; DROP ROLE IF EXISTS {role}; \
             CREATE ROLE {role} LOGIN CONNECTION LIMIT 1; \
             CREATE SCHEMA AUTHORIZATION {role};"
        ))
        .await
        .unwrap();
    let config: tokio_postgres::Config = admin_url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        #[allow(unreachable_patterns)]
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    let url = format!("postgres://{role}@{host}:{port}/{db}");
    (role, url, admin)
}

async fn drop_role(admin: &tokio_postgres::Client, role: &str) {
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'; \
             DROP SCHEMA IF EXISTS {role} CASCADE;"
        ))
        .await
        .unwrap();
    // The terminated sessions may take a moment to leave; retry the drop until they have.
    for _ in 0..100 {
        if admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .is_ok()
        {
            return;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn a_connection_refused_for_capacity_is_retried_until_one_is_free() {
    let (role, url, admin) = scarce_role("retry").await;
    let (held, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    let held_task = tokio::spawn(connection);

    let connecting = tokio::spawn({
        let url = url.clone();
        async move {
            runtara_core::connect_with(
                &url,
                ConnectOptions::new().postgres_connect_deadline(Duration::from_secs(60)),
            )
            .await
        }
    });
    // While the one connection is held the connect cannot succeed; without the retry it
    // would fail at once, and this would see it finished.
    let mut connecting = connecting;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut connecting)
            .await
            .is_err(),
        "the connect finished while the role's only connection was held"
    );
    drop(held);
    held_task.await.unwrap().unwrap();
    let store = connecting.await.unwrap().unwrap();
    assert_eq!(store.backend_name(), "postgres");
    drop(store);
    drop_role(&admin, &role).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn a_connection_still_refused_at_the_deadline_says_why() {
    let (role, url, admin) = scarce_role("full").await;
    let (held, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let error = runtara_core::connect_with(
        &url,
        ConnectOptions::new().postgres_connect_deadline(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("too many connections"),
        "the cause is missing from: {message}"
    );
    drop(held);
    drop_role(&admin, &role).await;
}
