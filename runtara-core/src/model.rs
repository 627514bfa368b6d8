//! Records and enums stored by the engine.
//!
//! Times are milliseconds since the Unix epoch (UTC), the same in every backend.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use runtara_protocol::{EventKind, InstanceStatus, ParseStatusError};

/// A control signal for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalType {
    /// Stop for good at the next checkpoint.
    Cancel,
    /// Stop at the next checkpoint; resume later from it.
    Pause,
    /// Resume a paused instance.
    Resume,
}

impl SignalType {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalType::Cancel => "cancel",
            SignalType::Pause => "pause",
            SignalType::Resume => "resume",
        }
    }
}

impl fmt::Display for SignalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignalType {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cancel" => Ok(SignalType::Cancel),
            "pause" => Ok(SignalType::Pause),
            "resume" => Ok(SignalType::Resume),
            other => Err(crate::Error::Corrupt(format!(
                "unknown signal type `{other}`"
            ))),
        }
    }
}

/// A signal waiting in an instance's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingSignal {
    /// Database id of the signal (increasing per backend).
    pub signal_id: i64,
    /// What is asked.
    pub signal_type: SignalType,
    /// When it was queued.
    pub created_at_ms: i64,
}

/// What [`Persistence::send_signal`](crate::Persistence::send_signal) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignalOutcome {
    /// Queued; the running instance sees it at its next checkpoint.
    Queued(PendingSignal),
    /// No process was running it, so the signal took effect at once;
    /// the instance is now in this status.
    Applied(InstanceStatus),
}

/// One instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Unique id of the instance.
    pub instance_id: String,
    /// Tenant that owns it.
    pub tenant_id: String,
    /// Image it runs (None for embedded instances).
    pub image_id: Option<String>,
    /// Current status.
    pub status: InstanceStatus,
    /// Run generation; every register increments it and fences older runs out.
    pub epoch: i64,
    /// Start input (JSON bytes), if any.
    pub input: Option<Vec<u8>>,
    /// Output given to `completed`.
    pub output: Option<Vec<u8>>,
    /// Error given to `failed` (or set by the server).
    pub error: Option<String>,
    /// Id of the last checkpoint recorded.
    pub checkpoint_id: Option<String>,
    /// Number of checkpoints recorded.
    pub checkpoint_count: i64,
    /// When the instance was created.
    pub created_at_ms: i64,
    /// When a process first registered it.
    pub started_at_ms: Option<i64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<i64>,
    /// Last heartbeat (checkpoints count as heartbeats).
    pub heartbeat_at_ms: Option<i64>,
    /// Wake time of the current durable sleep, if any.
    pub wake_at_ms: Option<i64>,
}

/// A running instance's latest sign of life, for a supervisor's periodic liveness check
/// ([`Persistence::list_running`](crate::Persistence::list_running)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Liveness {
    /// Unique id of the instance.
    pub instance_id: String,
    /// Image it runs (None for embedded instances).
    pub image_id: Option<String>,
    /// Last heartbeat (checkpoints count as heartbeats), as in [`InstanceRecord`].
    pub heartbeat_at_ms: Option<i64>,
    /// When a process first registered it.
    pub started_at_ms: Option<i64>,
    /// When the instance was created.
    pub created_at_ms: i64,
}

/// Arguments for creating an instance ahead of its process (the server does this).
#[derive(Debug, Clone, Default)]
pub struct NewInstance {
    /// Unique id.
    pub instance_id: String,
    /// Owner.
    pub tenant_id: String,
    /// Image it runs.
    pub image_id: Option<String>,
    /// Start input (JSON bytes).
    pub input: Option<Vec<u8>>,
    /// Created registered (`running`, epoch 1, with its `registered` event): the server
    /// took a slot for its first run, which then needs no register of its own and has
    /// nothing to replay. `false`: created `pending`.
    pub run_now: bool,
    /// The instance that started it (`start_child`): told when this one ends (the event
    /// `child:<id>` in its inbox), and cancelling it cancels this one.
    pub parent_id: Option<String>,
    /// A child that is not cancelled with its parent (it still tells it when it ends).
    pub detached: bool,
}

