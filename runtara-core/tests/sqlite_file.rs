//! SQLite-specific guarantees: durability across reopen, WAL, several handles on one
//! file, clean shutdown, and corrupt data reported as such.
#![allow(clippy::unwrap_used)]

use runtara_core::{connect, Error};

fn url(path: &std::path::Path) -> String {
    format!("sqlite://{}", path.display())
}

#[tokio::test]
async fn an_acknowledged_checkpoint_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/runtara.db");
    {
        let store = connect(&url(&path)).await.unwrap();
        let epoch = store.register_instance("i", "t", None).await.unwrap().epoch;
        store
            .save_checkpoint("i", epoch, "a", b"kept")
            .await
            .unwrap();
    }
    // Dropping the store closed the database: the WAL was checkpointed and removed.
    assert!(!dir.path().join("nested/dir/runtara.db-wal").exists());
    let store = connect(&url(&path)).await.unwrap();
    assert_eq!(
        store.get_checkpoint("i", "a").await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<i64> = connection
        .prepare("SELECT version FROM runtara_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<i64> = runtara_core::migrations::SQLITE
        .iter()
        .map(|m| i64::from(m.version))
        .collect();
    assert_eq!(versions, expected, "each migration applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_write_concurrently() {
    // As two server processes sharing one data dir would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let url = url(&path);
    let (a, b) = tokio::join!(connect(&url), connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let ea = a.register_instance("ia", "t", None).await.unwrap().epoch;
    let eb = b.register_instance("ib", "t", None).await.unwrap().epoch;
    let write = |store: std::sync::Arc<dyn runtara_core::Persistence>, id: &'static str, epoch| {
        tokio::spawn(async move {
            for n in 0..50 {
                store
                    .save_checkpoint(id, epoch, &format!("c{n}"), b"x")
                    .await
                    .unwrap();
            }
        })
    };
    let (ra, rb) = tokio::join!(write(a.clone(), "ia", ea), write(b.clone(), "ib", eb));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(b.list_checkpoints("ia").await.unwrap().len(), 50);
    assert_eq!(a.list_checkpoints("ib").await.unwrap().len(), 50);
    // A register through one handle fences the run that registered through the other.
    let newer = b.register_instance("ia", "t", None).await.unwrap().epoch;
    assert!(matches!(
        a.save_checkpoint("ia", ea, "late", b"").await,
        Err(Error::Fenced { current, .. }) if current == newer
    ));
}

#[tokio::test]
async fn a_bad_status_in_the_database_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corrupt.db");
    let store = connect(&url(&path)).await.unwrap();
    let epoch = store.register_instance("i", "t", None).await.unwrap().epoch;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE instances SET status = 'exploded' WHERE instance_id = 'i';",
        )
        .unwrap();
    let error = store.get_instance("i").await.unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error:?}");
    assert!(error.to_string().contains("exploded"), "{error}");
    let error = store
        .save_checkpoint("i", epoch, "a", b"")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error:?}");
    assert_eq!(store.get_checkpoint("i", "a").await.unwrap(), None);
}

#[tokio::test]
async fn in_memory_databases_work() {
    let store = connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    let epoch = store.register_instance("i", "t", None).await.unwrap().epoch;
    store.save_checkpoint("i", epoch, "a", b"x").await.unwrap();
    assert!(store.get_checkpoint("i", "a").await.unwrap().is_some());
}

#[tokio::test]
async fn unsupported_urls_are_refused_clearly() {
    let error = connect("mysql://localhost/db").await.unwrap_err();
    assert!(error
        .to_string()
        .starts_with("unsupported database url `mysql://localhost/db`"));
}

