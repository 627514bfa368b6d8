//! One suite, every `Persistence` behaviour, run against SQLite (a real file) and
//! PostgreSQL (when `RUNTARA_TEST_POSTGRES_URL` is set; CI always sets it).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use runtara_core::{
    Error, EventQuota, ImageRecord, InstanceFilter, InstanceStatus, NewImage, NewInstance,
    NewRuntimeInstance, Persistence, RuntimeStart, SignalOutcome, SignalType, WorkerPool,
};

#[macro_use]
mod support;
use support::unique;

parity!(
    unfinished_instances_come_in_the_order_they_were_created,
    a_pause_queued_for_a_pending_instance_is_taken_without_a_run,
    a_runtime_start_is_registered_at_once_or_pending_and_never_twice,
    a_runtime_finds_its_own_unfinished_instances_oldest_first,
    register_creates_then_resumes_with_a_new_epoch,
    concurrent_first_registers_create_once_and_take_distinct_epochs,
    register_refuses_another_tenant_and_terminal_instances,
    create_instance_is_pending_and_unique,
    checkpoint_is_insert_if_absent,
    writes_with_an_old_epoch_are_fenced,
    terminal_states_are_final,
    checkpoint_needs_a_running_instance,
    signals_queue_with_cancel_outranking_pause,
    signal_rules_follow_the_state,
    acknowledged_signals_move_the_instance,
    sleep_records_and_returns_the_wake_time,
    retry_attempts_are_idempotent_and_replayed,
    load_replay_returns_checkpoints_in_order,
    list_instances_filters_pages_and_counts,
    events_are_recorded_in_order,
    set_status_moves_only_from_the_listed_states,
    concurrent_checkpoints_are_each_stored_once,
    bad_input_is_refused_and_changes_nothing,
    every_run_write_is_fenced_and_fencing_is_checked_before_terminal,
    every_run_write_after_the_end_is_refused_and_changes_nothing,
    a_recorded_checkpoint_is_refused_when_not_running,
    heartbeat_needs_the_running_epoch,
    acknowledging_a_pause_settles_every_queued_pause,
    signals_to_instances_without_a_process,
    resume_is_answered_by_the_next_register,
    suspend_settles_pending_pauses,
    sleep_over_a_plain_checkpoint_keeps_the_given_wake_time,
    retry_attempts_need_a_one_based_number_and_keep_record_order,
    signals_and_transitions_are_recorded_as_events,
    set_status_refuses_unknown_instances_and_terminal_sources,
    concurrent_instances_each_store_their_checkpoints,
    empty_ids_are_refused_everywhere,
    list_instances_is_newest_first,
    concurrent_saves_of_one_id_store_it_once,
    images_are_versioned_per_tenant_and_name,
    worker_pools_are_stored_and_listed,
    an_instance_created_to_run_now_is_registered,
    an_image_in_use_cannot_be_deleted,
    list_unfinished_spans_tenants,
    resume_withdraws_a_pause_not_yet_taken,
    every_read_shows_the_last_checkpoint_and_counts_it_as_a_sign_of_life,
    pages_of_checkpoints_are_bounded_ordered_and_whole,
    a_step_records_its_producer_and_a_repeat_names_it,
    a_step_failure_is_recorded_once_replayed_and_cleared,
    a_queued_resume_is_found_until_a_register_settles_it,
    a_run_going_to_sleep_takes_a_queued_cancel_or_pause_instead,
    a_brief_listing_has_the_same_instances_without_history,
    custom_events_are_bounded_and_end_with_the_instance,
    concurrent_custom_events_never_pass_the_quota,
    pages_of_events_are_bounded_ordered_and_whole,
    events_are_counted_by_kind,
);

use support::{pending, running, status};

async fn register_creates_then_resumes_with_a_new_epoch(store: Arc<dyn Persistence>) {
    let id = unique("reg");
    let first = store.register_instance(&id, "t", None).await.unwrap();
    assert_eq!(
        (first.epoch, first.created, first.previous_status),
        (1, true, None)
    );
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.tenant_id.as_str()),
        (InstanceStatus::Running, "t")
    );
    assert!(record.started_at_ms.is_some());

    let second = store
        .register_instance(&id, "t", Some("step-3"))
        .await
        .unwrap();
    assert_eq!(second.epoch, 2);
    assert!(!second.created);
    assert_eq!(second.previous_status, Some(InstanceStatus::Running));
    assert_eq!(store.get_instance(&id).await.unwrap().unwrap().epoch, 2);
}

async fn concurrent_first_registers_create_once_and_take_distinct_epochs(
    store: Arc<dyn Persistence>,
) {
    for round in 0..5 {
        let id = unique(&format!("race{round}"));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move { store.register_instance(&id, "t", None).await })
            })
            .collect();
        let mut epochs = Vec::new();
        let mut created = 0;
        for task in tasks {
            let registration = task.await.unwrap().unwrap();
            created += usize::from(registration.created);
            epochs.push(registration.epoch);
        }
        epochs.sort_unstable();
        assert_eq!(created, 1, "exactly one register created the instance");
        assert_eq!(epochs, (1..=8).collect::<Vec<i64>>());
        assert_eq!(store.get_instance(&id).await.unwrap().unwrap().epoch, 8);
    }
}

async fn register_refuses_another_tenant_and_terminal_instances(store: Arc<dyn Persistence>) {
    let id = unique("tenant");
    let reg = store.register_instance(&id, "a", None).await.unwrap();
    let error = store.register_instance(&id, "b", None).await.unwrap_err();
    assert!(matches!(error, Error::TenantMismatch { .. }), "{error:?}");
    store
        .complete_instance(&id, reg.epoch, b"out")
        .await
        .unwrap();
    let error = store.register_instance(&id, "a", None).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Terminal {
                status: InstanceStatus::Completed,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("instance `{id}` is completed; a finished instance cannot change")
    );
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.epoch),
        (InstanceStatus::Completed, 1),
        "nothing changed"
    );
}

async fn create_instance_is_pending_and_unique(store: Arc<dyn Persistence>) {
    let id = unique("create");
    let image = store
        .insert_image(new_image("t", &unique("create-image"), &"ab".repeat(32)))
        .await
        .unwrap();
    // An image that does not exist (or is gone) is refused, and nothing is created.
    let gone = store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: "t".into(),
            image_id: Some("img-gone".into()),
            input: None,
            run_now: false,
            parent_id: None,
            detached: false,
        })
        .await;
    assert_err!(gone, Error::ImageNotFound { .. });
    assert_eq!(store.get_instance(&id).await.unwrap(), None);
    let record = store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: "t".into(),
            image_id: Some(image.image_id.clone()),
            input: Some(b"{\"x\":1}".to_vec()),
            run_now: false,
            parent_id: None,
            detached: false,
        })
        .await
        .unwrap();
    assert_eq!((record.status, record.epoch), (InstanceStatus::Pending, 0));
    assert_eq!(record.input.as_deref(), Some(&b"{\"x\":1}"[..]));
    let error = store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: "t".into(),
            ..NewInstance::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InstanceExists { .. }), "{error:?}");
    let reg = store.register_instance(&id, "t", None).await.unwrap();
    assert_eq!(
        (reg.epoch, reg.previous_status),
        (1, Some(InstanceStatus::Pending))
    );
}

async fn checkpoint_is_insert_if_absent(store: Arc<dyn Persistence>) {
    let id = unique("cp");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let first = store
        .save_checkpoint(&id, epoch, "a", b"one")
        .await
        .unwrap();
    assert_eq!(first.existing_state, None);
    let again = store
        .save_checkpoint(&id, epoch, "a", b"two")
        .await
        .unwrap();
    assert_eq!(again.existing_state.as_deref(), Some(&b"one"[..]));
    assert_eq!(
        store.get_checkpoint(&id, "a").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(store.get_checkpoint(&id, "missing").await.unwrap(), None);
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.checkpoint_id.as_deref(), record.checkpoint_count),
        (Some("a"), 1)
    );
}

async fn writes_with_an_old_epoch_are_fenced(store: Arc<dyn Persistence>) {
    let id = unique("fence");
    let old = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let new = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let error = store
        .save_checkpoint(&id, old, "x", b"1")
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Fenced { epoch, current, .. } if epoch == old && current == new),
        "{error:?}"
    );
    assert!(matches!(
        store.heartbeat(&id, old).await,
        Err(Error::Fenced { .. })
    ));
    assert!(matches!(
        store.complete_instance(&id, old, b"").await,
        Err(Error::Fenced { .. })
    ));
    assert!(matches!(
        store.record_retry_attempt(&id, old, "x", 1, None).await,
        Err(Error::Fenced { .. })
    ));
    assert_eq!(
        store.get_checkpoint(&id, "x").await.unwrap(),
        None,
        "nothing stored"
    );
    store.save_checkpoint(&id, new, "x", b"2").await.unwrap();
}

async fn terminal_states_are_final(store: Arc<dyn Persistence>) {
    for end in ["completed", "failed", "cancelled"] {
        let id = unique(end);
        let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
        match end {
            "completed" => store.complete_instance(&id, epoch, b"out").await.unwrap(),
            "failed" => store.fail_instance(&id, epoch, "boom").await.unwrap(),
            _ => {
                store.send_signal(&id, SignalType::Cancel).await.unwrap();
                store
                    .acknowledge_signal(&id, epoch, SignalType::Cancel, true)
                    .await
                    .unwrap();
            }
        }
        let before = store.get_instance(&id).await.unwrap().unwrap();
        assert!(before.status.is_terminal() && before.finished_at_ms.is_some());
        assert!(store
            .save_checkpoint(&id, epoch, "late", b"")
            .await
            .is_err());
        assert!(store.complete_instance(&id, epoch, b"late").await.is_err());
        assert!(store.fail_instance(&id, epoch, "late").await.is_err());
        assert!(store.suspend_instance(&id, epoch).await.is_err());
        let signal = store.send_signal(&id, SignalType::Pause).await.unwrap_err();
        assert!(matches!(signal, Error::Terminal { .. }), "{signal:?}");
        assert!(signal
            .to_string()
            .contains("a finished instance cannot change"));
        assert!(!store
            .set_status(&id, &InstanceStatus::ALL, InstanceStatus::Running, None)
            .await
            .unwrap());
        assert_eq!(
            store.get_instance(&id).await.unwrap().unwrap(),
            before,
            "{end} changed"
        );
    }
}

