//! Migrations are embedded, applied on connect, recorded, and safe to run from several
//! processes at once.
#![allow(clippy::unwrap_used)]

use runtara_core::connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_opens_apply_each_migration_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect(&url).await.map(drop) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
    let connection = rusqlite::Connection::open(dir.path().join("m.db")).unwrap();
    let (count, max): (i64, i64) = connection
        .query_row(
            "SELECT COUNT(*), MAX(version) FROM runtara_migrations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (count, max),
        (
            runtara_core::migrations::SQLITE.len() as i64,
            i64::from(runtara_core::migrations::SQLITE.last().unwrap().version)
        )
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn postgres_concurrent_connects_apply_each_migration_once() {
    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
        return;
    };
    let connects: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { connect(&url).await.map(drop) })
        })
        .collect();
    for connect in connects {
        connect.await.unwrap().unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM runtara_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i32> = runtara_core::migrations::POSTGRES
        .iter()
        .map(|m| m.version as i32)
        .collect();
    assert_eq!(versions, expected);
}
