//! Schedules: the management requests that keep them, and the server's side of the
//! scheduler that fires them ([`runtara_core::scheduler`]): a fire starts an instance of
//! the schedule's image, as a start request would. The schedules of in-process runtimes
//! sharing the database are theirs: the server neither fires nor shows them.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtara_core::scheduler::{self, CronTimes, FireStarter, StartFailure};
use runtara_core::{now_ms, MissedFires, NewSchedule, ScheduleRecord};
use runtara_protocol::{ByteBuf, ErrorCode, ManagementResponse, WireError, WireSchedule};
use tokio::sync::Notify;

use crate::image_store::random_hex;
use crate::management::{error, Caller, Management};
use crate::valid_ids::check_id;

/// The longest the scheduler sleeps without looking at the schedules again (another
/// server on the database may have changed them).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Longest schedule id: the fire's instance id (`sched-{id}-{13 digits}`) must fit the
/// server's 128 characters.
const MAX_SCHEDULE_ID_LEN: usize = 100;

/// The wire form of a schedule.
pub fn wire_schedule(record: ScheduleRecord) -> WireSchedule {
    WireSchedule {
        schedule_id: record.schedule_id,
        tenant_id: record.tenant_id,
        image_id: record.image_id,
        cron: record.cron,
        timezone: record.timezone,
        input: record.input.map(ByteBuf::from),
        missed: record.missed.as_str().to_owned(),
        paused: record.paused,
        next_fire_ms: record.next_fire_ms,
        last_fire_ms: record.last_fire_ms,
        created_at_ms: record.created_at_ms,
    }
}

/// What a `CreateSchedule` asks for.
pub struct ScheduleRequest {
    /// Its id, or `None` for one of the server's.
    pub schedule_id: Option<String>,
    /// The owner.
    pub tenant_id: String,
    /// The image.
    pub image_id: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone.
    pub timezone: String,
    /// The start input.
    pub input: Option<ByteBuf>,
    /// Missed fires.
    pub missed: String,
}

fn invalid(message: String) -> WireError {
    error(ErrorCode::InvalidInput, message)
}

impl Management {
    /// Creates a schedule after checking everything it names.
    pub(crate) async fn create_schedule(
        &self,
        caller: &Caller,
        request: ScheduleRequest,
    ) -> Result<ManagementResponse, WireError> {
        Self::check_tenant(caller, &request.tenant_id)?;
        let image = self.visible_image(caller, &request.image_id).await?;
        if image.tenant_id != request.tenant_id {
            return Err(error(
                ErrorCode::NotFound,
                format!(
                    "image `{}` not found for tenant `{}`",
                    request.image_id, request.tenant_id
                ),
            ));
        }
        let missed: MissedFires = request
            .missed
            .parse()
            .map_err(|e: runtara_protocol::UnknownMissedFires| invalid(e.to_string()))?;
        let times = CronTimes::parse(&request.cron, &request.timezone).map_err(invalid)?;
        if let Some(input) = &request.input {
            serde_json::from_slice::<serde_json::Value>(input)
                .map_err(|e| invalid(format!("the input is not valid JSON: {e}")))?;
        }
        let schedule_id = match request.schedule_id {
            Some(id) => {
                check_id("schedule id", &id)?;
                if id.len() > MAX_SCHEDULE_ID_LEN {
                    return Err(invalid(format!(
                        "schedule id `{id}` is {} characters; at most {MAX_SCHEDULE_ID_LEN} are allowed",
                        id.len()
                    )));
                }
                id
            }
            None => random_hex(8),
        };
        let next_fire_ms = Some(times.first_after(now_ms()).map_err(invalid)?);
        let new = NewSchedule {
            schedule_id: schedule_id.clone(),
            tenant_id: request.tenant_id,
            image_id: request.image_id,
            cron: request.cron,
            timezone: request.timezone,
            input: request.input.map(ByteBuf::into_vec),
            missed,
            next_fire_ms,
            runtime: None,
        };
        let record = match self.store().create_schedule(new).await {
            Ok(record) => record,
            Err(runtara_core::Error::InvalidInput { .. }) => {
                return Err(error(
                    ErrorCode::AlreadyExists,
                    format!("schedule `{schedule_id}` already exists"),
                ))
            }
            Err(e) => return Err(crate::management::engine_error(&e)),
        };
        tracing::info!(%schedule_id, cron = %record.cron, timezone = %record.timezone, ?next_fire_ms, "schedule created");
        self.schedules_changed.notify_one();
        Ok(ManagementResponse::Schedule(wire_schedule(record)))
    }

