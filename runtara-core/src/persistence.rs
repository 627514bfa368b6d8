//! The `Persistence` trait: every durable operation, one backend-neutral contract.

use async_trait::async_trait;

use crate::inbox::{EventSent, EventTake};
use crate::model::{
    CheckpointOutcome, CheckpointPage, CheckpointRecord, DeletedImage, EventKind, EventPage,
    EventQuota, EventRecord, ImageRecord, InstanceFilter, InstancePage, InstanceRecord,
    InstanceStatus, Liveness, NewImage, NewInstance, NewRuntimeInstance, PendingSignal,
    Registration, ReplayLog, RetryAttemptRecord, RuntimeInstance, RuntimeStart, SignalOutcome,
    SignalType, SleepOutcome, WorkerPool,
};
use crate::run_lease::RunLease;
use crate::schedules::{NewSchedule, ScheduleRecord};
use crate::Result;

/// Storage of instances, checkpoints, events, signals, retry attempts and sleeps.
///
/// Object-safe: used as `Arc<dyn Persistence>`. Every write that a running
/// instance makes carries the `epoch` it got from [`register_instance`](Self::register_instance);
/// a write with an older epoch fails with [`Error::Fenced`](crate::Error::Fenced), so one
/// instance is never run by two processes at once.
///
/// Every write is acknowledged only after its transaction is durable. Terminal
/// states (`completed`, `failed`, `cancelled`) are final: every transition is guarded
/// in SQL. Errors, in the order they are checked: [`InstanceNotFound`](crate::Error::InstanceNotFound),
/// [`Fenced`](crate::Error::Fenced), [`Terminal`](crate::Error::Terminal),
/// [`NotRunning`](crate::Error::NotRunning).
#[async_trait]
pub trait Persistence: Send + Sync + std::fmt::Debug + 'static {
    /// Short name of the backend: `"sqlite"` or `"postgres"`.
    fn backend_name(&self) -> &'static str;

    /// Gets ready for a burst of concurrent calls: opens the backend's connections and
    /// prepares the statements of the checkpoint path ahead of time, so that the first
    /// burst does not pay for them. Changes no data. A no-op where there is nothing to
    /// warm (SQLite). A long-running process (the server does) calls it once at start-up.
    async fn warm_up(&self) -> Result<()> {
        Ok(())
    }

    /// Takes the lease of a live embedded run of `(tenant_id, instance_id)`, held until
    /// the returned [`RunLease`] is dropped, or fails with
    /// [`Leased`](crate::Error::Leased) naming the live holder.
    ///
    /// The lease dies with its holder's process (an OS file lock beside a SQLite file, a
    /// session-level advisory lock in PostgreSQL), so a run whose process died is taken
    /// over at once. `None` where no other process can reach the data (in-memory SQLite).
    /// Embedded runs take it before they register; the server does not (it fences the
    /// processes it launches by epoch).
    async fn acquire_run_lease(
        &self,
        tenant_id: &str,
        instance_id: &str,
    ) -> Result<Option<RunLease>> {
        let _ = (tenant_id, instance_id);
        Ok(None)
    }

    /// Creates an instance in status `pending`, ahead of its process.
    ///
    /// Fails with [`InstanceExists`](crate::Error::InstanceExists) when the id is taken.
    async fn create_instance(&self, new: NewInstance) -> Result<InstanceRecord>;

    /// Registers a run of an instance: creates it (status `running`) if it is new, or
    /// resumes it (`pending`, `running`, `suspended` or `sleeping` → `running`) and
    /// increments its epoch. A terminal instance is an error; so is another tenant's.
    /// `resume_from` is the checkpoint id the run says it resumes from (recorded only).
    async fn register_instance(
        &self,
        instance_id: &str,
        tenant_id: &str,
        resume_from: Option<&str>,
    ) -> Result<Registration>;

    /// Starts an instance of an in-process runtime in one transaction: creates it with its
    /// runtime, workflow and input, `running` with epoch 1 when `run_now` (its run needs
    /// no register and has nothing to replay) or else `pending`. When the id is taken,
    /// nothing changes and the instance that holds it is returned, whoever owns it: the
    /// caller decides whether it is the same start.
    async fn start_runtime_instance(&self, new: NewRuntimeInstance) -> Result<RuntimeStart>;

    /// The unfinished instances (`pending`, `running`, `sleeping`, `suspended`) that
    /// `runtime` of `tenant_id` started, oldest first: what the runtime recovers when it
    /// starts.
    async fn list_runtime_instances(
        &self,
        tenant_id: &str,
        runtime: &str,
    ) -> Result<Vec<RuntimeInstance>>;

    /// Everything the run needs to replay recorded steps in memory, in one round trip.
    async fn load_replay(&self, instance_id: &str) -> Result<ReplayLog>;

    /// One page of the replay log: the checkpoints recorded after sequence number
    /// `after_seq` (`0` for the first page), as many as fit in `max_bytes` of state and
    /// always at least one, so a page can be sent in a bounded frame. The retry attempts
    /// come with the first page (`after_seq == 0`) only. `more_after` says where the next
    /// page starts.
    async fn load_replay_page(
        &self,
        instance_id: &str,
        after_seq: i64,
        max_bytes: usize,
    ) -> Result<ReplayLog>;

    /// One atomic insert-if-absent: returns the state stored earlier under
    /// `checkpoint_id`, or stores `state` and returns `existing_state: None`.
    /// The reply carries the pending signal, if any. Counts as a heartbeat.
    async fn save_checkpoint(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome>;

    /// [`save_checkpoint`](Self::save_checkpoint) of a durable call's result, recording
    /// with it the function that produced it (`producer`, its module path). When the id
    /// was recorded earlier, the outcome names the function that recorded it, so the
    /// caller can refuse another function's result.
    async fn save_step(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome>;

    /// Read-only lookup of one checkpoint.
    async fn get_checkpoint(
        &self,
        instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>>;

    /// Like [`save_checkpoint`](Self::save_checkpoint), and records `wake_at_ms` with the
    /// checkpoint and on the instance. When the checkpoint existed, the stored wake time
    /// is returned so a restarted run sleeps only the remainder.
    async fn save_sleep(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        wake_at_ms: i64,
    ) -> Result<SleepOutcome>;

    /// `running → sleeping`: the process is about to exit and be woken at the instance's
    /// `wake_at_ms` by the server.
    async fn mark_sleeping(&self, instance_id: &str, epoch: i64) -> Result<()>;

    /// Records that the run is alive.
    async fn heartbeat(&self, instance_id: &str, epoch: i64) -> Result<()>;

    /// `running → completed` with `output`.
    async fn complete_instance(&self, instance_id: &str, epoch: i64, output: &[u8]) -> Result<()>;

    /// `running → failed` with `error`, reported by the run itself.
    async fn fail_instance(&self, instance_id: &str, epoch: i64, error: &str) -> Result<()>;

    /// `running → suspended`, reported by the run itself.
    async fn suspend_instance(&self, instance_id: &str, epoch: i64) -> Result<()>;

    /// Moves a non-terminal instance to `to` on behalf of the server (crash limit reached,
    /// timeout, kill after a cancel grace period, …), without an epoch.
    /// Returns false, changing nothing, when the status is not one of `from`.
    async fn set_status(
        &self,
        instance_id: &str,
        from: &[InstanceStatus],
        to: InstanceStatus,
        error: Option<&str>,
    ) -> Result<bool>;

    /// Stores an event of the system's own (`launched`, `exited`, …), with an optional
    /// subtype and payload, whatever the instance's state and unbounded. The events an
    /// instance records itself go through
    /// [`record_custom_event`](Self::record_custom_event).
    async fn record_event(
        &self,
        instance_id: &str,
        kind: &EventKind,
        subtype: Option<&str>,
        payload: Option<&[u8]>,
    ) -> Result<()>;

    /// Stores a custom event (kind `custom`) that the instance records itself, within
    /// `quota`: the payload is at most `max_event_bytes`, and the instance records at most
    /// `max_events_per_instance` custom events and `max_event_bytes_per_instance` bytes
    /// of them in all. The instance's count and bytes are kept on its row and checked and
    /// raised with the insert, atomically, so concurrent events cannot pass a bound
    /// together. A finished instance records none
    /// ([`Terminal`](crate::Error::Terminal)); a bound that would be passed is
    /// [`QuotaExceeded`](crate::Error::QuotaExceeded) (an over-large payload or subtype:
    /// [`InvalidInput`](crate::Error::InvalidInput)); either way nothing is stored.
    async fn record_custom_event(
        &self,
        instance_id: &str,
        subtype: &str,
        payload: &[u8],
        quota: &EventQuota,
    ) -> Result<()>;

    /// Records retry `attempt` (1-based) of the durable call `checkpoint_id`.
    /// Recording the same attempt twice is a no-op.
    async fn record_retry_attempt(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<()>;

    /// Records the final failure of the durable call `checkpoint_id` (its retries are
    /// spent, or its error is not retryable): a later run returns `error` instead of
    /// running the call again. The first recorded failure stays.
    async fn record_step_failure(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        error: &str,
    ) -> Result<()>;

    /// Lets a failed durable call run again: removes its recorded failure and its retry
    /// attempts (a fresh retry budget). Returns false, changing nothing, when no failure
    /// is recorded for it; fails with [`Terminal`](crate::Error::Terminal) for a finished
    /// instance and [`InstanceNotFound`](crate::Error::InstanceNotFound) for none.
    async fn clear_step_failure(&self, instance_id: &str, checkpoint_id: &str) -> Result<bool>;

    /// Queues a signal. Cancel of an instance with no process (`pending`, `suspended`,
    /// `sleeping`) takes effect at once; so does pause of a `sleeping` one. Resume of a
    /// `running` or `pending` instance with a pause still queued withdraws the pause (it
    /// is settled, not acknowledged) and the instance carries on. A signal to a terminal
    /// instance fails with [`Terminal`](crate::Error::Terminal); one that makes no sense in
    /// the current state (pause of a suspended instance, resume of a running one with no
    /// pause queued) with [`SignalRejected`](crate::Error::SignalRejected).
    async fn send_signal(&self, instance_id: &str, signal: SignalType) -> Result<SignalOutcome>;

    /// Whether a resume of the instance is queued and not yet settled (by the register of
    /// the process its server relaunches): what a starting server looks for on suspended
    /// instances, since a server may stop between queueing a resume and relaunching.
    async fn queued_resume(&self, instance_id: &str) -> Result<bool>;

    /// The highest-priority unacknowledged signal (cancel outranks pause; oldest first).
    async fn pending_signal(&self, instance_id: &str) -> Result<Option<PendingSignal>>;

    /// Acknowledges every pending signal of `signal` type. With `acknowledged`, the
    /// instance takes the matching state (cancel → `cancelled`, pause → `suspended`) if
    /// such a signal is still queued; with none queued (a resume withdrew the pause),
    /// nothing changes. Without `acknowledged`, the signals are dropped and the status
    /// stays. A `pending` instance (no run registered it yet: a server's launch waiting
    /// for a slot) takes an acknowledged signal too, from the holder of its epoch, so a
    /// queued launch is paused or cancelled without ever running.
    async fn acknowledge_signal(
        &self,
        instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()>;

    /// Sends an external event to an instance: stored in its inbox until a wait for
    /// `name` takes it ([`take_event`](Self::take_event); events of one name are taken in
    /// the order sent, each once), with a `received` event in its history. A send with an
    /// `idempotency_key` the instance has seen before stores nothing and answers the
    /// first send's id (`duplicate`), even once the instance has finished. An unknown instance is
    /// [`InstanceNotFound`](crate::Error::InstanceNotFound), a finished one
    /// [`Terminal`](crate::Error::Terminal), a payload over
    /// [`MAX_EVENT_PAYLOAD_LEN`](crate::MAX_EVENT_PAYLOAD_LEN) or a bad name
    /// [`InvalidInput`](crate::Error::InvalidInput); none stores anything.
    async fn send_event(
        &self,
        instance_id: &str,
        name: &str,
        payload: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<EventSent>;

    /// One step of a run's wait for the event `name`, in one transaction: the outcome
    /// recorded under `checkpoint_id` if there is one; else the oldest unconsumed event
    /// of that name, consumed and recorded there; else, when `deadline_ms` has passed,
    /// the timeout (`None`) recorded there. With nothing to take, the instance becomes
    /// `waiting` for `name` (its wake time the deadline), unless a cancel or pause is
    /// queued (it stays `running` and the signal is returned). A `waiting` instance's run
    /// may call it again; taking makes the instance `running`. The run's writes are
    /// refused as usual (missing, fenced, terminal, neither running nor waiting).
    async fn take_event(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        name: &str,
        deadline_ms: Option<i64>,
    ) -> Result<EventTake>;

    /// The event a `waiting` instance waits for; `None` when it is not waiting (an
    /// unknown instance is [`InstanceNotFound`](crate::Error::InstanceNotFound)).
    async fn waiting_for(&self, instance_id: &str) -> Result<Option<String>>;

    /// Whether the instance is `waiting` and an event it waits for is in its inbox: a run
    /// that let go of it meanwhile must be run again now.
    async fn event_arrived(&self, instance_id: &str) -> Result<bool>;

    /// The unfinished children of an instance (started with it as their parent), oldest
    /// first, but not the detached ones: what a cancel of the parent cancels too.
    async fn list_children(&self, parent_id: &str) -> Result<Vec<String>>;

    /// The `waiting` instances whose awaited event is in their inbox, or whose wait's
    /// deadline has passed, across tenants: a server runs them again (a safety net under
    /// the wake-ups `send_event` and a deadline ask for, and how a parent whose child
    /// ended is woken).
    async fn list_woken(&self) -> Result<Vec<String>>;

    /// Publishes `value` under `key` for the management side; a later value replaces
    /// it. A write of the run (epoch-fenced, running or waiting); the value is at most
    /// [`MAX_EVENT_PAYLOAD_LEN`](crate::MAX_EVENT_PAYLOAD_LEN) bytes.
    async fn set_value(&self, instance_id: &str, epoch: i64, key: &str, value: &[u8])
        -> Result<()>;

    /// The value the instance published under `key`, or `None`; an unknown instance is
    /// [`InstanceNotFound`](crate::Error::InstanceNotFound).
    async fn get_value(&self, instance_id: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores a new schedule; a taken id is [`InvalidInput`](crate::Error::InvalidInput).
    async fn create_schedule(&self, new: NewSchedule) -> Result<ScheduleRecord>;

    /// One schedule, or `None`.
    async fn get_schedule(&self, schedule_id: &str) -> Result<Option<ScheduleRecord>>;

    /// A tenant's schedules (every tenant's with `None`), oldest first.
    async fn list_schedules(&self, tenant_id: Option<&str>) -> Result<Vec<ScheduleRecord>>;

    /// Deletes a schedule; false when there is none. Instances it started stay.
    async fn delete_schedule(&self, schedule_id: &str) -> Result<bool>;

    /// Pauses a schedule (`next_fire_ms` is then `None`) or resumes it with its next fire
    /// time; `None` when there is no such schedule.
    async fn set_schedule_paused(
        &self,
        schedule_id: &str,
        paused: bool,
        next_fire_ms: Option<i64>,
    ) -> Result<Option<ScheduleRecord>>;

    /// Moves an unpaused schedule whose next fire time is still `expected_next` on to
    /// `next_fire_ms`, recording `fired_ms` (when a fire started an instance) as its last
    /// fire. False, changing nothing, when another server moved it first (or it was
    /// paused or deleted meanwhile).
    async fn advance_schedule(
        &self,
        schedule_id: &str,
        expected_next: i64,
        fired_ms: Option<i64>,
        next_fire_ms: Option<i64>,
    ) -> Result<bool>;

    /// One instance, or `None`.
    async fn get_instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>>;

    /// Instances of a tenant, newest first, with the total count.
    async fn list_instances(&self, filter: &InstanceFilter) -> Result<InstancePage>;

    /// [`list_instances`](Self::list_instances) for listings: the same instances and
    /// total, without what costs in proportion to their size or history: `input` and
    /// `output` are `None`, `checkpoint_id` is `None`, `checkpoint_count` is 0, and
    /// `error` is cut to its first [`MAX_LISTED_ERROR_CHARS`](crate::MAX_LISTED_ERROR_CHARS)
    /// characters. A page costs O(page). Read one instance for the rest.
    async fn list_instances_brief(&self, filter: &InstanceFilter) -> Result<InstancePage> {
        let mut page = self.list_instances(filter).await?;
        for instance in &mut page.instances {
            instance.input = None;
            instance.output = None;
            instance.checkpoint_id = None;
            instance.checkpoint_count = 0;
            if let Some(error) = &mut instance.error {
                if let Some((cut, _)) = error.char_indices().nth(crate::MAX_LISTED_ERROR_CHARS) {
                    error.truncate(cut);
                }
            }
        }
        Ok(page)
    }

    /// All checkpoints of an instance, in the order they were recorded.
    async fn list_checkpoints(&self, instance_id: &str) -> Result<Vec<CheckpointRecord>>;

    /// One page of [`list_checkpoints`](Self::list_checkpoints): the checkpoints recorded
    /// after sequence number `after_seq` (`0` for the first page), as many as fit in
    /// `max_bytes` of state and always at least one.
    async fn list_checkpoints_page(
        &self,
        instance_id: &str,
        after_seq: i64,
        max_bytes: usize,
    ) -> Result<CheckpointPage>;

    /// All events of an instance, oldest first.
    async fn list_events(&self, instance_id: &str) -> Result<Vec<EventRecord>>;

    /// One page of [`list_events`](Self::list_events): the events after `after_event_id`
    /// (`0` for the first page), oldest first, at most `limit` of them and as many as fit
    /// in `max_bytes` (each counted by [`event_page_bytes`](crate::event_page_bytes)),
    /// and always at least one when any follow. Reads only the page's events, so a page
    /// costs O(page) whatever the instance holds.
    async fn list_events_page(
        &self,
        instance_id: &str,
        after_event_id: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<EventPage>;

    /// How many events of `kind` an instance has (reading none of their payloads).
    async fn count_events(&self, instance_id: &str, kind: &EventKind) -> Result<u64>;

    /// All retry attempts of an instance, in the order they were recorded.
    async fn list_retry_attempts(&self, instance_id: &str) -> Result<Vec<RetryAttemptRecord>>;

    /// Instances that are not finished (`pending`, `running`, `suspended`, `sleeping`)
    /// across all tenants, in the order they were created (two in one millisecond
    /// included): what a starting server adopts, and queues again in that order.
    async fn list_unfinished(&self) -> Result<Vec<InstanceRecord>>;

    /// Every `running` instance's latest sign of life, across all tenants: what a
    /// supervisor checks periodically. Cheaper than [`list_unfinished`](Self::list_unfinished):
    /// it reads no input, output or checkpoint count.
    async fn list_running(&self) -> Result<Vec<Liveness>>;

    /// Stores a new image version: `version` is one more than the highest of
    /// `(tenant_id, name)`, chosen atomically.
    async fn insert_image(&self, new: NewImage) -> Result<ImageRecord>;

    /// One image, or `None`.
    async fn get_image(&self, image_id: &str) -> Result<Option<ImageRecord>>;

    /// A tenant's images, newest first.
    async fn list_images(&self, tenant_id: &str) -> Result<Vec<ImageRecord>>;

    /// Every image with a worker pool, of every tenant (by image id): the pools a server
    /// keeps their minimum of workers running for.
    async fn list_pooled_images(&self) -> Result<Vec<ImageRecord>>;

    /// Sets how the image's instances run in worker processes (`None`: one process per
    /// instance), and returns the image; [`ImageNotFound`](crate::Error::ImageNotFound)
    /// when there is no such image.
    async fn set_image_workers(
        &self,
        image_id: &str,
        workers: Option<WorkerPool>,
    ) -> Result<ImageRecord>;

    /// Deletes an image no unfinished instance uses; fails with
    /// [`ImageInUse`](crate::Error::ImageInUse) otherwise and with
    /// [`ImageNotFound`](crate::Error::ImageNotFound) when there is no such image.
    async fn delete_image(&self, image_id: &str) -> Result<DeletedImage>;
}
