//! Schedules of a runtime's workflows: each fire starts an instance of the workflow, as
//! [`Runtime::start`] would, with the id `sched-{schedule}-{fire ms}` — so a restart or
//! a retry never starts a fire twice. Fired by the scheduler of `runtara_core`
//! while the runtime lives; the fires missed while it was down follow the schedule's
//! [`MissedFires`] policy when it starts again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use runtara_core::scheduler::{CronTimes, FireStarter, StartFailure};
use runtara_core::{now_ms, MissedFires, NewSchedule, ScheduleRecord};

use super::{Handles, Runtime, Shared};
use crate::{Result, SdkError};

/// Longest schedule id: the fire's instance id (`sched-{id}-{13 digits}`) must stay a
/// valid instance id.
const MAX_SCHEDULE_ID_LEN: usize = 100;

/// The longest the runtime's scheduler sleeps without looking at its schedules again;
/// changes made through the runtime wake it at once (one process runs a runtime).
pub(super) const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// A schedule to create with [`Runtime::create_schedule`].
///
/// ```
/// use runtara_sdk::runtime::ScheduleOptions;
/// use runtara_sdk::MissedFires;
///
/// let nightly = ScheduleOptions::new("nightly-sales", "report", "0 2 * * *")
///     .with_timezone("Europe/Berlin")
///     .with_input(serde_json::json!({"report": "sales"}))
///     .with_missed(MissedFires::Skip);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleOptions {
    schedule_id: String,
    workflow: String,
    cron: String,
    timezone: String,
    input: Option<serde_json::Value>,
    missed: MissedFires,
}

impl ScheduleOptions {
    /// Schedule `schedule_id` starting workflow `workflow` at the times of `cron`: five
    /// fields (minute hour day-of-month month day-of-week), or six with seconds first.
    /// Read in UTC, with no input (`null`), missed fires run once.
    pub fn new(
        schedule_id: impl Into<String>,
        workflow: impl Into<String>,
        cron: impl Into<String>,
    ) -> ScheduleOptions {
        ScheduleOptions {
            schedule_id: schedule_id.into(),
            workflow: workflow.into(),
            cron: cron.into(),
            timezone: "UTC".to_owned(),
            input: None,
            missed: MissedFires::RunOnce,
        }
    }

    /// The IANA time zone the expression is read in (default `UTC`).
    pub fn with_timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }

    /// Each fire's start input (default `null`).
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = Some(input);
        self
    }

    /// What to do with fires missed while the runtime was down (default
    /// [`MissedFires::RunOnce`]: one instance for them all).
    pub fn with_missed(mut self, missed: MissedFires) -> Self {
        self.missed = missed;
        self
    }
}

/// A runtime's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Its id.
    pub schedule_id: String,
    /// The workflow each fire starts.
    pub workflow: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// Each fire's start input.
    pub input: Option<serde_json::Value>,
    /// What it does with missed fires.
    pub missed: MissedFires,
    /// Paused: no fires until resumed.
    pub paused: bool,
    /// The next fire time (ms since the Unix epoch); `None` while paused.
    pub next_fire_ms: Option<i64>,
    /// The last fire that started an instance.
    pub last_fire_ms: Option<i64>,
}

impl Schedule {
    fn of(record: ScheduleRecord) -> Schedule {
        Schedule {
            input: record
                .input
                .as_deref()
                .and_then(|bytes| serde_json::from_slice(bytes).ok()),
            schedule_id: record.schedule_id,
            workflow: record.image_id,
            cron: record.cron,
            timezone: record.timezone,
            missed: record.missed,
            paused: record.paused,
            next_fire_ms: record.next_fire_ms,
            last_fire_ms: record.last_fire_ms,
        }
    }
}

fn not_found(schedule_id: &str) -> SdkError {
    schedule_error(schedule_id, "no such schedule in this runtime")
}

fn schedule_error(schedule_id: &str, reason: impl Into<String>) -> SdkError {
    SdkError::Schedule {
        schedule_id: schedule_id.to_owned(),
        reason: reason.into(),
    }
}