    /// A schedule the caller may see; another tenant's is not found.
    async fn visible_schedule(
        &self,
        caller: &Caller,
        schedule_id: &str,
    ) -> Result<ScheduleRecord, WireError> {
        check_id("schedule id", schedule_id)?;
        let not_found = || {
            error(
                ErrorCode::NotFound,
                format!("schedule `{schedule_id}` not found"),
            )
        };
        match self.store().get_schedule(schedule_id).await {
            Ok(Some(record))
                if caller.may_act_for(&record.tenant_id) && record.runtime.is_none() =>
            {
                Ok(record)
            }
            Ok(_) => Err(not_found()),
            Err(e) => Err(crate::management::engine_error(&e)),
        }
    }

    /// A tenant's schedules.
    pub(crate) async fn list_schedules(
        &self,
        caller: &Caller,
        tenant_id: &str,
    ) -> Result<ManagementResponse, WireError> {
        Self::check_tenant(caller, tenant_id)?;
        let schedules = self
            .store()
            .list_schedules(Some(tenant_id))
            .await
            .map_err(|e| crate::management::engine_error(&e))?;
        Ok(ManagementResponse::Schedules(
            schedules
                .into_iter()
                .filter(|s| s.runtime.is_none())
                .map(wire_schedule)
                .collect(),
        ))
    }

    /// Deletes a schedule.
    pub(crate) async fn delete_schedule(
        &self,
        caller: &Caller,
        schedule_id: &str,
    ) -> Result<ManagementResponse, WireError> {
        self.visible_schedule(caller, schedule_id).await?;
        self.store()
            .delete_schedule(schedule_id)
            .await
            .map_err(|e| crate::management::engine_error(&e))?;
        tracing::info!(%schedule_id, "schedule deleted");
        Ok(ManagementResponse::Done)
    }

    /// Pauses or resumes a schedule; a resumed one goes on from now (what it would have
    /// fired while paused is not fired).
    pub(crate) async fn pause_schedule(
        &self,
        caller: &Caller,
        schedule_id: &str,
        paused: bool,
    ) -> Result<ManagementResponse, WireError> {
        let record = self.visible_schedule(caller, schedule_id).await?;
        let next_fire_ms = match paused {
            true => None,
            false => CronTimes::parse(&record.cron, &record.timezone)
                .map_err(invalid)?
                .next_after(now_ms()),
        };
        let record = self
            .store()
            .set_schedule_paused(schedule_id, paused, next_fire_ms)
            .await
            .map_err(|e| crate::management::engine_error(&e))?
            .ok_or_else(|| {
                error(
                    ErrorCode::NotFound,
                    format!("schedule `{schedule_id}` not found"),
                )
            })?;
        tracing::info!(%schedule_id, paused, "schedule paused or resumed");
        self.schedules_changed.notify_one();
        Ok(ManagementResponse::Schedule(wire_schedule(record)))
    }
}

/// The server as a scheduler's host: it fires the schedules that belong to no runtime,
/// each fire an instance of the schedule's image.
struct ServerFires(Arc<Management>);

#[async_trait]
impl FireStarter for ServerFires {
    fn owns(&self, schedule: &ScheduleRecord) -> bool {
        schedule.runtime.is_none()
    }

    async fn start_fire(
        &self,
        schedule: &ScheduleRecord,
        instance_id: &str,
    ) -> Result<(), StartFailure> {
        let started = self
            .0
            .start_instance(
                &Caller::unrestricted(),
                schedule.image_id.clone(),
                schedule.tenant_id.clone(),
                Some(instance_id.to_owned()),
                schedule.input.clone().map(ByteBuf::from),
                None,
            )
            .await;
        match started {
            Ok(_) => Ok(()),
            Err(error) if error.code == ErrorCode::NotFound => Err(StartFailure::TargetGone(
                format!("image `{}`: {}", schedule.image_id, error.message),
            )),
            Err(error) => Err(StartFailure::Failed(error.message)),
        }
    }
}

/// Fires the server's schedules of every tenant at their times, until the server stops.
pub async fn run_scheduler(management: Arc<Management>, changed: Arc<Notify>) {
    let store = Arc::clone(management.store());
    scheduler::run_scheduler(
        store,
        Arc::new(ServerFires(management)),
        changed,
        LOOK_AGAIN,
    )
    .await;
}
