//! Firing schedules at their times: one scheduler for the server's schedules and for
//! an in-process runtime's, each telling it which schedules are its own and how to start
//! a fire's instance ([`FireStarter`]).
//!
//! A schedule's times are its cron expression (5 fields, or 6 with seconds first; parsed
//! by `croner`) read in its IANA time zone (`chrono-tz`): [`CronTimes`]. The store keeps
//! the next fire time. The scheduler sleeps until the earliest one, starts the fire's
//! instance — id [`fire_instance_id`], so a retry, a restart or a second scheduler
//! starting it again starts nothing — and then moves the schedule on with a
//! compare-and-set ([`Persistence::advance_schedule`]).
//!
//! A fire more than [`MISFIRE_GRACE`] late was missed (the host was down, or stalled):
//! with [`MissedFires::Skip`] nothing is started for the missed fires; with
//! [`MissedFires::RunOnce`] one instance is started for all of them, at the first missed
//! time. Either way the schedule then goes on from now. A late time whose instance
//! exists was not missed: it was started just before the host stopped, before the
//! schedule moved on; the scheduler moves past it and judges the next time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use tokio::sync::Notify;

use crate::schedules::fire_instance_id;
use crate::{now_ms, MissedFires, Persistence, ScheduleRecord};

/// How late a fire may start and still count as on time.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(2);

/// After firing, how soon the scheduler looks at the schedules again (ms): the next
/// time is stored by then, but a store that refuses to move a schedule on must not make
/// a hot loop.
const RETRY_SOON_MS: i64 = 10;

/// A schedule's times: its cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct CronTimes {
    cron: croner::Cron,
    zone: chrono_tz::Tz,
    source: String,
}

impl CronTimes {
    /// Parses `cron` and `timezone`; the error says which is wrong and why.
    pub fn parse(cron: &str, timezone: &str) -> Result<CronTimes, String> {
        let zone: chrono_tz::Tz = timezone.parse().map_err(|_| {
            format!(
                "unknown time zone `{timezone}`; use an IANA name such as `UTC` or `Europe/Berlin`"
            )
        })?;
        let source = cron.to_owned();
        let cron = croner::parser::CronParser::new()
            .parse(cron)
            .map_err(|e| format!("invalid cron expression `{cron}`: {e}"))?;
        Ok(CronTimes { cron, zone, source })
    }

    /// [`next_after`](Self::next_after) for a new schedule: an expression that names no
    /// time to come (`0 0 30 2 *`: February has no 30th) is an error.
    pub fn first_after(&self, after_ms: i64) -> Result<i64, String> {
        self.next_after(after_ms).ok_or_else(|| {
            format!(
                "cron expression `{}` names no time after now; it would never fire",
                self.source
            )
        })
    }

    /// The first fire time after `after_ms` (ms since the Unix epoch), if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = Utc.timestamp_millis_opt(after_ms).single()?;
        let local = after.with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.timestamp_millis())
    }
}

/// Why a fire's instance could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFailure {
    /// What the schedule starts (an image, a workflow) is gone: the schedule is paused,
    /// for an operator to see.
    TargetGone(String),
    /// Anything else: this fire is lost (said in the log); the schedule goes on.
    Failed(String),
}

/// What a scheduler needs of its host.
#[async_trait]
pub trait FireStarter: Send + Sync {
    /// Whether `schedule` is this scheduler's to fire.
    fn owns(&self, schedule: &ScheduleRecord) -> bool;

    /// Starts instance `instance_id` of what `schedule` starts, with its input; an
    /// instance of that id that exists already counts as started.
    async fn start_fire(
        &self,
        schedule: &ScheduleRecord,
        instance_id: &str,
    ) -> Result<(), StartFailure>;

    /// Whether the host is gone and the scheduler should stop (default: never).
    fn stopped(&self) -> bool {
        false
    }
}

