//! SQLite backend: a file in WAL mode with `synchronous=FULL`, written by one thread
//! that commits concurrent operations together (group commit).
//!
//! Every operation — reads included, they take microseconds — runs as a job of the
//! writer thread: concurrent callers share one `BEGIN IMMEDIATE … COMMIT`, each inside
//! its own savepoint, and are answered only after the commit is fsync'd.
//! Other processes may open the same file; `BEGIN IMMEDIATE` and the busy timeout
//! serialize them.

mod connection;
mod images;
mod inbox;
mod lease_file;
mod queries;
mod runtime_instances;
mod schedules;
mod wal;
mod writer;

use async_trait::async_trait;
use rusqlite::params;

use crate::guard::{
    check_custom_event, check_schedule, plan_signal, validate_attempt, validate_id,
    validate_image_workers, SignalPlan, RESUMABLE,
};
use crate::model::*;
use crate::url::SqliteTarget;
use crate::{ConnectOptions, Error, Persistence, Result};
use images::{
    delete_image, get_image, insert_image, list_images, list_pooled_images, list_running,
    list_unfinished, set_image_workers,
};
use queries::*;
use writer::Writer;

/// The SQLite implementation of [`Persistence`].
///
/// Dropping it finishes the queued operations, stops the writer thread and closes the
/// database before returning.
#[derive(Debug)]
pub struct SqlitePersistence {
    writer: Writer,
    /// The folder of the run leases' lock files, beside the database file (`None` in
    /// memory, where no other process can reach the data).
    lease_dir: Option<std::path::PathBuf>,
}

impl SqlitePersistence {
    /// Opens `target` (creating the file and its parent directories if needed), sets WAL
    /// mode and `synchronous=FULL`, and applies the migrations.
    pub async fn open(target: SqliteTarget) -> Result<SqlitePersistence> {
        SqlitePersistence::open_with(target, &ConnectOptions::default()).await
    }

    /// [`open`](Self::open) with `options`.
    pub async fn open_with(
        target: SqliteTarget,
        options: &ConnectOptions,
    ) -> Result<SqlitePersistence> {
        // Opening and migrating touch the disk; keep that off the async workers.
        let (connection, lease_dir) = tokio::task::spawn_blocking(move || {
            let connection = connection::open(&target)?;
            let lease_dir = match &target {
                SqliteTarget::Memory => None,
                // Absolute, so that a later change of working directory moves nothing.
                SqliteTarget::File(path) => Some(lease_file::lease_dir(
                    &std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()),
                )),
            };
            Ok::<_, Error>((connection, lease_dir))
        })
        .await
        .map_err(|e| Error::database("sqlite", e))??;
        Ok(SqlitePersistence {
            writer: Writer::spawn(connection, !options.sqlite_commits_on_writer_thread)?,
            lease_dir,
        })
    }

    /// A checkpoint save, with the function that produced it when known.
    async fn save(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: Option<&str>,
    ) -> Result<CheckpointOutcome> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        let (state, producer) = (state.to_vec(), producer.map(str::to_owned));
        self.writer
            .call(move |c| {
                let record = Record {
                    checkpoint_id: &checkpoint_id,
                    state: &state,
                    wake_at_ms: None,
                    producer: producer.as_deref(),
                };
                let saved = save_checkpoint(c, &instance_id, epoch, record, now_ms())?;
                let (existing_state, existing_producer) = match saved.earlier {
                    Some((state, _, producer)) => (Some(state), producer),
                    None => (None, None),
                };
                Ok(CheckpointOutcome {
                    existing_state,
                    existing_producer,
                    signal: saved.signal,
                })
            })
            .await
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
        let instance_id = instance_id.to_owned();
        let output = output.map(<[u8]>::to_vec);
        let error = error.map(str::to_owned);
        self.writer
            .call(move |c| {
                let now = now_ms();
                // A run going to sleep with a cancel or pause queued takes that instead.
                let to = match (to, pending_signal(c, &instance_id)?) {
                    (InstanceStatus::Sleeping, Some(signal)) => match signal.signal_type {
                        SignalType::Cancel => InstanceStatus::Cancelled,
                        _ => InstanceStatus::Suspended,
                    },
                    (to, _) => to,
                };
                let finished = to.is_terminal().then_some(now);
                let changed = execute(
                    c,
                    "UPDATE instances SET status = ?3, output = COALESCE(?4, output), \
                     error = COALESCE(?5, error), finished_at_ms = COALESCE(?6, finished_at_ms) \
                     WHERE instance_id = ?1 AND epoch = ?2 AND status = 'running'",
                    params![instance_id, epoch, to.as_str(), output, error, finished],
                )?;
                if changed == 0 {
                    return Err(refusal(c, &instance_id, epoch));
                }
                if to == InstanceStatus::Suspended {
                    // The run stopped as asked: pending pauses are satisfied.
                    settle_signals(c, &instance_id, SignalType::Pause, true, now)?;
                }
                if to == InstanceStatus::Cancelled {
                    settle_signals(c, &instance_id, SignalType::Cancel, true, now)?;
                }
                let payload = output.as_deref().or(error.as_deref().map(str::as_bytes));
                insert_event(c, &instance_id, to.as_str(), None, payload, now)
            })
            .await
    }
}

