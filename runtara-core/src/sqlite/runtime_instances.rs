//! SQL of the SQLite backend for the instances of in-process runtimes.

use rusqlite::{params, Connection, Row};

use super::queries::{execute, insert_event, query_all, query_opt};
use crate::guard::parse_status;
use crate::model::{now_ms, NewRuntimeInstance, RuntimeInstance, RuntimeStart};
use crate::Result;

/// Columns read into a [`RuntimeInstance`], in [`from_row`] order.
const COLUMNS: &str = "instance_id, tenant_id, runtime, workflow, status, input, output, error";

type RawRuntimeInstance = (RuntimeInstance, String);

fn from_row(row: &Row<'_>) -> rusqlite::Result<RawRuntimeInstance> {
    Ok((
        RuntimeInstance {
            instance_id: row.get(0)?,
            tenant_id: row.get(1)?,
            runtime: row.get(2)?,
            workflow: row.get(3)?,
            status: crate::InstanceStatus::Pending,
            input: row.get(5)?,
            output: row.get(6)?,
            error: row.get(7)?,
        },
        row.get(4)?,
    ))
}

fn with_status((mut instance, status): RawRuntimeInstance) -> Result<RuntimeInstance> {
    instance.status = parse_status(&status)?;
    Ok(instance)
}

/// Creates the instance (`running` at epoch 1, or `pending`), or returns the one that
/// holds its id.
pub(crate) fn start(c: &Connection, new: &NewRuntimeInstance) -> Result<RuntimeStart> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE instance_id = ?1");
    if let Some(existing) = query_opt(c, &sql, [&new.instance_id], from_row)? {
        return Ok(RuntimeStart::Existing(with_status(existing)?));
    }
    let now = now_ms();
    let (status, epoch, started) = if new.run_now {
        ("running", 1, Some(now))
    } else {
        ("pending", 0, None)
    };
    execute(
        c,
        "INSERT INTO instances (instance_id, tenant_id, runtime, workflow, status, epoch, \
         input, created_at_ms, started_at_ms, heartbeat_at_ms, parent_id, detached) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)",
        params![
            new.instance_id,
            new.tenant_id,
            new.runtime,
            new.workflow,
            status,
            epoch,
            new.input,
            now,
            started,
            new.parent_id,
            new.detached
        ],
    )?;
    insert_event(c, &new.instance_id, "created", None, None, now)?;
    if new.run_now {
        insert_event(c, &new.instance_id, "registered", None, None, now)?;
    }
    Ok(RuntimeStart::Created { epoch })
}

/// The unfinished instances `runtime` of `tenant_id` started, oldest first.
pub(crate) fn unfinished(
    c: &Connection,
    tenant_id: &str,
    runtime: &str,
) -> Result<Vec<RuntimeInstance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM instances WHERE tenant_id = ?1 AND runtime = ?2 \
         AND runtime IS NOT NULL \
         AND status IN ('pending', 'running', 'suspended', 'sleeping', 'waiting') \
         ORDER BY created_at_ms, rowid"
    );
    query_all(c, &sql, params![tenant_id, runtime], from_row)?
        .into_iter()
        .map(with_status)
        .collect()
}