async fn checkpoint_needs_a_running_instance(store: Arc<dyn Persistence>) {
    let id = unique("notrunning");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    store.suspend_instance(&id, epoch).await.unwrap();
    let error = store
        .save_checkpoint(&id, epoch, "x", b"")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotRunning {
                status: InstanceStatus::Suspended,
                ..
            }
        ),
        "{error:?}"
    );
    let error = store
        .save_checkpoint("no-such-instance", 1, "x", b"")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InstanceNotFound { .. }), "{error:?}");
}

async fn signals_queue_with_cancel_outranking_pause(store: Arc<dyn Persistence>) {
    let id = unique("queue");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
    let pause = store.send_signal(&id, SignalType::Pause).await.unwrap();
    assert!(matches!(pause, SignalOutcome::Queued(_)));
    store.send_signal(&id, SignalType::Cancel).await.unwrap();
    let top = store.pending_signal(&id).await.unwrap().unwrap();
    assert_eq!(top.signal_type, SignalType::Cancel);
    let outcome = store.save_checkpoint(&id, epoch, "c", b"").await.unwrap();
    assert_eq!(
        outcome.signal.map(|s| s.signal_type),
        Some(SignalType::Cancel)
    );
    // Dropping the cancel reveals the pause still queued (a queue, not one slot).
    store
        .acknowledge_signal(&id, epoch, SignalType::Cancel, false)
        .await
        .unwrap();
    let next = store.pending_signal(&id).await.unwrap().unwrap();
    assert_eq!(next.signal_type, SignalType::Pause);
    assert_eq!(
        store.get_instance(&id).await.unwrap().unwrap().status,
        InstanceStatus::Running
    );
}

async fn signal_rules_follow_the_state(store: Arc<dyn Persistence>) {
    // Cancel of a suspended instance applies at once; so does cancel of a pending one.
    let id = unique("rules");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let error = store
        .send_signal(&id, SignalType::Resume)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::SignalRejected { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("cannot resume instance `{id}`: it is running")
    );
    store.suspend_instance(&id, epoch).await.unwrap();
    let error = store.send_signal(&id, SignalType::Pause).await.unwrap_err();
    assert!(matches!(error, Error::SignalRejected { .. }), "{error:?}");
    assert!(matches!(
        store.send_signal(&id, SignalType::Resume).await.unwrap(),
        SignalOutcome::Queued(_)
    ));
    assert_eq!(
        store.send_signal(&id, SignalType::Cancel).await.unwrap(),
        SignalOutcome::Applied(InstanceStatus::Cancelled)
    );
    assert_eq!(
        store.get_instance(&id).await.unwrap().unwrap().status,
        InstanceStatus::Cancelled
    );

    let pending = pending(&store, "pending").await;
    assert_eq!(
        store
            .send_signal(&pending, SignalType::Cancel)
            .await
            .unwrap(),
        SignalOutcome::Applied(InstanceStatus::Cancelled)
    );
    let error = store
        .send_signal("no-such-instance", SignalType::Cancel)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InstanceNotFound { .. }));
}

async fn acknowledged_signals_move_the_instance(store: Arc<dyn Persistence>) {
    let id = unique("ack");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    store
        .acknowledge_signal(&id, epoch, SignalType::Pause, true)
        .await
        .unwrap();
    assert_eq!(
        store.get_instance(&id).await.unwrap().unwrap().status,
        InstanceStatus::Suspended
    );
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
    // Resume: a new run takes over.
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    store.send_signal(&id, SignalType::Cancel).await.unwrap();
    store
        .acknowledge_signal(&id, epoch, SignalType::Cancel, true)
        .await
        .unwrap();
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Cancelled);
    assert!(record.finished_at_ms.is_some());
}

async fn sleep_records_and_returns_the_wake_time(store: Arc<dyn Persistence>) {
    let id = unique("sleep");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let first = store
        .save_sleep(&id, epoch, "nap", b"s", 5_000)
        .await
        .unwrap();
    assert_eq!((first.wake_at_ms, first.existing_state), (5_000, None));
    assert_eq!(
        store.get_instance(&id).await.unwrap().unwrap().wake_at_ms,
        Some(5_000)
    );
    // A restarted run asking again gets the wake time recorded first.
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let again = store
        .save_sleep(&id, epoch, "nap", b"s", 9_000)
        .await
        .unwrap();
    assert_eq!(again.wake_at_ms, 5_000);
    assert_eq!(again.existing_state.as_deref(), Some(&b"s"[..]));
    store.mark_sleeping(&id, epoch).await.unwrap();
    assert_eq!(
        store.get_instance(&id).await.unwrap().unwrap().status,
        InstanceStatus::Sleeping
    );
}

async fn retry_attempts_are_idempotent_and_replayed(store: Arc<dyn Persistence>) {
    let id = unique("retry");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    store
        .record_retry_attempt(&id, epoch, "f::k", 1, Some("e1"))
        .await
        .unwrap();
    store
        .record_retry_attempt(&id, epoch, "f::k", 1, Some("again"))
        .await
        .unwrap();
    store
        .record_retry_attempt(&id, epoch, "f::k", 2, None)
        .await
        .unwrap();
    store
        .record_retry_attempt(&id, epoch, "g::k", 1, None)
        .await
        .unwrap();
    let attempts = store.list_retry_attempts(&id).await.unwrap();
    assert_eq!(attempts.len(), 3);
    let first = attempts
        .iter()
        .find(|a| a.checkpoint_id == "f::k" && a.attempt == 1)
        .unwrap();
    assert_eq!(
        first.error.as_deref(),
        Some("e1"),
        "recording twice is a no-op"
    );
    let mut replay = store.load_replay(&id).await.unwrap().retry_attempts;
    replay.sort();
    assert_eq!(replay, [("f::k".to_string(), 2), ("g::k".to_string(), 1)]);
}

async fn load_replay_returns_checkpoints_in_order(store: Arc<dyn Persistence>) {
    let id = unique("replay");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    for n in [3, 1, 2] {
        store
            .save_checkpoint(&id, epoch, &format!("step-{n}"), n.to_string().as_bytes())
            .await
            .unwrap();
    }
    let log = store.load_replay(&id).await.unwrap();
    let ids: Vec<_> = log.checkpoints.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["step-3", "step-1", "step-2"]);
    assert_eq!(log.checkpoints[0].1, b"3");
    let listed = store.list_checkpoints(&id).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[1].checkpoint_id, "step-1");
}

async fn list_instances_filters_pages_and_counts(store: Arc<dyn Persistence>) {
    let tenant = unique("tenant");
    let mut ids = Vec::new();
    for n in 0..5 {
        let id = unique(&format!("list{n}"));
        let epoch = store
            .register_instance(&id, &tenant, None)
            .await
            .unwrap()
            .epoch;
        if n % 2 == 0 {
            store.complete_instance(&id, epoch, b"").await.unwrap();
        }
        ids.push(id);
    }
    store
        .register_instance(&unique("other"), "someone-else", None)
        .await
        .unwrap();
    let all = store
        .list_instances(&InstanceFilter {
            tenant_id: tenant.clone(),
            ..InstanceFilter::default()
        })
        .await
        .unwrap();
    assert_eq!((all.instances.len(), all.total), (5, 5));
    assert!(all.instances.iter().all(|i| i.tenant_id == tenant));
    let completed = store
        .list_instances(&InstanceFilter {
            tenant_id: tenant.clone(),
            status: Some(InstanceStatus::Completed),
            limit: Some(2),
            offset: 1,
        })
        .await
        .unwrap();
    assert_eq!((completed.instances.len(), completed.total), (2, 3));
    assert!(completed
        .instances
        .iter()
        .all(|i| i.status == InstanceStatus::Completed));
}

async fn events_are_recorded_in_order(store: Arc<dyn Persistence>) {
    let id = unique("events");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    store
        .record_event(&id, &"custom".into(), Some("progress"), Some(b"50"))
        .await
        .unwrap();
    store.complete_instance(&id, epoch, b"done").await.unwrap();
    let kinds: Vec<_> = store
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["registered", "custom", "completed"]);
    let error = store
        .record_event("no-such-instance", &"custom".into(), None, None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InstanceNotFound { .. }));
}

async fn set_status_moves_only_from_the_listed_states(store: Arc<dyn Persistence>) {
    let id = unique("setstatus");
    store.register_instance(&id, "t", None).await.unwrap();
    assert!(!store
        .set_status(
            &id,
            &[InstanceStatus::Suspended],
            InstanceStatus::Failed,
            Some("x")
        )
        .await
        .unwrap());
    assert!(store
        .set_status(
            &id,
            &[InstanceStatus::Running],
            InstanceStatus::Failed,
            Some("crashed 3 times")
        )
        .await
        .unwrap());
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.error.as_deref()),
        (InstanceStatus::Failed, Some("crashed 3 times"))
    );
    assert!(record.finished_at_ms.is_some());
}

async fn concurrent_checkpoints_are_each_stored_once(store: Arc<dyn Persistence>) {
    let id = unique("concurrent");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                // Every id twice: exactly one of each pair stores it.
                let a = store
                    .save_checkpoint(&id, epoch, &format!("c{n}"), b"v")
                    .await
                    .unwrap();
                let b = store
                    .save_checkpoint(&id, epoch, &format!("c{n}"), b"w")
                    .await
                    .unwrap();
                (a.existing_state.is_none(), b.existing_state.is_none())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), (true, false));
    }
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.checkpoint_count, 200);
    assert_eq!(store.list_checkpoints(&id).await.unwrap().len(), 200);
}

