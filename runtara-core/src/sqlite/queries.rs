//! SQL of the SQLite backend. Every function runs on the writer thread, inside the
//! savepoint of one job, so a job's statements see each other and nothing else.

use rusqlite::{params, Connection, OptionalExtension, Params, Row};

use crate::guard::{check_run, custom_event_refusal, parse_status, quota_i64};
use crate::model::{
    CheckpointRecord, EventKind, EventPage, EventQuota, EventRecord, InstanceFilter,
    InstanceRecord, InstanceStatus, PendingSignal, ReplayLog, RetryAttemptRecord, SignalType,
};
use crate::{now_ms, Error, Result, EVENT_OVERHEAD};

/// Wraps a rusqlite error.
pub(crate) fn db(error: rusqlite::Error) -> Error {
    Error::database("sqlite", error)
}

/// Runs a cached statement; returns the number of rows changed.
pub(crate) fn execute(c: &Connection, sql: &str, params: impl Params) -> Result<usize> {
    c.prepare_cached(sql)
        .map_err(db)?
        .execute(params)
        .map_err(db)
}

/// Runs a cached query expected to return at most one row.
pub(crate) fn query_opt<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    c.prepare_cached(sql)
        .map_err(db)?
        .query_row(params, map)
        .optional()
        .map_err(db)
}

/// Runs a cached query and maps every row.
pub(crate) fn query_all<T>(
    c: &Connection,
    sql: &str,
    params: impl Params,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    c.prepare_cached(sql)
        .map_err(db)?
        .query_map(params, map)
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<T>>>()
        .map_err(db)
}

/// Reads a retry attempt number, refusing values that do not fit.
fn attempt(row: &Row<'_>, idx: usize) -> rusqlite::Result<std::result::Result<u32, i64>> {
    let raw: i64 = row.get(idx)?;
    Ok(u32::try_from(raw).map_err(|_| raw))
}

fn bad_attempt(raw: i64) -> Error {
    Error::Corrupt(format!("retry attempt number {raw} is out of range"))
}

/// Columns read into an [`InstanceRecord`], in [`instance_from_row`] order.
const INSTANCE_COLUMNS: &str = "instance_id, tenant_id, image_id, status, epoch, input, \
     output, error, checkpoint_id, checkpoint_count, created_at_ms, started_at_ms, \
     finished_at_ms, heartbeat_at_ms, wake_at_ms";

/// [`INSTANCE_COLUMNS`] for a listing: no input, output, last checkpoint or count, and
/// the error cut to its first [`MAX_LISTED_ERROR_CHARS`](crate::MAX_LISTED_ERROR_CHARS)
/// characters.
const BRIEF_INSTANCE_COLUMNS: &str = "instance_id, tenant_id, image_id, status, epoch, NULL, \
     NULL, substr(error, 1, 1024), NULL, 0, created_at_ms, started_at_ms, finished_at_ms, \
     heartbeat_at_ms, wake_at_ms";

/// An instance row with its status still unparsed, so that a bad value becomes
/// [`Error::Corrupt`] rather than a driver error.
type RawInstance = (InstanceRecord, String);

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<RawInstance> {
    Ok((
        InstanceRecord {
            instance_id: row.get(0)?,
            tenant_id: row.get(1)?,
            image_id: row.get(2)?,
            status: InstanceStatus::Pending,
            epoch: row.get(4)?,
            input: row.get(5)?,
            output: row.get(6)?,
            error: row.get(7)?,
            checkpoint_id: row.get(8)?,
            checkpoint_count: row.get(9)?,
            created_at_ms: row.get(10)?,
            started_at_ms: row.get(11)?,
            finished_at_ms: row.get(12)?,
            heartbeat_at_ms: row.get(13)?,
            wake_at_ms: row.get(14)?,
        },
        row.get(3)?,
    ))
}

fn with_status((mut record, status): RawInstance) -> Result<InstanceRecord> {
    record.status = parse_status(&status)?;
    Ok(record)
}

