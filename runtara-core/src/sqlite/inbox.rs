//! External events and published values in SQLite (see [`crate::inbox`]). Each
//! function runs inside one writer job, so what it reads and writes is one transaction.

use rusqlite::{params, Connection};

use super::queries::{
    execute, insert_event, pending_signal, query_all, query_opt, save_checkpoint, status_epoch,
    Record,
};
use crate::guard::{check_run_or_waiting, parse_status};
use crate::inbox::{
    check_inbox_room, check_value_room, decode_outcome, encode_outcome, EventSent, EventTake,
};
use crate::{Error, InstanceStatus, Result};

/// Stores an event in the instance's inbox, or finds the send its key repeats.
pub(crate) fn send(
    c: &Connection,
    instance_id: &str,
    name: &str,
    payload: &[u8],
    idempotency_key: Option<&str>,
    now: i64,
) -> Result<EventSent> {
    let row: Option<(String, Option<String>)> = query_opt(
        c,
        "SELECT status, waiting_for FROM instances WHERE instance_id = ?1",
        [instance_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let Some((status, waiting_for)) = row else {
        return Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        });
    };
    let status = parse_status(&status)?;
    if let Some(key) = idempotency_key {
        let first: Option<i64> = query_opt(
            c,
            "SELECT seq FROM inbox WHERE instance_id = ?1 AND idempotency_key = ?2",
            [instance_id, key],
            |r| r.get(0),
        )?;
        if let Some(seq) = first {
            return Ok(EventSent {
                seq,
                duplicate: true,
                wakes: false,
            });
        }
    }
    // A repeat of a send that was delivered is answered as such, even once the instance
    // has finished; a new event for a finished instance is refused.
    if status.is_terminal() {
        return Err(Error::Terminal {
            instance_id: instance_id.to_owned(),
            status,
        });
    }
    let (waiting, waiting_bytes): (i64, i64) = query_opt(
        c,
        "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM inbox \
         WHERE instance_id = ?1 AND consumed_at_ms IS NULL",
        [instance_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .unwrap_or((0, 0));
    check_inbox_room(instance_id, waiting, waiting_bytes, payload.len())?;
    execute(
        c,
        "INSERT INTO inbox (instance_id, name, payload, idempotency_key, created_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![instance_id, name, payload, idempotency_key, now],
    )?;
    let seq = c.last_insert_rowid();
    insert_event(c, instance_id, "received", Some(name), Some(payload), now)?;
    Ok(EventSent {
        seq,
        duplicate: false,
        wakes: status == InstanceStatus::Waiting && waiting_for.as_deref() == Some(name),
    })
}

/// One step of a run's wait (see [`Persistence::take_event`](crate::Persistence::take_event)).
pub(crate) fn take(
    c: &Connection,
    instance_id: &str,
    epoch: i64,
    checkpoint_id: &str,
    name: &str,
    deadline_ms: Option<i64>,
    now: i64,
) -> Result<EventTake> {
    let row = status_epoch(c, instance_id)?;
    check_run_or_waiting(instance_id, row, epoch)?;
    let recorded: Option<Vec<u8>> = query_opt(
        c,
        "SELECT state FROM checkpoints WHERE instance_id = ?1 AND checkpoint_id = ?2",
        [instance_id, checkpoint_id],
        |r| r.get(0),
    )?;
    if let Some(state) = recorded {
        return decode_outcome(checkpoint_id, &state).map(EventTake::Taken);
    }
    let oldest: Option<(i64, Vec<u8>)> = query_opt(
        c,
        "SELECT seq, payload FROM inbox \
         WHERE instance_id = ?1 AND name = ?2 AND consumed_at_ms IS NULL \
         ORDER BY seq LIMIT 1",
        [instance_id, name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let timed_out = deadline_ms.is_some_and(|deadline| deadline <= now);
    let payload = match oldest {
        Some((seq, payload)) => {
            execute(
                c,
                "UPDATE inbox SET consumed_at_ms = ?2, consumed_by = ?3 WHERE seq = ?1",
                params![seq, now, checkpoint_id],
            )?;
            Some(payload)
        }
        None if timed_out => None,
        None => return wait(c, instance_id, epoch, name, deadline_ms, now),
    };
    if row.is_some_and(|(status, _)| status == InstanceStatus::Waiting) {
        execute(
            c,
            "UPDATE instances SET status = 'running', waiting_for = NULL, wake_at_ms = NULL \
             WHERE instance_id = ?1",
            [instance_id],
        )?;
        insert_event(c, instance_id, "running", Some(name), None, now)?;
    }
    let state = encode_outcome(payload.as_deref());
    let record = Record {
        checkpoint_id,
        state: &state,
        wake_at_ms: None,
        producer: None,
    };
    save_checkpoint(c, instance_id, epoch, record, now)?;
    Ok(EventTake::Taken(payload))
}

/// Nothing to take: the instance waits for `name`, unless a cancel or pause is queued.
fn wait(
    c: &Connection,
    instance_id: &str,
    epoch: i64,
    name: &str,
    deadline_ms: Option<i64>,
    now: i64,
) -> Result<EventTake> {
    if let Some(signal) = pending_signal(c, instance_id)? {
        return Ok(EventTake::Pending(Some(signal)));
    }
    let changed = execute(
        c,
        "UPDATE instances SET status = 'waiting', waiting_for = ?3, wake_at_ms = ?4, \
         heartbeat_at_ms = ?5 \
         WHERE instance_id = ?1 AND epoch = ?2 AND status = 'running'",
        params![instance_id, epoch, name, deadline_ms, now],
    )?;
    if changed == 1 {
        insert_event(c, instance_id, "waiting", Some(name), None, now)?;
    }
    Ok(EventTake::Pending(None))
}

/// The event a waiting instance waits for.
pub(crate) fn waiting_for(c: &Connection, instance_id: &str) -> Result<Option<String>> {
    let row: Option<(String, Option<String>)> = query_opt(
        c,
        "SELECT status, waiting_for FROM instances WHERE instance_id = ?1",
        [instance_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    match row {
        None => Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        }),
        Some((status, name)) => Ok(name.filter(|_| status == "waiting")),
    }
}

/// Whether the instance waits for an event that is in its inbox.
pub(crate) fn arrived(c: &Connection, instance_id: &str) -> Result<bool> {
    let found: Option<i64> = query_opt(
        c,
        "SELECT 1 FROM instances AS i JOIN inbox AS e \
         ON e.instance_id = i.instance_id AND e.name = i.waiting_for \
         AND e.consumed_at_ms IS NULL \
         WHERE i.instance_id = ?1 AND i.status = 'waiting' LIMIT 1",
        [instance_id],
        |r| r.get(0),
    )?;
    Ok(found.is_some())
}

/// The unfinished children of `parent_id` that are not detached, oldest first.
pub(crate) fn children(c: &Connection, parent_id: &str) -> Result<Vec<String>> {
    query_all(
        c,
        "SELECT instance_id FROM instances WHERE parent_id = ?1 AND detached = 0 \
         AND status NOT IN ('completed', 'failed', 'cancelled') ORDER BY created_at_ms, rowid",
        [parent_id],
        |r| r.get(0),
    )
}

/// The waiting instances whose awaited event has arrived.
pub(crate) fn woken(c: &Connection, now: i64) -> Result<Vec<String>> {
    query_all(
        c,
        "SELECT i.instance_id FROM instances AS i WHERE i.status = 'waiting' AND ( \
         i.wake_at_ms <= ?1 OR EXISTS ( \
         SELECT 1 FROM inbox AS e WHERE e.instance_id = i.instance_id \
         AND e.name = i.waiting_for AND e.consumed_at_ms IS NULL))",
        [now],
        |r| r.get(0),
    )
}

/// Publishes a value of a run.
pub(crate) fn set_value(
    c: &Connection,
    instance_id: &str,
    epoch: i64,
    key: &str,
    value: &[u8],
    now: i64,
) -> Result<()> {
    check_run_or_waiting(instance_id, status_epoch(c, instance_id)?, epoch)?;
    let other_keys: i64 = query_opt(
        c,
        "SELECT COUNT(*) FROM instance_values WHERE instance_id = ?1 AND key <> ?2",
        [instance_id, key],
        |r| r.get(0),
    )?
    .unwrap_or(0);
    check_value_room(instance_id, other_keys)?;
    execute(
        c,
        "INSERT INTO instance_values (instance_id, key, value, updated_at_ms) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (instance_id, key) DO UPDATE SET value = ?3, updated_at_ms = ?4",
        params![instance_id, key, value, now],
    )
    .map(drop)
}

/// A published value; an unknown instance is an error.
pub(crate) fn get_value(c: &Connection, instance_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
    if status_epoch(c, instance_id)?.is_none() {
        return Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        });
    }
    query_opt(
        c,
        "SELECT value FROM instance_values WHERE instance_id = ?1 AND key = ?2",
        [instance_id, key],
        |r| r.get(0),
    )
}