async fn bad_input_is_refused_and_changes_nothing(store: Arc<dyn Persistence>) {
    let error = store.register_instance("", "t", None).await.unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error:?}");
    assert_eq!(error.to_string(), "invalid instance id: must not be empty");
    let id = unique("bad");
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    assert!(matches!(
        store.save_checkpoint(&id, epoch, "", b"").await,
        Err(Error::InvalidInput { .. })
    ));
    let long = "x".repeat(runtara_core::MAX_ID_LEN + 1);
    assert!(matches!(
        store.save_checkpoint(&id, epoch, &long, b"").await,
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(
        store
            .get_instance(&id)
            .await
            .unwrap()
            .unwrap()
            .checkpoint_count,
        0
    );
}

async fn every_run_write_is_fenced_and_fencing_is_checked_before_terminal(
    store: Arc<dyn Persistence>,
) {
    let (id, old) = running(&store, "fence-all").await;
    let new = store.register_instance(&id, "t", None).await.unwrap().epoch;
    assert_eq!(new, old + 1);
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    assert_err!(
        store.save_sleep(&id, old, "s", b"", 1).await,
        Error::Fenced { .. }
    );
    assert_err!(store.mark_sleeping(&id, old).await, Error::Fenced { .. });
    assert_err!(store.suspend_instance(&id, old).await, Error::Fenced { .. });
    assert_err!(
        store.fail_instance(&id, old, "x").await,
        Error::Fenced { .. }
    );
    assert_err!(
        store
            .acknowledge_signal(&id, old, SignalType::Pause, true)
            .await,
        Error::Fenced { .. }
    );
    assert_err!(
        store
            .acknowledge_signal(&id, old, SignalType::Pause, false)
            .await,
        Error::Fenced { .. }
    );
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.epoch, record.checkpoint_count),
        (InstanceStatus::Running, new, 0)
    );
    assert!(
        store.pending_signal(&id).await.unwrap().is_some(),
        "the pause is still queued"
    );
    // The new run ends the instance; the old one is told it was fenced out, not that
    // the instance is finished.
    store.complete_instance(&id, new, b"done").await.unwrap();
    assert_err!(
        store.save_checkpoint(&id, old, "late", b"").await,
        Error::Fenced { epoch, current, .. } if epoch == old && current == new
    );
    assert_err!(
        store.save_checkpoint(&id, new, "late", b"").await,
        Error::Terminal {
            status: InstanceStatus::Completed,
            ..
        }
    );
}

async fn every_run_write_after_the_end_is_refused_and_changes_nothing(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "ended").await;
    store.save_checkpoint(&id, epoch, "a", b"1").await.unwrap();
    store.complete_instance(&id, epoch, b"out").await.unwrap();
    let before = store.get_instance(&id).await.unwrap().unwrap();
    let events = store.list_events(&id).await.unwrap().len();
    assert_eq!(before.output.as_deref(), Some(&b"out"[..]));
    assert!(before.finished_at_ms.is_some());

    let terminal = |r: runtara_core::Result<()>| {
        assert_err!(
            r,
            Error::Terminal {
                status: InstanceStatus::Completed,
                ..
            }
        )
    };
    terminal(store.heartbeat(&id, epoch).await);
    terminal(store.mark_sleeping(&id, epoch).await);
    terminal(store.record_retry_attempt(&id, epoch, "a", 1, None).await);
    terminal(
        store
            .acknowledge_signal(&id, epoch, SignalType::Cancel, true)
            .await,
    );
    terminal(store.complete_instance(&id, epoch, b"again").await);
    assert_err!(
        store.save_checkpoint(&id, epoch, "a", b"other").await,
        Error::Terminal { .. }
    );
    assert_err!(
        store.save_sleep(&id, epoch, "b", b"", 1).await,
        Error::Terminal { .. }
    );
    assert_err!(
        store.register_instance(&id, "t", None).await,
        Error::Terminal { .. }
    );
    for signal in [SignalType::Cancel, SignalType::Pause, SignalType::Resume] {
        let error = store.send_signal(&id, signal).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("instance `{id}` is completed; a finished instance cannot change")
        );
    }
    assert!(!store
        .set_status(&id, &InstanceStatus::ALL, InstanceStatus::Failed, Some("x"))
        .await
        .unwrap());
    assert_eq!(store.get_instance(&id).await.unwrap().unwrap(), before);
    assert_eq!(store.list_events(&id).await.unwrap().len(), events);
    assert_eq!(store.list_checkpoints(&id).await.unwrap().len(), 1);
    assert!(store.list_retry_attempts(&id).await.unwrap().is_empty());
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
}

async fn a_recorded_checkpoint_is_refused_when_not_running(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "recorded").await;
    store.save_checkpoint(&id, epoch, "a", b"1").await.unwrap();
    store.suspend_instance(&id, epoch).await.unwrap();
    assert_err!(
        store.save_checkpoint(&id, epoch, "a", b"1").await,
        Error::NotRunning {
            status: InstanceStatus::Suspended,
            ..
        }
    );
    assert_err!(
        store.save_sleep(&id, epoch, "a", b"1", 5).await,
        Error::NotRunning { .. }
    );
    assert_err!(
        store.record_retry_attempt(&id, epoch, "a", 1, None).await,
        Error::NotRunning { .. }
    );
    assert_err!(
        store.complete_instance(&id, epoch, b"").await,
        Error::NotRunning { .. }
    );
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.checkpoint_count, record.wake_at_ms),
        (InstanceStatus::Suspended, 1, None)
    );
}

async fn heartbeat_needs_the_running_epoch(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "heartbeat").await;
    let before = store
        .get_instance(&id)
        .await
        .unwrap()
        .unwrap()
        .heartbeat_at_ms
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store.heartbeat(&id, epoch).await.unwrap();
    let after = store
        .get_instance(&id)
        .await
        .unwrap()
        .unwrap()
        .heartbeat_at_ms
        .unwrap();
    assert!(after > before, "{after} > {before}");
    assert_err!(store.heartbeat(&id, epoch + 1).await, Error::Fenced { .. });
    assert_err!(
        store.heartbeat("no-such-instance", 1).await,
        Error::InstanceNotFound { .. }
    );
    store.mark_sleeping(&id, epoch).await.unwrap();
    assert_err!(
        store.heartbeat(&id, epoch).await,
        Error::NotRunning {
            status: InstanceStatus::Sleeping,
            ..
        }
    );
}

async fn acknowledging_a_pause_settles_every_queued_pause(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "pauses").await;
    let first = store.send_signal(&id, SignalType::Pause).await.unwrap();
    let second = store.send_signal(&id, SignalType::Pause).await.unwrap();
    let (SignalOutcome::Queued(first), SignalOutcome::Queued(second)) = (first, second) else {
        panic!("pauses of a running instance are queued");
    };
    assert!(second.signal_id > first.signal_id);
    assert_eq!(
        store.pending_signal(&id).await.unwrap(),
        Some(first.clone())
    );
    let reply = store.save_checkpoint(&id, epoch, "a", b"").await.unwrap();
    assert_eq!(reply.signal, Some(first), "oldest first");
    store
        .acknowledge_signal(&id, epoch, SignalType::Pause, true)
        .await
        .unwrap();
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Suspended);
    assert_eq!(record.finished_at_ms, None, "suspended is not finished");
    // Acknowledging again: the run no longer runs the instance.
    assert_err!(
        store
            .acknowledge_signal(&id, epoch, SignalType::Pause, true)
            .await,
        Error::NotRunning { .. }
    );
}

async fn signals_to_instances_without_a_process(store: Arc<dyn Persistence>) {
    // Pause of a pending instance waits for its first run.
    let pending = pending(&store, "sig-pending").await;
    assert!(matches!(
        store
            .send_signal(&pending, SignalType::Pause)
            .await
            .unwrap(),
        SignalOutcome::Queued(_)
    ));
    let epoch = store
        .register_instance(&pending, "t", None)
        .await
        .unwrap()
        .epoch;
    let reply = store
        .save_checkpoint(&pending, epoch, "first", b"")
        .await
        .unwrap();
    assert_eq!(reply.signal.map(|s| s.signal_type), Some(SignalType::Pause));

    // Pause of a sleeping instance suspends it at once and forgets the wake time.
    let (sleeper, epoch) = running(&store, "sig-sleeping").await;
    store
        .save_sleep(&sleeper, epoch, "nap", b"", 9_999)
        .await
        .unwrap();
    store.mark_sleeping(&sleeper, epoch).await.unwrap();
    assert_err!(
        store.send_signal(&sleeper, SignalType::Resume).await,
        Error::SignalRejected {
            status: InstanceStatus::Sleeping,
            ..
        }
    );
    assert_eq!(
        store
            .send_signal(&sleeper, SignalType::Pause)
            .await
            .unwrap(),
        SignalOutcome::Applied(InstanceStatus::Suspended)
    );
    let record = store.get_instance(&sleeper).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.wake_at_ms),
        (InstanceStatus::Suspended, None)
    );
    assert_eq!(store.pending_signal(&sleeper).await.unwrap(), None);

    // Cancel of a sleeping instance ends it at once.
    let (other, epoch) = running(&store, "sig-sleeping-cancel").await;
    store.mark_sleeping(&other, epoch).await.unwrap();
    assert_eq!(
        store.send_signal(&other, SignalType::Cancel).await.unwrap(),
        SignalOutcome::Applied(InstanceStatus::Cancelled)
    );
    let record = store.get_instance(&other).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Cancelled);
    assert!(record.finished_at_ms.is_some());
    assert_err!(
        store.register_instance(&other, "t", None).await,
        Error::Terminal {
            status: InstanceStatus::Cancelled,
            ..
        }
    );
}

async fn resume_is_answered_by_the_next_register(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "resume").await;
    store.suspend_instance(&id, epoch).await.unwrap();
    let SignalOutcome::Queued(resume) = store.send_signal(&id, SignalType::Resume).await.unwrap()
    else {
        panic!("resume of a suspended instance is queued for the server");
    };
    assert_eq!(resume.signal_type, SignalType::Resume);
    assert_eq!(status(&store, &id).await, InstanceStatus::Suspended);
    // A resume is never reported to a run.
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
    let registration = store.register_instance(&id, "t", Some("a")).await.unwrap();
    assert_eq!(
        (registration.epoch, registration.previous_status),
        (epoch + 1, Some(InstanceStatus::Suspended))
    );
    let reply = store
        .save_checkpoint(&id, registration.epoch, "b", b"")
        .await
        .unwrap();
    assert_eq!(reply.signal, None);
    // Running again: a second resume makes no sense.
    assert_err!(
        store.send_signal(&id, SignalType::Resume).await,
        Error::SignalRejected {
            status: InstanceStatus::Running,
            ..
        }
    );
}

