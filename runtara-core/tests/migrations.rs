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

/// Stores what an instance recorded before the custom-event quota: two custom events of
/// 5 bytes (through `record_event`, which counts nothing) and one of the system's own.
async fn events_of_an_older_schema(store: &dyn runtara_core::Persistence, id: &str) {
    store.register_instance(id, "t", None).await.unwrap();
    for _ in 0..2 {
        store
            .record_event(id, &"custom".into(), Some("old"), Some(b"12345"))
            .await
            .unwrap();
    }
    store
        .record_event(id, &"launched".into(), None, Some(&[0; 100]))
        .await
        .unwrap();
}

/// After the migration, the instance's stored custom events count against its quota.
async fn counted_after_the_migration(store: &dyn runtara_core::Persistence, id: &str) {
    let quota = runtara_core::EventQuota {
        max_event_bytes: 100,
        max_events_per_instance: 3,
        max_event_bytes_per_instance: 20,
    };
    // 10 bytes in 2 events are counted: 11 more bytes pass the quota, 10 do not, and
    // then the third event reaches the count.
    let refused = store
        .record_custom_event(id, "new", &[0; 11], &quota)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("has recorded 10 bytes"),
        "{refused}"
    );
    store
        .record_custom_event(id, "new", &[0; 10], &quota)
        .await
        .unwrap();
    let refused = store
        .record_custom_event(id, "new", b"", &quota)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("quota of 3 custom events"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_custom_event_counts_are_filled_in_from_stored_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let url = format!("sqlite://{}", path.display());
    let store = connect(&url).await.unwrap();
    events_of_an_older_schema(&*store, "old-instance").await;
    drop(store);
    // Back to the schema before the migration, with the events kept.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "ALTER TABLE instances DROP COLUMN custom_events; \
             ALTER TABLE instances DROP COLUMN custom_event_bytes; \
             DELETE FROM runtara_migrations WHERE name = 'custom_event_quota';",
        )
        .unwrap();
    drop(connection);
    let store = connect(&url).await.unwrap();
    counted_after_the_migration(&*store, "old-instance").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn postgres_custom_event_counts_are_filled_in_from_stored_events() {
    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
        return;
    };
    // A database of its own: the migration is undone and run again there.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("runtara_backfill_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let own_url = format!("{base}/{name}");
    let store = connect(&own_url).await.unwrap();
    events_of_an_older_schema(&*store, "old-instance").await;
    drop(store);
    let (client, connection) = tokio_postgres::connect(&own_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "ALTER TABLE instances DROP COLUMN custom_events, DROP COLUMN custom_event_bytes; \
             DELETE FROM runtara_migrations WHERE name = 'custom_event_quota';",
        )
        .await
        .unwrap();
    drop(client);
    let store = connect(&own_url).await.unwrap();
    counted_after_the_migration(&*store, "old-instance").await;
    drop(store);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// The message a database with an edited migration is refused with.
