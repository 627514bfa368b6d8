//! PostgreSQL-specific: a save that waits for the instance row lock while another save of
//! the same checkpoint id commits still returns the stored state (its statement snapshot
//! predates that commit, so the backend must look again).
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runtara_core::connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saves_queued_behind_a_row_lock_store_one_id_once() {
    let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
        eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
        return;
    };
    let store = connect(&url).await.unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!("row-lock-{}-{nanos}", std::process::id());
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;

    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let holder = client.transaction().await.unwrap();
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
