//! SQL of the PostgreSQL backend for the instances of in-process runtimes.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::queries::{col, query};
use crate::guard::parse_status;
use crate::model::{now_ms, NewRuntimeInstance, RuntimeInstance, RuntimeStart};
use crate::{Error, Result};

/// Columns read into a [`RuntimeInstance`], in [`from_row`] order.
const COLUMNS: &str = "instance_id, tenant_id, runtime, workflow, status, input, output, error";

/// Creates the instance if its id is free, with its `created` (and, when it runs at
/// once, `registered`) event, in one statement. Returns the epoch, or no row when the
/// id was taken (the insert waits for a concurrent one to commit, then does nothing).
/// Parameters: `$1` id, `$2` tenant, `$3` runtime, `$4` workflow, `$5` input, `$6` run
/// now, `$7` now, `$8` parent, `$9` detached.
const START: &str = "\
WITH ins AS (
    INSERT INTO instances (instance_id, tenant_id, runtime, workflow, status, epoch, input,
                           created_at_ms, started_at_ms, heartbeat_at_ms, parent_id, detached)
    VALUES ($1, $2, $3, $4, CASE WHEN $6::BOOLEAN THEN 'running' ELSE 'pending' END,
            CASE WHEN $6::BOOLEAN THEN 1 ELSE 0 END, $5, $7::BIGINT,
            CASE WHEN $6::BOOLEAN THEN $7::BIGINT END, CASE WHEN $6::BOOLEAN THEN $7::BIGINT END,
            $8::TEXT, $9::BOOLEAN)
    ON CONFLICT (instance_id) DO NOTHING
    RETURNING instance_id, epoch
), ev AS (
    INSERT INTO events (instance_id, kind, created_at_ms)
    SELECT ins.instance_id, k.kind, $7::BIGINT FROM ins,
           (VALUES (1, 'created'), (2, 'registered')) AS k (n, kind)
    WHERE k.n = 1 OR $6::BOOLEAN ORDER BY k.n
)
SELECT epoch FROM ins";

fn from_row(row: &Row) -> Result<RuntimeInstance> {
    let status: String = col(row, 4)?;
    Ok(RuntimeInstance {
        instance_id: col(row, 0)?,
        tenant_id: col(row, 1)?,
        runtime: col(row, 2)?,
        workflow: col(row, 3)?,
        status: parse_status(&status)?,
        input: col(row, 5)?,
        output: col(row, 6)?,
        error: col(row, 7)?,
    })
}

/// Creates the instance (`running` at epoch 1, or `pending`), or returns the one that
/// holds its id.
pub(crate) async fn start<C: GenericClient + Sync>(
    c: &C,
    new: &NewRuntimeInstance,
) -> Result<RuntimeStart> {
    let rows = query(
        c,
        START,
        &[
            &new.instance_id,
            &new.tenant_id,
            &new.runtime,
            &new.workflow,
            &new.input,
            &new.run_now,
            &now_ms(),
            &new.parent_id,
            &new.detached,
        ],
    )
    .await?;
    if let Some(row) = rows.first() {
        return Ok(RuntimeStart::Created {
            epoch: col(row, 0)?,
        });
    }
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE instance_id = $1");
    match query(c, &sql, &[&new.instance_id]).await?.first() {
        Some(row) => Ok(RuntimeStart::Existing(from_row(row)?)),
        None => Err(Error::Corrupt(format!(
            "instance `{}` was neither created nor found",
            new.instance_id
        ))),
    }
}

/// The unfinished instances `runtime` of `tenant_id` started, oldest first.
pub(crate) async fn unfinished<C: GenericClient + Sync>(
    c: &C,
    tenant_id: &str,
    runtime: &str,
) -> Result<Vec<RuntimeInstance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM instances WHERE tenant_id = $1 AND runtime = $2 \
         AND runtime IS NOT NULL \
         AND status IN ('pending', 'running', 'suspended', 'sleeping', 'waiting') \
         ORDER BY created_at_ms, start_seq"
    );
    query(c, &sql, &[&tenant_id, &runtime])
        .await?
        .iter()
        .map(from_row)
        .collect()
}
