//! Run leases on PostgreSQL are advisory locks on one session per store: a process that
//! runs many instances holds one connection for all their leases.
#![allow(clippy::unwrap_used)]

use runtara_core::Error;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn many_leases_share_one_session_and_a_second_run_here_is_refused() {
    let url = std::env::var("RUNTARA_TEST_POSTGRES_URL").unwrap();
    let store = runtara_core::connect(&url).await.unwrap();
    let prefix = format!("lease-{}-{}", std::process::id(), runtara_core::now_ms());
    // More leases than PostgreSQL's default max_connections (100).
    let mut leases = Vec::new();
    for n in 0..150 {
        let lease = store
            .acquire_run_lease("t", &format!("{prefix}-{n}"))
            .await
            .unwrap();
        leases.push(lease.expect("PostgreSQL stores take leases"));
    }
    let client = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(client.1);
    let sessions: i64 = client
        .0
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            &[&format!("runtara-lease pid={}%", std::process::id())],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(sessions, 1, "one lease session for 150 leases");

    // The same instance again, from this process: refused, naming this process.
    let again = store.acquire_run_lease("t", &format!("{prefix}-7")).await;
    match again {
        Err(Error::Leased { holder, .. }) => {
            assert!(holder.contains(&std::process::id().to_string()), "{holder}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Released: taken again at once.
    leases.remove(7);
    let mut retaken = None;
    for _ in 0..100 {
        match store.acquire_run_lease("t", &format!("{prefix}-7")).await {
            Ok(lease) => {
                retaken = lease;
                break;
            }
            // The unlock runs in the background; it lands within moments.
            Err(Error::Leased { .. }) => tokio::task::yield_now().await,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(retaken.is_some(), "a released lease is taken again");
}