/// Arguments for starting an instance of an in-process runtime
/// ([`Persistence::start_runtime_instance`](crate::Persistence::start_runtime_instance)).
#[derive(Debug, Clone, Default)]
pub struct NewRuntimeInstance {
    /// Unique id; starting an id that exists starts nothing.
    pub instance_id: String,
    /// Owner.
    pub tenant_id: String,
    /// The runtime that runs it (recovers it after a restart).
    pub runtime: String,
    /// The workflow it runs: a name the runtime knows.
    pub workflow: String,
    /// Start input (JSON bytes).
    pub input: Vec<u8>,
    /// Registered at once (`running`, epoch 1), because the runtime has a free slot for
    /// it; otherwise created `pending`, to be registered when a slot frees up.
    pub run_now: bool,
    /// The instance that started it (see [`NewInstance::parent_id`]).
    pub parent_id: Option<String>,
    /// Not cancelled with its parent (see [`NewInstance::detached`]).
    pub detached: bool,
}

/// An instance as its in-process runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInstance {
    /// Unique id.
    pub instance_id: String,
    /// Owner.
    pub tenant_id: String,
    /// The runtime that owns it; `None` when no runtime started it.
    pub runtime: Option<String>,
    /// The workflow it runs; `None` when no runtime started it.
    pub workflow: Option<String>,
    /// Current status.
    pub status: InstanceStatus,
    /// Start input (JSON bytes).
    pub input: Option<Vec<u8>>,
    /// Output given to `completed`.
    pub output: Option<Vec<u8>>,
    /// Error given to `failed`.
    pub error: Option<String>,
}

/// What [`Persistence::start_runtime_instance`](crate::Persistence::start_runtime_instance)
/// did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeStart {
    /// Created: registered with this epoch when it was to run now, else `pending` (0).
    Created {
        /// 1 when registered at once, 0 when created `pending`.
        epoch: i64,
    },
    /// The id was taken: nothing changed; here is what holds it.
    Existing(RuntimeInstance),
}

/// What [`Persistence::register_instance`](crate::Persistence::register_instance) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The epoch this run holds; pass it to every write.
    pub epoch: i64,
    /// True when the instance did not exist before.
    pub created: bool,
    /// Status before the register (None when created).
    pub previous_status: Option<InstanceStatus>,
}

/// What a checkpoint save returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointOutcome {
    /// The state recorded earlier under this id; `None` when this call stored it.
    pub existing_state: Option<Vec<u8>>,
    /// The function that recorded the earlier state, when it said (see
    /// [`Persistence::save_step`](crate::Persistence::save_step)).
    pub existing_producer: Option<String>,
    /// The highest-priority pending signal (cancel outranks pause).
    pub signal: Option<PendingSignal>,
}

/// What a sleep save returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SleepOutcome {
    /// The wake time in force: the one stored earlier under this id, else the new one.
    pub wake_at_ms: i64,
    /// The state recorded earlier under this id; `None` when this call stored it.
    pub existing_state: Option<Vec<u8>>,
    /// The highest-priority pending signal.
    pub signal: Option<PendingSignal>,
}

/// Everything a restarted run needs to replay its recorded steps in memory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayLog {
    /// Every checkpoint, in the order it was recorded.
    pub checkpoints: Vec<(String, Vec<u8>)>,
    /// For each checkpoint id with retries, the highest attempt number recorded.
    pub retry_attempts: Vec<(String, u32)>,
    /// When the last retry of each entry of `retry_attempts` was recorded, in the same
    /// order (a restart waits only what is left of its delay); may be empty.
    pub retry_at_ms: Vec<i64>,
    /// The steps that failed for good: `(checkpoint id, error)`.
    pub failures: Vec<(String, String)>,
    /// The function that recorded each checkpoint, when it said.
    pub producers: Producers,
    /// `Some(seq)` when this is one page of a longer log: the rest follows the
    /// checkpoint with this sequence number (ask with
    /// [`Persistence::load_replay_page`](crate::Persistence::load_replay_page)).
    /// `None` when the log is whole.
    pub more_after: Option<i64>,
}

impl ReplayLog {
    /// A page of the replay log made of a page of checkpoint records.
    pub(crate) fn from_page(records: Vec<CheckpointRecord>, more_after: Option<i64>) -> ReplayLog {
        let mut producers = Producers::default();
        let mut checkpoints = Vec::with_capacity(records.len());
        for record in records {
            producers.push(record.producer.as_deref());
            checkpoints.push((record.checkpoint_id, record.state));
        }
        ReplayLog {
            checkpoints,
            producers,
            more_after,
            ..ReplayLog::default()
        }
    }
}

/// Which function recorded each checkpoint of a replay log, each name held once (a log
/// has many checkpoints and few functions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Producers {
    /// The distinct functions, by their identity (module path).
    pub names: Vec<String>,
    /// For each checkpoint of the log, in its order, the index in `names` of the function
    /// that recorded it; `None` when it did not say. Shorter than the log when the last
    /// checkpoints did not say.
    pub of: Vec<Option<u32>>,
}

