//! SQL of the PostgreSQL backend for schedules.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::queries::{col, execute, query};
use crate::schedules::{parse_missed, NewSchedule, ScheduleRecord};
use crate::{Error, Result};

/// Columns read into a [`ScheduleRecord`], in [`from_row`] order.
const COLUMNS: &str = "schedule_id, tenant_id, image_id, cron, timezone, input, missed, paused, \
     next_fire_ms, last_fire_ms, created_at_ms, runtime";

fn from_row(row: &Row) -> Result<ScheduleRecord> {
    let missed: String = col(row, 6)?;
    Ok(ScheduleRecord {
        schedule_id: col(row, 0)?,
        tenant_id: col(row, 1)?,
        image_id: col(row, 2)?,
        cron: col(row, 3)?,
        timezone: col(row, 4)?,
        input: col(row, 5)?,
        missed: parse_missed(&missed)?,
        paused: col(row, 7)?,
        next_fire_ms: col(row, 8)?,
        last_fire_ms: col(row, 9)?,
        created_at_ms: col(row, 10)?,
        runtime: col(row, 11)?,
    })
}

pub(crate) async fn create<C: GenericClient + Sync>(
    c: &C,
    new: &NewSchedule,
    now: i64,
) -> Result<ScheduleRecord> {
    let sql = format!(
        "INSERT INTO schedules (schedule_id, tenant_id, image_id, cron, timezone, input, \
         missed, next_fire_ms, created_at_ms, runtime) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (schedule_id) DO NOTHING RETURNING {COLUMNS}"
    );
    let rows = query(
        c,
        &sql,
        &[
            &new.schedule_id,
            &new.tenant_id,
            &new.image_id,
            &new.cron,
            &new.timezone,
            &new.input,
            &new.missed.as_str(),
            &new.next_fire_ms,
            &now,
            &new.runtime,
        ],
    )
    .await?;
    match rows.first() {
        Some(row) => from_row(row),
        None => Err(Error::InvalidInput {
            what: "schedule id",
            reason: format!("`{}` is taken", new.schedule_id),
        }),
    }
}

pub(crate) async fn get<C: GenericClient + Sync>(
    c: &C,
    schedule_id: &str,
) -> Result<Option<ScheduleRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE schedule_id = $1");
    query(c, &sql, &[&schedule_id])
        .await?
        .first()
        .map(from_row)
        .transpose()
}

pub(crate) async fn list<C: GenericClient + Sync>(
    c: &C,
    tenant_id: Option<&str>,
) -> Result<Vec<ScheduleRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules WHERE $1::TEXT IS NULL OR tenant_id = $1 \
         ORDER BY created_at_ms, schedule_id"
    );
    query(c, &sql, &[&tenant_id])
        .await?
        .iter()
        .map(from_row)
        .collect()
}

pub(crate) async fn delete<C: GenericClient + Sync>(c: &C, schedule_id: &str) -> Result<bool> {
    let deleted = execute(
        c,
        "DELETE FROM schedules WHERE schedule_id = $1",
        &[&schedule_id],
    )
    .await?;
    Ok(deleted == 1)
}

pub(crate) async fn set_paused<C: GenericClient + Sync>(
    c: &C,
    schedule_id: &str,
    paused: bool,
    next_fire_ms: Option<i64>,
) -> Result<Option<ScheduleRecord>> {
    execute(
        c,
        "UPDATE schedules SET paused = $2, next_fire_ms = $3 WHERE schedule_id = $1",
        &[&schedule_id, &paused, &next_fire_ms],
    )
    .await?;
    get(c, schedule_id).await
}

pub(crate) async fn advance<C: GenericClient + Sync>(
    c: &C,
    schedule_id: &str,
    expected_next: i64,
    fired_ms: Option<i64>,
    next_fire_ms: Option<i64>,
) -> Result<bool> {
    let changed = execute(
        c,
        "UPDATE schedules SET next_fire_ms = $4, last_fire_ms = COALESCE($3, last_fire_ms) \
         WHERE schedule_id = $1 AND next_fire_ms = $2 AND NOT paused",
        &[&schedule_id, &expected_next, &fired_ms, &next_fire_ms],
    )
    .await?;
    Ok(changed == 1)
}