/// Fires `starter`'s schedules at their times until it is [stopped](FireStarter::stopped).
/// It looks at the schedules again at the earliest next fire, after `look_again` at the
/// latest (changes made elsewhere), and at once when `changed` is notified.
pub async fn run_scheduler(
    store: Arc<dyn Persistence>,
    starter: Arc<dyn FireStarter>,
    changed: Arc<Notify>,
    look_again: Duration,
) {
    let look_again_ms = i64::try_from(look_again.as_millis()).unwrap_or(i64::MAX);
    while !starter.stopped() {
        let mut earliest = now_ms().saturating_add(look_again_ms);
        match store.list_schedules(None).await {
            Ok(schedules) => {
                for schedule in schedules.iter().filter(|s| !s.paused && starter.owns(s)) {
                    if starter.stopped() {
                        // A host that is gone fires nothing and moves nothing on: what
                        // is due stays due, for its next start to judge.
                        return;
                    }
                    let Some(due) = schedule.next_fire_ms else {
                        continue;
                    };
                    let now = now_ms();
                    if due > now {
                        earliest = earliest.min(due);
                        continue;
                    }
                    let moved =
                        fire_due(store.as_ref(), starter.as_ref(), schedule, due, &now_ms).await;
                    // Moved on: looked at again soon, its next time may be due already.
                    // Not moved (the store refused): not in a hot loop.
                    if moved {
                        earliest = earliest.min(now_ms().saturating_add(RETRY_SOON_MS));
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the schedules"),
        }
        let wait = Duration::from_millis(u64::try_from(earliest - now_ms()).unwrap_or(0));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = changed.notified() => {}
        }
    }
}

/// What a due schedule does now: fire (or not, by its missed-fires policy), then move
/// on to its next time. `clock` is the time now (ms), read when a decision needs it.
/// True when the schedule moved on (here or elsewhere), or was paused.
async fn fire_due(
    store: &dyn Persistence,
    starter: &dyn FireStarter,
    schedule: &ScheduleRecord,
    due_ms: i64,
    clock: &(dyn Fn() -> i64 + Sync),
) -> bool {
    let id = &schedule.schedule_id;
    let times = match CronTimes::parse(&schedule.cron, &schedule.timezone) {
        Ok(times) => times,
        Err(reason) => {
            tracing::warn!(schedule_id = %id, %reason, "schedule cannot be read; pausing it");
            return pause(store, id).await;
        }
    };
    let grace = i64::try_from(MISFIRE_GRACE.as_millis()).unwrap_or(i64::MAX);
    let late = clock().saturating_sub(due_ms) > grace;
    if late {
        if let Some(started_at) = started_at(store, schedule, due_ms).await {
            // Its instance exists: the host stopped (or could not move the schedule
            // on) after starting it. Started on time, it was that time's fire: move
            // past it, and the times after it are judged on the next look (so a
            // catch-up run of `run_once` is keyed by the first time truly missed, the
            // same on every host). Started late, it was the catch-up run itself: go on
            // from now.
            let next = match started_at.saturating_sub(due_ms) > grace {
                true => times.next_after(clock()),
                false => times.next_after(due_ms),
            };
            return advance(store, id, due_ms, Some(due_ms), next).await;
        }
    }
    let fire = match (late, schedule.missed) {
        (false, _) | (true, MissedFires::RunOnce) => Some(due_ms),
        (true, MissedFires::Skip) => None,
    };
    if late {
        tracing::warn!(schedule_id = %id, due_ms, now = clock(), policy = %schedule.missed, "schedule missed fires");
    }
    let mut fired = fire;
    if let Some(fire_ms) = fire {
        let instance_id = fire_instance_id(id, fire_ms);
        match starter.start_fire(schedule, &instance_id).await {
            Ok(()) => {
                let late_ms = clock() - fire_ms;
                tracing::info!(schedule_id = %id, %instance_id, late_ms, "schedule fired");
            }
            Err(StartFailure::TargetGone(reason)) => {
                tracing::warn!(schedule_id = %id, %reason, "what the schedule starts is gone; pausing it");
                return pause(store, id).await;
            }
            Err(StartFailure::Failed(reason)) => {
                tracing::warn!(schedule_id = %id, fire_ms, %reason, "schedule could not fire");
                fired = None;
            }
        }
    }
    // After the start, which may have taken a while: late, the schedule goes on from
    // the time now, or its next time could be missed already.
    let next = match late {
        true => times.next_after(clock()),
        false => times.next_after(due_ms),
    };
    advance(store, id, due_ms, fired, next).await
}

/// Moves a schedule on from `due_ms` (a compare-and-set); true unless the store failed.
async fn advance(
    store: &dyn Persistence,
    id: &str,
    due_ms: i64,
    fired: Option<i64>,
    next: Option<i64>,
) -> bool {
    match store.advance_schedule(id, due_ms, fired, next).await {
        Ok(true) => true,
        Ok(false) => {
            tracing::debug!(schedule_id = %id, "schedule moved on elsewhere");
            true
        }
        Err(error) => {
            tracing::warn!(schedule_id = %id, %error, "schedule could not move on");
            false
        }
    }
}

/// Pauses a schedule, for an operator to see; true unless the store failed.
async fn pause(store: &dyn Persistence, id: &str) -> bool {
    match store.set_schedule_paused(id, true, None).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(schedule_id = %id, %error, "schedule could not be paused");
            false
        }
    }
}

