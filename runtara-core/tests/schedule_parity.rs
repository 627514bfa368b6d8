//! Schedules in the store, against SQLite (a real file) and PostgreSQL (when
//! `RUNTARA_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use runtara_core::{Error, MissedFires, NewSchedule, Persistence};

#[macro_use]
mod support;
use support::unique;

parity!(schedules_are_stored_listed_moved_on_once_paused_and_deleted);

fn new_schedule(id: &str, tenant: &str, next: i64) -> NewSchedule {
    NewSchedule {
        schedule_id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        image_id: "img-1".into(),
        cron: "*/5 * * * * *".into(),
        timezone: "Europe/Berlin".into(),
        input: Some(b"{\"n\":1}".to_vec()),
        missed: MissedFires::Skip,
        next_fire_ms: Some(next),
        runtime: None,
    }
}

async fn schedules_are_stored_listed_moved_on_once_paused_and_deleted(store: Arc<dyn Persistence>) {
    let tenant = unique("sched-tenant");
    let (a, b) = (unique("sched-a"), unique("sched-b"));
    let created = store
        .create_schedule(new_schedule(&a, &tenant, 1_000))
        .await
        .unwrap();
    assert_eq!(created.missed, MissedFires::Skip);
    assert!(!created.paused);
    assert_eq!(created.next_fire_ms, Some(1_000));
    assert_eq!(created.last_fire_ms, None);
    let taken = store
        .create_schedule(new_schedule(&a, &tenant, 1_000))
        .await;
    assert!(
        matches!(taken, Err(Error::InvalidInput { .. })),
        "{taken:?}"
    );
    // A runtime's schedule keeps its runtime; a server's has none.
    let of_runtime = store
        .create_schedule(NewSchedule {
            runtime: Some("billing".into()),
            ..new_schedule(&b, &tenant, 2_000)
        })
        .await
        .unwrap();
    assert_eq!(of_runtime.runtime.as_deref(), Some("billing"));
    assert_eq!(created.runtime, None);
    let listed: Vec<_> = store
        .list_schedules(Some(&tenant))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.schedule_id)
        .collect();
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    let b_again = store.get_schedule(&b).await.unwrap().unwrap();
    assert_eq!(b_again.runtime.as_deref(), Some("billing"));
    let all = store.list_schedules(None).await.unwrap();
    assert!(all.iter().any(|s| s.schedule_id == a) && all.iter().any(|s| s.schedule_id == b));
    // Moved on once: a second server with the same expected time finds it moved.
    assert!(store
        .advance_schedule(&a, 1_000, Some(1_000), Some(6_000))
        .await
        .unwrap());
    assert!(!store
        .advance_schedule(&a, 1_000, Some(1_000), Some(6_000))
        .await
        .unwrap());
    let moved = store.get_schedule(&a).await.unwrap().unwrap();
    assert_eq!(
        (moved.next_fire_ms, moved.last_fire_ms),
        (Some(6_000), Some(1_000))
    );
    // A skip keeps the last fire.
    assert!(store
        .advance_schedule(&a, 6_000, None, Some(11_000))
        .await
        .unwrap());
    let skipped = store.get_schedule(&a).await.unwrap().unwrap();
    assert_eq!(
        (skipped.next_fire_ms, skipped.last_fire_ms),
        (Some(11_000), Some(1_000))
    );
    // Paused: not moved on; resumed with a new next fire.
    let paused = store
        .set_schedule_paused(&a, true, None)
        .await
        .unwrap()
        .unwrap();
    assert!(paused.paused && paused.next_fire_ms.is_none());
    assert!(!store
        .advance_schedule(&a, 11_000, None, Some(16_000))
        .await
        .unwrap());
    let resumed = store
        .set_schedule_paused(&a, false, Some(21_000))
        .await
        .unwrap()
        .unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.next_fire_ms, Some(21_000));
    assert!(store.delete_schedule(&a).await.unwrap());
    assert!(!store.delete_schedule(&a).await.unwrap());
    assert!(store.get_schedule(&a).await.unwrap().is_none());
    assert!(store
        .set_schedule_paused(&a, true, None)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store.create_schedule(new_schedule("", &tenant, 1)).await,
        Err(Error::InvalidInput { .. })
    ));
}