async fn suspend_settles_pending_pauses(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "suspend-settles").await;
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    store.suspend_instance(&id, epoch).await.unwrap();
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    let reply = store.save_checkpoint(&id, epoch, "a", b"").await.unwrap();
    assert_eq!(reply.signal, None, "the resumed run is not paused again");
}

async fn sleep_over_a_plain_checkpoint_keeps_the_given_wake_time(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "sleep-plain").await;
    store.save_checkpoint(&id, epoch, "a", b"x").await.unwrap();
    let outcome = store
        .save_sleep(&id, epoch, "a", b"y", 7_000)
        .await
        .unwrap();
    assert_eq!(
        (outcome.wake_at_ms, outcome.existing_state.as_deref()),
        (7_000, Some(&b"x"[..]))
    );
    store
        .save_sleep(&id, epoch, "nap", b"z", 8_000)
        .await
        .unwrap();
    let listed = store.list_checkpoints(&id).await.unwrap();
    let wakes: Vec<_> = listed.iter().map(|c| c.wake_at_ms).collect();
    assert_eq!(wakes, [None, Some(8_000)]);
    assert_eq!(
        store.get_instance(&id).await.unwrap().unwrap().wake_at_ms,
        Some(8_000)
    );
    store.mark_sleeping(&id, epoch).await.unwrap();
    // Waking up: a new run clears the wake time.
    store
        .register_instance(&id, "t", Some("nap"))
        .await
        .unwrap();
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.wake_at_ms),
        (InstanceStatus::Running, None)
    );
}

async fn retry_attempts_need_a_one_based_number_and_keep_record_order(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "retry-order").await;
    assert_err!(
        store.record_retry_attempt(&id, epoch, "z", 0, None).await,
        Error::InvalidInput { .. }
    );
    for (checkpoint, attempt) in [("z", 1), ("a", 1), ("z", 2), ("m", 1), ("a", 2)] {
        store
            .record_retry_attempt(&id, epoch, checkpoint, attempt, None)
            .await
            .unwrap();
    }
    let order: Vec<_> = store
        .list_retry_attempts(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.checkpoint_id, a.attempt))
        .collect();
    let expected: Vec<_> = [("z", 1), ("a", 1), ("z", 2), ("m", 1), ("a", 2)]
        .into_iter()
        .map(|(c, a)| (c.to_string(), a))
        .collect();
    assert_eq!(order, expected);
    let mut replay = store.load_replay(&id).await.unwrap().retry_attempts;
    replay.sort();
    assert_eq!(
        replay,
        [
            ("a".to_string(), 2),
            ("m".to_string(), 1),
            ("z".to_string(), 2)
        ]
    );
    assert!(store.load_replay(&id).await.unwrap().checkpoints.is_empty());
}

async fn signals_and_transitions_are_recorded_as_events(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "event-kinds").await;
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    store
        .acknowledge_signal(&id, epoch, SignalType::Pause, true)
        .await
        .unwrap();
    store.send_signal(&id, SignalType::Resume).await.unwrap();
    let epoch = store
        .register_instance(&id, "t", Some("a"))
        .await
        .unwrap()
        .epoch;
    store.mark_sleeping(&id, epoch).await.unwrap();
    let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
    store.fail_instance(&id, epoch, "boom").await.unwrap();
    let events: Vec<_> = store
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.kind.to_string(), e.subtype, e.payload))
        .collect();
    let expected: Vec<(String, Option<String>, Option<Vec<u8>>)> = vec![
        ("registered".into(), None, None),
        ("signal".into(), Some("pause".into()), None),
        ("suspended".into(), Some("pause".into()), None),
        ("signal".into(), Some("resume".into()), None),
        ("registered".into(), Some("a".into()), None),
        ("sleeping".into(), None, None),
        ("registered".into(), None, None),
        ("failed".into(), None, Some(b"boom".to_vec())),
    ];
    assert_eq!(events, expected);
    let ids: Vec<_> = store
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.error.as_deref(), Some("boom"));
}

async fn set_status_refuses_unknown_instances_and_terminal_sources(store: Arc<dyn Persistence>) {
    assert_err!(
        store
            .set_status(
                "no-such-instance",
                &[InstanceStatus::Running],
                InstanceStatus::Failed,
                None
            )
            .await,
        Error::InstanceNotFound { .. }
    );
    let (id, epoch) = running(&store, "set-status").await;
    store.mark_sleeping(&id, epoch).await.unwrap();
    // The server wakes a sleeper by handing it back to `pending`: not terminal, no finish time.
    assert!(store
        .set_status(
            &id,
            &[InstanceStatus::Sleeping],
            InstanceStatus::Pending,
            None
        )
        .await
        .unwrap());
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.finished_at_ms),
        (InstanceStatus::Pending, None)
    );
    assert!(store
        .set_status(
            &id,
            &[InstanceStatus::Pending],
            InstanceStatus::Cancelled,
            None
        )
        .await
        .unwrap());
    assert!(!store
        .set_status(
            &id,
            &[InstanceStatus::Cancelled],
            InstanceStatus::Running,
            None
        )
        .await
        .unwrap());
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Cancelled);
    assert!(record.finished_at_ms.is_some());
    let last = store.list_events(&id).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.kind.as_str(), last.subtype.as_deref()),
        ("cancelled", Some("server"))
    );
}

async fn concurrent_instances_each_store_their_checkpoints(store: Arc<dyn Persistence>) {
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = unique(&format!("many{n}"));
                let epoch = store.register_instance(&id, "t", None).await.unwrap().epoch;
                for step in 0..3 {
                    let outcome = store
                        .save_checkpoint(&id, epoch, &format!("s{step}"), &[step])
                        .await
                        .unwrap();
                    assert_eq!(outcome.existing_state, None);
                }
                id
            })
        })
        .collect();
    for task in tasks {
        let id = task.await.unwrap();
        let log = store.load_replay(&id).await.unwrap();
        assert_eq!(
            log.checkpoints,
            [
                ("s0".to_string(), vec![0]),
                ("s1".to_string(), vec![1]),
                ("s2".to_string(), vec![2])
            ]
        );
        let record = store.get_instance(&id).await.unwrap().unwrap();
        assert_eq!(
            (record.checkpoint_count, record.checkpoint_id.as_deref()),
            (3, Some("s2"))
        );
    }
}

async fn empty_ids_are_refused_everywhere(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "empty-ids").await;
    macro_rules! invalid {
        ($($call:expr),* $(,)?) => {
            $(assert_err!($call, Error::InvalidInput { .. });)*
        };
    }
    invalid!(
        store.register_instance(&id, "", None).await,
        store
            .create_instance(NewInstance {
                instance_id: String::new(),
                tenant_id: "t".into(),
                ..NewInstance::default()
            })
            .await,
        store.save_checkpoint("", epoch, "a", b"").await,
        store.save_sleep("", epoch, "a", b"", 1).await,
        store.save_sleep(&id, epoch, "", b"", 1).await,
        store.get_checkpoint("", "a").await,
        store.get_checkpoint(&id, "").await,
        store.heartbeat("", epoch).await,
        store.mark_sleeping("", epoch).await,
        store.complete_instance("", epoch, b"").await,
        store.fail_instance("", epoch, "").await,
        store.suspend_instance("", epoch).await,
        store
            .set_status("", &[InstanceStatus::Running], InstanceStatus::Failed, None)
            .await,
        store.record_event("", &"custom".into(), None, None).await,
        store.record_event(&id, &"".into(), None, None).await,
        store.record_retry_attempt("", epoch, "a", 1, None).await,
        store.record_retry_attempt(&id, epoch, "", 1, None).await,
        store.send_signal("", SignalType::Cancel).await,
        store.pending_signal("").await,
        store
            .acknowledge_signal("", epoch, SignalType::Cancel, true)
            .await,
        store.get_instance("").await,
        store.load_replay("").await,
        store.list_checkpoints("").await,
        store.list_events("").await,
        store.list_retry_attempts("").await,
    );
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.status, record.checkpoint_count),
        (InstanceStatus::Running, 0)
    );
    assert_eq!(store.list_events(&id).await.unwrap().len(), 1);
}

