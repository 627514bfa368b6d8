//! Schedules: the management requests that keep them, and the scheduler that fires them.
//!
//! A schedule's times are its cron expression (5 fields, or 6 with seconds first; parsed
//! by `croner`) read in its IANA time zone (`chrono-tz`). The store keeps the next fire
//! time. The scheduler sleeps until the earliest one, starts the fire's instance — id
//! `sched-{schedule}-{fire ms}`, so a retry, a restart or a second server starting it
//! again starts nothing — and then moves the schedule on with a compare-and-set.
//!
//! A fire more than [`MISFIRE_GRACE`] late was missed (the server was down, or stalled):
//! with `skip` nothing is started for the missed fires; with `run_once` one instance is
//! started for all of them, at the first missed time. Either way the schedule then goes
//! on from now. A late time whose instance exists was not missed: it was started just
//! before the server stopped, before the schedule moved on; the scheduler moves past it
//! and judges the next time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use runtara_core::schedules::fire_instance_id;
use runtara_core::{now_ms, MissedFires, NewSchedule, ScheduleRecord};
use runtara_protocol::{ByteBuf, ErrorCode, ManagementResponse, WireError, WireSchedule};
use tokio::sync::Notify;

use crate::image_store::random_hex;
use crate::management::{error, Caller, Management};
use crate::valid_ids::check_id;

/// How late a fire may start and still count as on time.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(2);

/// The longest the scheduler sleeps without looking at the schedules again.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// After firing, how soon the scheduler looks at the schedules again (ms).
const RETRY_SOON_MS: i64 = 10;

/// Longest schedule id: the fire's instance id (`sched-{id}-{13 digits}`) must fit the
/// server's 128 characters.
const MAX_SCHEDULE_ID_LEN: usize = 100;

/// A schedule's times: its cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronTimes {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
}

impl CronTimes {
    /// Parses `cron` and `timezone`; the error says which is wrong and why.
    pub fn parse(cron: &str, timezone: &str) -> Result<CronTimes, String> {
        let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
            format!(
                "unknown time zone `{timezone}`; use an IANA name such as `UTC` or `Europe/Berlin`"
            )
        })?;
        let cron = croner::parser::CronParser::new()
            .parse(cron)
            .map_err(|e| format!("invalid cron expression `{cron}`: {e}"))?;
        Ok(CronTimes { cron, zone })
    }

    /// The first fire time after `after_ms` (ms since the Unix epoch), if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = Utc.timestamp_millis_opt(after_ms).single()?;
        let local = after.with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.timestamp_millis())
    }
}

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
            .map_err(|e: runtara_core::Error| invalid(e.to_string()))?;
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
        let next_fire_ms = times.next_after(now_ms());
        let new = NewSchedule {
            schedule_id: schedule_id.clone(),
            tenant_id: request.tenant_id,
            image_id: request.image_id,
            cron: request.cron,
            timezone: request.timezone,
            input: request.input.map(ByteBuf::into_vec),
            missed,
            next_fire_ms,
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
            Ok(Some(record)) if caller.may_act_for(&record.tenant_id) => Ok(record),
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
            schedules.into_iter().map(wire_schedule).collect(),
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

    /// Starts the instance of `schedule`'s fire at `fire_ms` (nothing when it exists).
    async fn fire(&self, schedule: &ScheduleRecord, fire_ms: i64) -> Result<(), WireError> {
        let instance_id = fire_instance_id(&schedule.schedule_id, fire_ms);
        let started = self
            .start_instance(
                &Caller::unrestricted(),
                schedule.image_id.clone(),
                schedule.tenant_id.clone(),
                Some(instance_id.clone()),
                schedule.input.clone().map(ByteBuf::from),
                None,
            )
            .await?;
        if let ManagementResponse::Started { created, .. } = started {
            let late_ms = now_ms() - fire_ms;
            tracing::info!(schedule_id = %schedule.schedule_id, %instance_id, created, late_ms, "schedule fired");
        }
        Ok(())
    }

    /// Whether the instance of `schedule`'s fire at `fire_ms` exists already (a store
    /// error counts as no: the idempotent start settles it).
    async fn fired_before(&self, schedule: &ScheduleRecord, fire_ms: i64) -> bool {
        let instance_id = fire_instance_id(&schedule.schedule_id, fire_ms);
        matches!(self.store().get_instance(&instance_id).await, Ok(Some(_)))
    }

    /// What a due schedule does now: fire (or not, by its missed-fires policy), then move
    /// on to its next time.
    async fn fire_due(&self, schedule: &ScheduleRecord, due_ms: i64, now: i64) {
        let id = &schedule.schedule_id;
        let times = match CronTimes::parse(&schedule.cron, &schedule.timezone) {
            Ok(times) => times,
            Err(reason) => {
                tracing::warn!(schedule_id = %id, %reason, "schedule cannot be read; paused");
                let _ = self.store().set_schedule_paused(id, true, None).await;
                return;
            }
        };
        let late = now.saturating_sub(due_ms)
            > i64::try_from(MISFIRE_GRACE.as_millis()).unwrap_or(i64::MAX);
        if late && self.fired_before(schedule, due_ms).await {
            // Fired, and the server stopped before the schedule moved on: that time was
            // not missed. Move past it; the times after it are judged on the next look
            // (so the catch-up run of `run_once` is keyed by the first time truly
            // missed, the same on every server).
            let next = times.next_after(due_ms);
            if let Err(error) = self
                .store()
                .advance_schedule(id, due_ms, Some(due_ms), next)
                .await
            {
                tracing::warn!(schedule_id = %id, %error, "schedule could not move on");
            }
            return;
        }
        let (fire, next) = match (late, schedule.missed) {
            (false, _) => (Some(due_ms), times.next_after(due_ms)),
            (true, MissedFires::RunOnce) => (Some(due_ms), times.next_after(now)),
            (true, MissedFires::Skip) => (None, times.next_after(now)),
        };
        if late {
            tracing::warn!(schedule_id = %id, due_ms, now, policy = %schedule.missed, "schedule missed fires");
        }
        let mut fired = fire;
        if let Some(fire_ms) = fire {
            if let Err(error) = self.fire(schedule, fire_ms).await {
                // This fire is lost (said in the log); the schedule goes on, unless its
                // image is gone for good: then it is paused, for an operator to see.
                tracing::warn!(schedule_id = %id, fire_ms, error = %error.message, "schedule could not fire");
                fired = None;
                if error.code == ErrorCode::NotFound {
                    tracing::warn!(schedule_id = %id, image_id = %schedule.image_id, "the schedule's image is gone; schedule paused");
                    let _ = self.store().set_schedule_paused(id, true, None).await;
                    return;
                }
            }
        }
        match self.store().advance_schedule(id, due_ms, fired, next).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(schedule_id = %id, "schedule moved on elsewhere"),
            Err(error) => tracing::warn!(schedule_id = %id, %error, "schedule could not move on"),
        }
    }
}