#[async_trait]
impl Persistence for SqlitePersistence {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn acquire_run_lease(
        &self,
        tenant_id: &str,
        instance_id: &str,
    ) -> Result<Option<crate::RunLease>> {
        validate_id("instance id", instance_id)?;
        validate_id("tenant id", tenant_id)?;
        let Some(dir) = self.lease_dir.clone() else {
            return Ok(None);
        };
        let (tenant_id, instance_id) = (tenant_id.to_owned(), instance_id.to_owned());
        tokio::task::spawn_blocking(move || lease_file::acquire(&dir, &tenant_id, &instance_id))
            .await
            .map_err(|e| Error::database("sqlite", e))?
            .map(Some)
    }

    async fn create_instance(&self, new: NewInstance) -> Result<InstanceRecord> {
        validate_id("instance id", &new.instance_id)?;
        validate_id("tenant id", &new.tenant_id)?;
        self.writer
            .call(move |c| {
                let now = now_ms();
                // An instance is never created for an image that is gone (the writer runs
                // one job at a time, so a delete cannot slip in between).
                if get_instance(c, &new.instance_id)?.is_some() {
                    return Err(Error::InstanceExists {
                        instance_id: new.instance_id,
                    });
                }
                if let Some(image_id) = &new.image_id {
                    if get_image(c, image_id)?.is_none() {
                        return Err(Error::ImageNotFound {
                            image_id: image_id.clone(),
                        });
                    }
                }
                let (status, epoch, started) = match new.run_now {
                    true => ("running", 1, Some(now)),
                    false => ("pending", 0, None),
                };
                let inserted = execute(
                    c,
                    "INSERT INTO instances (instance_id, tenant_id, image_id, status, epoch, input, \
                     created_at_ms, started_at_ms, heartbeat_at_ms, parent_id, detached) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10) \
                     ON CONFLICT (instance_id) DO NOTHING",
                    params![
                        new.instance_id,
                        new.tenant_id,
                        new.image_id,
                        status,
                        epoch,
                        new.input,
                        now,
                        started,
                        new.parent_id,
                        new.detached
                    ],
                )?;
                if inserted == 0 {
                    return Err(Error::InstanceExists {
                        instance_id: new.instance_id,
                    });
                }
                insert_event(c, &new.instance_id, "created", None, None, now)?;
                if new.run_now {
                    insert_event(c, &new.instance_id, "registered", None, None, now)?;
                }
                get_instance(c, &new.instance_id)?.ok_or(Error::InstanceNotFound {
                    instance_id: new.instance_id,
                })
            })
            .await
    }