fn assert_changed_migration_refused(error: runtara_core::Error) {
    assert!(
        matches!(
            error,
            runtara_core::Error::MigrationChanged { version: 3, .. }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("migration 0003_images was changed after it was applied")
            && message.contains("recorded checksum 00000000deadbeef"),
        "unclear: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_changed_migration_is_refused_and_old_databases_get_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let url = format!("sqlite://{}", path.display());
    drop(connect(&url).await.unwrap());
    let checksums = |connection: &rusqlite::Connection| -> Vec<Option<String>> {
        let mut statement = connection
            .prepare("SELECT checksum FROM runtara_migrations ORDER BY version")
            .unwrap();
        let rows = statement.query_map([], |r| r.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    let expected: Vec<Option<String>> = runtara_core::migrations::SQLITE
        .iter()
        .map(|m| Some(m.checksum_hex()))
        .collect();
    let connection = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(checksums(&connection), expected, "recorded when applied");

    // A database from before checksums: no column; it is added and filled in on open.
    connection
        .execute_batch("ALTER TABLE runtara_migrations DROP COLUMN checksum")
        .unwrap();
    drop(connection);
    drop(connect(&url).await.unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(
        checksums(&connection),
        expected,
        "filled in for an old database"
    );

    // An applied migration whose recorded SQL is not this build's: refused.
    connection
        .execute(
            "UPDATE runtara_migrations SET checksum = '00000000deadbeef' WHERE version = 3",
            [],
        )
        .unwrap();
    drop(connection);
    let error = connect(&url).await.map(drop).unwrap_err();
    assert_changed_migration_refused(error);
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn postgres_a_changed_migration_is_refused_and_old_databases_get_checksums() {
    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
        return;
    };
    // A database of its own: its migrations table is tampered with.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("runtara_checksums_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let own_url = format!("{base}/{name}");
    drop(connect(&own_url).await.unwrap());
    let (client, connection) = tokio_postgres::connect(&own_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let checksums = || async {
        client
            .query(
                "SELECT checksum FROM runtara_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, Option<String>>(0))
            .collect::<Vec<_>>()
    };
    let expected: Vec<Option<String>> = runtara_core::migrations::POSTGRES
        .iter()
        .map(|m| Some(m.checksum_hex()))
        .collect();
    assert_eq!(checksums().await, expected, "recorded when applied");
    client
        .batch_execute("ALTER TABLE runtara_migrations DROP COLUMN checksum")
        .await
        .unwrap();
    drop(connect(&own_url).await.unwrap());
    assert_eq!(checksums().await, expected, "filled in for an old database");
    client
        .batch_execute(
            "UPDATE runtara_migrations SET checksum = '00000000deadbeef' WHERE version = 3",
        )
        .await
        .unwrap();
    let error = connect(&own_url).await.map(drop).unwrap_err();
    assert_changed_migration_refused(error);
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// The migrations table as builds before checksums made it.
const TABLE_WITHOUT_CHECKSUMS: &str = "CREATE TABLE runtara_migrations (\
     version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_database_of_an_older_build_gets_the_new_migrations_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let all = runtara_core::migrations::SQLITE;
    let older = &all[..all.len() - 2];
    // What a build from before checksums, two migrations behind, left.
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch(TABLE_WITHOUT_CHECKSUMS).unwrap();
    for migration in older {
        connection.execute_batch(migration.sql).unwrap();
        connection
            .execute(
                "INSERT INTO runtara_migrations (version, name, applied_at_ms) \
                 VALUES (?1, ?2, 0)",
                rusqlite::params![migration.version, migration.name],
            )
            .unwrap();
    }
    drop(connection);

    let url = format!("sqlite://{}", path.display());
    let store = connect(&url).await.unwrap();
    store.register_instance("after", "t", None).await.unwrap();
    drop(store);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let mut statement = connection
        .prepare("SELECT version, name, checksum FROM runtara_migrations ORDER BY version")
        .unwrap();
    let recorded: Vec<(u32, String, Option<String>)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<(u32, String, Option<String>)> = all
        .iter()
        .map(|m| (m.version, m.name.to_owned(), Some(m.checksum_hex())))
        .collect();
    assert_eq!(
        recorded, expected,
        "applied the rest, filled in the checksums"
    );
}

/// The refusal of a database that records a migration this build lacks.
fn assert_newer_database_refused(error: runtara_core::Error, latest: u32) {
    let expected_version = latest + 1;
    assert!(
        matches!(
            &error,
            runtara_core::Error::DatabaseNewer { version, latest: known, .. }
                if *version == expected_version && *known == latest
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "migrated by a newer build of runtara: it has migration \
             {expected_version:04}_from_the_future"
        )),
        "unclear: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_database_a_newer_build_migrated_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let url = format!("sqlite://{}", path.display());
    drop(connect(&url).await.unwrap());
    let latest = runtara_core::migrations::SQLITE.last().unwrap().version;
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute(
            "INSERT INTO runtara_migrations (version, name, applied_at_ms, checksum) \
             VALUES (?1, 'from_the_future', 0, '0123456789abcdef')",
            [latest + 1],
        )
        .unwrap();
    // And, as a build from before checksums would leave it, one checksum not filled in.
    connection
        .execute(
            "UPDATE runtara_migrations SET checksum = NULL WHERE version = 1",
            [],
        )
        .unwrap();
    drop(connection);

    let error = connect(&url).await.map(drop).unwrap_err();
    assert_newer_database_refused(error, latest);
    let connection = rusqlite::Connection::open(&path).unwrap();
    let unfilled: Option<String> = connection
        .query_row(
            "SELECT checksum FROM runtara_migrations WHERE version = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(unfilled, None, "nothing changed");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn postgres_a_database_a_newer_build_migrated_is_refused_and_left_as_it_is() {
    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
        return;
    };
    // A database of its own: its migrations table is tampered with.
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!("runtara_newer_{}", std::process::id());
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    let own_url = format!("{base}/{name}");
    drop(connect(&own_url).await.unwrap());
    let (client, connection) = tokio_postgres::connect(&own_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let latest = runtara_core::migrations::POSTGRES.last().unwrap().version;
    let future = i32::try_from(latest + 1).unwrap();
    client
        .execute(
            "INSERT INTO runtara_migrations (version, name, applied_at_ms, checksum) \
             VALUES ($1, 'from_the_future', 0, '0123456789abcdef')",
            &[&future],
        )
        .await
        .unwrap();
    client
        .batch_execute("UPDATE runtara_migrations SET checksum = NULL WHERE version = 1")
        .await
        .unwrap();

    let error = connect(&own_url).await.map(drop).unwrap_err();
    assert_newer_database_refused(error, latest);
    let unfilled: Option<String> = client
        .query_one(
            "SELECT checksum FROM runtara_migrations WHERE version = 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(unfilled, None, "nothing changed");
    drop(client);
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// The SQLite migration that allows `waiting` builds the instances table again: every
/// row, its start order and the signal counting must come through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_instances_keep_their_rows_order_and_signals_when_waiting_is_allowed() {
    use runtara_core::{InstanceStatus, NewInstance, SignalType};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v9.db");
    let all = runtara_core::migrations::SQLITE;
    let inbox = all
        .iter()
        .position(|m| m.name == "events_inbox")
        .expect("the migration is embedded");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch(TABLE_WITHOUT_CHECKSUMS).unwrap();
    for migration in &all[..inbox] {
        connection.execute_batch(migration.sql).unwrap();
        connection
            .execute(
                "INSERT INTO runtara_migrations (version, name, applied_at_ms) VALUES (?1, ?2, 0)",
                rusqlite::params![migration.version, migration.name],
            )
            .unwrap();
    }
    // Three instances created in one millisecond: only the rowid orders them.
    for (n, id) in ["c-first", "a-second", "b-third"].iter().enumerate() {
        connection
            .execute(
                "INSERT INTO instances (instance_id, tenant_id, status, epoch, created_at_ms) \
                 VALUES (?1, 't', ?2, 1, 1000)",
                rusqlite::params![id, if n == 1 { "running" } else { "pending" }],
            )
            .unwrap();
    }
    drop(connection);

    let url = format!("sqlite://{}", path.display());
    let store = connect(&url).await.unwrap();
    let order: Vec<String> = store
        .list_unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(
        order,
        ["c-first", "a-second", "b-third"],
        "start order kept"
    );
    // The signal triggers were made again: a queued pause is seen by the next checkpoint.
    store
        .send_signal("a-second", SignalType::Pause)
        .await
        .unwrap();
    let saved = store
        .save_checkpoint("a-second", 1, "step-1", b"s")
        .await
        .unwrap();
    assert_eq!(saved.signal.map(|s| s.signal_type), Some(SignalType::Pause));
    // And the new status is allowed.
    store
        .create_instance(NewInstance {
            instance_id: "new".into(),
            tenant_id: "t".into(),
            ..NewInstance::default()
        })
        .await
        .unwrap();
    let run = store.register_instance("new", "t", None).await.unwrap();
    store
        .take_event("new", run.epoch, "go#1", "go", None)
        .await
        .unwrap();
    let waiting = store.get_instance("new").await.unwrap().unwrap();
    assert_eq!(waiting.status, InstanceStatus::Waiting);
}