/// The writer checkpoints the WAL completely between batches, so the WAL is overwritten
/// from its start instead of growing (an fsync after an append costs a journal commit
/// more). Evidence: 3,000 sequential checkpoints (about 9,000 WAL pages, 37 MB unless
/// checkpointed) leave a WAL of a few MB, and the database file alone — without its
/// WAL — holds the checkpoints, while the store is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_and_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtara.db");
    let store = connect(&url(&path)).await.unwrap();
    let epoch = store.register_instance("i", "t", None).await.unwrap().epoch;
    for n in 0..3_000 {
        store
            .save_checkpoint("i", epoch, &format!("c{n}"), &[7u8; 100])
            .await
            .unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("runtara.db-wal"))
        .unwrap()
        .len();
    assert!(wal < 8 << 20, "the WAL grew to {wal} bytes");
    // Copy the main file only: what it holds was checkpointed out of the WAL.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let stored: i64 = rusqlite::Connection::open(&copy)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0)))
        .unwrap();
    assert!(
        stored > 2_000,
        "only {stored} of 3,000 rows were checkpointed"
    );
    let mode: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 1000, "a fresh connection keeps SQLite's default");
}

#[tokio::test]
async fn new_files_use_1_kib_pages_and_large_states_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtara.db");
    let large: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
    {
        let store = connect(&url(&path)).await.unwrap();
        let epoch = store.register_instance("i", "t", None).await.unwrap().epoch;
        store
            .save_checkpoint("i", epoch, "big", &large)
            .await
            .unwrap();
    }
    let store = connect(&url(&path)).await.unwrap();
    assert_eq!(
        store.get_checkpoint("i", "big").await.unwrap().as_deref(),
        Some(&large[..])
    );
    let connection = rusqlite::Connection::open(&path).unwrap();
    let page_size: i64 = connection
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, 1024);
}

#[tokio::test]
async fn the_wal_is_preallocated_and_a_crash_copy_recovers_every_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtara.db");
    let wal_path = dir.path().join("runtara.db-wal");
    let store = connect(&url(&path)).await.unwrap();
    // Opening wrote the zeros: the first megabyte of commits overwrites, never appends.
    let preallocated = std::fs::metadata(&wal_path).unwrap().len();
    assert!(
        preallocated > 1 << 20,
        "the WAL holds {preallocated} bytes after opening"
    );
    let epoch = store.register_instance("i", "t", None).await.unwrap().epoch;
    for n in 0..40 {
        store
            .save_checkpoint("i", epoch, &format!("c{n}"), &[n; 100])
            .await
            .unwrap();
    }
    assert_eq!(
        std::fs::metadata(&wal_path).unwrap().len(),
        preallocated,
        "the commits stayed inside the preallocated WAL"
    );
    // A second handle on the file finds the WAL large enough and leaves it alone.
    let second = connect(&url(&path)).await.unwrap();
    assert_eq!(std::fs::metadata(&wal_path).unwrap().len(), preallocated);
    assert_eq!(second.list_checkpoints("i").await.unwrap().len(), 40);
    // What a `kill -9` leaves: the database and a WAL whose tail is still zeros.
    let crashed = dir.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    std::fs::copy(&path, crashed.join("runtara.db")).unwrap();
    std::fs::copy(&wal_path, crashed.join("runtara.db-wal")).unwrap();
    let recovered = connect(&url(&crashed.join("runtara.db"))).await.unwrap();
    let checkpoints = recovered.list_checkpoints("i").await.unwrap();
    assert_eq!(
        checkpoints.len(),
        40,
        "every acknowledged checkpoint is back"
    );
    assert_eq!(
        recovered
            .get_checkpoint("i", "c39")
            .await
            .unwrap()
            .as_deref(),
        Some(&[39u8; 100][..])
    );
    // And it keeps working on top of the recovered WAL.
    let epoch = recovered
        .register_instance("i", "t", None)
        .await
        .unwrap()
        .epoch;
    recovered
        .save_checkpoint("i", epoch, "after", b"more")
        .await
        .unwrap();
    assert_eq!(recovered.list_checkpoints("i").await.unwrap().len(), 41);
}