impl Producers {
    /// Appends the producer of the log's next checkpoint.
    pub fn push(&mut self, producer: Option<&str>) {
        let index = producer.map(|name| self.index_of(name));
        self.of.push(index);
    }

    /// The producer of checkpoint `n` of the log.
    pub fn get(&self, n: usize) -> Option<&str> {
        let index = (*self.of.get(n)?)?;
        self.names.get(index as usize).map(String::as_str)
    }

    /// Appends the producers of the next page of the log, whose checkpoints follow the
    /// `count` checkpoints this one describes.
    pub fn extend(&mut self, count: usize, page: Producers) {
        if page.of.iter().all(Option::is_none) {
            return;
        }
        self.of.resize(count, None);
        let offset = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.extend(page.names);
        self.of.extend(
            page.of
                .into_iter()
                .map(|i| i.map(|i| i.saturating_add(offset))),
        );
    }

    fn index_of(&mut self, name: &str) -> u32 {
        // Consecutive checkpoints are mostly one function's: look back from the end.
        if let Some(found) = self.names.iter().rposition(|known| known == name) {
            return u32::try_from(found).unwrap_or(u32::MAX);
        }
        self.names.push(name.to_owned());
        u32::try_from(self.names.len() - 1).unwrap_or(u32::MAX)
    }
}

/// One page of an instance's checkpoints, in the order they were recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointPage {
    /// The checkpoints of this page.
    pub checkpoints: Vec<CheckpointRecord>,
    /// `Some(seq)` when more checkpoints follow the one with this sequence number.
    pub more_after: Option<i64>,
}

/// One stored checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Its id.
    pub checkpoint_id: String,
    /// The bytes stored.
    pub state: Vec<u8>,
    /// When it was stored.
    pub created_at_ms: i64,
    /// Wake time, when the checkpoint was saved by a durable sleep.
    pub wake_at_ms: Option<i64>,
    /// The function that recorded it (its module path), for a durable call's result.
    pub producer: Option<String>,
}

/// One page of an instance's events, oldest first
/// ([`Persistence::list_events_page`](crate::Persistence::list_events_page)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventPage {
    /// The events of this page.
    pub events: Vec<EventRecord>,
    /// `Some(event_id)` when more events follow the one with this id.
    pub more_after: Option<i64>,
}

/// Bytes one event counts for in a page of events: its payload, kind and subtype, and
/// [`EVENT_OVERHEAD`] for the rest (both backends count the same way).
pub fn event_page_bytes(event: &EventRecord) -> usize {
    event.payload.as_ref().map_or(0, Vec::len)
        + event.kind.as_str().len()
        + event.subtype.as_ref().map_or(0, String::len)
        + EVENT_OVERHEAD
}

/// What an event counts for in a page besides its payload, kind and subtype (its id and
/// time, and the encoding's framing, with room to spare).
pub const EVENT_OVERHEAD: usize = 32;

/// Bounds on the custom events one instance records
/// ([`Persistence::record_custom_event`](crate::Persistence::record_custom_event)).
///
/// The field names are those of the server settings that set them
/// (`--max-event-bytes`, `--max-events-per-instance`, `--max-event-bytes-per-instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventQuota {
    /// Largest payload of one custom event, in bytes.
    pub max_event_bytes: u64,
    /// Custom events one instance may record.
    pub max_events_per_instance: u64,
    /// Bytes of custom event payloads one instance may record.
    pub max_event_bytes_per_instance: u64,
}

impl EventQuota {
    /// No bound (embedded runs, whose events only their own process writes). A finished
    /// instance still records none.
    pub const UNLIMITED: EventQuota = EventQuota {
        max_event_bytes: u64::MAX,
        max_events_per_instance: u64::MAX,
        max_event_bytes_per_instance: u64::MAX,
    };
}

impl Default for EventQuota {
    /// 64 KiB per event, 10,000 events and 64 MiB per instance: what the server uses
    /// unless told otherwise.
    fn default() -> Self {
        EventQuota {
            max_event_bytes: 64 * 1024,
            max_events_per_instance: 10_000,
            max_event_bytes_per_instance: 64 * 1024 * 1024,
        }
    }
}

/// Characters of an instance's error shown in a listing
/// ([`Persistence::list_instances_brief`](crate::Persistence::list_instances_brief));
/// reading the instance shows it whole.
pub const MAX_LISTED_ERROR_CHARS: usize = 1024;

