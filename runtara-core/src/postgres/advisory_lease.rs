//! The run lease on PostgreSQL: a session-level advisory lock, held for the life of the
//! run on a session of the store's own (one per process and store, whatever the number
//! of runs). PostgreSQL releases it when the session ends, so when the holder's process
//! dies (its socket closes) the lease goes with it.
//!
//! The lock's key is a digest of tenant and instance id. The lease's connection names
//! its holder in `application_name` (`runtara-lease pid=… host=…`), so a refused run can
//! name it from `pg_locks` joined with `pg_stat_activity`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config};

use super::capacity_retry;
use super::queries::pg;
use crate::run_lease::{lease_digest, LeaseHolder, RunLease};
use crate::{Error, Result};

/// Prefix of `application_name` on a lease's connection.
const APPLICATION: &str = "runtara-lease";

/// How long a refused acquirer keeps trying before naming the holder. A holder killed
/// outright leaves a session that PostgreSQL ends only once it sees the socket closed, a
/// few milliseconds later; a rerun started right after the kill waits for that instead
/// of being refused.
const WAIT_FOR_A_DEAD_HOLDER: Duration = Duration::from_millis(500);

/// Between two tries of a lock held elsewhere.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// The run leases of one store: every lease this process holds is an advisory lock on
/// ONE session of its own (a process running many instances holds one connection for
/// them, not one each), opened at the first lease and again if it is lost.
pub(crate) struct LeaseSessions {
    config: Config,
    connect_deadline: Duration,
    session: tokio::sync::Mutex<Option<Arc<Client>>>,
    /// Keys held through this store: a second run of one instance in this process is
    /// refused here (a session's advisory locks are reentrant).
    held: Arc<Mutex<HashSet<i64>>>,
}

/// One lease: its key on the shared session; dropping it unlocks the key.
struct HeldLock {
    key: i64,
    client: Arc<Client>,
    held: Arc<Mutex<HashSet<i64>>>,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        lock(&self.held).remove(&self.key);
        let (client, key) = (self.client.clone(), self.key);
        // Outside a runtime the lock stays until the session ends, with the process.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = client
                    .execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
                {
                    tracing::warn!(%error, key, "could not release a run lease; it goes with the session");
                }
            });
        }
    }
}

/// The advisory lock key of `(tenant_id, instance_id)`.
pub(crate) fn key(tenant_id: &str, instance_id: &str) -> i64 {
    let digest = lease_digest(tenant_id, instance_id);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl LeaseSessions {
    /// Leases of the database `config` points at; connects on first use.
    pub(crate) fn new(config: Config, connect_deadline: Duration) -> LeaseSessions {
        LeaseSessions {
            config,
            connect_deadline,
            session: tokio::sync::Mutex::new(None),
            held: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Takes the lease of `(tenant_id, instance_id)`, or fails with [`Error::Leased`]
    /// naming the live holder.
    pub(crate) async fn acquire(&self, tenant_id: &str, instance_id: &str) -> Result<RunLease> {
        let key = key(tenant_id, instance_id);
        let refused = |holder: LeaseHolder| Error::Leased {
            instance_id: instance_id.to_owned(),
            holder: holder.to_string(),
        };
        if lock(&self.held).contains(&key) {
            return Err(refused(LeaseHolder::this_process()));
        }
        let client = self.session().await?;
        let give_up_at = Instant::now() + WAIT_FOR_A_DEAD_HOLDER;
        loop {
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(pg)?;
            let taken: bool = row.try_get(0).map_err(pg)?;
            if taken {
                break;
            }
            if Instant::now() >= give_up_at {
                return Err(refused(holder(&client, key).await));
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
        if !lock(&self.held).insert(key) {
            // Another run of this process took it meanwhile (a reentrant lock): undo ours.
            let _ = client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await;
            return Err(refused(LeaseHolder::this_process()));
        }
        Ok(RunLease::new(
            HeldLock {
                key,
                client,
                held: self.held.clone(),
            },
            format!("postgres advisory lock {key}"),
        ))
    }

    /// The shared session, opened (again) when there is none or it closed. A session
    /// that closed took its locks with it: its leases are no longer held.
    async fn session(&self) -> Result<Arc<Client>> {
        let mut session = self.session.lock().await;
        if let Some(client) = session.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        if session.is_some() {
            tracing::warn!("the run lease session closed; the leases it held are gone");
            lock(&self.held).clear();
        }
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
        let mut config = self.config.clone();
        config.application_name(&name);
        let (client, _connection) = capacity_retry::connect(&config, self.connect_deadline)
            .await
            .map_err(pg)?;
        let client = Arc::new(client);
        *session = Some(client.clone());
        Ok(client)
    }
}

// The set is changed in one step, so a poisoned lock is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