impl Runtime {
    /// Creates a schedule of one of this runtime's workflows; from then on the runtime
    /// fires it at its times, each fire an instance `sched-{schedule}-{fire ms}`.
    ///
    /// Made for start-up code: when the id already holds this runtime's schedule with
    /// the same workflow, expression, zone, input and policy, that schedule is returned
    /// as it is (its next fire and the fires it missed while the runtime was down
    /// kept; a paused one stays paused). Errors, with nothing stored: [`SdkError::UnknownWorkflow`];
    /// [`SdkError::StartInput`] when the input does not fit the workflow;
    /// [`SdkError::Schedule`] for a bad expression, time zone or id, or an id that
    /// holds another schedule (delete it first to change it).
    ///
    /// A schedule whose workflow a later build of the program no longer registers is
    /// paused at its next fire, with a warning in the log.
    pub async fn create_schedule(&self, options: ScheduleOptions) -> Result<Schedule> {
        let id = options.schedule_id.clone();
        if id.is_empty() || id.len() > MAX_SCHEDULE_ID_LEN {
            return Err(schedule_error(
                &id,
                format!("an id has 1 to {MAX_SCHEDULE_ID_LEN} bytes"),
            ));
        }
        let function = self.workflow(&options.workflow)?;
        let times = CronTimes::parse(&options.cron, &options.timezone)
            .map_err(|r| schedule_error(&id, r))?;
        let next_fire_ms = times
            .first_after(now_ms())
            .map_err(|r| schedule_error(&id, r))?;
        let input = input_bytes(options.input.as_ref());
        function
            .check_input(&input)
            .map_err(|source| SdkError::StartInput {
                workflow: options.workflow.clone(),
                source,
            })?;
        let new = NewSchedule {
            schedule_id: id.clone(),
            tenant_id: self.shared.tenant_id.clone(),
            image_id: options.workflow,
            cron: options.cron,
            timezone: options.timezone,
            input: options.input.as_ref().map(|_| input),
            missed: options.missed,
            next_fire_ms: Some(next_fire_ms),
            runtime: Some(self.shared.name.clone()),
        };
        let record = match self.shared.persistence.create_schedule(new.clone()).await {
            Ok(record) => record,
            // Refused: a taken id (then the schedule it holds is there), or a bad field.
            Err(error @ runtara_core::Error::InvalidInput { .. }) => {
                match self.shared.persistence.get_schedule(&id).await? {
                    Some(existing) if self.same_schedule(&existing, &new) => existing,
                    Some(_) => {
                        return Err(schedule_error(
                            &id,
                            "the id holds another schedule; delete it first to change it",
                        ))
                    }
                    None => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        };
        self.shared.schedules_changed.notify_one();
        Ok(Schedule::of(record))
    }

    /// This runtime's schedules, oldest first.
    pub async fn list_schedules(&self) -> Result<Vec<Schedule>> {
        let records = self
            .shared
            .persistence
            .list_schedules(Some(&self.shared.tenant_id))
            .await?;
        Ok(records
            .into_iter()
            .filter(|r| self.owns_schedule(r))
            .map(Schedule::of)
            .collect())
    }

    /// Deletes one of this runtime's schedules: no more fires (the instances it
    /// started are not touched). [`SdkError::Schedule`] when there is no such schedule.
    pub async fn delete_schedule(&self, schedule_id: &str) -> Result<()> {
        if self.own_schedule(schedule_id).await?.is_none() {
            return Err(not_found(schedule_id));
        }
        self.shared.persistence.delete_schedule(schedule_id).await?;
        self.shared.schedules_changed.notify_one();
        Ok(())
    }

    /// Pauses one of this runtime's schedules: no fires until
    /// [`resume_schedule`](Self::resume_schedule).
    pub async fn pause_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        self.set_schedule_paused(schedule_id, true).await
    }

    /// Resumes a paused schedule from now: what it would have fired while paused is not
    /// fired.
    pub async fn resume_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        self.set_schedule_paused(schedule_id, false).await
    }

