//! PostgreSQL-specific: a save that waits for the instance row lock while another save of
//! the same checkpoint id commits still returns the stored state (its statement snapshot
//! predates that commit, so the backend must look again); and a save that waits for it
//! while another transaction moves the instance to a new epoch is fenced.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use runtara_core::{connect, Error, Persistence};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn saves_queued_behind_a_row_lock_store_one_id_once() {
    let Some(mut run) = Running::register("row-lock").await else {
        return;
    };
    let (store, id, epoch) = (run.store.clone(), run.id.clone(), run.epoch);
    let holder = run.holder.transaction().await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM instances WHERE instance_id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .unwrap();
    let saves: Vec<_> = (0..4u8)
        .map(|n| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                store
                    .save_sleep(&id, epoch, "same", &[n], 100 + i64::from(n))
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Let every save take its snapshot and queue for the lock, then release it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    holder.commit().await.unwrap();

    let mut outcomes = Vec::new();
    for save in saves {
        outcomes.push(save.await.unwrap());
    }
    let stored: Vec<_> = outcomes
        .iter()
        .filter(|o| o.existing_state.is_none())
        .collect();
    assert_eq!(stored.len(), 1, "{outcomes:?}");
    let wake = stored[0].wake_at_ms;
    let state = store.get_checkpoint(&id, "same").await.unwrap().unwrap();
    for outcome in &outcomes {
        assert_eq!(outcome.wake_at_ms, wake);
        if let Some(existing) = &outcome.existing_state {
            assert_eq!(existing, &state);
        }
    }
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.checkpoint_count, record.wake_at_ms),
        (1, Some(wake))
    );
}

/// A running instance, and two more connections: one for a transaction that holds the
/// instance row, one to watch the saves wait for it.
struct Running {
    store: Arc<dyn Persistence>,
    id: String,
    epoch: i64,
    holder: tokio_postgres::Client,
    watcher: tokio_postgres::Client,
}

impl Running {
    /// Registers a new instance; `None` when `RUNTARA_TEST_POSTGRES_URL` is not set.
    async fn register(prefix: &str) -> Option<Running> {
        let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
            eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
            return None;
        };
        let store = connect(&url).await.unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let id = format!("{prefix}-{}-{nanos}", std::process::id());
        let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
        Some(Running {
            store,
            id,
            epoch,
            holder: client(&url).await,
            watcher: client(&url).await,
        })
    }
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Waits until `count` checkpoint statements wait for a lock. Concurrent saves of one
/// instance take two connections at most: the first runs alone, the others queue for one
/// group-commit batch.
async fn until_saves_wait(client: &tokio_postgres::Client, count: i64) {
    let waiting = async {
        loop {
            let row = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                     AND query LIKE '%INSERT INTO checkpoints%'",
                    &[],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the saves never waited for the instance row lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn checkpoints_queued_behind_a_row_lock_store_one_id_once() {
    let Some(mut run) = Running::register("row-lock-checkpoint").await else {
        return;
    };
    let (store, id, epoch) = (run.store.clone(), run.id.clone(), run.epoch);
    let holder = run.holder.transaction().await.unwrap();
    holder
        .execute(
            "SELECT 1 FROM instances WHERE instance_id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .unwrap();
    let saves: Vec<_> = (0..4u8)
        .map(|n| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move { store.save_checkpoint(&id, epoch, "same", &[n]).await })
        })
        .collect();
    until_saves_wait(&run.watcher, 2).await;
    holder.commit().await.unwrap();

    let mut outcomes = Vec::new();
    for save in saves {
        outcomes.push(save.await.unwrap().unwrap());
    }
    let state = store.get_checkpoint(&id, "same").await.unwrap().unwrap();
    let stored = outcomes
        .iter()
        .filter(|o| o.existing_state.is_none())
        .count();
    assert_eq!(stored, 1, "{outcomes:?}");
    for outcome in &outcomes {
        if let Some(existing) = &outcome.existing_state {
            assert_eq!(existing, &state);
        }
    }
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.checkpoint_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_postgres),
    ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
)]
async fn a_save_queued_behind_a_new_epoch_is_fenced_and_stores_nothing() {
    let Some(mut run) = Running::register("row-lock-fence").await else {
        return;
    };
    let (store, id, epoch) = (run.store.clone(), run.id.clone(), run.epoch);
    // Another run taking over: the row moves to the next epoch, not yet committed.
    let holder = run.holder.transaction().await.unwrap();
    holder
        .execute(
            "UPDATE instances SET epoch = epoch + 1 WHERE instance_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let save = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move { store.save_checkpoint(&id, epoch, "late", b"x").await })
    };
    let sleep = {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move { store.save_sleep(&id, epoch, "nap", b"x", 5).await })
    };
    until_saves_wait(&run.watcher, 2).await;
    holder.commit().await.unwrap();

    let error = save.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Fenced { .. }), "{error:?}");
    let error = sleep.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::Fenced { .. }), "{error:?}");
    assert_eq!(store.get_checkpoint(&id, "late").await.unwrap(), None);
    assert_eq!(store.get_checkpoint(&id, "nap").await.unwrap(), None);
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!((record.checkpoint_count, record.wake_at_ms), (0, None));
}