/// Longest custom event subtype, in bytes.
pub const MAX_EVENT_SUBTYPE_LEN: usize = 256;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Database id (increasing).
    pub event_id: i64,
    /// What it records.
    pub kind: EventKind,
    /// Subtype (the custom event's subtype, the signal's type, …).
    pub subtype: Option<String>,
    /// Payload bytes.
    pub payload: Option<Vec<u8>>,
    /// When it was stored.
    pub created_at_ms: i64,
}

/// One recorded retry attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryAttemptRecord {
    /// The durable call's checkpoint id.
    pub checkpoint_id: String,
    /// 1-based retry number.
    pub attempt: u32,
    /// Error of the attempt before it.
    pub error: Option<String>,
    /// When it was recorded.
    pub created_at_ms: i64,
}

/// Filter for listing instances.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only this tenant's instances (required by the management side).
    pub tenant_id: String,
    /// Only instances in this status.
    pub status: Option<InstanceStatus>,
    /// At most this many (None: no limit).
    pub limit: Option<u32>,
    /// Skip this many first (ordered by creation time, newest first).
    pub offset: u32,
}

/// A page of instances and the total count that matched.
#[derive(Debug, Clone, Default)]
pub struct InstancePage {
    /// The instances of this page.
    pub instances: Vec<InstanceRecord>,
    /// How many matched the filter in all.
    pub total: u64,
}

/// Current time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A registered workflow image: one version of a named binary of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Unique id (`img-…`).
    pub image_id: String,
    /// Owner.
    pub tenant_id: String,
    /// Name given at registration; each registration of a name is a new version.
    pub name: String,
    /// 1 for the first registration of `name` by this tenant, then 2, 3, ….
    pub version: i64,
    /// Free text given at registration.
    pub description: Option<String>,
    /// Lowercase hex SHA-256 of the binary; the binary is stored under this name.
    pub sha256: String,
    /// Size of the binary in bytes.
    pub size_bytes: i64,
    /// When it was registered.
    pub created_at_ms: i64,
    /// Runs its instances in worker processes, so; `None`: one process per instance.
    #[serde(default)]
    pub workers: Option<WorkerPool>,
}

/// How a server runs an image's instances in worker processes: long-lived processes of
/// the image, each hosting up to `instances` instances at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerPool {
    /// Workers kept running even with nothing to do (stored; not acted on yet: workers
    /// start as runs need them).
    pub min: u32,
    /// Workers at most.
    pub max: u32,
    /// Instances one worker runs at once.
    pub instances: u32,
}

impl WorkerPool {
    /// Refuses a pool that cannot run anything: `max` and `instances` at least 1, `min`
    /// at most `max`.
    pub fn check(&self) -> Result<(), String> {
        if self.max == 0 || self.instances == 0 {
            return Err(
                "a worker pool needs at least one worker and one instance per worker".into(),
            );
        }
        if self.min > self.max {
            return Err(format!(
                "a worker pool's minimum ({}) is above its maximum ({})",
                self.min, self.max
            ));
        }
        Ok(())
    }
}

/// Arguments for registering an image (the binary itself is stored by the server).
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Unique id chosen by the server.
    pub image_id: String,
    /// Owner.
    pub tenant_id: String,
    /// Name; the version is the next free one for `(tenant_id, name)`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Lowercase hex SHA-256 of the binary.
    pub sha256: String,
    /// Size of the binary in bytes.
    pub size_bytes: i64,
}

/// What [`Persistence::delete_image`](crate::Persistence::delete_image) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedImage {
    /// The deleted image.
    pub image: ImageRecord,
    /// Whether another image row still uses the same binary (then keep the file).
    pub binary_still_used: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_hold_each_name_once_and_pages_join_up() {
        let mut first = Producers::default();
        for name in [Some("a::f"), Some("a::f"), None, Some("a::g"), Some("a::f")] {
            first.push(name);
        }
        assert_eq!(first.names, ["a::f", "a::g"]);
        let mut second = Producers::default();
        second.push(Some("a::g"));
        second.push(Some("b::h"));
        first.extend(5, second);
        let all: Vec<_> = (0..8).map(|n| first.get(n)).collect();
        assert_eq!(
            all,
            [
                Some("a::f"),
                Some("a::f"),
                None,
                Some("a::g"),
                Some("a::f"),
                Some("a::g"),
                Some("b::h"),
                None
            ]
        );
        // A page after checkpoints that named none.
        let mut none = Producers::default();
        let mut page = Producers::default();
        page.push(Some("c::k"));
        none.extend(3, page);
        assert_eq!((none.get(2), none.get(3)), (None, Some("c::k")));
    }
}