async fn list_instances_is_newest_first(store: Arc<dyn Persistence>) {
    let tenant = unique("tenant-order");
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = unique(&format!("order{n}"));
        store
            .create_instance(NewInstance {
                instance_id: id.clone(),
                tenant_id: tenant.clone(),
                ..NewInstance::default()
            })
            .await
            .unwrap();
        ids.push(id);
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    ids.reverse();
    let page = store
        .list_instances(&InstanceFilter {
            tenant_id: tenant.clone(),
            ..InstanceFilter::default()
        })
        .await
        .unwrap();
    let listed: Vec<_> = page.instances.into_iter().map(|i| i.instance_id).collect();
    assert_eq!(listed, ids);
    let second = store
        .list_instances(&InstanceFilter {
            tenant_id: tenant.clone(),
            limit: Some(1),
            offset: 1,
            ..InstanceFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(second.total, 3);
    assert_eq!(second.instances[0].instance_id, ids[1]);
    let beyond = store
        .list_instances(&InstanceFilter {
            tenant_id: tenant,
            status: Some(InstanceStatus::Pending),
            limit: Some(10),
            offset: 5,
        })
        .await
        .unwrap();
    assert_eq!((beyond.instances.len(), beyond.total), (0, 3));
}

async fn concurrent_saves_of_one_id_store_it_once(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "same-id").await;
    let tasks: Vec<_> = (0..50u8)
        .map(|n| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let outcome = store
                    .save_sleep(&id, epoch, "race", &[n], 1_000 + i64::from(n))
                    .await
                    .unwrap();
                (n, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let winners: Vec<u8> = outcomes
        .iter()
        .filter(|(_, o)| o.existing_state.is_none())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(winners.len(), 1, "stored exactly once");
    let winner = winners[0];
    for (_, outcome) in &outcomes {
        if let Some(state) = &outcome.existing_state {
            assert_eq!(state, &[winner], "every other caller gets the stored state");
        }
        assert_eq!(outcome.wake_at_ms, 1_000 + i64::from(winner));
    }
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.checkpoint_count, record.wake_at_ms),
        (1, Some(1_000 + i64::from(winner)))
    );
}

fn new_image(tenant: &str, name: &str, sha: &str) -> NewImage {
    NewImage {
        image_id: unique("img"),
        tenant_id: tenant.into(),
        name: name.into(),
        description: Some("d".into()),
        sha256: sha.into(),
        size_bytes: 42,
    }
}

async fn images_are_versioned_per_tenant_and_name(store: Arc<dyn Persistence>) {
    let (tenant, other) = (unique("tenant"), unique("tenant"));
    let v1 = store
        .insert_image(new_image(&tenant, "orders", "aa"))
        .await
        .unwrap();
    let v2 = store
        .insert_image(new_image(&tenant, "orders", "bb"))
        .await
        .unwrap();
    let elsewhere = store
        .insert_image(new_image(&other, "orders", "aa"))
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version, elsewhere.version), (1, 2, 1));
    assert_eq!(v1.description.as_deref(), Some("d"));
    assert_eq!(
        store.get_image(&v2.image_id).await.unwrap(),
        Some(v2.clone())
    );
    assert_eq!(store.get_image("img-missing").await.unwrap(), None);
    let listed = store.list_images(&tenant).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|i| i.image_id.as_str()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&v1.image_id.as_str()) && ids.contains(&v2.image_id.as_str()));

    // Concurrent registrations of one name get distinct versions.
    let name = unique("race");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, tenant, name) = (store.clone(), tenant.clone(), name.clone());
            tokio::spawn(async move { store.insert_image(new_image(&tenant, &name, "cc")).await })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=10).collect::<Vec<i64>>());
}

async fn worker_pools_are_stored_and_listed(store: Arc<dyn Persistence>) {
    let tenant = unique("tenant");
    let pooled = store
        .insert_image(new_image(&tenant, "pooled", "aa"))
        .await
        .unwrap();
    let plain = store
        .insert_image(new_image(&tenant, "plain", "bb"))
        .await
        .unwrap();
    let pool = WorkerPool {
        min: 1,
        max: 3,
        instances: 50,
    };
    let set = store
        .set_image_workers(&pooled.image_id, Some(pool))
        .await
        .unwrap();
    assert_eq!(set.workers, Some(pool));
    assert_eq!(
        store
            .get_image(&pooled.image_id)
            .await
            .unwrap()
            .unwrap()
            .workers,
        Some(pool)
    );
    let ours = |images: Vec<ImageRecord>| -> Vec<String> {
        images
            .into_iter()
            .filter(|i| i.tenant_id == tenant)
            .map(|i| i.image_id)
            .collect()
    };
    let listed = ours(store.list_pooled_images().await.unwrap());
    assert_eq!(
        listed,
        vec![pooled.image_id.clone()],
        "{plain:?} has no pool"
    );
    // Cleared: one process per instance again, and no longer listed.
    let cleared = store
        .set_image_workers(&pooled.image_id, None)
        .await
        .unwrap();
    assert_eq!(cleared.workers, None);
    assert!(ours(store.list_pooled_images().await.unwrap()).is_empty());
    // An unfit pool or a missing image changes nothing.
    let unfit = WorkerPool {
        min: 4,
        max: 2,
        instances: 1,
    };
    assert!(store
        .set_image_workers(&plain.image_id, Some(unfit))
        .await
        .is_err());
    assert!(store
        .set_image_workers("img-missing", Some(pool))
        .await
        .is_err());
    assert_eq!(
        store
            .get_image(&plain.image_id)
            .await
            .unwrap()
            .unwrap()
            .workers,
        None
    );
}

async fn an_instance_created_to_run_now_is_registered(store: Arc<dyn Persistence>) {
    let tenant = unique("tenant");
    let image = store
        .insert_image(new_image(&tenant, "now", "aa"))
        .await
        .unwrap();
    let id = unique("inst");
    let created = store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: tenant.clone(),
            image_id: Some(image.image_id.clone()),
            input: Some(b"{}".to_vec()),
            run_now: true,
            parent_id: None,
            detached: false,
        })
        .await
        .unwrap();
    assert_eq!(
        (created.status, created.epoch),
        (InstanceStatus::Running, 1)
    );
    assert!(created.started_at_ms.is_some());
    let kinds: Vec<_> = store
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["created", "registered"]);
    // Taken: the same error as for a pending one, and nothing changes.
    let again = store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: tenant.clone(),
            image_id: Some(image.image_id.clone()),
            input: None,
            run_now: true,
            parent_id: None,
            detached: false,
        })
        .await;
    assert_err!(again, Error::InstanceExists { .. });
    // A later run registers past it (fencing the first).
    let next = store.register_instance(&id, &tenant, None).await.unwrap();
    assert_eq!(next.epoch, 2);
}

async fn an_image_in_use_cannot_be_deleted(store: Arc<dyn Persistence>) {
    let tenant = unique("tenant");
    let sha = unique("sha");
    let image = store
        .insert_image(new_image(&tenant, "w", &sha))
        .await
        .unwrap();
    let twin = store
        .insert_image(new_image(&tenant, "w2", &sha))
        .await
        .unwrap();
    let instance = unique("inst");
    store
        .create_instance(NewInstance {
            instance_id: instance.clone(),
            tenant_id: tenant.clone(),
            image_id: Some(image.image_id.clone()),
            input: None,
            run_now: false,
            parent_id: None,
            detached: false,
        })
        .await
        .unwrap();
    assert_err!(
        store.delete_image(&image.image_id).await,
        Error::ImageInUse { instances: 1, .. }
    );
    assert!(store.get_image(&image.image_id).await.unwrap().is_some());
    store
        .set_status(
            &instance,
            &[InstanceStatus::Pending],
            InstanceStatus::Cancelled,
            None,
        )
        .await
        .unwrap();
    let deleted = store.delete_image(&image.image_id).await.unwrap();
    assert!(deleted.binary_still_used, "the twin still uses the binary");
    assert_eq!(store.get_image(&image.image_id).await.unwrap(), None);
    assert_err!(
        store.delete_image(&image.image_id).await,
        Error::ImageNotFound { .. }
    );
    let last = store.delete_image(&twin.image_id).await.unwrap();
    assert!(!last.binary_still_used);
}

async fn list_unfinished_spans_tenants(store: Arc<dyn Persistence>) {
    let a = unique("unfinished");
    let b = unique("unfinished");
    let done = unique("finished");
    store.register_instance(&a, "tenant-a", None).await.unwrap();
    store.register_instance(&b, "tenant-b", None).await.unwrap();
    let epoch = store
        .register_instance(&done, "tenant-a", None)
        .await
        .unwrap()
        .epoch;
    store.complete_instance(&done, epoch, b"{}").await.unwrap();
    let unfinished: Vec<String> = store
        .list_unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    assert!(unfinished.contains(&a) && unfinished.contains(&b));
    assert!(!unfinished.contains(&done));

    // Only running instances have a liveness to check: not pending, not finished.
    let waiting = pending(&store, "unfinished-pending").await;
    let running: Vec<String> = store
        .list_running()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.instance_id)
        .collect();
    assert!(running.contains(&a) && running.contains(&b));
    assert!(!running.contains(&done) && !running.contains(&waiting));
}

async fn resume_withdraws_a_pause_not_yet_taken(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "withdraw").await;
    // Nothing to withdraw: a resume of a running instance is refused.
    assert_err!(
        store.send_signal(&id, SignalType::Resume).await,
        Error::SignalRejected {
            status: InstanceStatus::Running,
            ..
        }
    );
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    assert_eq!(
        store.send_signal(&id, SignalType::Resume).await.unwrap(),
        SignalOutcome::Applied(InstanceStatus::Running)
    );
    assert_eq!(store.pending_signal(&id).await.unwrap(), None);
    let reply = store
        .save_checkpoint(&id, epoch, "next", b"")
        .await
        .unwrap();
    assert_eq!(reply.signal, None);
    // A run that saw the pause before it was withdrawn acknowledges it: it keeps running.
    store
        .acknowledge_signal(&id, epoch, SignalType::Pause, true)
        .await
        .unwrap();
    assert_eq!(status(&store, &id).await, InstanceStatus::Running);
    // A later pause works as before.
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    store
        .acknowledge_signal(&id, epoch, SignalType::Pause, true)
        .await
        .unwrap();
    assert_eq!(status(&store, &id).await, InstanceStatus::Suspended);

    // The same for an instance whose process has not registered yet.
    let pending = pending(&store, "withdraw-pending").await;
    store
        .send_signal(&pending, SignalType::Pause)
        .await
        .unwrap();
    assert_eq!(
        store
            .send_signal(&pending, SignalType::Resume)
            .await
            .unwrap(),
        SignalOutcome::Applied(InstanceStatus::Pending)
    );
    assert_eq!(store.pending_signal(&pending).await.unwrap(), None);
}

/// The instance's latest sign of life, as `get_instance` reads it.
async fn heartbeat(store: &Arc<dyn Persistence>, id: &str) -> Option<i64> {
    store
        .get_instance(id)
        .await
        .unwrap()
        .unwrap()
        .heartbeat_at_ms
}

