//! External events and published values (`send_event`, `take_event`, `set_value`, …),
//! against SQLite (a real file) and PostgreSQL (when `RUNTARA_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use runtara_core::inbox::{
    encode_outcome, MAX_VALUES, MAX_WAITING_EVENTS, MAX_WAITING_EVENT_BYTES,
};
use runtara_core::{
    now_ms, Error, EventKind, EventTake, InstanceStatus, NewInstance, Persistence, SignalType,
    MAX_EVENT_PAYLOAD_LEN,
};

#[macro_use]
mod support;
use support::{running, status, unique};

parity!(
    events_wait_in_the_inbox_and_each_is_taken_once_in_order,
    a_wait_with_nothing_to_take_makes_the_instance_waiting_until_an_event_comes,
    a_wait_times_out_once_its_deadline_has_passed_and_stays_timed_out,
    a_repeated_send_with_its_idempotency_key_is_a_no_op,
    sends_that_cannot_be_delivered_are_refused_and_store_nothing,
    waits_are_writes_of_the_run_and_are_fenced,
    a_queued_signal_wins_over_a_wait,
    signals_to_a_waiting_instance_apply_at_once,
    a_register_runs_a_waiting_instance_again,
    concurrent_sends_and_a_waiting_run_lose_no_event,
    values_are_published_replaced_and_read,
    a_child_that_ends_tells_its_parent_once,
    the_unfinished_children_of_a_parent_are_listed,
    a_waiting_instance_is_woken_when_its_event_is_there,
    an_inbox_holds_a_bounded_count_of_untaken_events,
    an_inbox_holds_a_bounded_size_of_untaken_events,
    an_instance_publishes_a_bounded_count_of_values,
);

async fn take(
    store: &Arc<dyn Persistence>,
    id: &str,
    epoch: i64,
    checkpoint_id: &str,
    name: &str,
    deadline_ms: Option<i64>,
) -> EventTake {
    store
        .take_event(id, epoch, checkpoint_id, name, deadline_ms)
        .await
        .unwrap()
}

fn taken(payload: &[u8]) -> EventTake {
    EventTake::Taken(Some(payload.to_vec()))
}

async fn events_wait_in_the_inbox_and_each_is_taken_once_in_order(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-order").await;
    for (name, payload) in [("approved", "a"), ("other", "x"), ("approved", "b")] {
        let sent = store
            .send_event(&id, name, payload.as_bytes(), None)
            .await
            .unwrap();
        assert!(!sent.duplicate && !sent.wakes, "{sent:?}");
    }
    assert_eq!(
        take(&store, &id, epoch, "approved#1", "approved", None).await,
        taken(b"a")
    );
    // The same wait again (a rerun) gets what it recorded, not the next event.
    assert_eq!(
        take(&store, &id, epoch, "approved#1", "approved", None).await,
        taken(b"a")
    );
    assert_eq!(
        take(&store, &id, epoch, "approved#2", "approved", None).await,
        taken(b"b")
    );
    assert_eq!(
        take(&store, &id, epoch, "other#1", "other", None).await,
        taken(b"x")
    );
    // The outcome is a checkpoint: a rerun replays it from the log.
    let log = store.load_replay(&id).await.unwrap();
    let recorded: Vec<_> = log
        .checkpoints
        .iter()
        .map(|(c, s)| (c.as_str(), s.clone()))
        .collect();
    assert_eq!(
        recorded,
        vec![
            ("approved#1", encode_outcome(Some(b"a"))),
            ("approved#2", encode_outcome(Some(b"b"))),
            ("other#1", encode_outcome(Some(b"x"))),
        ]
    );
    let received = store.list_events(&id).await.unwrap();
    let names: Vec<_> = received
        .iter()
        .filter(|e| e.kind == EventKind::Received)
        .map(|e| e.subtype.clone().unwrap())
        .collect();
    assert_eq!(names, ["approved", "other", "approved"]);
    assert_eq!(status(&store, &id).await, InstanceStatus::Running);
}

