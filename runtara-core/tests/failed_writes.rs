//! A write the database refuses is an error to its caller, stores nothing, and does not
//! undo the writes committed alongside it. The failure is injected with a trigger, as a
//! full disk or a broken constraint would cause it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use runtara_core::{connect, Persistence};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Saves a checkpoint on a refused instance and checks that nothing was stored.
async fn refused_save_stores_nothing(store: &Arc<dyn Persistence>, id: &str, epoch: i64) {
    let error = store
        .save_checkpoint(id, epoch, "a", b"lost")
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("simulated write failure"),
        "{error:?}"
    );
    assert_eq!(store.get_checkpoint(id, "a").await.unwrap(), None);
    let record = store.get_instance(id).await.unwrap().unwrap();
    assert_eq!((record.checkpoint_count, record.checkpoint_id), (0, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_refused_checkpoint_is_an_error_and_its_batch_neighbours_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtara.db");
    let store = connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let bad = store
        .register_instance("bad", "t", None)
        .await
        .unwrap()
        .epoch;
    let good = store
        .register_instance("good", "t", None)
        .await
        .unwrap()
        .epoch;
    // Another process makes every checkpoint insert of `bad` fail.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints WHEN NEW.instance_id = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END;",
        )
        .unwrap();
    refused_save_stores_nothing(&store, "bad", bad).await;

    // Concurrent saves share commits; the refused ones must not take the others down.
    let tasks: Vec<_> = (0..100)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let (id, epoch) = if n % 2 == 0 {
                    ("good", good)
                } else {
                    ("bad", bad)
                };
                store
                    .save_checkpoint(id, epoch, &format!("c{n}"), b"v")
                    .await
                    .is_ok()
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), n % 2 == 0, "save {n}");
    }
    assert_eq!(store.list_checkpoints("good").await.unwrap().len(), 50);
    assert!(store.list_checkpoints("bad").await.unwrap().is_empty());
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn postgres_a_refused_checkpoint_is_an_error_and_stores_nothing() {
    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
        return;
    };
    let store = connect(&url).await.unwrap();
    let id = unique("refused");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The database is shared between runs: the trigger is named for this run, fires for
    // this instance only, and is dropped before any assertion can fail.
    let name = format!("runtara_test_refuse_{}", unique("t").replace('-', "_"));
    client
        .batch_execute(&format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.instance_id = '{id}' THEN RAISE EXCEPTION 'simulated write failure'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER {name} BEFORE INSERT ON checkpoints \
               FOR EACH ROW EXECUTE FUNCTION {name}();"
        ))
        .await
        .unwrap();
    let result = store.save_checkpoint(&id, epoch, "a", b"lost").await;
    client
        .batch_execute(&format!(
            "DROP TRIGGER {name} ON checkpoints; DROP FUNCTION {name}();"
        ))
        .await
        .unwrap();
    let error = result.unwrap_err();
    assert!(
        format!("{error:?}").contains("simulated write failure"),
        "{error:?}"
    );
    assert_eq!(store.get_checkpoint(&id, "a").await.unwrap(), None);
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!((record.checkpoint_count, record.checkpoint_id), (0, None));
    // With the failure gone, the same save goes through.
    store
        .save_checkpoint(&id, epoch, "a", b"kept")
        .await
        .unwrap();
}