async fn every_read_shows_the_last_checkpoint_and_counts_it_as_a_sign_of_life(
    store: Arc<dyn Persistence>,
) {
    let tenant = unique("progress-tenant");
    let id = unique("progress");
    let epoch = store
        .register_instance(&id, &tenant, None)
        .await
        .unwrap()
        .epoch;
    let registered = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (
            registered.checkpoint_id.as_deref(),
            registered.checkpoint_count
        ),
        (None, 0)
    );
    let before = registered.heartbeat_at_ms.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    for step in ["first", "second", "third"] {
        store
            .save_checkpoint(&id, epoch, step, b"{}")
            .await
            .unwrap();
    }
    // A repeat stores nothing (neither the last checkpoint nor the count moves), but it
    // is a sign of life too.
    let saved = heartbeat(&store, &id).await;
    assert!(
        saved > Some(before),
        "a checkpoint is a heartbeat: {saved:?} > {before}"
    );
    let live = store
        .list_running()
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.instance_id == id)
        .unwrap();
    assert_eq!(
        (live.heartbeat_at_ms, live.started_at_ms),
        (saved, registered.started_at_ms)
    );
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    store
        .save_checkpoint(&id, epoch, "first", b"{}")
        .await
        .unwrap();
    let repeated = heartbeat(&store, &id).await;
    assert!(
        repeated > saved,
        "a repeat is a heartbeat: {repeated:?} > {saved:?}"
    );
    let page = store
        .list_instances(&InstanceFilter {
            tenant_id: tenant.clone(),
            ..InstanceFilter::default()
        })
        .await
        .unwrap();
    let unfinished = store.list_unfinished().await.unwrap();
    let reads = [
        store.get_instance(&id).await.unwrap().unwrap(),
        page.instances
            .into_iter()
            .find(|i| i.instance_id == id)
            .unwrap(),
        unfinished
            .into_iter()
            .find(|i| i.instance_id == id)
            .unwrap(),
    ];
    for record in reads {
        assert_eq!(
            (record.checkpoint_id.as_deref(), record.checkpoint_count),
            (Some("third"), 3)
        );
        let heartbeat = record.heartbeat_at_ms.unwrap();
        assert!(
            heartbeat > before,
            "a checkpoint is a heartbeat: {heartbeat} > {before}"
        );
    }
}

/// Reads every page of `id`'s replay log (or checkpoint listing) with `budget`, checking
/// each page's bound, and returns the ids in order.
async fn all_pages(
    store: &Arc<dyn Persistence>,
    id: &str,
    budget: usize,
    replay: bool,
) -> Vec<String> {
    let (mut ids, mut after, mut pages) = (Vec::new(), 0, 0);
    loop {
        let (page, more): (Vec<(String, usize)>, Option<i64>) = if replay {
            let log = store.load_replay_page(id, after, budget).await.unwrap();
            assert_eq!(
                log.retry_attempts.is_empty(),
                after != 0,
                "retry attempts come with the first page only"
            );
            let page = log
                .checkpoints
                .into_iter()
                .map(|(c, s)| (c, s.len()))
                .collect();
            (page, log.more_after)
        } else {
            let page = store
                .list_checkpoints_page(id, after, budget)
                .await
                .unwrap();
            let items = page
                .checkpoints
                .into_iter()
                .map(|c| (c.checkpoint_id, c.state.len()));
            (items.collect(), page.more_after)
        };
        pages += 1;
        assert!(!page.is_empty(), "a page holds at least one checkpoint");
        let bytes: usize = page.iter().map(|(c, len)| c.len() + len + 16).sum();
        assert!(
            page.len() == 1 || bytes <= budget,
            "page of {bytes} bytes over {budget}"
        );
        ids.extend(page.into_iter().map(|(c, _)| c));
        match more {
            Some(next) => after = next,
            None => break,
        }
        assert!(pages < 100, "pages never end");
    }
    ids
}

async fn pages_of_checkpoints_are_bounded_ordered_and_whole(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "pages").await;
    let sizes = [10, 500, 0, 3000, 10, 10, 10, 2000, 1];
    let mut expected = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let checkpoint = format!("c{n}");
        store
            .save_checkpoint(&id, epoch, &checkpoint, &vec![b'x'; *size])
            .await
            .unwrap();
        expected.push(checkpoint);
    }
    store
        .record_retry_attempt(&id, epoch, "c1", 1, None)
        .await
        .unwrap();
    for budget in [1, 100, 600, 1024, 5000, usize::MAX] {
        assert_eq!(
            all_pages(&store, &id, budget, true).await,
            expected,
            "replay, {budget}"
        );
        assert_eq!(
            all_pages(&store, &id, budget, false).await,
            expected,
            "list, {budget}"
        );
    }
    // One page when it all fits, and the first page is the whole log then.
    let whole = store.load_replay_page(&id, 0, usize::MAX).await.unwrap();
    assert_eq!(whole.more_after, None);
    assert_eq!(whole, store.load_replay(&id).await.unwrap());
    // No checkpoints: one empty page, nothing more.
    let (empty, _) = running(&store, "pages-empty").await;
    let page = store.list_checkpoints_page(&empty, 0, 10).await.unwrap();
    assert_eq!((page.checkpoints.len(), page.more_after), (0, None));
}

async fn a_step_records_its_producer_and_a_repeat_names_it(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "producer").await;
    let first = store
        .save_step(&id, epoch, "shape::k", b"42", "app::v1::shape")
        .await
        .unwrap();
    assert_eq!(
        (first.existing_state, first.existing_producer),
        (None, None)
    );
    let again = store
        .save_step(&id, epoch, "shape::k", b"7", "app::v3::shape")
        .await
        .unwrap();
    assert_eq!(again.existing_state.as_deref(), Some(&b"42"[..]));
    assert_eq!(again.existing_producer.as_deref(), Some("app::v1::shape"));
    // A plain checkpoint has no producer, and a repeat of it says so.
    store
        .save_checkpoint(&id, epoch, "raw", b"1")
        .await
        .unwrap();
    let raw = store
        .save_step(&id, epoch, "raw", b"2", "app::f")
        .await
        .unwrap();
    assert_eq!(
        (raw.existing_state.as_deref(), raw.existing_producer),
        (Some(&b"1"[..]), None)
    );

    for log in [
        store.load_replay(&id).await.unwrap(),
        store.load_replay_page(&id, 0, 1 << 20).await.unwrap(),
        store.load_replay_page(&id, 0, 1).await.unwrap(),
    ] {
        let ids: Vec<_> = log.checkpoints.iter().map(|(c, _)| c.as_str()).collect();
        let producers: Vec<_> = (0..ids.len()).map(|n| log.producers.get(n)).collect();
        let expected = [("shape::k", Some("app::v1::shape")), ("raw", None)];
        let got: Vec<_> = ids.into_iter().zip(producers).collect();
        assert_eq!(got, expected[..got.len()], "{log:?}");
    }
    let listed = store.list_checkpoints(&id).await.unwrap();
    let producers: Vec<_> = listed.iter().map(|c| c.producer.as_deref()).collect();
    assert_eq!(producers, [Some("app::v1::shape"), None]);
    let page = store.list_checkpoints_page(&id, 0, 1 << 20).await.unwrap();
    assert_eq!(page.checkpoints, listed);
}

async fn a_step_failure_is_recorded_once_replayed_and_cleared(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "step-failure").await;
    store
        .record_retry_attempt(&id, epoch, "pay::o", 1, Some("e1"))
        .await
        .unwrap();
    store
        .record_step_failure(&id, epoch, "pay::o", "declined")
        .await
        .unwrap();
    // The first recorded failure stays.
    store
        .record_step_failure(&id, epoch, "pay::o", "other")
        .await
        .unwrap();
    for log in [
        store.load_replay(&id).await.unwrap(),
        store.load_replay_page(&id, 0, 1).await.unwrap(),
    ] {
        assert_eq!(log.failures, [("pay::o".to_owned(), "declined".to_owned())]);
        assert_eq!(log.retry_attempts, [("pay::o".to_owned(), 1)]);
        assert_eq!(log.retry_at_ms.len(), 1);
        assert!(log.retry_at_ms[0] > 0);
    }
    // Fenced and terminal runs record nothing.
    assert_err!(
        store.record_step_failure(&id, epoch + 1, "x::y", "e").await,
        Error::Fenced { .. }
    );

    // Cleared: failure and retry count gone; a second clear finds nothing.
    assert!(store.clear_step_failure(&id, "pay::o").await.unwrap());
    assert!(!store.clear_step_failure(&id, "pay::o").await.unwrap());
    let log = store.load_replay(&id).await.unwrap();
    assert!(
        log.failures.is_empty() && log.retry_attempts.is_empty(),
        "{log:?}"
    );
    assert_err!(
        store.clear_step_failure("no-such-instance", "pay::o").await,
        Error::InstanceNotFound { .. }
    );
    store.complete_instance(&id, epoch, b"{}").await.unwrap();
    assert_err!(
        store.clear_step_failure(&id, "pay::o").await,
        Error::Terminal { .. }
    );
}

async fn a_queued_resume_is_found_until_a_register_settles_it(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "queued-resume").await;
    assert!(!store.queued_resume(&id).await.unwrap());
    store.suspend_instance(&id, epoch).await.unwrap();
    let outcome = store.send_signal(&id, SignalType::Resume).await.unwrap();
    assert!(
        matches!(outcome, SignalOutcome::Queued(_)),
        "a resume of a suspended instance is queued: {outcome:?}"
    );
    assert!(store.queued_resume(&id).await.unwrap());
    store.register_instance(&id, "t", None).await.unwrap();
    assert!(
        !store.queued_resume(&id).await.unwrap(),
        "the register settles it"
    );
}

async fn a_run_going_to_sleep_takes_a_queued_cancel_or_pause_instead(store: Arc<dyn Persistence>) {
    for (signal, expected) in [
        (SignalType::Cancel, InstanceStatus::Cancelled),
        (SignalType::Pause, InstanceStatus::Suspended),
    ] {
        let (id, epoch) = running(&store, "sleep-signal").await;
        store
            .save_sleep(&id, epoch, "nap", b"", i64::MAX / 2)
            .await
            .unwrap();
        store.send_signal(&id, signal).await.unwrap();
        store.mark_sleeping(&id, epoch).await.unwrap();
        assert_eq!(status(&store, &id).await, expected, "{signal}");
        assert_eq!(store.pending_signal(&id).await.unwrap(), None, "settled");
    }
    // Nothing queued: it sleeps.
    let (id, epoch) = running(&store, "sleep-plain").await;
    store
        .save_sleep(&id, epoch, "nap", b"", i64::MAX / 2)
        .await
        .unwrap();
    store.mark_sleeping(&id, epoch).await.unwrap();
    assert_eq!(status(&store, &id).await, InstanceStatus::Sleeping);
}

