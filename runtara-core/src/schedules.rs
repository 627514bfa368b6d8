//! Schedules: what the store keeps of them. The times are the server's to compute (a
//! cron expression in a time zone); the store keeps the next fire time and moves it on
//! with a compare-and-set, so that two servers never both fire one occurrence.

pub use runtara_protocol::MissedFires;

use crate::{Error, Result};

/// A schedule to store ([`Persistence::create_schedule`](crate::Persistence::create_schedule)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    /// Unique id.
    pub schedule_id: String,
    /// Owner.
    pub tenant_id: String,
    /// The image each fire starts an instance of (a workflow's name for a runtime's
    /// schedule).
    pub image_id: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in (an IANA name).
    pub timezone: String,
    /// Each instance's start input (JSON bytes).
    pub input: Option<Vec<u8>>,
    /// What to do with missed fires.
    pub missed: MissedFires,
    /// The first fire time (ms since the Unix epoch).
    pub next_fire_ms: Option<i64>,
    /// The in-process runtime that fires it, its `image_id` then naming one of that
    /// runtime's workflows; `None` for a server's schedule.
    pub runtime: Option<String>,
}

/// A stored schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    /// Unique id.
    pub schedule_id: String,
    /// Owner.
    pub tenant_id: String,
    /// The image each fire starts an instance of (a workflow's name for a runtime's
    /// schedule).
    pub image_id: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// Each instance's start input (JSON bytes).
    pub input: Option<Vec<u8>>,
    /// What to do with missed fires.
    pub missed: MissedFires,
    /// Paused: no fires until resumed.
    pub paused: bool,
    /// The next fire time; `None` while paused.
    pub next_fire_ms: Option<i64>,
    /// The last fire that started an instance.
    pub last_fire_ms: Option<i64>,
    /// When it was created.
    pub created_at_ms: i64,
    /// The in-process runtime that fires it (`image_id` then names a workflow of it);
    /// `None` for a server's schedule.
    pub runtime: Option<String>,
}

/// The id of the instance that the fire of `schedule_id` at `fire_ms` starts: the same
/// for every server and every retry, so a fire starts at most one instance.
pub fn fire_instance_id(schedule_id: &str, fire_ms: i64) -> String {
    format!("sched-{schedule_id}-{fire_ms}")
}

pub(crate) fn parse_missed(raw: &str) -> Result<MissedFires> {
    raw.parse()
        .map_err(|_| Error::Corrupt(format!("unknown missed fires policy `{raw}`")))
}
