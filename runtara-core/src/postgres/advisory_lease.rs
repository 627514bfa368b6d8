//! The run lease on PostgreSQL: a session-level advisory lock held on a connection of its
//! own for the life of the run. PostgreSQL releases it when the session ends, so when
//! the holder's process dies (its socket closes) the lease goes with it.
//!
//! The lock's key is a digest of tenant and instance id. The lease's connection names
//! its holder in `application_name` (`runtara-lease pid=… host=…`), so a refused run can
//! name it from `pg_locks` joined with `pg_stat_activity`.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config};

use super::capacity_retry;
use super::queries::pg;
use crate::run_lease::{lease_digest, LeaseHolder, RunLease};
use crate::{Error, Result};

/// Prefix of `application_name` on a lease's connection.
const APPLICATION: &str = "runtara-lease";

/// How long a refused acquirer waits for the lock before naming the holder. A holder
/// killed outright leaves a session that PostgreSQL ends only once it sees the socket
/// closed, a few milliseconds later; a rerun started right after the kill waits for that
/// instead of being refused.
const WAIT_FOR_A_DEAD_HOLDER: &str = "500ms";

/// The session holding the lock; dropping the client ends the session and the lock.
struct LeaseSession {
    _client: Client,
}

/// The advisory lock key of `(tenant_id, instance_id)`.
pub(crate) fn key(tenant_id: &str, instance_id: &str) -> i64 {
    let digest = lease_digest(tenant_id, instance_id);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Takes the lease of `(tenant_id, instance_id)` on a new connection made from `config`,
/// or fails with [`Error::Leased`] naming the live holder.
pub(crate) async fn acquire(
    config: &Config,
    connect_deadline: Duration,
    tenant_id: &str,
    instance_id: &str,
) -> Result<RunLease> {
    let key = key(tenant_id, instance_id);
    let me = LeaseHolder::this_process();
    let mut name = format!(
        "{APPLICATION} pid={}",
        me.pid.unwrap_or_else(std::process::id)
    );
    if let Some(host) = &me.host {
        name.push_str(" host=");
        name.push_str(host);
    }
    // PostgreSQL keeps 63 bytes of it; everything here is ASCII but the host may not be.
    while name.len() > 63 {
        name.pop();
    }
    let mut config = config.clone();
    config.application_name(&name);
    let (client, _connection) = capacity_retry::connect(&config, connect_deadline)
        .await
        .map_err(pg)?;
    client
        .batch_execute(&format!("SET lock_timeout = '{WAIT_FOR_A_DEAD_HOLDER}'"))
        .await
        .map_err(pg)?;
    match client.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
        Ok(_) => {}
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            let holder = holder(&client, key).await;
            return Err(Error::Leased {
                instance_id: instance_id.to_owned(),
                holder: holder.to_string(),
            });
        }
        Err(error) => return Err(pg(error)),
    }
    client
        .batch_execute("RESET lock_timeout")
        .await
        .map_err(pg)?;
    Ok(RunLease::new(
        LeaseSession { _client: client },
        format!("postgres advisory lock {key}"),
    ))
}

/// Who holds the advisory lock `key` in this database, as far as PostgreSQL tells.
async fn holder(client: &Client, key: i64) -> LeaseHolder {
    let row = client
        .query_opt(
            "SELECT a.pid, a.application_name, \
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    host(a.client_addr) \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = (($1::bigint >> 32) & 4294967295)::oid \
               AND l.objid = ($1::bigint & 4294967295)::oid \
             LIMIT 1",
            &[&key],
        )
        .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return LeaseHolder::default(),
        Err(error) => {
            return LeaseHolder {
                other: Some(format!("its session could not be read: {error}")),
                ..LeaseHolder::default()
            }
        }
    };
    let backend: Option<i32> = row.try_get(0).ok();
    let application: Option<String> = row.try_get(1).ok().flatten();
    let since: Option<String> = row.try_get(2).ok().flatten();
    let client_addr: Option<String> = row.try_get(3).ok().flatten();
    match application
        .as_deref()
        .and_then(|name| name.strip_prefix(APPLICATION))
    {
        Some(fields) => LeaseHolder {
            since,
            ..LeaseHolder::decode(fields)
        },
        None => LeaseHolder {
            since,
            other: Some(format!(
                "PostgreSQL session {}{}{}",
                backend.map_or_else(|| "?".to_owned(), |pid| pid.to_string()),
                application
                    .filter(|a| !a.is_empty())
                    .map(|a| format!(" `{a}`"))
                    .unwrap_or_default(),
                client_addr
                    .map(|a| format!(" from {a}"))
                    .unwrap_or_default()
            )),
            ..LeaseHolder::default()
        },
    }
}
