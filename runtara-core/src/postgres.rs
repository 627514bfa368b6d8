//! PostgreSQL backend: a connection pool (deadpool, statements prepared once per
//! connection), one round trip per checkpoint and per run transition, every guard in SQL.
//!
//! A checkpoint (or sleep) is ONE statement: it locks the instance row, inserts the
//! checkpoint only when the run holds the current epoch and the instance is running,
//! updates the bookkeeping, and returns what it found so the precise error needs no
//! further query. Concurrent checkpoints are committed together, pipelined in one
//! transaction with one WAL flush (`group_commit.rs`); a lone one runs in autocommit.
//! Operations whose decision depends on the state (register, send a signal, acknowledge
//! one that moves the instance) run in a transaction that locks the row first.

mod advisory_lease;
mod capacity_retry;
mod connection;
mod group_commit;
mod images;
mod inbox;
mod queries;
mod runtime_instances;
mod schedules;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use futures_core::Stream;
use tokio_postgres::types::ToSql;

use crate::guard::{
    check_custom_event, check_run, check_schedule, custom_event_refusal, parse_status, plan_signal,
    quota_i64, validate_attempt, validate_id, validate_image_workers, SignalPlan, RESUMABLE,
};
use crate::model::*;
use crate::{Error, Persistence, Result};
use group_commit::{GroupCommit, Save};
use queries::*;

/// The PostgreSQL implementation of [`Persistence`].
pub struct PostgresPersistence {
    pool: Pool,
    saves: GroupCommit,
    /// The run leases this process holds, on one session of their own.
    leases: advisory_lease::LeaseSessions,
}

impl std::fmt::Debug for PostgresPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresPersistence")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresPersistence {
    /// Connects to `url` (`postgres://user@host:port/db`, no TLS) and applies the
    /// migrations.
    pub async fn connect(url: &str) -> Result<PostgresPersistence> {
        PostgresPersistence::connect_with(url, &crate::ConnectOptions::default()).await
    }

    /// [`connect`](Self::connect) with `options` (the pool's size).
    pub async fn connect_with(
        url: &str,
        options: &crate::ConnectOptions,
    ) -> Result<PostgresPersistence> {
        let size = options
            .postgres_pool_size
            .unwrap_or(connection::POOL_SIZE)
            .max(1);
        let connect_deadline = options
            .postgres_connect_deadline
            .unwrap_or(capacity_retry::CONNECT_DEADLINE);
        let pool = connection::pool(url, size, connect_deadline)?;
        connection::migrate(&pool).await?;
        let saves = GroupCommit::spawn(pool.clone());
        Ok(PostgresPersistence {
            pool,
            saves,
            leases: advisory_lease::LeaseSessions::new(connection::config(url)?, connect_deadline),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::database("postgres", e))
    }

    /// A run's own transition out of `running`, guarded in SQL, with its event.
    async fn transition(
        &self,
        instance_id: &str,
        epoch: i64,
        to: InstanceStatus,
        output: Option<&[u8]>,
        error: Option<&str>,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        transition_on(&client, instance_id, epoch, to, output, error).await
    }
}

/// A run's own transition out of `running`, guarded, with its event, on `c`.
async fn transition_on<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
    instance_id: &str,
    epoch: i64,
    to: InstanceStatus,
    output: Option<&[u8]>,
    error: Option<&str>,
) -> Result<()> {
    let now = now_ms();
    let finished = to.is_terminal().then_some(now);
    let payload = output.or(error.map(str::as_bytes));
    let row = query_one(
        client,
        TRANSITION,
        &[
            &instance_id,
            &epoch,
            &to.as_str(),
            &output,
            &error,
            &finished,
            &now,
            &payload,
        ],
    )
    .await?;
    let changed: i64 = col(&row, 0)?;
    if changed == 0 {
        return Err(refusal(client, instance_id, epoch).await);
    }
    Ok(())
}

