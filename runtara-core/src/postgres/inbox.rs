//! External events and published values in PostgreSQL (see [`crate::inbox`]). Each
//! function runs in one transaction that first locks the instance's row, so that a send
//! and a wait of the same instance are ordered: a wait that finds nothing and makes the
//! instance `waiting` is seen by every later send, and a send is seen by every later wait.

use deadpool_postgres::GenericClient;

use super::queries::{col, execute, insert_event, lock_instance, query, signal_at, PENDING_SIGNAL};
use crate::guard::check_run_or_waiting;
use crate::inbox::{
    check_inbox_room, check_value_room, decode_outcome, encode_outcome, EventSent, EventTake,
};
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
    let room = query(
        c,
        "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0)::BIGINT FROM inbox \
         WHERE instance_id = $1 AND consumed_at_ms IS NULL",
        &[&instance_id],
    )
    .await?;
    if let Some(row) = room.first() {
        check_inbox_room(instance_id, col(row, 0)?, col(row, 1)?, payload.len())?;
    }
    let rows = query(
        c,
        SEND,
        &[&instance_id, &name, &payload, &idempotency_key, &now],
    )
    .await?;
    let row = rows
        .first()
        .ok_or_else(|| Error::Corrupt("an inbox insert returned no row".into()))?;
    let waiting_for: Option<String> = col(row, 1)?;
    Ok(EventSent {
        seq: col(row, 0)?,
        duplicate: false,
        wakes: status == InstanceStatus::Waiting && waiting_for.as_deref() == Some(name),
    })
}

/// Stores an event and its `received` history event, in one statement. Returns its
/// sequence number and what the instance waits for. Parameters: `$1` instance, `$2`
/// name, `$3` payload, `$4` idempotency key, `$5` now.
const SEND: &str = "\
WITH ins AS (
    INSERT INTO inbox (instance_id, name, payload, idempotency_key, created_at_ms)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING seq
), noted AS (
    INSERT INTO events (instance_id, kind, subtype, payload, created_at_ms)
    SELECT $1, 'received', $2, $3, $5 FROM ins
)
SELECT seq, (SELECT waiting_for FROM instances WHERE instance_id = $1) FROM ins";

/// What a wait finds, in one statement (run once the instance's row is locked): the
/// outcome recorded under its checkpoint id; else the oldest unconsumed event of its
/// name, which it consumes and records (and a `waiting` instance runs again, with its
/// `running` history event). Returns the recorded state and the event's payload, both
/// NULL when there is nothing to take. Parameters: `$1` instance, `$2` checkpoint id,
/// `$3` name, `$4` now.
const TAKE: &str = "\
WITH rec AS (
    SELECT state FROM checkpoints WHERE instance_id = $1 AND checkpoint_id = $2
), ev AS (
    SELECT seq, payload FROM inbox
    WHERE instance_id = $1 AND name = $3 AND consumed_at_ms IS NULL
      AND NOT EXISTS (SELECT 1 FROM rec)
    ORDER BY seq LIMIT 1
), used AS (
    UPDATE inbox SET consumed_at_ms = $4, consumed_by = $2
    FROM ev WHERE inbox.seq = ev.seq
    RETURNING inbox.seq
), run AS (
    UPDATE instances SET status = 'running', waiting_for = NULL, wake_at_ms = NULL,
                         heartbeat_at_ms = $4
    WHERE instance_id = $1 AND status = 'waiting' AND EXISTS (SELECT 1 FROM ev)
    RETURNING instance_id
), noted AS (
    INSERT INTO events (instance_id, kind, subtype, created_at_ms)
    SELECT instance_id, 'running', $3, $4 FROM run
), recorded AS (
    INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at_ms)
    SELECT $1, $2, decode('01', 'hex') || payload, $4 FROM ev
)
SELECT (SELECT state FROM rec), (SELECT payload FROM ev)";

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
    let found = query(c, TAKE, &[&instance_id, &checkpoint_id, &name, &now]).await?;
    let found = found
        .first()
        .ok_or_else(|| Error::Corrupt("a take returned no row".into()))?;
    if let Some(state) = col::<Option<Vec<u8>>>(found, 0)? {
        return decode_outcome(checkpoint_id, &state).map(EventTake::Taken);
    }
    if let Some(payload) = col::<Option<Vec<u8>>>(found, 1)? {
        // Consumed and recorded by the statement.
        return Ok(EventTake::Taken(Some(payload)));
    }
    let timed_out = deadline_ms.is_some_and(|deadline| deadline <= now);
    if !timed_out {
        return wait(c, instance_id, epoch, name, deadline_ms, now).await;
    }
    // Timed out: the outcome is `None`.
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
    let state = encode_outcome(None);
    execute(
        c,
        "INSERT INTO checkpoints (instance_id, checkpoint_id, state, created_at_ms) \
         VALUES ($1, $2, $3, $4)",
        &[&instance_id, &checkpoint_id, &state, &now],
    )
    .await?;
    Ok(EventTake::Taken(None))
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
pub(crate) async fn woken<C: GenericClient + Sync>(c: &C, now: i64) -> Result<Vec<String>> {
    query(
        c,
        "SELECT i.instance_id FROM instances AS i WHERE i.status = 'waiting' AND ( \
         i.wake_at_ms <= $1 OR EXISTS ( \
         SELECT 1 FROM inbox AS e WHERE e.instance_id = i.instance_id \
         AND e.name = i.waiting_for AND e.consumed_at_ms IS NULL))",
        &[&now],
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
    let counted = query(
        c,
        "SELECT COUNT(*) FROM instance_values WHERE instance_id = $1 AND key <> $2",
        &[&instance_id, &key],
    )
    .await?;
    if let Some(row) = counted.first() {
        check_value_room(instance_id, col(row, 0)?)?;
    }
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
