//! Database errors show their cause in `Display`, not only in `Debug`.
#![allow(clippy::unwrap_used)]

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_sqlite_file_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
    let error = runtara_core::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("database error (sqlite): "),
        "{message}"
    );
    assert!(message.contains("not a database"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_that_cannot_be_written_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be: it cannot be opened for writing,
    // even by root.
    let path = dir.path().join("is-a-directory.db");
    std::fs::create_dir(&path).unwrap();
    let error = runtara_core::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("database error (sqlite): "),
        "{message}"
    );
    assert!(
        message.len() > "database error (sqlite): ".len() + 5,
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn a_nul_in_an_id_is_named_as_such_by_postgresql() {
    let url = std::env::var("RUNTARA_TEST_POSTGRES_URL").unwrap();
    let store = runtara_core::connect(&url).await.unwrap();
    let error = store.get_instance("a\0b").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("database error (postgres): "),
        "{message}"
    );
    assert!(
        message.contains("0x00"),
        "the server's words are shown: {message}"
    );
}