impl PostgresPersistence {
    /// A page of a tenant's instances by `sql` (parameters: tenant, status or NULL, limit
    /// or NULL, offset; rows in [`instance_from_row`] order), with the number that match.
    async fn instance_page(&self, sql: &str, filter: &InstanceFilter) -> Result<InstancePage> {
        let client = self.client().await?;
        let status = filter.status.map(InstanceStatus::as_str);
        let limit = filter.limit.map(i64::from);
        let offset = i64::from(filter.offset);
        let instances = query(&client, sql, &[&filter.tenant_id, &status, &limit, &offset])
            .await?
            .iter()
            .map(instance_from_row)
            .collect::<Result<Vec<_>>>()?;
        let row = query_one(
            &client,
            "SELECT COUNT(*) FROM instances WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR status = $2)",
            &[&filter.tenant_id, &status],
        )
        .await?;
        let total: i64 = col(&row, 0)?;
        Ok(InstancePage {
            instances,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    /// The whole replay log, when its checkpoints take at most `max_bytes` in a page; else
    /// `None`. The query's `ORDER BY` sorted the states along (7 of 12 ms for 10,000
    /// checkpoints): rows are sorted here.
    async fn whole_log_within(
        &self,
        instance_id: &str,
        max_bytes: usize,
    ) -> Result<Option<ReplayLog>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let statement = client.prepare_cached(LOAD_REPLAY).await.map_err(pg)?;
        let stream = client
            .query_raw(&statement, [&instance_id as &(dyn ToSql + Sync)])
            .await
            .map_err(pg)?;
        let mut stream = std::pin::pin!(stream);
        let (mut rows, mut bytes) = (Vec::new(), 0_usize);
        while let Some(row) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            let row = row.map_err(pg)?;
            let key: (i32, i64, String) = (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
            if key.0 == 0 {
                let state: &[u8] = col(&row, 3)?;
                bytes = bytes.saturating_add(key.2.len() + state.len() + 16);
                if bytes > max_bytes {
                    // Too large for one page; the rest of the rows are dropped unread.
                    return Ok(None);
                }
            }
            rows.push((key, row));
        }
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut log = ReplayLog::default();
        for ((part, _, checkpoint_id), row) in rows {
            match part {
                0 => {
                    log.producers.push(col::<Option<&str>>(&row, 5)?);
                    log.checkpoints.push((checkpoint_id, col(&row, 3)?));
                }
                1 => {
                    log.retry_attempts.push((checkpoint_id, attempt(&row, 4)?));
                    log.retry_at_ms.push(col(&row, 6)?);
                }
                _ => log.failures.push((checkpoint_id, col(&row, 5)?)),
            }
        }
        Ok(Some(log))
    }

    /// The checkpoint statement shared by `save_checkpoint` and `save_sleep`, committed
    /// together with concurrent saves (see [`group_commit`]).
    async fn save(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        wake_at_ms: Option<i64>,
        producer: Option<&str>,
    ) -> Result<Saved> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        self.saves
            .save(Save {
                instance_id: instance_id.to_owned(),
                epoch,
                checkpoint_id: checkpoint_id.to_owned(),
                state: state.to_vec(),
                wake_at_ms,
                producer: producer.map(str::to_owned),
                now: now_ms(),
            })
            .await
    }
}

/// State, wake time and producer of a checkpoint stored earlier.
pub(crate) type Earlier = (Vec<u8>, Option<i64>, Option<String>);

/// A checkpoint save's outcome from what the statement found.
fn outcome(saved: Saved) -> CheckpointOutcome {
    let (existing_state, existing_producer) = match saved.earlier {
        Some((state, _, producer)) => (Some(state), producer),
        None => (None, None),
    };
    CheckpointOutcome {
        existing_state,
        existing_producer,
        signal: saved.signal,
    }
}

/// What the checkpoint statement found.
#[derive(Debug)]
struct Saved {
    /// State, wake time and producer stored earlier under the id; `None` when this call
    /// stored it.
    earlier: Option<Earlier>,
    /// The highest-priority pending signal.
    signal: Option<PendingSignal>,
}

#[async_trait]
impl Persistence for PostgresPersistence {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn warm_up(&self) -> Result<()> {
        connection::warm_up(&self.pool).await
    }

    async fn acquire_run_lease(
        &self,
        tenant_id: &str,
        instance_id: &str,
    ) -> Result<Option<crate::RunLease>> {
        validate_id("instance id", instance_id)?;
        validate_id("tenant id", tenant_id)?;
        self.leases.acquire(tenant_id, instance_id).await.map(Some)
    }

    async fn create_instance(&self, new: NewInstance) -> Result<InstanceRecord> {
        validate_id("instance id", &new.instance_id)?;
        validate_id("tenant id", &new.tenant_id)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            &create_instance_sql(),
            &[
                &new.instance_id,
                &new.tenant_id,
                &new.image_id,
                &new.input,
                &now_ms(),
                &new.run_now,
                &new.parent_id,
                &new.detached,
            ],
        )
        .await?;
        match rows.first() {
            Some(row) => instance_from_row(row),
            // Taken, or its image is gone (the image row is share-locked while the
            // instance is inserted, so a delete that runs at the same time waits, then
            // finds the image in use).
            None => match get_instance(&client, &new.instance_id).await? {
                Some(_) => Err(Error::InstanceExists {
                    instance_id: new.instance_id,
                }),
                None => Err(Error::ImageNotFound {
                    image_id: new.image_id.unwrap_or_default(),
                }),
            },
        }
    }