async fn a_wait_with_nothing_to_take_makes_the_instance_waiting_until_an_event_comes(
    store: Arc<dyn Persistence>,
) {
    let (id, epoch) = running(&store, "inbox-wait").await;
    let deadline = now_ms() + 3_600_000;
    let first = take(&store, &id, epoch, "approved#1", "approved", Some(deadline)).await;
    assert_eq!(first, EventTake::Pending(None));
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Waiting);
    assert_eq!(record.wake_at_ms, Some(deadline), "woken at the deadline");
    assert_eq!(
        store.waiting_for(&id).await.unwrap().as_deref(),
        Some("approved")
    );
    assert!(!store.event_arrived(&id).await.unwrap());
    // The waiting run still beats, and may look again.
    store.heartbeat(&id, epoch).await.unwrap();
    let again = take(&store, &id, epoch, "approved#1", "approved", Some(deadline)).await;
    assert_eq!(again, EventTake::Pending(None));
    // Another name does not wake it.
    let other = store.send_event(&id, "rejected", b"r", None).await.unwrap();
    assert!(!other.wakes);
    assert!(!store.event_arrived(&id).await.unwrap());
    let sent = store
        .send_event(&id, "approved", b"yes", None)
        .await
        .unwrap();
    assert!(sent.wakes, "the instance waits for this name");
    assert!(store.event_arrived(&id).await.unwrap());
    let got = take(&store, &id, epoch, "approved#1", "approved", Some(deadline)).await;
    assert_eq!(got, taken(b"yes"));
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Running);
    assert_eq!(record.wake_at_ms, None);
    assert_eq!(store.waiting_for(&id).await.unwrap(), None, "running again");
    assert!(!store.event_arrived(&id).await.unwrap());
    let kinds: Vec<_> = store
        .list_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind.as_str().to_owned())
        .collect();
    assert!(
        kinds.ends_with(&[
            "waiting".into(),
            "received".into(),
            "received".into(),
            "running".into()
        ]),
        "{kinds:?}"
    );
}

async fn a_wait_times_out_once_its_deadline_has_passed_and_stays_timed_out(
    store: Arc<dyn Persistence>,
) {
    let (id, epoch) = running(&store, "inbox-timeout").await;
    let passed = now_ms() - 1;
    let first = take(&store, &id, epoch, "approved#1", "approved", Some(passed)).await;
    assert_eq!(first, EventTake::Taken(None));
    // An event that comes later does not change a recorded timeout…
    store
        .send_event(&id, "approved", b"late", None)
        .await
        .unwrap();
    let again = take(&store, &id, epoch, "approved#1", "approved", None).await;
    assert_eq!(again, EventTake::Taken(None));
    // …and waits for the next wait.
    assert_eq!(
        take(&store, &id, epoch, "approved#2", "approved", None).await,
        taken(b"late")
    );
    // An event that is there wins over a passed deadline.
    store
        .send_event(&id, "approved", b"there", None)
        .await
        .unwrap();
    let third = take(&store, &id, epoch, "approved#3", "approved", Some(passed)).await;
    assert_eq!(third, taken(b"there"));
}