/// Fires the schedules of every tenant at their times, until the server stops.
pub async fn run_scheduler(management: Arc<Management>, changed: Arc<Notify>) {
    loop {
        let schedules = match management.store().list_schedules(None).await {
            Ok(schedules) => schedules,
            Err(error) => {
                tracing::warn!(%error, "cannot read the schedules");
                tokio::time::sleep(LOOK_AGAIN).await;
                continue;
            }
        };
        let now = now_ms();
        let mut earliest = now.saturating_add(LOOK_AGAIN.as_millis() as i64);
        for schedule in schedules.iter().filter(|s| !s.paused) {
            let Some(due) = schedule.next_fire_ms else {
                continue;
            };
            if due > now {
                earliest = earliest.min(due);
                continue;
            }
            management.fire_due(schedule, due, now).await;
            // Looked at again soon (the next time is stored now), but not in a hot loop
            // should the store refuse to move it on.
            earliest = earliest.min(now.saturating_add(RETRY_SOON_MS));
        }
        let wait = Duration::from_millis(u64::try_from(earliest - now_ms()).unwrap_or(0));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_the_expression_in_its_zone() {
        let every_second = CronTimes::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(every_second.next_after(1_000), Some(2_000));
        assert_eq!(every_second.next_after(1_500), Some(2_000));
        // 02:00 in Berlin is 01:00 UTC in winter (2026-12-05 is a Saturday).
        let nightly = CronTimes::parse("0 2 * * *", "Europe/Berlin").unwrap();
        let noon_utc = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        let next = nightly.next_after(noon_utc.timestamp_millis()).unwrap();
        let expected = Utc.with_ymd_and_hms(2026, 12, 6, 1, 0, 0).unwrap();
        assert_eq!(next, expected.timestamp_millis());
    }

    #[test]
    fn bad_expressions_and_zones_are_named() {
        let zone = CronTimes::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(zone.contains("unknown time zone `Mars/Olympus`"), "{zone}");
        let cron = CronTimes::parse("every day", "UTC").unwrap_err();
        assert!(
            cron.contains("invalid cron expression `every day`"),
            "{cron}"
        );
    }
}