    async fn register_instance(
        &self,
        instance_id: &str,
        tenant_id: &str,
        resume_from: Option<&str>,
    ) -> Result<Registration> {
        validate_id("instance id", instance_id)?;
        validate_id("tenant id", tenant_id)?;
        let (instance_id, tenant_id) = (instance_id.to_owned(), tenant_id.to_owned());
        let resume_from = resume_from.map(str::to_owned);
        self.writer
            .call(move |c| {
                let now = now_ms();
                let registration = match owner_status_epoch(c, &instance_id)? {
                    None => {
                        execute(
                            c,
                            "INSERT INTO instances (instance_id, tenant_id, status, epoch, resume_from, \
                             created_at_ms, started_at_ms, heartbeat_at_ms) \
                             VALUES (?1, ?2, 'running', 1, ?3, ?4, ?4, ?4)",
                            params![instance_id, tenant_id, resume_from, now],
                        )?;
                        Registration {
                            epoch: 1,
                            created: true,
                            previous_status: None,
                        }
                    }
                    Some((owner, status, epoch)) => {
                        if owner != tenant_id {
                            return Err(Error::TenantMismatch {
                                instance_id,
                                tenant_id,
                            });
                        }
                        if !RESUMABLE.contains(&status) {
                            return Err(Error::Terminal {
                                instance_id,
                                status,
                            });
                        }
                        let changed = execute(
                            c,
                            "UPDATE instances SET status = 'running', epoch = epoch + 1, \
                             resume_from = ?2, wake_at_ms = NULL, waiting_for = NULL, \
                             started_at_ms = COALESCE(started_at_ms, ?3), heartbeat_at_ms = ?3 \
                             WHERE instance_id = ?1 AND epoch = ?4 \
                             AND status IN ('pending', 'running', 'suspended', 'sleeping', 'waiting')",
                            params![instance_id, resume_from, now, epoch],
                        )?;
                        if changed != 1 {
                            return Err(Error::Corrupt(format!(
                                "instance `{instance_id}` changed while it was being registered"
                            )));
                        }
                        // The run that resumes it answers every queued resume.
                        settle_signals(c, &instance_id, SignalType::Resume, true, now)?;
                        Registration {
                            epoch: epoch + 1,
                            created: false,
                            previous_status: Some(status),
                        }
                    }
                };
                insert_event(c, &instance_id, "registered", resume_from.as_deref(), None, now)?;
                Ok(registration)
            })
            .await
    }

    async fn start_runtime_instance(&self, new: NewRuntimeInstance) -> Result<RuntimeStart> {
        validate_id("instance id", &new.instance_id)?;
        validate_id("tenant id", &new.tenant_id)?;
        validate_id("runtime name", &new.runtime)?;
        validate_id("workflow name", &new.workflow)?;
        self.writer
            .call(move |c| runtime_instances::start(c, &new))
            .await
    }

    async fn list_runtime_instances(
        &self,
        tenant_id: &str,
        runtime: &str,
    ) -> Result<Vec<RuntimeInstance>> {
        validate_id("tenant id", tenant_id)?;
        validate_id("runtime name", runtime)?;
        let (tenant_id, runtime) = (tenant_id.to_owned(), runtime.to_owned());
        self.writer
            .read(move |c| runtime_instances::unfinished(c, &tenant_id, &runtime))
            .await
    }