    async fn set_schedule_paused(&self, schedule_id: &str, paused: bool) -> Result<Schedule> {
        let not_found = || not_found(schedule_id);
        let record = self
            .own_schedule(schedule_id)
            .await?
            .ok_or_else(not_found)?;
        let next_fire_ms = match paused {
            true => None,
            false => CronTimes::parse(&record.cron, &record.timezone)
                .map_err(|r| schedule_error(schedule_id, r))?
                .next_after(now_ms()),
        };
        let record = self
            .shared
            .persistence
            .set_schedule_paused(schedule_id, paused, next_fire_ms)
            .await?
            .ok_or_else(not_found)?;
        self.shared.schedules_changed.notify_one();
        Ok(Schedule::of(record))
    }

    async fn own_schedule(&self, schedule_id: &str) -> Result<Option<ScheduleRecord>> {
        let record = self.shared.persistence.get_schedule(schedule_id).await?;
        Ok(record.filter(|r| self.owns_schedule(r)))
    }

    fn owns_schedule(&self, record: &ScheduleRecord) -> bool {
        owned_by(&self.shared, record)
    }

    fn same_schedule(&self, existing: &ScheduleRecord, new: &NewSchedule) -> bool {
        self.owns_schedule(existing)
            && existing.image_id == new.image_id
            && existing.cron == new.cron
            && existing.timezone == new.timezone
            && existing.input == new.input
            && existing.missed == new.missed
    }
}

/// Whether `record` is a schedule of the runtime of `shared`.
fn owned_by(shared: &Shared, record: &ScheduleRecord) -> bool {
    record.runtime.as_deref() == Some(shared.name.as_str()) && record.tenant_id == shared.tenant_id
}

/// A start input's JSON: `null` when there is none.
fn input_bytes(input: Option<&serde_json::Value>) -> Vec<u8> {
    input.map_or_else(|| b"null".to_vec(), |value| value.to_string().into_bytes())
}

/// A runtime as its scheduler's host. It holds the runtime weakly: the scheduler stops
/// once the application has dropped every clone of it (its instances may run on).
pub(super) struct RuntimeFires {
    shared: Weak<Shared>,
    handles: Weak<Handles>,
}

#[async_trait]
impl FireStarter for RuntimeFires {
    fn owns(&self, schedule: &ScheduleRecord) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|shared| owned_by(&shared, schedule))
    }

    async fn start_fire(
        &self,
        schedule: &ScheduleRecord,
        instance_id: &str,
    ) -> std::result::Result<(), StartFailure> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| StartFailure::Failed("the runtime stopped".to_owned()))?;
        let input = schedule.input.clone().unwrap_or_else(|| input_bytes(None));
        let started = Runtime::of(shared)
            .start_json(
                &schedule.image_id,
                instance_id.to_owned(),
                input,
                None,
                false,
            )
            .await;
        match started {
            Ok(_) => Ok(()),
            Err(error @ SdkError::UnknownWorkflow { .. }) => {
                Err(StartFailure::TargetGone(error.to_string()))
            }
            Err(error) => Err(StartFailure::Failed(error.to_string())),
        }
    }

    fn stopped(&self) -> bool {
        self.handles.strong_count() == 0 || self.shared.strong_count() == 0
    }
}

/// Starts the scheduler of the runtime of `shared`, until its `handles` are dropped.
pub(super) fn spawn_scheduler(shared: &Arc<Shared>, handles: &Arc<Handles>) {
    let host = RuntimeFires {
        shared: Arc::downgrade(shared),
        handles: Arc::downgrade(handles),
    };
    tokio::spawn(runtara_core::scheduler::run_scheduler(
        Arc::clone(&shared.persistence),
        Arc::new(host),
        Arc::clone(&shared.schedules_changed),
        LOOK_AGAIN,
    ));
}