pub(crate) fn get_instance(c: &Connection, instance_id: &str) -> Result<Option<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?1");
    query_opt(c, &sql, [instance_id], instance_from_row)?
        .map(with_status)
        .transpose()
}

/// Instances matching `condition` (SQL after `WHERE`, no parameters).
pub(crate) fn instances_where(c: &Connection, condition: &str) -> Result<Vec<InstanceRecord>> {
    let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE {condition}");
    query_all(c, &sql, [], instance_from_row)?
        .into_iter()
        .map(with_status)
        .collect()
}

/// Tenant, status and epoch of an instance.
pub(crate) fn owner_status_epoch(
    c: &Connection,
    instance_id: &str,
) -> Result<Option<(String, InstanceStatus, i64)>> {
    let row: Option<(String, String, i64)> = query_opt(
        c,
        "SELECT tenant_id, status, epoch FROM instances WHERE instance_id = ?1",
        [instance_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    row.map(|(tenant, status, epoch)| Ok((tenant, parse_status(&status)?, epoch)))
        .transpose()
}

/// Status and epoch of an instance.
pub(crate) fn status_epoch(
    c: &Connection,
    instance_id: &str,
) -> Result<Option<(InstanceStatus, i64)>> {
    Ok(owner_status_epoch(c, instance_id)?.map(|(_, status, epoch)| (status, epoch)))
}

/// The precise error for a run's write that a guard in SQL refused (changed no row).
pub(crate) fn refusal(c: &Connection, instance_id: &str, epoch: i64) -> Error {
    match status_epoch(c, instance_id) {
        Err(error) => error,
        Ok(row) => match check_run(instance_id, row, epoch) {
            Err(error) => error,
            // Unreachable with one writer per transaction; said plainly if it happens.
            Ok(()) => Error::Corrupt(format!(
                "instance `{instance_id}` is running under epoch {epoch} but refused the write"
            )),
        },
    }
}

/// Refuses unless a run holding `epoch` may write to the instance.
pub(crate) fn ensure_run(c: &Connection, instance_id: &str, epoch: i64) -> Result<()> {
    check_run(instance_id, status_epoch(c, instance_id)?, epoch)
}

/// Stores an event of an instance known to exist.
pub(crate) fn insert_event(
    c: &Connection,
    instance_id: &str,
    kind: &str,
    subtype: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
) -> Result<()> {
    execute(
        c,
        "INSERT INTO events (instance_id, kind, subtype, payload, created_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![instance_id, kind, subtype, payload, now],
    )
    .map(drop)
}

/// Stores an event if the instance exists; returns whether it does.
pub(crate) fn insert_event_if_exists(
    c: &Connection,
    instance_id: &str,
    kind: &str,
    subtype: Option<&str>,
    payload: Option<&[u8]>,
    now: i64,
) -> Result<bool> {
    let stored = execute(
        c,
        "INSERT INTO events (instance_id, kind, subtype, payload, created_at_ms) \
         SELECT instance_id, ?2, ?3, ?4, ?5 FROM instances WHERE instance_id = ?1",
        params![instance_id, kind, subtype, payload, now],
    )?;
    Ok(stored == 1)
}

/// Marks every pending signal of `signal` type handled.
pub(crate) fn settle_signals(
    c: &Connection,
    instance_id: &str,
    signal: SignalType,
    acknowledged: bool,
    now: i64,
) -> Result<()> {
    execute(
        c,
        "UPDATE signals SET acked_at_ms = ?3, acknowledged = ?4 \
         WHERE instance_id = ?1 AND signal_type = ?2 AND acked_at_ms IS NULL",
        params![instance_id, signal.as_str(), now, acknowledged],
    )
    .map(drop)
}

/// Whether a signal of this type is queued (unacknowledged).
pub(crate) fn signal_queued(c: &Connection, instance_id: &str, signal: SignalType) -> Result<bool> {
    let row: Option<i64> = query_opt(
        c,
        "SELECT 1 FROM signals \
         WHERE instance_id = ?1 AND signal_type = ?2 AND acked_at_ms IS NULL LIMIT 1",
        params![instance_id, signal.as_str()],
        |r| r.get(0),
    )?;
    Ok(row.is_some())
}

/// The highest-priority unacknowledged cancel or pause (cancel first, then oldest).
pub(crate) fn pending_signal(c: &Connection, instance_id: &str) -> Result<Option<PendingSignal>> {
    let row: Option<(i64, String, i64)> = query_opt(
        c,
        "SELECT signal_id, signal_type, created_at_ms FROM signals \
         WHERE instance_id = ?1 AND acked_at_ms IS NULL AND signal_type IN ('cancel', 'pause') \
         ORDER BY signal_type = 'cancel' DESC, signal_id LIMIT 1",
        [instance_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    row.map(|(signal_id, kind, created_at_ms)| {
        Ok(PendingSignal {
            signal_id,
            signal_type: kind.parse()?,
            created_at_ms,
        })
    })
    .transpose()
}

/// State and wake time stored earlier under a checkpoint id.
pub(crate) type Earlier = (Vec<u8>, Option<i64>, Option<String>);

/// A checkpoint to store: its id, state, the wake time of a sleep and the function that
/// produced it.
pub(crate) struct Record<'a> {
    pub(crate) checkpoint_id: &'a str,
    pub(crate) state: &'a [u8],
    pub(crate) wake_at_ms: Option<i64>,
    pub(crate) producer: Option<&'a str>,
}

/// What [`save_checkpoint`] found.
pub(crate) struct Saved {
    /// What was stored earlier under the id; `None` when this call stored it.
    pub(crate) earlier: Option<Earlier>,
    /// The highest-priority pending signal.
    pub(crate) signal: Option<PendingSignal>,
}

/// The insert-if-absent behind `save_checkpoint` and `save_sleep`, guarded in SQL:
/// the row goes in only when the instance is running under `epoch`.
///
/// Two statements on the fresh path: the guarded insert, and the instance's update,
/// which also returns how many signals are pending (kept by triggers, see migration 4);
/// the signal itself is read only when there is one.
pub(crate) fn save_checkpoint(
    c: &Connection,
    instance_id: &str,
    epoch: i64,
    record: Record<'_>,
    now: i64,
) -> Result<Saved> {
    let Record {
        checkpoint_id,
        state,
        wake_at_ms,
        producer,
    } = record;
    let inserted = execute(
        c,
        "INSERT INTO checkpoints \
         (instance_id, checkpoint_id, state, created_at_ms, wake_at_ms, producer) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?7 FROM instances \
         WHERE instance_id = ?1 AND epoch = ?6 AND status = 'running' \
         ON CONFLICT (instance_id, checkpoint_id) DO NOTHING",
        params![
            instance_id,
            checkpoint_id,
            state,
            now,
            wake_at_ms,
            epoch,
            producer
        ],
    )?;
    if inserted == 1 {
        let signals = query_opt(
            c,
            "UPDATE instances SET checkpoint_id = ?2, checkpoint_count = checkpoint_count + 1, \
             heartbeat_at_ms = ?3 WHERE instance_id = ?1 RETURNING signals_pending",
            params![instance_id, checkpoint_id, now],
            |r| r.get::<_, i64>(0),
        )?
        .unwrap_or(0);
        if let Some(wake_at_ms) = wake_at_ms {
            set_wake(c, instance_id, wake_at_ms)?;
        }
        return Ok(Saved {
            earlier: None,
            signal: signal_if_any(c, instance_id, signals)?,
        });
    }
    // Either the guard refused (say precisely why) or the id was recorded before.
    ensure_run(c, instance_id, epoch)?;
    let earlier: Earlier = query_opt(
        c,
        "SELECT state, wake_at_ms, producer FROM checkpoints \
         WHERE instance_id = ?1 AND checkpoint_id = ?2",
        [instance_id, checkpoint_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?
    .ok_or_else(|| {
        Error::Corrupt(format!(
            "checkpoint `{checkpoint_id}` of instance `{instance_id}` was neither stored nor found"
        ))
    })?;
    let signals = query_opt(
        c,
        "UPDATE instances SET heartbeat_at_ms = ?2 WHERE instance_id = ?1 RETURNING signals_pending",
        params![instance_id, now],
        |r| r.get::<_, i64>(0),
    )?
    .unwrap_or(0);
    if let Some(given) = wake_at_ms {
        set_wake(c, instance_id, earlier.1.unwrap_or(given))?;
    }
    Ok(Saved {
        earlier: Some(earlier),
        signal: signal_if_any(c, instance_id, signals)?,
    })
}

/// The pending signal, looked up only when the instance's counter says there is one.
fn signal_if_any(
    c: &Connection,
    instance_id: &str,
    signals_pending: i64,
) -> Result<Option<PendingSignal>> {
    if signals_pending > 0 {
        pending_signal(c, instance_id)
    } else {
        Ok(None)
    }
}

/// Records the wake time in force on the instance. A separate statement on purpose:
/// `wake_at_ms` is indexed, and naming it in an UPDATE rewrites the index entry even
/// when the value does not change — an extra page in every commit that names it.
fn set_wake(c: &Connection, instance_id: &str, wake_at_ms: i64) -> Result<()> {
    execute(
        c,
        "UPDATE instances SET wake_at_ms = ?2 WHERE instance_id = ?1 AND wake_at_ms IS NOT ?2",
        params![instance_id, wake_at_ms],
    )
    .map(drop)
}

/// The whole replay log of `instance_id` (checkpoints in record order, their producers,
/// the retry attempts), when its checkpoints take at most `max_bytes` in a page (see
/// [`checkpoints_page`]); `None` as soon as they take more.
pub(crate) fn whole_replay_log(
    c: &Connection,
    instance_id: &str,
    max_bytes: usize,
) -> Result<Option<ReplayLog>> {
    let mut statement = c
        .prepare_cached(
            "SELECT checkpoint_id, state, producer FROM checkpoints WHERE instance_id = ?1 \
             ORDER BY seq",
        )
        .map_err(db)?;
    let mut rows = statement.query([instance_id]).map_err(db)?;
    let mut log = ReplayLog::default();
    let mut bytes = 0_usize;
    while let Some(row) = rows.next().map_err(db)? {
        let (id, state): (String, Vec<u8>) = (row.get(0).map_err(db)?, row.get(1).map_err(db)?);
        bytes = bytes.saturating_add(id.len() + state.len() + 16);
        if bytes > max_bytes {
            return Ok(None);
        }
        log.checkpoints.push((id, state));
        let producer = row.get_ref(2).map_err(db)?;
        log.producers
            .push(producer.as_str_or_null().map_err(|e| db(e.into()))?);
    }
    load_retry_state(c, instance_id, &mut log)?;
    Ok(Some(log))
}

/// Checkpoints of `instance_id` after `after_seq`, as many as fit in `max_bytes` (a
/// checkpoint counts its state, its id and 16 bytes of framing) and at least one, with
/// whether more follow. Sizes are read from the records' headers, so checkpoints left
/// for a later page are not read.
pub(crate) fn checkpoints_page(
    c: &Connection,
    instance_id: &str,
    after_seq: i64,
    max_bytes: usize,
) -> Result<(Vec<CheckpointRecord>, Option<i64>)> {
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let rows = query_all(
        c,
        "WITH sizes AS (\
            SELECT seq, length(state) + length(checkpoint_id) + 16 AS len, \
                   SUM(length(state) + length(checkpoint_id) + 16) OVER (ORDER BY seq) AS upto, \
                   COUNT(*) OVER () AS total \
            FROM checkpoints WHERE instance_id = ?1 AND seq > ?2) \
         SELECT c.seq, c.checkpoint_id, c.state, c.created_at_ms, c.wake_at_ms, s.total, \
                c.producer \
         FROM sizes AS s JOIN checkpoints AS c ON c.seq = s.seq \
         WHERE s.upto - s.len = 0 OR s.upto <= ?3 ORDER BY s.seq",
        params![instance_id, after_seq, max_bytes],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                CheckpointRecord {
                    checkpoint_id: r.get(1)?,
                    state: r.get(2)?,
                    created_at_ms: r.get(3)?,
                    wake_at_ms: r.get(4)?,
                    producer: r.get(6)?,
                },
                r.get::<_, i64>(5)?,
            ))
        },
    )?;
    let total = rows.first().map_or(0, |row| row.2);
    let last = rows.last().map(|row| row.0);
    let more_after = last.filter(|_| i64::try_from(rows.len()).unwrap_or(i64::MAX) < total);
    Ok((rows.into_iter().map(|row| row.1).collect(), more_after))
}

/// Fills in the retry attempts of `instance_id` (the highest per checkpoint id, and when
/// it was recorded) and its steps' final failures.
pub(crate) fn load_retry_state(
    c: &Connection,
    instance_id: &str,
    log: &mut ReplayLog,
) -> Result<()> {
    let attempts = query_all(
        c,
        "SELECT checkpoint_id, MAX(attempt), MAX(created_at_ms) FROM retry_attempts \
         WHERE instance_id = ?1 GROUP BY checkpoint_id ORDER BY MIN(seq), checkpoint_id",
        [instance_id],
        |r| Ok((r.get::<_, String>(0)?, attempt(r, 1)?, r.get::<_, i64>(2)?)),
    )?;
    for (checkpoint_id, attempt, at_ms) in attempts {
        log.retry_attempts
            .push((checkpoint_id, attempt.map_err(bad_attempt)?));
        log.retry_at_ms.push(at_ms);
    }
    log.failures = query_all(
        c,
        "SELECT checkpoint_id, error FROM step_failures WHERE instance_id = ?1 \
         ORDER BY created_at_ms, checkpoint_id",
        [instance_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(())
}

/// Records a step's final failure, guarded in SQL; the first recorded failure stays.
pub(crate) fn insert_step_failure(
    c: &Connection,
    instance_id: &str,
    epoch: i64,
    checkpoint_id: &str,
    error: &str,
) -> Result<()> {
    let inserted = execute(
        c,
        "INSERT INTO step_failures (instance_id, checkpoint_id, error, created_at_ms) \
         SELECT ?1, ?2, ?3, ?4 FROM instances \
         WHERE instance_id = ?1 AND epoch = ?5 AND status = 'running' \
         ON CONFLICT (instance_id, checkpoint_id) DO NOTHING",
        params![instance_id, checkpoint_id, error, now_ms(), epoch],
    )?;
    if inserted == 0 {
        ensure_run(c, instance_id, epoch)?;
    }
    Ok(())
}

/// Removes a step's final failure and its retry attempts; false when none is recorded.
pub(crate) fn delete_step_failure(
    c: &Connection,
    instance_id: &str,
    checkpoint_id: &str,
) -> Result<bool> {
    match status_epoch(c, instance_id)? {
        None => {
            return Err(Error::InstanceNotFound {
                instance_id: instance_id.to_owned(),
            })
        }
        Some((status, _)) if status.is_terminal() => {
            return Err(Error::Terminal {
                instance_id: instance_id.to_owned(),
                status,
            })
        }
        Some(_) => {}
    }
    let removed = execute(
        c,
        "DELETE FROM step_failures WHERE instance_id = ?1 AND checkpoint_id = ?2",
        [instance_id, checkpoint_id],
    )?;
    if removed == 0 {
        return Ok(false);
    }
    execute(
        c,
        "DELETE FROM retry_attempts WHERE instance_id = ?1 AND checkpoint_id = ?2",
        [instance_id, checkpoint_id],
    )?;
    Ok(true)
}

/// Records a retry attempt, guarded in SQL; a repeat of a recorded attempt is a no-op.
pub(crate) fn insert_retry_attempt(
    c: &Connection,
    instance_id: &str,
    epoch: i64,
    checkpoint_id: &str,
    attempt: u32,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    let inserted = execute(
        c,
        "INSERT INTO retry_attempts (instance_id, checkpoint_id, attempt, error, created_at_ms, seq) \
         SELECT ?1, ?2, ?3, ?4, ?5, \
                (SELECT COALESCE(MAX(seq), 0) + 1 FROM retry_attempts WHERE instance_id = ?1) \
         FROM instances WHERE instance_id = ?1 AND epoch = ?6 AND status = 'running' \
         ON CONFLICT (instance_id, checkpoint_id, attempt) DO NOTHING",
        params![instance_id, checkpoint_id, attempt, error, now, epoch],
    )?;
    if inserted == 0 {
        // Refused by the guard, or recorded before (then the guard passes: a no-op).
        ensure_run(c, instance_id, epoch)?;
    }
    Ok(())
}

/// A tenant's instances, newest first, and how many match; `brief` leaves out input,
/// output, last checkpoint and count (see `Persistence::list_instances_brief`).
pub(crate) fn list_instances(
    c: &Connection,
    filter: &InstanceFilter,
    brief: bool,
) -> Result<(Vec<InstanceRecord>, i64)> {
    let (tenant_id, offset) = (&filter.tenant_id, filter.offset);
    let status = filter.status.map(InstanceStatus::as_str);
    let limit = filter.limit.map_or(-1, i64::from);
    let columns = if brief {
        BRIEF_INSTANCE_COLUMNS
    } else {
        INSTANCE_COLUMNS
    };
    let sql = format!(
        "SELECT {columns} FROM instances WHERE tenant_id = ?1 \
         AND (?2 IS NULL OR status = ?2) ORDER BY created_at_ms DESC, instance_id \
         LIMIT ?3 OFFSET ?4"
    );
    let instances = query_all(
        c,
        &sql,
        params![tenant_id, status, limit, offset],
        instance_from_row,
    )?
    .into_iter()
    .map(with_status)
    .collect::<Result<Vec<_>>>()?;
    let total: i64 = query_opt(
        c,
        "SELECT COUNT(*) FROM instances WHERE tenant_id = ?1 AND (?2 IS NULL OR status = ?2)",
        params![tenant_id, status],
        |r| r.get(0),
    )?
    .unwrap_or(0);
    Ok((instances, total))
}

pub(crate) fn list_checkpoints(c: &Connection, instance_id: &str) -> Result<Vec<CheckpointRecord>> {
    query_all(
        c,
        "SELECT checkpoint_id, state, created_at_ms, wake_at_ms, producer FROM checkpoints \
         WHERE instance_id = ?1 ORDER BY seq",
        [instance_id],
        |r| {
            Ok(CheckpointRecord {
                checkpoint_id: r.get(0)?,
                state: r.get(1)?,
                created_at_ms: r.get(2)?,
                wake_at_ms: r.get(3)?,
                producer: r.get(4)?,
            })
        },
    )
}

pub(crate) fn list_events(c: &Connection, instance_id: &str) -> Result<Vec<EventRecord>> {
    query_all(
        c,
        "SELECT event_id, kind, subtype, payload, created_at_ms FROM events \
         WHERE instance_id = ?1 ORDER BY event_id",
        [instance_id],
        |r| {
            Ok(EventRecord {
                event_id: r.get(0)?,
                kind: EventKind::from_name(&r.get::<_, String>(1)?),
                subtype: r.get(2)?,
                payload: r.get(3)?,
                created_at_ms: r.get(4)?,
            })
        },
    )
}

/// One page of an instance's events (see `Persistence::list_events_page`): the first
/// `limit` events after `after_event_id` are sized from their record headers (no payload
/// is read for that), and those that fit in `max_bytes` (at least one) are read.
pub(crate) fn events_page(
    c: &Connection,
    instance_id: &str,
    after_event_id: i64,
    limit: usize,
    max_bytes: usize,
) -> Result<EventPage> {
    // One more than the page is sized, to know whether more follow.
    let limit = i64::try_from(limit.max(1))
        .unwrap_or(i64::MAX)
        .min(i64::MAX - 1);
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let overhead = i64::try_from(EVENT_OVERHEAD).unwrap_or(i64::MAX);
    let rows = query_all(
        c,
        "WITH head AS (\
            SELECT event_id, length(CAST(kind AS BLOB)) \
                   + COALESCE(length(CAST(subtype AS BLOB)), 0) \
                   + COALESCE(length(payload), 0) + ?5 AS len \
            FROM events WHERE instance_id = ?1 AND event_id > ?2 \
            ORDER BY event_id LIMIT ?3 + 1), \
         sizes AS (\
            SELECT event_id, len, SUM(len) OVER (ORDER BY event_id) AS upto, \
                   ROW_NUMBER() OVER (ORDER BY event_id) AS n, COUNT(*) OVER () AS total \
            FROM head) \
         SELECT e.event_id, e.kind, e.subtype, e.payload, e.created_at_ms, s.total \
         FROM sizes AS s JOIN events AS e ON e.event_id = s.event_id \
         WHERE s.n <= ?3 AND (s.n = 1 OR s.upto <= ?4) ORDER BY s.event_id",
        params![instance_id, after_event_id, limit, max_bytes, overhead],
        |r| {
            Ok((
                EventRecord {
                    event_id: r.get(0)?,
                    kind: EventKind::from_name(&r.get::<_, String>(1)?),
                    subtype: r.get(2)?,
                    payload: r.get(3)?,
                    created_at_ms: r.get(4)?,
                },
                r.get::<_, i64>(5)?,
            ))
        },
    )?;
    let total = rows.first().map_or(0, |row| row.1);
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) < total;
    let events: Vec<EventRecord> = rows.into_iter().map(|row| row.0).collect();
    let more_after = events.last().map(|e| e.event_id).filter(|_| more);
    Ok(EventPage { events, more_after })
}

/// How many events of `kind` an instance has.
pub(crate) fn count_events(c: &Connection, instance_id: &str, kind: &str) -> Result<u64> {
    let count: Option<i64> = query_opt(
        c,
        "SELECT COUNT(*) FROM events WHERE instance_id = ?1 AND kind = ?2",
        [instance_id, kind],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(count.unwrap_or(0)).unwrap_or(0))
}

/// Stores a custom event within `quota` (see `Persistence::record_custom_event`): the
/// instance's count and bytes are raised only if it is unfinished and stays within the
/// quota, and the event is stored only if they were.
pub(crate) fn insert_custom_event(
    c: &Connection,
    instance_id: &str,
    subtype: &str,
    payload: &[u8],
    quota: &EventQuota,
    now: i64,
) -> Result<()> {
    let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
    let counted = execute(
        c,
        "UPDATE instances SET custom_events = custom_events + 1, \
             custom_event_bytes = custom_event_bytes + ?2 \
         WHERE instance_id = ?1 AND status NOT IN ('completed', 'failed', 'cancelled') \
           AND custom_events < ?3 AND custom_event_bytes + ?2 <= ?4",
        params![
            instance_id,
            len,
            quota_i64(quota.max_events_per_instance),
            quota_i64(quota.max_event_bytes_per_instance)
        ],
    )?;
    if counted == 0 {
        let row: Option<(String, i64, i64)> = query_opt(
            c,
            "SELECT status, custom_events, custom_event_bytes FROM instances \
             WHERE instance_id = ?1",
            [instance_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let row = row
            .map(|(status, events, bytes)| Ok((parse_status(&status)?, events, bytes)))
            .transpose()?;
        return Err(custom_event_refusal(instance_id, row, payload.len(), quota));
    }
    insert_event(c, instance_id, "custom", Some(subtype), Some(payload), now)
}

pub(crate) fn list_retry_attempts(
    c: &Connection,
    instance_id: &str,
) -> Result<Vec<RetryAttemptRecord>> {
    query_all(
        c,
        "SELECT checkpoint_id, attempt, error, created_at_ms FROM retry_attempts \
         WHERE instance_id = ?1 ORDER BY seq, created_at_ms, checkpoint_id, attempt",
        [instance_id],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                attempt(r, 1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?
    .into_iter()
    .map(|(checkpoint_id, attempt, error, created_at_ms)| {
        Ok(RetryAttemptRecord {
            checkpoint_id,
            attempt: attempt.map_err(bad_attempt)?,
            error,
            created_at_ms,
        })
    })
    .collect()
}