/// When the instance of `schedule`'s fire at `fire_ms` was created, if it exists (a
/// store error counts as no: the idempotent start settles it).
async fn started_at(
    store: &dyn Persistence,
    schedule: &ScheduleRecord,
    fire_ms: i64,
) -> Option<i64> {
    let instance_id = fire_instance_id(&schedule.schedule_id, fire_ms);
    match store.get_instance(&instance_id).await {
        Ok(Some(instance)) => Some(instance.created_at_ms),
        _ => None,
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

/// The fire decision against a real (in-memory SQLite) store.
#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::unwrap_used)]
mod decisions {
    use std::sync::Mutex;

    use super::*;
    use crate::{NewInstance, NewSchedule};

    /// Starts each fire's instance in the store and notes its id.
    struct Recorder {
        store: Arc<dyn Persistence>,
        fired: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl FireStarter for Recorder {
        fn owns(&self, _: &ScheduleRecord) -> bool {
            true
        }

        async fn start_fire(
            &self,
            _: &ScheduleRecord,
            instance_id: &str,
        ) -> Result<(), StartFailure> {
            self.fired
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(instance_id.to_owned());
            let new = NewInstance {
                instance_id: instance_id.to_owned(),
                tenant_id: "t".into(),
                ..NewInstance::default()
            };
            match self.store.create_instance(new).await {
                Ok(_) | Err(crate::Error::InstanceExists { .. }) => Ok(()),
                Err(error) => Err(StartFailure::Failed(error.to_string())),
            }
        }
    }

    /// A schedule every second whose next fire is `due`, and what firing it at `now`
    /// does (its instance started just now beforehand when `started_before`): the fires
    /// started and the stored schedule after.
    async fn judge(
        missed: MissedFires,
        due: i64,
        now: i64,
        started_before: bool,
    ) -> (Vec<String>, ScheduleRecord) {
        let store = crate::connect("sqlite::memory:").await.unwrap();
        let schedule = store
            .create_schedule(NewSchedule {
                schedule_id: "s".into(),
                tenant_id: "t".into(),
                image_id: "img".into(),
                cron: "* * * * * *".into(),
                timezone: "UTC".into(),
                input: None,
                missed,
                next_fire_ms: Some(due),
                runtime: None,
            })
            .await
            .unwrap();
        let recorder = Recorder {
            store: Arc::clone(&store),
            fired: Mutex::new(Vec::new()),
        };
        if started_before {
            recorder
                .start_fire(&schedule, &fire_instance_id("s", due))
                .await
                .unwrap();
            recorder.fired.lock().unwrap().clear();
        }
        let moved = fire_due(store.as_ref(), &recorder, &schedule, due, &|| now).await;
        assert!(moved);
        let after = store.get_schedule("s").await.unwrap().unwrap();
        let fired = recorder.fired.into_inner().unwrap();
        (fired, after)
    }

    /// The whole second before now: instances the test starts are created within a
    /// second after it.
    fn second() -> i64 {
        now_ms() / 1000 * 1000
    }

    #[tokio::test]
    async fn an_on_time_fire_starts_its_instance_and_moves_on_by_one() {
        let due = second();
        let (fired, after) = judge(MissedFires::Skip, due, due + 500, false).await;
        assert_eq!(fired, [fire_instance_id("s", due)]);
        assert_eq!(after.next_fire_ms, Some(due + 1000));
        assert_eq!(after.last_fire_ms, Some(due));
    }

    #[tokio::test]
    async fn missed_fires_run_once_at_the_first_or_not_at_all() {
        let (due, now) = (second() - 10_000, second() + 500);
        let (fired, after) = judge(MissedFires::RunOnce, due, now, false).await;
        assert_eq!(fired, [fire_instance_id("s", due)]);
        assert_eq!(after.next_fire_ms, Some(now + 500), "on from now");
        let (fired, after) = judge(MissedFires::Skip, due, now, false).await;
        assert!(fired.is_empty());
        assert_eq!(after.next_fire_ms, Some(now + 500));
        assert_eq!(after.last_fire_ms, None);
    }

    #[tokio::test]
    async fn a_late_time_started_on_time_before_a_crash_is_passed_over_not_missed() {
        // Started at its time; the schedule did not move on; judged 10 s later.
        let due = second();
        let (fired, after) = judge(MissedFires::RunOnce, due, due + 10_500, true).await;
        assert!(fired.is_empty(), "{fired:?}");
        // The next look judges the time after it: the first one truly missed.
        assert_eq!(after.next_fire_ms, Some(due + 1000));
        assert_eq!(after.last_fire_ms, Some(due));
    }

    #[tokio::test]
    async fn a_catch_up_run_started_elsewhere_is_not_run_again() {
        // A catch-up run for a time 10 s ago, started now (by another host, or by this
        // one before the store refused to move the schedule on): the schedule goes on
        // from now, with no second catch-up.
        let (due, now) = (second() - 10_000, second() + 500);
        let (fired, after) = judge(MissedFires::RunOnce, due, now, true).await;
        assert!(fired.is_empty(), "{fired:?}");
        assert_eq!(after.next_fire_ms, Some(now + 500));
        assert_eq!(after.last_fire_ms, Some(due));
    }
}
