//! External events and published values in PostgreSQL (see [`crate::inbox`]). Each
//! function runs in one transaction that first locks the instance's row, so that a send
//! and a wait of the same instance are ordered: a wait that finds nothing and makes the
//! instance `waiting` is seen by every later send, and a send is seen by every later wait.

use deadpool_postgres::GenericClient;

use super::queries::{col, execute, insert_event, lock_instance, query, signal_at, PENDING_SIGNAL};
use crate::guard::check_run_or_waiting;
use crate::inbox::{decode_outcome, encode_outcome, EventSent, EventTake};
use crate::{Error, InstanceStatus, Result};

/// Stores an event in the instance's inbox, or finds the send its key repeats.
pub(crate) async fn send<C: GenericClient + Sync>(
    c: &C,
    instance_id: &str,
    name: &str,
    payload: &[u8],
    idempotency_key: Option<&str>,
    now: i64,
) -> Result<EventSent> {
    let Some((_, status, _)) = lock_instance(c, instance_id).await? else {
        return Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        });
    };
    if let Some(key) = idempotency_key {
        let rows = query(
            c,
            "SELECT seq FROM inbox WHERE instance_id = $1 AND idempotency_key = $2",
            &[&instance_id, &key],
        )
        .await?;
        if let Some(row) = rows.first() {
            return Ok(EventSent {
                seq: col(row, 0)?,
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
    let rows = query(
        c,
        "INSERT INTO inbox (instance_id, name, payload, idempotency_key, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) RETURNING seq, \
         (SELECT waiting_for FROM instances WHERE instance_id = $1)",
        &[&instance_id, &name, &payload, &idempotency_key, &now],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Corrupt("an inbox insert returned no row".into()))?;
    let waiting_for: Option<String> = col(row, 1)?;
    insert_event(c, instance_id, "received", Some(name), Some(payload), now).await?;
    Ok(EventSent {
        seq: col(row, 0)?,
        duplicate: false,
        wakes: status == InstanceStatus::Waiting && waiting_for.as_deref() == Some(name),
    })
}

/// One step of a run's wait (see [`Persistence::take_event`](crate::Persistence::take_event)).
pub(crate) async fn take<C: GenericClient + Sync>(
    c: &C,
    instance_id: &str,
    epoch: i64,
    checkpoint_id: &str,
    name: &str,
    deadline_ms: Option<i64>,
    now: i64,
) -> Result<EventTake> {
    let row = lock_instance(c, instance_id)
        .await?
        .map(|(_, status, current)| (status, current));
    check_run_or_waiting(instance_id, row, epoch)?;
    let recorded = query(
        c,
        "SELECT state FROM checkpoints WHERE instance_id = $1 AND checkpoint_id = $2",
        &[&instance_id, &checkpoint_id],
    )
    .await?;
    if let Some(found) = recorded.first() {
        let state: Vec<u8> = col(found, 0)?;
        return decode_outcome(checkpoint_id, &state).map(EventTake::Taken);
    }
    let oldest = query(
        c,
        "SELECT seq, payload FROM inbox \
         WHERE instance_id = $1 AND name = $2 AND consumed_at_ms IS NULL \
         ORDER BY seq LIMIT 1",
        &[&instance_id, &name],
    )
    .await?;
    let timed_out = deadline_ms.is_some_and(|deadline| deadline <= now);
    let payload = match oldest.first() {
        Some(event) => {
            let seq: i64 = col(event, 0)?;
            execute(
                c,
                "UPDATE inbox SET consumed_at_ms = $2, consumed_by = $3 WHERE seq = $1",
                &[&seq, &now, &checkpoint_id],
            )
            .await?;
            Some(col::<Vec<u8>>(event, 1)?)
        }
        None if timed_out => None,
        None => return wait(c, instance_id, epoch, name, deadline_ms, now).await,
    };
    if row.is_some_and(|(status, _)| status == InstanceStatus::Waiting) {
        execute(
            c,
            "UPDATE instances SET status = 'running', waiting_for = NULL, wake_at_ms = NULL, \
             heartbeat_at_ms = $2 WHERE instance_id = $1",
            &[&instance_id, &now],
        )
        .await?;
        insert_event(c, instance_id, "running", Some(name), None, now).await?;
    }
    let state = encode_outcome(payload.as_deref());
    execute(
        c,
        "INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at_ms) \
         VALUES ($1, $2, $3, $4)",
        &[&instance_id, &checkpoint_id, &state, &now],
    )
    .await?;
    Ok(EventTake::Taken(payload))
}

/// Nothing to take: the instance waits for `name`, unless a cancel or pause is queued.
async fn wait<C: GenericClient + Sync>(
    c: &C,
    instance_id: &str,
    epoch: i64,
    name: &str,
    deadline_ms: Option<i64>,
    now: i64,
) -> Result<EventTake> {
    let signal = query(c, PENDING_SIGNAL, &[&instance_id]).await?;
    if let Some(row) = signal.first() {
        return Ok(EventTake::Pending(signal_at(row, 0)?));
    }
    let changed = execute(
        c,
        "UPDATE instances SET status = 'waiting', waiting_for = $3, wake_at_ms = $4, \
         heartbeat_at_ms = $5 \
         WHERE instance_id = $1 AND epoch = $2 AND status = 'running'",
        &[&instance_id, &epoch, &name, &deadline_ms, &now],
    )
    .await?;
    if changed == 1 {
        insert_event(c, instance_id, "waiting", Some(name), None, now).await?;
    }
    Ok(EventTake::Pending(None))
}

/// The event a waiting instance waits for.
pub(crate) async fn waiting_for<C: GenericClient + Sync>(
    c: &C,
    instance_id: &str,
) -> Result<Option<String>> {
    let rows = query(
        c,
        "SELECT status, waiting_for FROM instances WHERE instance_id = $1",
        &[&instance_id],
    )
    .await?;
    let Some(row) = rows.first() else {
        return Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        });
    };
    let status: String = col(row, 0)?;
    let name: Option<String> = col(row, 1)?;
    Ok(name.filter(|_| status == "waiting"))
}

/// Whether the instance waits for an event that is in its inbox.
pub(crate) async fn arrived<C: GenericClient + Sync>(c: &C, instance_id: &str) -> Result<bool> {
    let rows = query(
        c,
        "SELECT 1 FROM instances AS i JOIN inbox AS e \
         ON e.instance_id = i.instance_id AND e.name = i.waiting_for \
         AND e.consumed_at_ms IS NULL \
         WHERE i.instance_id = $1 AND i.status = 'waiting' LIMIT 1",
        &[&instance_id],
    )
    .await?;
    Ok(!rows.is_empty())
}

/// The unfinished children of `parent_id` that are not detached, oldest first.
pub(crate) async fn children<C: GenericClient + Sync>(
    c: &C,
    parent_id: &str,
) -> Result<Vec<String>> {
    query(
        c,
        "SELECT instance_id FROM instances WHERE parent_id = $1 AND NOT detached \
         AND status NOT IN ('completed', 'failed', 'cancelled') \
         ORDER BY created_at_ms, instance_id",
        &[&parent_id],
    )
    .await?
    .iter()
    .map(|row| col(row, 0))
    .collect()
}

/// The waiting instances whose awaited event has arrived.
pub(crate) async fn woken<C: GenericClient + Sync>(c: &C) -> Result<Vec<String>> {
    query(
        c,
        "SELECT i.instance_id FROM instances AS i WHERE i.status = 'waiting' AND EXISTS ( \
         SELECT 1 FROM inbox AS e WHERE e.instance_id = i.instance_id \
         AND e.name = i.waiting_for AND e.consumed_at_ms IS NULL)",
        &[],
    )
    .await?
    .iter()
    .map(|row| col(row, 0))
    .collect()
}

/// Publishes a value of a run.
pub(crate) async fn set_value<C: GenericClient + Sync>(
    c: &C,
    instance_id: &str,
    epoch: i64,
    key: &str,
    value: &[u8],
    now: i64,
) -> Result<()> {
    let row = lock_instance(c, instance_id)
        .await?
        .map(|(_, status, current)| (status, current));
    check_run_or_waiting(instance_id, row, epoch)?;
    execute(
        c,
        "INSERT INTO instance_values (instance_id, key, value, updated_at_ms) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (instance_id, key) DO UPDATE SET value = $3, updated_at_ms = $4",
        &[&instance_id, &key, &value, &now],
    )
    .await
    .map(drop)
}

/// A published value; an unknown instance is an error.
pub(crate) async fn get_value<C: GenericClient + Sync>(
    c: &C,
    instance_id: &str,
    key: &str,
) -> Result<Option<Vec<u8>>> {
    let rows = query(
        c,
        "SELECT EXISTS (SELECT 1 FROM instances WHERE instance_id = $1), \
         (SELECT value FROM instance_values WHERE instance_id = $1 AND key = $2)",
        &[&instance_id, &key],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Corrupt("a value lookup returned no row".into()))?;
    let exists: bool = col(row, 0)?;
    if !exists {
        return Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        });
    }
    col(row, 1)
}
