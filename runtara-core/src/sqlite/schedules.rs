//! SQL of the SQLite backend for schedules.

use rusqlite::{params, Connection, Row};

use super::queries::{execute, query_all, query_opt};
use crate::schedules::{parse_missed, NewSchedule, ScheduleRecord};
use crate::{Error, Result};

/// Columns read into a [`ScheduleRecord`], in [`from_row`] order.
const COLUMNS: &str = "schedule_id, tenant_id, image_id, cron, timezone, input, missed, paused, \
     next_fire_ms, last_fire_ms, created_at_ms, runtime";

type RawSchedule = (ScheduleRecord, String);

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawSchedule> {
    Ok((
        ScheduleRecord {
            schedule_id: row.get(0)?,
            tenant_id: row.get(1)?,
            image_id: row.get(2)?,
            cron: row.get(3)?,
            timezone: row.get(4)?,
            input: row.get(5)?,
            missed: Default::default(),
            paused: row.get(7)?,
            next_fire_ms: row.get(8)?,
            last_fire_ms: row.get(9)?,
            created_at_ms: row.get(10)?,
            runtime: row.get(11)?,
        },
        row.get(6)?,
    ))
}

fn with_missed((mut record, missed): RawSchedule) -> Result<ScheduleRecord> {
    record.missed = parse_missed(&missed)?;
    Ok(record)
}

pub(crate) fn create(c: &Connection, new: &NewSchedule, now: i64) -> Result<ScheduleRecord> {
    let inserted = execute(
        c,
        "INSERT INTO schedules (schedule_id, tenant_id, image_id, cron, timezone, input, \
         missed, next_fire_ms, created_at_ms, runtime) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (schedule_id) DO NOTHING",
        params![
            new.schedule_id,
            new.tenant_id,
            new.image_id,
            new.cron,
            new.timezone,
            new.input,
            new.missed.as_str(),
            new.next_fire_ms,
            now,
            new.runtime
        ],
    )?;
    if inserted == 0 {
        return Err(Error::InvalidInput {
            what: "schedule id",
            reason: format!("`{}` is taken", new.schedule_id),
        });
    }
    get(c, &new.schedule_id)?.ok_or_else(|| {
        Error::Corrupt(format!(
            "schedule `{}` was stored but not found",
            new.schedule_id
        ))
    })
}

pub(crate) fn get(c: &Connection, schedule_id: &str) -> Result<Option<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id = ?1");
    query_opt(c, &sql, [schedule_id], from_row)?
        .map(with_missed)
        .transpose()
}

pub(crate) fn list(c: &Connection, tenant_id: Option<&str>) -> Result<Vec<ScheduleRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules WHERE ?1 IS NULL OR tenant_id = ?1 \
         ORDER BY created_at_ms, schedule_id"
    );
    query_all(c, &sql, [tenant_id], from_row)?
        .into_iter()
        .map(with_missed)
        .collect()
}

pub(crate) fn delete(c: &Connection, schedule_id: &str) -> Result<bool> {
    Ok(execute(
        c,
        "DELETE FROM schedules WHERE schedule_id = ?1",
        [schedule_id],
    )? == 1)
}

pub(crate) fn set_paused(
    c: &Connection,
    schedule_id: &str,
    paused: bool,
    next_fire_ms: Option<i64>,
) -> Result<Option<ScheduleRecord>> {
    execute(
        c,
        "UPDATE schedules SET paused = ?2, next_fire_ms = ?3 WHERE schedule_id = ?1",
        params![schedule_id, paused, next_fire_ms],
    )?;
    get(c, schedule_id)
}

pub(crate) fn advance(
    c: &Connection,
    schedule_id: &str,
    expected_next: i64,
    fired_ms: Option<i64>,
    next_fire_ms: Option<i64>,
) -> Result<bool> {
    let changed = execute(
        c,
        "UPDATE schedules SET next_fire_ms = ?4, last_fire_ms = COALESCE(?3, last_fire_ms) \
         WHERE schedule_id = ?1 AND next_fire_ms = ?2 AND paused = 0",
        params![schedule_id, expected_next, fired_ms, next_fire_ms],
    )?;
    Ok(changed == 1)
}