    async fn start_runtime_instance(&self, new: NewRuntimeInstance) -> Result<RuntimeStart> {
        validate_id("instance id", &new.instance_id)?;
        validate_id("tenant id", &new.tenant_id)?;
        validate_id("runtime name", &new.runtime)?;
        validate_id("workflow name", &new.workflow)?;
        let client = self.client().await?;
        runtime_instances::start(&client, &new).await
    }

    async fn list_runtime_instances(
        &self,
        tenant_id: &str,
        runtime: &str,
    ) -> Result<Vec<RuntimeInstance>> {
        validate_id("tenant id", tenant_id)?;
        validate_id("runtime name", runtime)?;
        let client = self.client().await?;
        runtime_instances::unfinished(&client, tenant_id, runtime).await
    }

    async fn register_instance(
        &self,
        instance_id: &str,
        tenant_id: &str,
        resume_from: Option<&str>,
    ) -> Result<Registration> {
        validate_id("instance id", instance_id)?;
        validate_id("tenant id", tenant_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let now = now_ms();
        // Create-if-absent first, so two first registers cannot both "create"; then the
        // row is locked. The two are pipelined, in that order.
        let insert: [&(dyn ToSql + Sync); 4] = [&instance_id, &tenant_id, &resume_from, &now];
        let (created, locked) = tokio::join!(
            biased;
            execute(&tx, REGISTER_NEW, &insert),
            lock_instance(&tx, instance_id)
        );
        let created = created?;
        let locked = match locked? {
            // The lock ran before a concurrent first register committed the row that the
            // insert then waited for: lock it now.
            None if created == 0 => lock_instance(&tx, instance_id).await?,
            locked => locked,
        };
        let registered = |tx| insert_event(tx, instance_id, "registered", resume_from, None, now);
        let registration = if created == 1 {
            registered(&tx).await?;
            Registration {
                epoch: 1,
                created: true,
                previous_status: None,
            }
        } else {
            let Some((owner, status, epoch)) = locked else {
                return Err(Error::Corrupt(format!(
                    "instance `{instance_id}` vanished while it was being registered"
                )));
            };
            if owner != tenant_id {
                return Err(Error::TenantMismatch {
                    instance_id: instance_id.to_owned(),
                    tenant_id: tenant_id.to_owned(),
                });
            }
            if !RESUMABLE.contains(&status) {
                return Err(Error::Terminal {
                    instance_id: instance_id.to_owned(),
                    status,
                });
            }
            // The row is locked and checked: the three writes are pipelined.
            let resume: [&(dyn ToSql + Sync); 4] = [&instance_id, &resume_from, &now, &epoch];
            let answer: [&(dyn ToSql + Sync); 2] = [&instance_id, &now];
            let (changed, answered, event) = tokio::join!(
                biased;
                execute(&tx, REGISTER_RESUME, &resume),
                // The run that resumes it answers every queued resume.
                execute(&tx, ANSWER_RESUMES, &answer),
                registered(&tx)
            );
            if changed? != 1 {
                return Err(Error::Corrupt(format!(
                    "instance `{instance_id}` changed while it was being registered"
                )));
            }
            answered?;
            event?;
            Registration {
                epoch: epoch + 1,
                created: false,
                previous_status: Some(status),
            }
        };
        tx.commit().await.map_err(pg)?;
        Ok(registration)
    }

    async fn load_replay(&self, instance_id: &str) -> Result<ReplayLog> {
        self.whole_log_within(instance_id, usize::MAX)
            .await?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "the replay log of `{instance_id}` could not be loaded whole"
                ))
            })
    }

    async fn load_replay_page(
        &self,
        instance_id: &str,
        after_seq: i64,
        max_bytes: usize,
    ) -> Result<ReplayLog> {
        if after_seq <= 0 {
            // The common case: the whole log in one page, by the plain load.
            if let Some(log) = self.whole_log_within(instance_id, max_bytes).await? {
                return Ok(log);
            }
        }
        let page = self
            .list_checkpoints_page(instance_id, after_seq, max_bytes)
            .await?;
        let mut log = ReplayLog::from_page(page.checkpoints, page.more_after);
        if after_seq <= 0 {
            let client = self.client().await?;
            for row in query(&client, MAX_ATTEMPTS, &[&instance_id]).await? {
                log.retry_attempts.push((col(&row, 0)?, attempt(&row, 1)?));
                log.retry_at_ms.push(col(&row, 2)?);
            }
            for row in query(&client, STEP_FAILURES, &[&instance_id]).await? {
                log.failures.push((col(&row, 0)?, col(&row, 1)?));
            }
        }
        Ok(log)
    }

    async fn save_checkpoint(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome> {
        let saved = self
            .save(instance_id, epoch, checkpoint_id, state, None, None)
            .await?;
        Ok(outcome(saved))
    }

    async fn save_step(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome> {
        let saved = self
            .save(
                instance_id,
                epoch,
                checkpoint_id,
                state,
                None,
                Some(producer),
            )
            .await?;
        Ok(outcome(saved))
    }

    async fn get_checkpoint(
        &self,
        instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT state FROM checkpoints WHERE instance_id = $1 AND checkpoint_id = $2",
            &[&instance_id, &checkpoint_id],
        )
        .await?;
        rows.first().map(|row| col(row, 0)).transpose()
    }

    async fn save_sleep(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        wake_at_ms: i64,
    ) -> Result<SleepOutcome> {
        let saved = self
            .save(
                instance_id,
                epoch,
                checkpoint_id,
                state,
                Some(wake_at_ms),
                None,
            )
            .await?;
        let (existing_state, wake_at_ms) = match saved.earlier {
            Some((state, stored, _)) => (Some(state), stored.unwrap_or(wake_at_ms)),
            None => (None, wake_at_ms),
        };
        Ok(SleepOutcome {
            wake_at_ms,
            existing_state,
            signal: saved.signal,
        })
    }

    async fn mark_sleeping(&self, instance_id: &str, epoch: i64) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Under the row lock a signal sender also takes: a cancel or pause queued before
        // is carried out here, one sent after finds the instance sleeping.
        lock_instance(&tx, instance_id).await?;
        let queued = query(&tx, PENDING_SIGNAL, &[&instance_id]).await?;
        let to = match queued
            .first()
            .map(|row| signal_at(row, 0))
            .transpose()?
            .flatten()
        {
            Some(signal) if signal.signal_type == SignalType::Cancel => InstanceStatus::Cancelled,
            Some(_) => InstanceStatus::Suspended,
            None => InstanceStatus::Sleeping,
        };
        transition_on(&tx, instance_id, epoch, to, None, None).await?;
        tx.commit().await.map_err(pg)
    }

    async fn heartbeat(&self, instance_id: &str, epoch: i64) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let changed = execute(
            &client,
            "UPDATE instances SET heartbeat_at_ms = $3 \
             WHERE instance_id = $1 AND epoch = $2 AND status IN ('running', 'waiting')",
            &[&instance_id, &epoch, &now_ms()],
        )
        .await?;
        if changed == 0 {
            return Err(refusal(&client, instance_id, epoch).await);
        }
        Ok(())
    }

    async fn complete_instance(&self, instance_id: &str, epoch: i64, output: &[u8]) -> Result<()> {
        self.transition(
            instance_id,
            epoch,
            InstanceStatus::Completed,
            Some(output),
            None,
        )
        .await
    }

    async fn fail_instance(&self, instance_id: &str, epoch: i64, error: &str) -> Result<()> {
        self.transition(
            instance_id,
            epoch,
            InstanceStatus::Failed,
            None,
            Some(error),
        )
        .await
    }

    async fn suspend_instance(&self, instance_id: &str, epoch: i64) -> Result<()> {
        self.transition(instance_id, epoch, InstanceStatus::Suspended, None, None)
            .await
    }

    async fn set_status(
        &self,
        instance_id: &str,
        from: &[InstanceStatus],
        to: InstanceStatus,
        error: Option<&str>,
    ) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        let from: Vec<&str> = from
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        let client = self.client().await?;
        let now = now_ms();
        let finished = to.is_terminal().then_some(now);
        let row = query_one(
            &client,
            SET_STATUS,
            &[&instance_id, &to.as_str(), &error, &finished, &from, &now],
        )
        .await?;
        let changed: i64 = col(&row, 0)?;
        if changed == 1 {
            return Ok(true);
        }
        let exists = query(
            &client,
            "SELECT 1 FROM instances WHERE instance_id = $1",
            &[&instance_id],
        )
        .await?;
        if exists.is_empty() {
            return Err(Error::InstanceNotFound {
                instance_id: instance_id.to_owned(),
            });
        }
        Ok(false)
    }

    async fn record_event(
        &self,
        instance_id: &str,
        kind: &EventKind,
        subtype: Option<&str>,
        payload: Option<&[u8]>,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let kind = kind.as_str();
        validate_id("event kind", kind)?;
        let client = self.client().await?;
        let stored = execute(
            &client,
            "INSERT INTO events (instance_id, kind, subtype, payload, created_at_ms) \
             SELECT instance_id, $2, $3, $4, $5 FROM instances WHERE instance_id = $1",
            &[&instance_id, &kind, &subtype, &payload, &now_ms()],
        )
        .await?;
        if stored == 0 {
            return Err(Error::InstanceNotFound {
                instance_id: instance_id.to_owned(),
            });
        }
        Ok(())
    }

    async fn record_custom_event(
        &self,
        instance_id: &str,
        subtype: &str,
        payload: &[u8],
        quota: &EventQuota,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        check_custom_event(subtype, payload.len(), quota)?;
        let client = self.client().await?;
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
        let (max_events, max_bytes) = (
            quota_i64(quota.max_events_per_instance),
            quota_i64(quota.max_event_bytes_per_instance),
        );
        let stored = execute(
            &client,
            RECORD_CUSTOM_EVENT,
            &[
                &instance_id,
                &subtype,
                &len,
                &max_events,
                &max_bytes,
                &payload,
                &now_ms(),
            ],
        )
        .await?;
        if stored == 1 {
            return Ok(());
        }
        let rows = query(
            &client,
            "SELECT status, custom_events, custom_event_bytes FROM instances \
             WHERE instance_id = $1",
            &[&instance_id],
        )
        .await?;
        let row = match rows.first() {
            Some(row) => {
                let status: String = col(row, 0)?;
                Some((parse_status(&status)?, col(row, 1)?, col(row, 2)?))
            }
            None => None,
        };
        Err(custom_event_refusal(instance_id, row, payload.len(), quota))
    }

    async fn record_retry_attempt(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        validate_attempt(attempt)?;
        let attempt = i32::try_from(attempt).map_err(|_| Error::InvalidInput {
            what: "retry attempt",
            reason: format!("{attempt} does not fit"),
        })?;
        let client = self.client().await?;
        let row = query_one(
            &client,
            RECORD_RETRY_ATTEMPT,
            &[
                &instance_id,
                &checkpoint_id,
                &attempt,
                &error,
                &now_ms(),
                &epoch,
            ],
        )
        .await?;
        check_run(instance_id, status_epoch_at(&row, 0)?, epoch)
    }

    async fn queued_resume(&self, instance_id: &str) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT 1 FROM signals WHERE instance_id = $1 AND signal_type = 'resume' \
             AND acked_at_ms IS NULL LIMIT 1",
            &[&instance_id],
        )
        .await?;
        Ok(!rows.is_empty())
    }

    async fn record_step_failure(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        error: &str,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let client = self.client().await?;
        let row = query_one(
            &client,
            RECORD_STEP_FAILURE,
            &[&instance_id, &checkpoint_id, &error, &now_ms(), &epoch],
        )
        .await?;
        check_run(instance_id, status_epoch_at(&row, 0)?, epoch)
    }

    async fn clear_step_failure(&self, instance_id: &str, checkpoint_id: &str) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        lock_unfinished(&tx, instance_id).await?;
        let removed = execute(
            &tx,
            "DELETE FROM step_failures WHERE instance_id = $1 AND checkpoint_id = $2",
            &[&instance_id, &checkpoint_id],
        )
        .await?;
        if removed > 0 {
            execute(
                &tx,
                "DELETE FROM retry_attempts WHERE instance_id = $1 AND checkpoint_id = $2",
                &[&instance_id, &checkpoint_id],
            )
            .await?;
        }
        tx.commit().await.map_err(pg)?;
        Ok(removed > 0)
    }

    async fn send_signal(&self, instance_id: &str, signal: SignalType) -> Result<SignalOutcome> {
        validate_id("instance id", instance_id)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let status = lock_unfinished(&tx, instance_id).await?;
        let now = now_ms();
        let outcome = match plan_signal(signal, status) {
            SignalPlan::Reject => {
                return Err(Error::SignalRejected {
                    instance_id: instance_id.to_owned(),
                    signal,
                    status,
                })
            }
            SignalPlan::Apply(to) => {
                let finished = to.is_terminal().then_some(now);
                let changed = execute(
                    &tx,
                    "UPDATE instances SET status = $2, wake_at_ms = NULL, \
                     finished_at_ms = COALESCE($3, finished_at_ms) \
                     WHERE instance_id = $1 AND status = $4",
                    &[&instance_id, &to.as_str(), &finished, &status.as_str()],
                )
                .await?;
                if changed != 1 {
                    return Err(Error::Corrupt(format!(
                        "instance `{instance_id}` changed while a signal was applied"
                    )));
                }
                insert_event(
                    &tx,
                    instance_id,
                    to.as_str(),
                    Some(signal.as_str()),
                    None,
                    now,
                )
                .await?;
                SignalOutcome::Applied(to)
            }
            SignalPlan::WithdrawPause => {
                let pause = SignalType::Pause.as_str();
                if query(&tx, SIGNAL_QUEUED, &[&instance_id, &pause])
                    .await?
                    .is_empty()
                {
                    return Err(Error::SignalRejected {
                        instance_id: instance_id.to_owned(),
                        signal,
                        status,
                    });
                }
                execute(
                    &tx,
                    "UPDATE signals SET acked_at_ms = $3, acknowledged = false \
                     WHERE instance_id = $1 AND signal_type = $2 AND acked_at_ms IS NULL",
                    &[&instance_id, &pause, &now],
                )
                .await?;
                SignalOutcome::Applied(status)
            }
            SignalPlan::Queue => {
                let row = query_one(
                    &tx,
                    "INSERT INTO signals (instance_id, signal_type, created_at_ms) \
                     VALUES ($1, $2, $3) RETURNING signal_id",
                    &[&instance_id, &signal.as_str(), &now],
                )
                .await?;
                SignalOutcome::Queued(PendingSignal {
                    signal_id: col(&row, 0)?,
                    signal_type: signal,
                    created_at_ms: now,
                })
            }
        };
        insert_event(&tx, instance_id, "signal", Some(signal.as_str()), None, now).await?;
        tx.commit().await.map_err(pg)?;
        Ok(outcome)
    }

    async fn pending_signal(&self, instance_id: &str) -> Result<Option<PendingSignal>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        match query(&client, PENDING_SIGNAL, &[&instance_id])
            .await?
            .first()
        {
            Some(row) => signal_at(row, 0),
            None => Ok(None),
        }
    }

    async fn acknowledge_signal(
        &self,
        instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let to = match (acknowledged, signal) {
            (true, SignalType::Cancel) => Some(InstanceStatus::Cancelled),
            (true, SignalType::Pause) => Some(InstanceStatus::Suspended),
            _ => None,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // The instance takes the signal's state only when one is still queued (a resume
        // may have withdrawn a pause); the row lock orders this after any such resume,
        // and the query below runs with a snapshot taken after it.
        let to = match to {
            Some(to) => {
                lock_instance(&tx, instance_id).await?;
                let queued = query(&tx, SIGNAL_QUEUED, &[&instance_id, &signal.as_str()]).await?;
                (!queued.is_empty()).then_some(to)
            }
            None => None,
        };
        let now = now_ms();
        let finished = to.filter(|s| s.is_terminal()).map(|_| now);
        let row = query_one(
            &tx,
            ACKNOWLEDGE_SIGNAL,
            &[
                &instance_id,
                &epoch,
                &signal.as_str(),
                &to.map(InstanceStatus::as_str),
                &finished,
                &now,
                &acknowledged,
            ],
        )
        .await?;
        let changed: i64 = col(&row, 0)?;
        if changed == 0 {
            return Err(refusal(&tx, instance_id, epoch).await);
        }
        tx.commit().await.map_err(pg)?;
        Ok(())
    }

    async fn send_event(
        &self,
        instance_id: &str,
        name: &str,
        payload: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<crate::EventSent> {
        crate::inbox::check_event("event name", instance_id, name, payload.len())?;
        if let Some(key) = idempotency_key {
            validate_id("idempotency key", key)?;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let sent = inbox::send(&tx, instance_id, name, payload, idempotency_key, now_ms()).await?;
        tx.commit().await.map_err(pg)?;
        Ok(sent)
    }

    async fn take_event(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        name: &str,
        deadline_ms: Option<i64>,
    ) -> Result<crate::EventTake> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        validate_id("event name", name)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let now = now_ms();
        let taken = inbox::take(
            &tx,
            instance_id,
            epoch,
            checkpoint_id,
            name,
            deadline_ms,
            now,
        )
        .await?;
        tx.commit().await.map_err(pg)?;
        Ok(taken)
    }

    async fn waiting_for(&self, instance_id: &str) -> Result<Option<String>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        inbox::waiting_for(&client, instance_id).await
    }

    async fn event_arrived(&self, instance_id: &str) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        inbox::arrived(&client, instance_id).await
    }

    async fn list_children(&self, parent_id: &str) -> Result<Vec<String>> {
        validate_id("instance id", parent_id)?;
        let client = self.client().await?;
        inbox::children(&client, parent_id).await
    }

    async fn list_woken(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        inbox::woken(&client, now_ms()).await
    }

    async fn set_value(
        &self,
        instance_id: &str,
        epoch: i64,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        crate::inbox::check_event("value key", instance_id, key, value.len())?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        inbox::set_value(&tx, instance_id, epoch, key, value, now_ms()).await?;
        tx.commit().await.map_err(pg)
    }

    async fn get_value(&self, instance_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
        validate_id("instance id", instance_id)?;
        validate_id("value key", key)?;
        let client = self.client().await?;
        inbox::get_value(&client, instance_id, key).await
    }

    async fn create_schedule(&self, new: crate::NewSchedule) -> Result<crate::ScheduleRecord> {
        check_schedule(&new)?;
        let client = self.client().await?;
        schedules::create(&client, &new, now_ms()).await
    }

    async fn get_schedule(&self, schedule_id: &str) -> Result<Option<crate::ScheduleRecord>> {
        validate_id("schedule id", schedule_id)?;
        let client = self.client().await?;
        schedules::get(&client, schedule_id).await
    }

    async fn list_schedules(&self, tenant_id: Option<&str>) -> Result<Vec<crate::ScheduleRecord>> {
        if let Some(tenant_id) = tenant_id {
            validate_id("tenant id", tenant_id)?;
        }
        let client = self.client().await?;
        schedules::list(&client, tenant_id).await
    }

    async fn delete_schedule(&self, schedule_id: &str) -> Result<bool> {
        validate_id("schedule id", schedule_id)?;
        let client = self.client().await?;
        schedules::delete(&client, schedule_id).await
    }

    async fn set_schedule_paused(
        &self,
        schedule_id: &str,
        paused: bool,
        next_fire_ms: Option<i64>,
    ) -> Result<Option<crate::ScheduleRecord>> {
        validate_id("schedule id", schedule_id)?;
        let client = self.client().await?;
        schedules::set_paused(&client, schedule_id, paused, next_fire_ms).await
    }

    async fn advance_schedule(
        &self,
        schedule_id: &str,
        expected_next: i64,
        fired_ms: Option<i64>,
        next_fire_ms: Option<i64>,
    ) -> Result<bool> {
        validate_id("schedule id", schedule_id)?;
        let client = self.client().await?;
        schedules::advance(&client, schedule_id, expected_next, fired_ms, next_fire_ms).await
    }

    async fn get_instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        get_instance(&client, instance_id).await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        let sql = instances_sql(
            "SELECT * FROM instances WHERE tenant_id = $1 \
             AND ($2::TEXT IS NULL OR status = $2) ORDER BY created_at_ms DESC, instance_id \
             LIMIT $3 OFFSET $4",
            "ORDER BY i.created_at_ms DESC, i.instance_id",
        );
        self.instance_page(&sql, filter).await
    }

    async fn list_instances_brief(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        self.instance_page(LIST_INSTANCES_BRIEF, filter).await
    }

    async fn list_checkpoints(&self, instance_id: &str) -> Result<Vec<CheckpointRecord>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT checkpoint_id, state, created_at_ms, wake_at_ms, producer FROM checkpoints \
             WHERE instance_id = $1 ORDER BY seq",
            &[&instance_id],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CheckpointRecord {
                    checkpoint_id: col(row, 0)?,
                    state: col(row, 1)?,
                    created_at_ms: col(row, 2)?,
                    wake_at_ms: col(row, 3)?,
                    producer: col(row, 4)?,
                })
            })
            .collect()
    }

    async fn list_checkpoints_page(
        &self,
        instance_id: &str,
        after_seq: i64,
        max_bytes: usize,
    ) -> Result<CheckpointPage> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let rows = query(
            &client,
            CHECKPOINTS_PAGE,
            &[&instance_id, &after_seq, &max_bytes],
        )
        .await?;
        let mut page = CheckpointPage::default();
        let mut total = 0_i64;
        let mut last = None;
        for row in &rows {
            last = Some(col::<i64>(row, 0)?);
            total = col(row, 5)?;
            page.checkpoints.push(CheckpointRecord {
                checkpoint_id: col(row, 1)?,
                state: col(row, 2)?,
                created_at_ms: col(row, 3)?,
                wake_at_ms: col(row, 4)?,
                producer: col(row, 6)?,
            });
        }
        if i64::try_from(page.checkpoints.len()).unwrap_or(i64::MAX) < total {
            page.more_after = last;
        }
        Ok(page)
    }

    async fn list_events(&self, instance_id: &str) -> Result<Vec<EventRecord>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT event_id, kind, subtype, payload, created_at_ms FROM events \
             WHERE instance_id = $1 ORDER BY event_id",
            &[&instance_id],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(EventRecord {
                    event_id: col(row, 0)?,
                    kind: EventKind::from_name(&col::<String>(row, 1)?),
                    subtype: col(row, 2)?,
                    payload: col(row, 3)?,
                    created_at_ms: col(row, 4)?,
                })
            })
            .collect()
    }

    async fn list_events_page(
        &self,
        instance_id: &str,
        after_event_id: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<EventPage> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        // One more than the page is sized, to know whether more follow.
        let limit = i64::try_from(limit.max(1))
            .unwrap_or(i64::MAX)
            .min(i64::MAX - 1);
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let overhead = i64::try_from(EVENT_OVERHEAD).unwrap_or(i64::MAX);
        let rows = query(
            &client,
            EVENTS_PAGE,
            &[&instance_id, &after_event_id, &limit, &max_bytes, &overhead],
        )
        .await?;
        let mut page = EventPage::default();
        let mut total = 0_i64;
        for row in &rows {
            total = col(row, 5)?;
            page.events.push(EventRecord {
                event_id: col(row, 0)?,
                kind: EventKind::from_name(&col::<String>(row, 1)?),
                subtype: col(row, 2)?,
                payload: col(row, 3)?,
                created_at_ms: col(row, 4)?,
            });
        }
        if i64::try_from(page.events.len()).unwrap_or(i64::MAX) < total {
            page.more_after = page.events.last().map(|e| e.event_id);
        }
        Ok(page)
    }

    async fn count_events(&self, instance_id: &str, kind: &EventKind) -> Result<u64> {
        validate_id("instance id", instance_id)?;
        let kind = kind.as_str();
        validate_id("event kind", kind)?;
        let client = self.client().await?;
        let row = query_one(
            &client,
            "SELECT COUNT(*) FROM events WHERE instance_id = $1 AND kind = $2",
            &[&instance_id, &kind],
        )
        .await?;
        Ok(u64::try_from(col::<i64>(&row, 0)?).unwrap_or(0))
    }

    async fn list_retry_attempts(&self, instance_id: &str) -> Result<Vec<RetryAttemptRecord>> {
        validate_id("instance id", instance_id)?;
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT checkpoint_id, attempt, error, created_at_ms FROM retry_attempts \
             WHERE instance_id = $1 ORDER BY seq",
            &[&instance_id],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RetryAttemptRecord {
                    checkpoint_id: col(row, 0)?,
                    attempt: attempt(row, 1)?,
                    error: col(row, 2)?,
                    created_at_ms: col(row, 3)?,
                })
            })
            .collect()
    }

    async fn list_unfinished(&self) -> Result<Vec<InstanceRecord>> {
        let client = self.client().await?;
        images::list_unfinished(&client).await
    }

    async fn list_running(&self) -> Result<Vec<Liveness>> {
        let client = self.client().await?;
        images::list_running(&client).await
    }

    async fn insert_image(&self, new: NewImage) -> Result<ImageRecord> {
        validate_id("image id", &new.image_id)?;
        validate_id("tenant id", &new.tenant_id)?;
        validate_id("image name", &new.name)?;
        let mut client = self.client().await?;
        images::insert_image(&mut client, &new).await
    }

    async fn get_image(&self, image_id: &str) -> Result<Option<ImageRecord>> {
        validate_id("image id", image_id)?;
        let client = self.client().await?;
        images::get_image(&client, image_id).await
    }

    async fn list_images(&self, tenant_id: &str) -> Result<Vec<ImageRecord>> {
        validate_id("tenant id", tenant_id)?;
        let client = self.client().await?;
        images::list_images(&client, tenant_id).await
    }

    async fn list_pooled_images(&self) -> Result<Vec<ImageRecord>> {
        let client = self.client().await?;
        images::list_pooled_images(&client).await
    }

    async fn set_image_workers(
        &self,
        image_id: &str,
        workers: Option<WorkerPool>,
    ) -> Result<ImageRecord> {
        validate_image_workers(image_id, workers.as_ref())?;
        let client = self.client().await?;
        images::set_image_workers(&client, image_id, workers).await
    }

    async fn delete_image(&self, image_id: &str) -> Result<DeletedImage> {
        validate_id("image id", image_id)?;
        let mut client = self.client().await?;
        images::delete_image(&mut client, image_id).await
    }
}