async fn a_brief_listing_has_the_same_instances_without_history(store: Arc<dyn Persistence>) {
    let tenant = unique("brief-tenant");
    for n in 0..3 {
        let id = unique("brief");
        let epoch = store
            .register_instance(&id, &tenant, None)
            .await
            .unwrap()
            .epoch;
        for k in 0..n {
            store
                .save_checkpoint(&id, epoch, &format!("c{k}"), b"s")
                .await
                .unwrap();
        }
    }
    let filter = InstanceFilter {
        tenant_id: tenant.clone(),
        status: None,
        limit: Some(2),
        offset: 0,
    };
    let full = store.list_instances(&filter).await.unwrap();
    let brief = store.list_instances_brief(&filter).await.unwrap();
    assert_eq!((brief.total, full.total), (3, 3));
    let ids = |page: &runtara_core::InstancePage| {
        page.instances
            .iter()
            .map(|i| i.instance_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&brief), ids(&full));
    for (b, f) in brief.instances.iter().zip(&full.instances) {
        assert_eq!(
            (b.status, b.epoch, b.created_at_ms),
            (f.status, f.epoch, f.created_at_ms)
        );
        assert_eq!(
            (b.checkpoint_count, &b.checkpoint_id, &b.input, &b.output),
            (0, &None, &None, &None)
        );
    }
    assert!(full.instances.iter().any(|i| i.checkpoint_count > 0));
    // An error is listed cut to its first characters (counted alike in both backends),
    // and read whole from the instance.
    let failed = unique("brief-error");
    let epoch = store
        .register_instance(&failed, &tenant, None)
        .await
        .unwrap()
        .epoch;
    let long = "é".repeat(runtara_core::MAX_LISTED_ERROR_CHARS + 500);
    store.fail_instance(&failed, epoch, &long).await.unwrap();
    let filter = InstanceFilter {
        tenant_id: tenant.clone(),
        status: Some(InstanceStatus::Failed),
        limit: None,
        offset: 0,
    };
    let listed = store.list_instances_brief(&filter).await.unwrap();
    let listed = listed
        .instances
        .iter()
        .find(|i| i.instance_id == failed)
        .unwrap();
    let cut: String = long
        .chars()
        .take(runtara_core::MAX_LISTED_ERROR_CHARS)
        .collect();
    assert_eq!(listed.error.as_deref(), Some(cut.as_str()));
    let whole = store.get_instance(&failed).await.unwrap().unwrap();
    assert_eq!(whole.error.as_deref(), Some(long.as_str()));
}

/// The custom events of `id`: (subtype, payload length).
async fn custom_events(store: &Arc<dyn Persistence>, id: &str) -> Vec<(String, usize)> {
    store
        .list_events(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "custom")
        .map(|e| {
            (
                e.subtype.unwrap_or_default(),
                e.payload.map_or(0, |p| p.len()),
            )
        })
        .collect()
}

const SMALL_QUOTA: EventQuota = EventQuota {
    max_event_bytes: 100,
    max_events_per_instance: 4,
    max_event_bytes_per_instance: 250,
};

async fn custom_events_are_bounded_and_end_with_the_instance(store: Arc<dyn Persistence>) {
    let quota = &SMALL_QUOTA;
    let (id, epoch) = running(&store, "quota").await;
    let event = |subtype: &'static str, len: usize| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            store
                .record_custom_event(&id, subtype, &vec![7; len], quota)
                .await
        }
    };
    // One event over the per-event bound, or with an over-long subtype: refused alone.
    assert_err!(event("big", 101).await, Error::InvalidInput { ref reason, .. } if reason.contains("`max_event_bytes`"));
    let subtype = "s".repeat(runtara_core::MAX_EVENT_SUBTYPE_LEN + 1);
    assert_err!(
        store.record_custom_event(&id, &subtype, b"", quota).await,
        Error::InvalidInput { .. }
    );
    // The system's own events are not counted.
    store
        .record_event(&id, &"launched".into(), None, None)
        .await
        .unwrap();
    event("a", 100).await.unwrap();
    event("b", 100).await.unwrap();
    // 200 of 250 bytes used: 51 more would pass the bytes quota, 50 do not.
    assert_err!(
        event("c", 51).await,
        Error::QuotaExceeded { ref instance_id, ref reason }
            if *instance_id == id && reason.contains("`max_event_bytes_per_instance`")
    );
    event("c", 50).await.unwrap();
    event("d", 0).await.unwrap();
    // Four events: the count quota is reached, even for an empty one.
    let refused = event("e", 0).await.unwrap_err();
    assert!(
        matches!(&refused, Error::QuotaExceeded { reason, .. } if reason.contains("quota of 4 custom events")),
        "{refused:?}"
    );
    assert!(
        refused.to_string().ends_with("nothing was stored"),
        "{refused}"
    );
    let stored = vec![
        ("a".to_owned(), 100),
        ("b".to_owned(), 100),
        ("c".to_owned(), 50),
        ("d".to_owned(), 0),
    ];
    assert_eq!(
        custom_events(&store, &id).await,
        stored,
        "refusals stored nothing"
    );
    // The count is stored, not remembered: a larger quota lets exactly one more in.
    let larger = EventQuota {
        max_events_per_instance: 5,
        ..SMALL_QUOTA
    };
    store
        .record_custom_event(&id, "f", b"", &larger)
        .await
        .unwrap();
    assert_err!(
        store.record_custom_event(&id, "g", b"", &larger).await,
        Error::QuotaExceeded { .. }
    );
    // A pending instance records events; a missing one is not found.
    let waiting = pending(&store, "quota-pending").await;
    store
        .record_custom_event(&waiting, "p", b"1", quota)
        .await
        .unwrap();
    assert_err!(
        store
            .record_custom_event("no-such-instance", "x", b"", quota)
            .await,
        Error::InstanceNotFound { .. }
    );
    // A finished instance records no custom event, whatever its quota; the system's own
    // events go on being recorded.
    let (done, done_epoch) = running(&store, "quota-done").await;
    store
        .complete_instance(&done, done_epoch, b"ok")
        .await
        .unwrap();
    assert_err!(
        store
            .record_custom_event(&done, "late", b"x", &EventQuota::UNLIMITED)
            .await,
        Error::Terminal {
            status: InstanceStatus::Completed,
            ..
        }
    );
    store
        .record_event(&done, &"exited".into(), Some("0"), None)
        .await
        .unwrap();
    assert_eq!(custom_events(&store, &done).await, []);
    store.fail_instance(&id, epoch, "boom").await.unwrap();
    assert_err!(
        store.record_custom_event(&id, "late", b"", &larger).await,
        Error::Terminal {
            status: InstanceStatus::Failed,
            ..
        }
    );
    assert_eq!(custom_events(&store, &id).await.len(), 5);
}

async fn concurrent_custom_events_never_pass_the_quota(store: Arc<dyn Persistence>) {
    let (id, _) = running(&store, "quota-race").await;
    let quota = EventQuota {
        max_events_per_instance: 7,
        ..SMALL_QUOTA
    };
    let writes: Vec<_> = (0..24)
        .map(|n| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .record_custom_event(&id, &format!("e{n}"), b"12345", &quota)
                    .await
            })
        })
        .collect();
    let (mut stored, mut refused) = (0, 0);
    for write in writes {
        match write.await.unwrap() {
            Ok(()) => stored += 1,
            Err(Error::QuotaExceeded { .. }) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((stored, refused), (7, 17));
    assert_eq!(custom_events(&store, &id).await.len(), 7);
}

/// Reads every page of `id`'s events with `limit` and `budget`, checking each page's
/// bounds, and returns the event ids in order.
async fn all_event_pages(
    store: &Arc<dyn Persistence>,
    id: &str,
    limit: usize,
    budget: usize,
) -> Vec<i64> {
    let (mut ids, mut after, mut pages) = (Vec::new(), 0, 0);
    loop {
        let page = store
            .list_events_page(id, after, limit, budget)
            .await
            .unwrap();
        pages += 1;
        assert!(!page.events.is_empty(), "a page holds at least one event");
        assert!(
            page.events.len() <= limit,
            "page of {} over {limit}",
            page.events.len()
        );
        let bytes: usize = page.events.iter().map(runtara_core::event_page_bytes).sum();
        assert!(
            page.events.len() == 1 || bytes <= budget,
            "page of {bytes} bytes over {budget}"
        );
        ids.extend(page.events.iter().map(|e| e.event_id));
        match page.more_after {
            Some(next) => {
                assert_eq!(
                    Some(next),
                    ids.last().copied(),
                    "the next page starts after this one"
                );
                after = next;
            }
            None => break,
        }
        assert!(pages < 100, "pages never end");
    }
    ids
}

async fn pages_of_events_are_bounded_ordered_and_whole(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "event-pages").await;
    let sizes = [10, 500, 0, 3000, 10, 10, 10, 2000, 1];
    for (n, size) in sizes.iter().enumerate() {
        // A subtype of multi-byte characters counts its bytes in both backends.
        let subtype = if n % 2 == 0 {
            format!("step-{n}")
        } else {
            "größe-é".to_owned()
        };
        store
            .record_custom_event(&id, &subtype, &vec![b'x'; *size], &EventQuota::default())
            .await
            .unwrap();
    }
    store
        .record_event(&id, &"launched".into(), None, None)
        .await
        .unwrap();
    store.complete_instance(&id, epoch, b"done").await.unwrap();
    let all: Vec<_> = store.list_events(&id).await.unwrap();
    let expected: Vec<i64> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(expected.len(), 12);
    for budget in [1, 100, 600, 1024, 5000, usize::MAX] {
        for limit in [1, 2, 5, 1000, usize::MAX] {
            assert_eq!(
                all_event_pages(&store, &id, limit, budget).await,
                expected,
                "budget {budget}, limit {limit}"
            );
        }
    }
    // Where pages end is the same in both backends: sizes are counted in bytes (the
    // first three events take 641 bytes counting the subtype's characters, 644 counting
    // its bytes).
    let first = store.list_events_page(&id, 0, 100, 642).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.more_after, Some(expected[1]));
    let bytes: usize = all[..3].iter().map(runtara_core::event_page_bytes).sum();
    assert_eq!(bytes, 644);
    // One page holds everything when it fits, and says nothing follows.
    let whole = store
        .list_events_page(&id, 0, usize::MAX, usize::MAX)
        .await
        .unwrap();
    assert_eq!((whole.events, whole.more_after), (all.clone(), None));
    // From the middle: what follows, and an id past the end is an empty last page.
    let rest = store
        .list_events_page(&id, expected[9], 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!(rest.events, all[10..].to_vec());
    let past = store
        .list_events_page(&id, expected[11], 10, usize::MAX)
        .await
        .unwrap();
    assert_eq!((past.events.len(), past.more_after), (0, None));
    // No events, or no instance: one empty page.
    let none = store
        .list_events_page("no-such-instance", 0, 10, 10)
        .await
        .unwrap();
    assert_eq!((none.events.len(), none.more_after), (0, None));
    assert_err!(
        store.list_events_page("", 0, 10, 10).await,
        Error::InvalidInput { .. }
    );
}