async fn a_repeated_send_with_its_idempotency_key_is_a_no_op(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-key").await;
    let first = store
        .send_event(&id, "paid", b"1", Some("stripe-evt-1"))
        .await
        .unwrap();
    let repeat = store
        .send_event(&id, "paid", b"1", Some("stripe-evt-1"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(repeat.duplicate);
    assert_eq!(repeat.seq, first.seq);
    let other = store
        .send_event(&id, "paid", b"2", Some("stripe-evt-2"))
        .await
        .unwrap();
    assert!(!other.duplicate && other.seq > first.seq);
    assert_eq!(
        take(&store, &id, epoch, "paid#1", "paid", None).await,
        taken(b"1")
    );
    assert_eq!(
        take(&store, &id, epoch, "paid#2", "paid", None).await,
        taken(b"2")
    );
    let nothing = take(&store, &id, epoch, "paid#3", "paid", None).await;
    assert_eq!(
        nothing,
        EventTake::Pending(None),
        "the repeat stored nothing"
    );
    // A repeat is a repeat even once the instance has finished.
    store.send_signal(&id, SignalType::Cancel).await.unwrap();
    let late = store
        .send_event(&id, "paid", b"1", Some("stripe-evt-1"))
        .await
        .unwrap();
    assert!(late.duplicate && late.seq == first.seq);
    // The key is per instance.
    let (other_id, _) = running(&store, "inbox-key-other").await;
    let elsewhere = store
        .send_event(&other_id, "paid", b"1", Some("stripe-evt-1"))
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
}

async fn sends_that_cannot_be_delivered_are_refused_and_store_nothing(store: Arc<dyn Persistence>) {
    let missing = unique("inbox-missing");
    assert_err!(
        store.send_event(&missing, "approved", b"{}", None).await,
        Error::InstanceNotFound { .. }
    );
    let (id, epoch) = running(&store, "inbox-refused").await;
    let too_big = vec![b'x'; MAX_EVENT_PAYLOAD_LEN + 1];
    assert_err!(
        store.send_event(&id, "approved", &too_big, None).await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        store.send_event(&id, "", b"{}", None).await,
        Error::InvalidInput { .. }
    );
    assert_err!(
        store.send_event(&id, "approved", b"{}", Some("")).await,
        Error::InvalidInput { .. }
    );
    let at_limit = vec![b'x'; MAX_EVENT_PAYLOAD_LEN];
    store.send_event(&id, "big", &at_limit, None).await.unwrap();
    assert_eq!(
        take(
            &store,
            &id,
            epoch,
            "approved#1",
            "approved",
            Some(now_ms() - 1)
        )
        .await,
        EventTake::Taken(None),
        "nothing was stored for the refused sends"
    );
    store.complete_instance(&id, epoch, b"done").await.unwrap();
    assert_err!(
        store.send_event(&id, "approved", b"{}", None).await,
        Error::Terminal {
            status: InstanceStatus::Completed,
            ..
        }
    );
    let received = store.count_events(&id, &EventKind::Received).await.unwrap();
    assert_eq!(received, 1, "only the send at the limit");
}

async fn waits_are_writes_of_the_run_and_are_fenced(store: Arc<dyn Persistence>) {
    let (id, old) = running(&store, "inbox-fenced").await;
    store.send_event(&id, "go", b"1", None).await.unwrap();
    let new = store.register_instance(&id, "t", None).await.unwrap().epoch;
    assert_err!(
        store.take_event(&id, old, "go#1", "go", None).await,
        Error::Fenced { .. }
    );
    assert_err!(
        store.set_value(&id, old, "progress", b"1").await,
        Error::Fenced { .. }
    );
    // The fenced wait took nothing: the new run gets the event.
    assert_eq!(
        take(&store, &id, new, "go#1", "go", None).await,
        taken(b"1")
    );
    assert_err!(
        store
            .take_event(&unique("inbox-none"), 1, "go#1", "go", None)
            .await,
        Error::InstanceNotFound { .. }
    );
}

async fn a_queued_signal_wins_over_a_wait(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-signal").await;
    store.send_signal(&id, SignalType::Pause).await.unwrap();
    match take(&store, &id, epoch, "go#1", "go", None).await {
        EventTake::Pending(Some(signal)) => assert_eq!(signal.signal_type, SignalType::Pause),
        other => panic!("expected the pause, got {other:?}"),
    }
    assert_eq!(
        status(&store, &id).await,
        InstanceStatus::Running,
        "not waiting: the run is to act on the pause"
    );
    store
        .acknowledge_signal(&id, epoch, SignalType::Pause, true)
        .await
        .unwrap();
    assert_eq!(status(&store, &id).await, InstanceStatus::Suspended);
}

async fn signals_to_a_waiting_instance_apply_at_once(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-cancel").await;
    take(&store, &id, epoch, "go#1", "go", Some(now_ms() + 60_000)).await;
    store.send_signal(&id, SignalType::Cancel).await.unwrap();
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Cancelled);
    assert_eq!(record.wake_at_ms, None, "no wake-up for a cancelled wait");
    assert_err!(
        store.take_event(&id, epoch, "go#1", "go", None).await,
        Error::Terminal {
            status: InstanceStatus::Cancelled,
            ..
        }
    );
    let (paused, epoch) = running(&store, "inbox-pause").await;
    take(&store, &paused, epoch, "go#1", "go", None).await;
    store.send_signal(&paused, SignalType::Pause).await.unwrap();
    assert_eq!(status(&store, &paused).await, InstanceStatus::Suspended);
    assert_err!(
        store.take_event(&paused, epoch, "go#1", "go", None).await,
        Error::NotRunning {
            status: InstanceStatus::Suspended,
            ..
        }
    );
    // A resumed run waits again, and an event sent meanwhile is there for it.
    store.send_event(&paused, "go", b"1", None).await.unwrap();
    store
        .send_signal(&paused, SignalType::Resume)
        .await
        .unwrap();
    let resumed = store.register_instance(&paused, "t", None).await.unwrap();
    assert_eq!(
        take(&store, &paused, resumed.epoch, "go#1", "go", None).await,
        taken(b"1")
    );
}

async fn a_register_runs_a_waiting_instance_again(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-register").await;
    take(&store, &id, epoch, "go#1", "go", Some(now_ms() + 60_000)).await;
    assert!(store
        .list_unfinished()
        .await
        .unwrap()
        .iter()
        .any(|i| i.instance_id == id && i.status == InstanceStatus::Waiting));
    let run = store.register_instance(&id, "t", None).await.unwrap();
    assert_eq!(run.previous_status, Some(InstanceStatus::Waiting));
    let record = store.get_instance(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InstanceStatus::Running);
    assert_eq!(record.wake_at_ms, None);
    // It waits no more for the old run's name: a send does not ask to wake it.
    let sent = store.send_event(&id, "go", b"1", None).await.unwrap();
    assert!(!sent.wakes);
    assert_eq!(
        take(&store, &id, run.epoch, "go#1", "go", None).await,
        taken(b"1")
    );
}

async fn concurrent_sends_and_a_waiting_run_lose_no_event(store: Arc<dyn Persistence>) {
    const EVENTS: usize = 40;
    let (id, epoch) = running(&store, "inbox-race").await;
    let senders: Vec<_> = (0..EVENTS)
        .map(|n| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                store
                    .send_event(&id, "item", n.to_string().as_bytes(), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for n in 1..=EVENTS {
        let checkpoint = format!("item#{n}");
        loop {
            match take(&store, &id, epoch, &checkpoint, "item", None).await {
                EventTake::Taken(Some(payload)) => {
                    got.push(
                        String::from_utf8(payload)
                            .unwrap()
                            .parse::<usize>()
                            .unwrap(),
                    );
                    break;
                }
                EventTake::Taken(None) => panic!("no deadline, yet timed out"),
                EventTake::Pending(_) => tokio::task::yield_now().await,
            }
        }
    }
    for sender in senders {
        sender.await.unwrap();
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (0..EVENTS).collect::<Vec<_>>(),
        "each event taken once"
    );
    let last = take(&store, &id, epoch, "item#999", "item", None).await;
    assert_eq!(last, EventTake::Pending(None), "none left over");
}

async fn values_are_published_replaced_and_read(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-values").await;
    assert_eq!(store.get_value(&id, "progress").await.unwrap(), None);
    store.set_value(&id, epoch, "progress", b"1").await.unwrap();
    store.set_value(&id, epoch, "progress", b"2").await.unwrap();
    store.set_value(&id, epoch, "total", b"9").await.unwrap();
    assert_eq!(
        store.get_value(&id, "progress").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        store.get_value(&id, "total").await.unwrap().as_deref(),
        Some(&b"9"[..])
    );
    assert_err!(
        store
            .get_value(&unique("inbox-no-values"), "progress")
            .await,
        Error::InstanceNotFound { .. }
    );
    let too_big = vec![0u8; MAX_EVENT_PAYLOAD_LEN + 1];
    assert_err!(
        store.set_value(&id, epoch, "progress", &too_big).await,
        Error::InvalidInput { .. }
    );
    store.complete_instance(&id, epoch, b"done").await.unwrap();
    assert_err!(
        store.set_value(&id, epoch, "progress", b"3").await,
        Error::Terminal { .. }
    );
    // Published values outlive the run.
    assert_eq!(
        store.get_value(&id, "progress").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
}

/// Creates the child `{parent}~{key}` of `parent`, `pending`.
async fn child(store: &Arc<dyn Persistence>, parent: &str, key: &str) -> String {
    let id = runtara_core::inbox::child_instance_id(parent, key).unwrap();
    store
        .create_instance(NewInstance {
            instance_id: id.clone(),
            tenant_id: "t".into(),
            parent_id: Some(parent.to_owned()),
            ..NewInstance::default()
        })
        .await
        .unwrap();
    id
}

async fn a_child_that_ends_tells_its_parent_once(store: Arc<dyn Persistence>) {
    let (parent, epoch) = running(&store, "parent").await;
    let done = child(&store, &parent, "done").await;
    let failed = child(&store, &parent, "failed").await;
    let cancelled = child(&store, &parent, "cancelled").await;
    let run = store.register_instance(&done, "t", None).await.unwrap();
    store
        .complete_instance(&done, run.epoch, b"42")
        .await
        .unwrap();
    let run = store.register_instance(&failed, "t", None).await.unwrap();
    store
        .fail_instance(&failed, run.epoch, "boom")
        .await
        .unwrap();
    store
        .send_signal(&cancelled, SignalType::Cancel)
        .await
        .unwrap();
    for (id, status) in [
        (&done, "completed"),
        (&failed, "failed"),
        (&cancelled, "cancelled"),
    ] {
        let name = runtara_core::inbox::child_event_name(id);
        let got = take(&store, &parent, epoch, &format!("{name}#1"), &name, None).await;
        let expected = format!("\"{status}\"");
        assert_eq!(got, taken(expected.as_bytes()), "{id}");
        // Once: nothing more for a second wait.
        let again = take(
            &store,
            &parent,
            epoch,
            &format!("{name}#2"),
            &name,
            Some(now_ms() - 1),
        )
        .await;
        assert_eq!(again, EventTake::Taken(None), "{id}");
    }
    // A status set by the server ends a child too; a second terminal write does nothing.
    let timed_out = child(&store, &parent, "timed-out").await;
    let from = [InstanceStatus::Pending, InstanceStatus::Running];
    assert!(store
        .set_status(&timed_out, &from, InstanceStatus::Failed, Some("timeout"))
        .await
        .unwrap());
    let received = store
        .count_events(&parent, &EventKind::Received)
        .await
        .unwrap();
    assert_eq!(received, 4, "one per child");
    // An instance without a parent tells nobody.
    let (orphan, epoch) = running(&store, "orphan").await;
    store.complete_instance(&orphan, epoch, b"1").await.unwrap();
    assert_eq!(
        store
            .count_events(&parent, &EventKind::Received)
            .await
            .unwrap(),
        4
    );
}

async fn the_unfinished_children_of_a_parent_are_listed(store: Arc<dyn Persistence>) {
    let (parent, _) = running(&store, "lister").await;
    let a = child(&store, &parent, "a").await;
    let b = child(&store, &parent, "b").await;
    let c = child(&store, &parent, "c").await;
    store.send_signal(&b, SignalType::Cancel).await.unwrap();
    assert_eq!(
        store.list_children(&parent).await.unwrap(),
        vec![a.clone(), c.clone()]
    );
    let grandchild = child(&store, &a, "x").await;
    assert_eq!(store.list_children(&a).await.unwrap(), vec![grandchild]);
    assert!(store.list_children(&c).await.unwrap().is_empty());
    // A detached child is not listed (it is not cancelled with its parent), yet it
    // tells its parent when it ends.
    let detached = runtara_core::inbox::child_instance_id(&c, "kept").unwrap();
    store
        .create_instance(NewInstance {
            instance_id: detached.clone(),
            tenant_id: "t".into(),
            parent_id: Some(c.clone()),
            detached: true,
            ..NewInstance::default()
        })
        .await
        .unwrap();
    assert!(store.list_children(&c).await.unwrap().is_empty());
    let run = store.register_instance(&detached, "t", None).await.unwrap();
    store
        .complete_instance(&detached, run.epoch, b"1")
        .await
        .unwrap();
    assert_eq!(
        store.count_events(&c, &EventKind::Received).await.unwrap(),
        1
    );
}

async fn a_waiting_instance_is_woken_when_its_event_is_there(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "woken").await;
    take(&store, &id, epoch, "go#1", "go", None).await;
    assert!(!store.list_woken().await.unwrap().contains(&id));
    store.send_event(&id, "other", b"1", None).await.unwrap();
    assert!(!store.list_woken().await.unwrap().contains(&id));
    store.send_event(&id, "go", b"1", None).await.unwrap();
    assert!(store.list_woken().await.unwrap().contains(&id));
    take(&store, &id, epoch, "go#1", "go", None).await;
    assert!(
        !store.list_woken().await.unwrap().contains(&id),
        "taken: running again"
    );
    // A wait whose deadline has passed is woken too (its run takes the timeout).
    let (late, epoch) = running(&store, "woken-late").await;
    take(&store, &late, epoch, "go#1", "go", Some(now_ms() + 300)).await;
    assert!(!store.list_woken().await.unwrap().contains(&late));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(store.list_woken().await.unwrap().contains(&late));
}

async fn an_inbox_holds_a_bounded_count_of_untaken_events(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-full").await;
    for _ in 0..MAX_WAITING_EVENTS {
        store.send_event(&id, "tick", b"1", None).await.unwrap();
    }
    let full = store.send_event(&id, "tick", b"1", None).await;
    match &full {
        Err(Error::QuotaExceeded { reason, .. }) => {
            assert!(reason.contains("2000 events in its inbox"), "{reason}")
        }
        other => panic!("expected a full inbox, got {other:?}"),
    }
    let received = store.count_events(&id, &EventKind::Received).await.unwrap();
    assert_eq!(
        received, MAX_WAITING_EVENTS as u64,
        "the refused one stored nothing"
    );
    // A take makes room for one.
    assert_eq!(
        take(&store, &id, epoch, "tick#1", "tick", None).await,
        taken(b"1")
    );
    store.send_event(&id, "tick", b"2", None).await.unwrap();
    assert!(store.send_event(&id, "tick", b"3", None).await.is_err());
}

async fn an_inbox_holds_a_bounded_size_of_untaken_events(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "inbox-big").await;
    let big = vec![b'7'; MAX_EVENT_PAYLOAD_LEN];
    let fit = MAX_WAITING_EVENT_BYTES / MAX_EVENT_PAYLOAD_LEN as i64;
    for _ in 0..fit {
        store.send_event(&id, "blob", &big, None).await.unwrap();
    }
    let full = store.send_event(&id, "blob", b"1", None).await;
    assert!(
        matches!(&full, Err(Error::QuotaExceeded { reason, .. }) if reason.contains("bytes of events")),
        "{full:?}"
    );
    assert_eq!(
        take(&store, &id, epoch, "blob#1", "blob", None).await,
        taken(&big)
    );
    store.send_event(&id, "blob", &big, None).await.unwrap();
}

async fn an_instance_publishes_a_bounded_count_of_values(store: Arc<dyn Persistence>) {
    let (id, epoch) = running(&store, "values-full").await;
    for n in 0..MAX_VALUES {
        store
            .set_value(&id, epoch, &format!("k{n}"), b"1")
            .await
            .unwrap();
    }
    let new_key = store.set_value(&id, epoch, "one-more", b"1").await;
    assert!(
        matches!(&new_key, Err(Error::QuotaExceeded { reason, .. }) if reason.contains("1000 values")),
        "{new_key:?}"
    );
    assert_eq!(store.get_value(&id, "one-more").await.unwrap(), None);
    // A key it has is set again.
    store.set_value(&id, epoch, "k7", b"2").await.unwrap();
    assert_eq!(
        store.get_value(&id, "k7").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
}