    async fn load_replay(&self, instance_id: &str) -> Result<ReplayLog> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| {
                whole_replay_log(c, &instance_id, usize::MAX)?.ok_or_else(|| {
                    Error::Corrupt(format!(
                        "the replay log of `{instance_id}` could not be loaded whole"
                    ))
                })
            })
            .await
    }

    async fn load_replay_page(
        &self,
        instance_id: &str,
        after_seq: i64,
        max_bytes: usize,
    ) -> Result<ReplayLog> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| {
                if after_seq <= 0 {
                    // The common case: the whole log in one page, by the plain load.
                    if let Some(log) = whole_replay_log(c, &instance_id, max_bytes)? {
                        return Ok(log);
                    }
                }
                let (checkpoints, more_after) =
                    checkpoints_page(c, &instance_id, after_seq, max_bytes)?;
                let mut log = ReplayLog::from_page(checkpoints, more_after);
                if after_seq <= 0 {
                    load_retry_state(c, &instance_id, &mut log)?;
                }
                Ok(log)
            })
            .await
    }

    async fn save_checkpoint(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome> {
        self.save(instance_id, epoch, checkpoint_id, state, None)
            .await
    }

    async fn save_step(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome> {
        self.save(instance_id, epoch, checkpoint_id, state, Some(producer))
            .await
    }

    async fn get_checkpoint(
        &self,
        instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        self.writer
            .read(move |c| {
                query_opt(
                    c,
                    "SELECT state FROM checkpoints WHERE instance_id = ?1 AND checkpoint_id = ?2",
                    [&instance_id, &checkpoint_id],
                    |r| r.get(0),
                )
            })
            .await
    }

    async fn save_sleep(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        wake_at_ms: i64,
    ) -> Result<SleepOutcome> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        let state = state.to_vec();
        self.writer
            .call(move |c| {
                let record = Record {
                    checkpoint_id: &checkpoint_id,
                    state: &state,
                    wake_at_ms: Some(wake_at_ms),
                    producer: None,
                };
                let saved = save_checkpoint(c, &instance_id, epoch, record, now_ms())?;
                let (existing_state, wake_at_ms) = match saved.earlier {
                    Some((state, stored, _)) => (Some(state), stored.unwrap_or(wake_at_ms)),
                    None => (None, wake_at_ms),
                };
                Ok(SleepOutcome {
                    wake_at_ms,
                    existing_state,
                    signal: saved.signal,
                })
            })
            .await
    }

    async fn mark_sleeping(&self, instance_id: &str, epoch: i64) -> Result<()> {
        self.transition(instance_id, epoch, InstanceStatus::Sleeping, None, None)
            .await
    }

    async fn heartbeat(&self, instance_id: &str, epoch: i64) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .call(move |c| {
                let changed = execute(
                    c,
                    "UPDATE instances SET heartbeat_at_ms = ?3 \
                     WHERE instance_id = ?1 AND epoch = ?2 AND status IN ('running', 'waiting')",
                    params![instance_id, epoch, now_ms()],
                )?;
                if changed == 0 {
                    return Err(refusal(c, &instance_id, epoch));
                }
                Ok(())
            })
            .await
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
        let instance_id = instance_id.to_owned();
        let from = status_list(from);
        let error = error.map(str::to_owned);
        self.writer
            .call(move |c| {
                let now = now_ms();
                let finished = to.is_terminal().then_some(now);
                // `from` lists only non-terminal statuses: a terminal one is never left.
                let changed = execute(
                    c,
                    "UPDATE instances SET status = ?2, error = COALESCE(?3, error), \
                     finished_at_ms = COALESCE(?4, finished_at_ms) \
                     WHERE instance_id = ?1 AND instr(?5, ',' || status || ',') > 0",
                    params![instance_id, to.as_str(), error, finished, from],
                )?;
                if changed == 0 {
                    return match status_epoch(c, &instance_id)? {
                        Some(_) => Ok(false),
                        None => Err(Error::InstanceNotFound { instance_id }),
                    };
                }
                let payload = error.as_deref().map(str::as_bytes);
                insert_event(c, &instance_id, to.as_str(), Some("server"), payload, now)?;
                Ok(true)
            })
            .await
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
        let (instance_id, kind) = (instance_id.to_owned(), kind.to_owned());
        let subtype = subtype.map(str::to_owned);
        let payload = payload.map(<[u8]>::to_vec);
        self.writer
            .call(move |c| {
                let stored = insert_event_if_exists(
                    c,
                    &instance_id,
                    &kind,
                    subtype.as_deref(),
                    payload.as_deref(),
                    now_ms(),
                )?;
                if stored {
                    Ok(())
                } else {
                    Err(Error::InstanceNotFound { instance_id })
                }
            })
            .await
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
        let (instance_id, subtype) = (instance_id.to_owned(), subtype.to_owned());
        let (payload, quota) = (payload.to_vec(), *quota);
        self.writer
            .call(move |c| {
                insert_custom_event(c, &instance_id, &subtype, &payload, &quota, now_ms())
            })
            .await
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
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        let error = error.map(str::to_owned);
        self.writer
            .call(move |c| {
                insert_retry_attempt(
                    c,
                    &instance_id,
                    epoch,
                    &checkpoint_id,
                    attempt,
                    error.as_deref(),
                    now_ms(),
                )
            })
            .await
    }

    async fn queued_resume(&self, instance_id: &str) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| {
                Ok(query_opt(
                    c,
                    "SELECT 1 FROM signals WHERE instance_id = ?1 AND signal_type = 'resume' \
                     AND acked_at_ms IS NULL LIMIT 1",
                    [&instance_id],
                    |r| r.get::<_, i64>(0),
                )?
                .is_some())
            })
            .await
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
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        let error = error.to_owned();
        self.writer
            .call(move |c| insert_step_failure(c, &instance_id, epoch, &checkpoint_id, &error))
            .await
    }

    async fn clear_step_failure(&self, instance_id: &str, checkpoint_id: &str) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        validate_id("checkpoint id", checkpoint_id)?;
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        self.writer
            .call(move |c| delete_step_failure(c, &instance_id, &checkpoint_id))
            .await
    }

    async fn send_signal(&self, instance_id: &str, signal: SignalType) -> Result<SignalOutcome> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .call(move |c| {
                let Some((status, _)) = status_epoch(c, &instance_id)? else {
                    return Err(Error::InstanceNotFound { instance_id });
                };
                if status.is_terminal() {
                    return Err(Error::Terminal {
                        instance_id,
                        status,
                    });
                }
                let now = now_ms();
                let outcome = match plan_signal(signal, status) {
                    SignalPlan::Reject => {
                        return Err(Error::SignalRejected {
                            instance_id,
                            signal,
                            status,
                        })
                    }
                    SignalPlan::Apply(to) => {
                        let finished = to.is_terminal().then_some(now);
                        let changed = execute(
                            c,
                            "UPDATE instances SET status = ?2, wake_at_ms = NULL, \
                             finished_at_ms = COALESCE(?3, finished_at_ms) \
                             WHERE instance_id = ?1 AND status = ?4",
                            params![instance_id, to.as_str(), finished, status.as_str()],
                        )?;
                        if changed != 1 {
                            return Err(Error::Corrupt(format!(
                                "instance `{instance_id}` changed while a signal was applied"
                            )));
                        }
                        insert_event(
                            c,
                            &instance_id,
                            to.as_str(),
                            Some(signal.as_str()),
                            None,
                            now,
                        )?;
                        SignalOutcome::Applied(to)
                    }
                    SignalPlan::WithdrawPause => {
                        if !signal_queued(c, &instance_id, SignalType::Pause)? {
                            return Err(Error::SignalRejected {
                                instance_id,
                                signal,
                                status,
                            });
                        }
                        settle_signals(c, &instance_id, SignalType::Pause, false, now)?;
                        SignalOutcome::Applied(status)
                    }
                    SignalPlan::Queue => {
                        execute(
                            c,
                            "INSERT INTO signals (instance_id, signal_type, created_at_ms) \
                             VALUES (?1, ?2, ?3)",
                            params![instance_id, signal.as_str(), now],
                        )?;
                        SignalOutcome::Queued(PendingSignal {
                            signal_id: c.last_insert_rowid(),
                            signal_type: signal,
                            created_at_ms: now,
                        })
                    }
                };
                insert_event(c, &instance_id, "signal", Some(signal.as_str()), None, now)?;
                Ok(outcome)
            })
            .await
    }

    async fn pending_signal(&self, instance_id: &str) -> Result<Option<PendingSignal>> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| pending_signal(c, &instance_id))
            .await
    }

    async fn acknowledge_signal(
        &self,
        instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .call(move |c| {
                let now = now_ms();
                let to = match (acknowledged, signal) {
                    (true, SignalType::Cancel) => Some(InstanceStatus::Cancelled),
                    (true, SignalType::Pause) => Some(InstanceStatus::Suspended),
                    _ => None,
                };
                // The state follows only a signal still queued (a resume may have
                // withdrawn a pause).
                let to = match to {
                    Some(to) if signal_queued(c, &instance_id, signal)? => Some(to),
                    _ => None,
                };
                match to {
                    Some(to) => {
                        let finished = to.is_terminal().then_some(now);
                        let changed = execute(
                            c,
                            "UPDATE instances SET status = ?3, \
                             finished_at_ms = COALESCE(?4, finished_at_ms) \
                             WHERE instance_id = ?1 AND epoch = ?2 \
                             AND status IN ('running', 'pending')",
                            params![instance_id, epoch, to.as_str(), finished],
                        )?;
                        if changed == 0 {
                            return Err(refusal(c, &instance_id, epoch));
                        }
                        insert_event(
                            c,
                            &instance_id,
                            to.as_str(),
                            Some(signal.as_str()),
                            None,
                            now,
                        )?;
                    }
                    None => ensure_run(c, &instance_id, epoch)?,
                }
                settle_signals(c, &instance_id, signal, acknowledged, now)
            })
            .await
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
        let (instance_id, name) = (instance_id.to_owned(), name.to_owned());
        let (payload, key) = (payload.to_vec(), idempotency_key.map(str::to_owned));
        self.writer
            .call(move |c| inbox::send(c, &instance_id, &name, &payload, key.as_deref(), now_ms()))
            .await
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
        let (instance_id, checkpoint_id) = (instance_id.to_owned(), checkpoint_id.to_owned());
        let name = name.to_owned();
        self.writer
            .call(move |c| {
                let now = now_ms();
                inbox::take(
                    c,
                    &instance_id,
                    epoch,
                    &checkpoint_id,
                    &name,
                    deadline_ms,
                    now,
                )
            })
            .await
    }

    async fn waiting_for(&self, instance_id: &str) -> Result<Option<String>> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| inbox::waiting_for(c, &instance_id))
            .await
    }

    async fn event_arrived(&self, instance_id: &str) -> Result<bool> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| inbox::arrived(c, &instance_id))
            .await
    }

    async fn list_children(&self, parent_id: &str) -> Result<Vec<String>> {
        validate_id("instance id", parent_id)?;
        let parent_id = parent_id.to_owned();
        self.writer
            .read(move |c| inbox::children(c, &parent_id))
            .await
    }

    async fn list_woken(&self) -> Result<Vec<String>> {
        let now = now_ms();
        self.writer.read(move |c| inbox::woken(c, now)).await
    }

    async fn set_value(
        &self,
        instance_id: &str,
        epoch: i64,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        crate::inbox::check_event("value key", instance_id, key, value.len())?;
        let (instance_id, key, value) = (instance_id.to_owned(), key.to_owned(), value.to_vec());
        self.writer
            .call(move |c| inbox::set_value(c, &instance_id, epoch, &key, &value, now_ms()))
            .await
    }

    async fn get_value(&self, instance_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
        validate_id("instance id", instance_id)?;
        validate_id("value key", key)?;
        let (instance_id, key) = (instance_id.to_owned(), key.to_owned());
        self.writer
            .read(move |c| inbox::get_value(c, &instance_id, &key))
            .await
    }

    async fn create_schedule(&self, new: crate::NewSchedule) -> Result<crate::ScheduleRecord> {
        check_schedule(&new)?;
        self.writer
            .call(move |c| schedules::create(c, &new, now_ms()))
            .await
    }

    async fn get_schedule(&self, schedule_id: &str) -> Result<Option<crate::ScheduleRecord>> {
        validate_id("schedule id", schedule_id)?;
        let schedule_id = schedule_id.to_owned();
        self.writer
            .read(move |c| schedules::get(c, &schedule_id))
            .await
    }

    async fn list_schedules(&self, tenant_id: Option<&str>) -> Result<Vec<crate::ScheduleRecord>> {
        if let Some(tenant_id) = tenant_id {
            validate_id("tenant id", tenant_id)?;
        }
        let tenant_id = tenant_id.map(str::to_owned);
        self.writer
            .read(move |c| schedules::list(c, tenant_id.as_deref()))
            .await
    }

    async fn delete_schedule(&self, schedule_id: &str) -> Result<bool> {
        validate_id("schedule id", schedule_id)?;
        let schedule_id = schedule_id.to_owned();
        self.writer
            .call(move |c| schedules::delete(c, &schedule_id))
            .await
    }

    async fn set_schedule_paused(
        &self,
        schedule_id: &str,
        paused: bool,
        next_fire_ms: Option<i64>,
    ) -> Result<Option<crate::ScheduleRecord>> {
        validate_id("schedule id", schedule_id)?;
        let schedule_id = schedule_id.to_owned();
        self.writer
            .call(move |c| schedules::set_paused(c, &schedule_id, paused, next_fire_ms))
            .await
    }

    async fn advance_schedule(
        &self,
        schedule_id: &str,
        expected_next: i64,
        fired_ms: Option<i64>,
        next_fire_ms: Option<i64>,
    ) -> Result<bool> {
        validate_id("schedule id", schedule_id)?;
        let schedule_id = schedule_id.to_owned();
        self.writer
            .call(move |c| {
                schedules::advance(c, &schedule_id, expected_next, fired_ms, next_fire_ms)
            })
            .await
    }

    async fn get_instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| get_instance(c, &instance_id))
            .await
    }

    async fn list_instances(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        let filter = filter.clone();
        self.writer
            .read(move |c| {
                let (instances, total) = list_instances(c, &filter, false)?;
                Ok(InstancePage {
                    instances,
                    total: u64::try_from(total).unwrap_or(0),
                })
            })
            .await
    }

    async fn list_instances_brief(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        let filter = filter.clone();
        self.writer
            .read(move |c| {
                let (instances, total) = list_instances(c, &filter, true)?;
                Ok(InstancePage {
                    instances,
                    total: u64::try_from(total).unwrap_or(0),
                })
            })
            .await
    }

    async fn list_checkpoints(&self, instance_id: &str) -> Result<Vec<CheckpointRecord>> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| list_checkpoints(c, &instance_id))
            .await
    }

    async fn list_checkpoints_page(
        &self,
        instance_id: &str,
        after_seq: i64,
        max_bytes: usize,
    ) -> Result<CheckpointPage> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| {
                let (checkpoints, more_after) =
                    checkpoints_page(c, &instance_id, after_seq, max_bytes)?;
                Ok(CheckpointPage {
                    checkpoints,
                    more_after,
                })
            })
            .await
    }

    async fn list_events(&self, instance_id: &str) -> Result<Vec<EventRecord>> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| list_events(c, &instance_id))
            .await
    }

    async fn list_events_page(
        &self,
        instance_id: &str,
        after_event_id: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<EventPage> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| events_page(c, &instance_id, after_event_id, limit, max_bytes))
            .await
    }

    async fn count_events(&self, instance_id: &str, kind: &EventKind) -> Result<u64> {
        validate_id("instance id", instance_id)?;
        let kind = kind.as_str();
        validate_id("event kind", kind)?;
        let (instance_id, kind) = (instance_id.to_owned(), kind.to_owned());
        self.writer
            .read(move |c| count_events(c, &instance_id, &kind))
            .await
    }

    async fn list_retry_attempts(&self, instance_id: &str) -> Result<Vec<RetryAttemptRecord>> {
        validate_id("instance id", instance_id)?;
        let instance_id = instance_id.to_owned();
        self.writer
            .read(move |c| list_retry_attempts(c, &instance_id))
            .await
    }

    async fn list_unfinished(&self) -> Result<Vec<InstanceRecord>> {
        self.writer.read(list_unfinished).await
    }

    async fn list_running(&self) -> Result<Vec<Liveness>> {
        self.writer.read(list_running).await
    }

    async fn insert_image(&self, new: NewImage) -> Result<ImageRecord> {
        validate_id("image id", &new.image_id)?;
        validate_id("tenant id", &new.tenant_id)?;
        validate_id("image name", &new.name)?;
        self.writer.call(move |c| insert_image(c, &new)).await
    }

    async fn get_image(&self, image_id: &str) -> Result<Option<ImageRecord>> {
        validate_id("image id", image_id)?;
        let image_id = image_id.to_owned();
        self.writer.read(move |c| get_image(c, &image_id)).await
    }

    async fn list_images(&self, tenant_id: &str) -> Result<Vec<ImageRecord>> {
        validate_id("tenant id", tenant_id)?;
        let tenant_id = tenant_id.to_owned();
        self.writer.read(move |c| list_images(c, &tenant_id)).await
    }

    async fn list_pooled_images(&self) -> Result<Vec<ImageRecord>> {
        self.writer.read(list_pooled_images).await
    }

    async fn set_image_workers(
        &self,
        image_id: &str,
        workers: Option<WorkerPool>,
    ) -> Result<ImageRecord> {
        validate_image_workers(image_id, workers.as_ref())?;
        let image_id = image_id.to_owned();
        self.writer
            .call(move |c| set_image_workers(c, &image_id, workers))
            .await
    }

    async fn delete_image(&self, image_id: &str) -> Result<DeletedImage> {
        validate_id("image id", image_id)?;
        let image_id = image_id.to_owned();
        self.writer.call(move |c| delete_image(c, &image_id)).await
    }
}

/// The non-terminal statuses of `from` as `",pending,running,"`, for a guard in SQL.
fn status_list(from: &[InstanceStatus]) -> String {
    let mut list = String::from(",");
    for status in from.iter().filter(|s| !s.is_terminal()) {
        list.push_str(status.as_str());
        list.push(',');
    }
    list
}