async fn events_are_counted_by_kind(store: Arc<dyn Persistence>) {
    let (id, _) = running(&store, "count-events").await;
    for _ in 0..3 {
        store
            .record_event(&id, &"launched".into(), None, Some(&[1; 64]))
            .await
            .unwrap();
    }
    store
        .record_custom_event(&id, "launched", b"not a launch", &EventQuota::default())
        .await
        .unwrap();
    assert_eq!(
        store.count_events(&id, &"launched".into()).await.unwrap(),
        3
    );
    assert_eq!(store.count_events(&id, &"custom".into()).await.unwrap(), 1);
    assert_eq!(store.count_events(&id, &"exited".into()).await.unwrap(), 0);
    assert_eq!(
        store
            .count_events("no-such-instance", &"launched".into())
            .await
            .unwrap(),
        0
    );
}

fn runtime_start(id: &str, tenant: &str, runtime: &str, run_now: bool) -> NewRuntimeInstance {
    NewRuntimeInstance {
        instance_id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        runtime: runtime.to_owned(),
        workflow: "orders".to_owned(),
        input: br#"{"n":1}"#.to_vec(),
        run_now,
        parent_id: None,
        detached: false,
    }
}

async fn a_runtime_start_is_registered_at_once_or_pending_and_never_twice(
    store: Arc<dyn Persistence>,
) {
    let tenant = unique("t");
    let (now, later) = (unique("now"), unique("later"));
    let started = store
        .start_runtime_instance(runtime_start(&now, &tenant, "rt", true))
        .await
        .unwrap();
    assert_eq!(started, RuntimeStart::Created { epoch: 1 });
    let record = store.get_instance(&now).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Running);
    assert_eq!(record.epoch, 1);
    assert_eq!(record.input.as_deref(), Some(&br#"{"n":1}"#[..]));
    // Its run writes with epoch 1 at once, with nothing to register.
    store.save_checkpoint(&now, 1, "a", b"1").await.unwrap();
    let kinds: Vec<String> = store
        .list_events(&now)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.to_string())
        .collect();
    assert_eq!(kinds, ["created", "registered"]);

    let queued = store
        .start_runtime_instance(runtime_start(&later, &tenant, "rt", false))
        .await
        .unwrap();
    assert_eq!(queued, RuntimeStart::Created { epoch: 0 });
    let record = store.get_instance(&later).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Pending);
    // A pending one is registered when a slot frees up.
    let registration = store
        .register_instance(&later, &tenant, None)
        .await
        .unwrap();
    assert_eq!(registration.epoch, 1);

    // The same id again changes nothing and says who holds it, whoever asks.
    let again = store
        .start_runtime_instance(runtime_start(&now, "another-tenant", "other", false))
        .await
        .unwrap();
    let RuntimeStart::Existing(existing) = again else {
        panic!("a second start created the instance again: {again:?}");
    };
    assert_eq!(existing.tenant_id, tenant);
    assert_eq!(existing.runtime.as_deref(), Some("rt"));
    assert_eq!(existing.workflow.as_deref(), Some("orders"));
    assert_eq!(existing.status, InstanceStatus::Running);
    assert_eq!(store.get_instance(&now).await.unwrap().unwrap().epoch, 1);
    store.complete_instance(&now, 1, b"out").await.unwrap();
    let RuntimeStart::Existing(done) = store
        .start_runtime_instance(runtime_start(&now, &tenant, "rt", true))
        .await
        .unwrap()
    else {
        panic!("a finished instance was started again");
    };
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.output.as_deref(), Some(&b"out"[..]));

    // An instance created otherwise is found, and is no runtime's.
    let plain = unique("plain");
    store
        .register_instance(&plain, &tenant, None)
        .await
        .unwrap();
    let RuntimeStart::Existing(plain) = store
        .start_runtime_instance(runtime_start(&plain, &tenant, "rt", true))
        .await
        .unwrap()
    else {
        panic!("an embedded instance's id was taken by a runtime");
    };
    assert_eq!((plain.runtime, plain.workflow), (None, None));

    // Empty names are refused and change nothing.
    let mut nameless = runtime_start(&unique("nameless"), &tenant, "", true);
    assert_err!(
        store.start_runtime_instance(nameless.clone()).await,
        Error::InvalidInput { .. }
    );
    nameless.runtime = "rt".into();
    nameless.workflow = String::new();
    assert_err!(
        store.start_runtime_instance(nameless.clone()).await,
        Error::InvalidInput { .. }
    );
    assert!(store
        .get_instance(&nameless.instance_id)
        .await
        .unwrap()
        .is_none());
}

async fn a_runtime_finds_its_own_unfinished_instances_oldest_first(store: Arc<dyn Persistence>) {
    let tenant = unique("t");
    let ids: Vec<String> = (0..4).map(|n| unique(&format!("i{n}"))).collect();
    for (n, id) in ids.iter().enumerate() {
        store
            .start_runtime_instance(runtime_start(id, &tenant, "rt", n % 2 == 0))
            .await
            .unwrap();
    }
    // Another runtime's, another tenant's, and a plain embedded instance are not listed.
    store
        .start_runtime_instance(runtime_start(&unique("o"), &tenant, "other", true))
        .await
        .unwrap();
    store
        .start_runtime_instance(runtime_start(&unique("t"), &unique("t2"), "rt", true))
        .await
        .unwrap();
    store
        .register_instance(&unique("p"), &tenant, None)
        .await
        .unwrap();
    // Finished ones are not listed; suspended and sleeping ones are.
    store.complete_instance(&ids[0], 1, b"done").await.unwrap();
    store.suspend_instance(&ids[2], 1).await.unwrap();

    let found = store.list_runtime_instances(&tenant, "rt").await.unwrap();
    let found: Vec<(&str, InstanceStatus)> = found
        .iter()
        .map(|i| (i.instance_id.as_str(), i.status))
        .collect();
    assert_eq!(
        found,
        [
            (ids[1].as_str(), InstanceStatus::Pending),
            (ids[2].as_str(), InstanceStatus::Suspended),
            (ids[3].as_str(), InstanceStatus::Pending),
        ]
    );
    assert!(store
        .list_runtime_instances(&tenant, "nobody")
        .await
        .unwrap()
        .is_empty());
}

async fn a_pause_queued_for_a_pending_instance_is_taken_without_a_run(store: Arc<dyn Persistence>) {
    let id = unique("queued");
    store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: "t".into(),
            image_id: None,
            input: None,
            run_now: false,
            parent_id: None,
            detached: false,
        })
        .await
        .unwrap();
    let outcome = store.send_signal(&id, SignalType::Pause).await.unwrap();
    assert!(matches!(outcome, SignalOutcome::Queued(_)), "{outcome:?}");
    // The launcher holds epoch 0: the pause is taken with no run.
    store
        .acknowledge_signal(&id, 0, SignalType::Pause, true)
        .await
        .unwrap();
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Suspended);
    assert!(store.pending_signal(&id).await.unwrap().is_none());
    // A wrong epoch is fenced and changes nothing; dropping a signal still needs a run.
    let other = unique("queued");
    store
        .create_instance(NewInstance {
            instance_id: other.clone(),
            tenant_id: "t".into(),
            image_id: None,
            input: None,
            run_now: false,
            parent_id: None,
            detached: false,
        })
        .await
        .unwrap();
    store.send_signal(&other, SignalType::Pause).await.unwrap();
    assert_err!(
        store
            .acknowledge_signal(&other, 3, SignalType::Pause, true)
            .await,
        Error::Fenced { .. }
    );
    assert!(store
        .acknowledge_signal(&other, 0, SignalType::Pause, false)
        .await
        .is_err());
    let record = store.get_instance(&other).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Pending);
    assert!(store.pending_signal(&other).await.unwrap().is_some());
    // Resumed, the next run registers and finds no pause.
    store.send_signal(&id, SignalType::Resume).await.unwrap();
    let registration = store.register_instance(&id, "t", None).await.unwrap();
    assert_eq!(registration.epoch, 1);
    assert!(store.pending_signal(&id).await.unwrap().is_none());
}

async fn unfinished_instances_come_in_the_order_they_were_created(store: Arc<dyn Persistence>) {
    // Ids that sort the other way round, created within a millisecond or two.
    let base = unique("order");
    let ids: Vec<String> = (0..20).rev().map(|n| format!("{base}-{n:02}")).collect();
    for id in &ids {
        store
            .create_instance(NewInstance {
                instance_id: id.clone(),
                tenant_id: "t".into(),
                image_id: None,
                input: None,
                run_now: false,
                parent_id: None,
                detached: false,
            })
            .await
            .unwrap();
    }
    let listed: Vec<String> = store
        .list_unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.instance_id)
        .filter(|id| id.starts_with(&base))
        .collect();
    assert_eq!(listed, ids);
}
