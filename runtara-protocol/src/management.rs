//! Requests of operator tools on the management endpoint, and the server's responses.
//!
//! A management connection says hello with [`Role::Management`](crate::Role::Management)
//! (and a token when the server requires one); then every request uses a stream of its
//! own: one [`ManagementRequest`] frame, one [`ManagementResponse`] frame. The one
//! exception is [`ManagementRequest::RegisterImage`]: after its frame the client writes
//! the image's bytes, raw, `size_bytes` of them, and finishes the stream; the server
//! streams them to disk, checks size and SHA-256, and answers.
//!
//! Calls that name an instance or image by id do not carry a tenant: the server checks
//! that the thing belongs to a tenant the caller may act for (every tenant when no
//! tokens are configured). Another tenant's instance or image is reported as not found.
//!
//! New variants are appended, never inserted, so that existing ones keep their wire index.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{WireError, WireSignalType};

/// A request from an operator tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagementRequest {
    /// Is the server there? Answered by [`ManagementResponse::Pong`].
    Ping,
    /// Status of one instance. Answered by [`ManagementResponse::Instance`].
    GetInstanceStatus {
        /// The instance.
        instance_id: String,
    },
    /// Uploads an image; the raw bytes follow the frame on the same stream. Answered by
    /// [`ManagementResponse::Image`].
    RegisterImage {
        /// The owner.
        tenant_id: String,
        /// The image name; each registration of a name is a new version.
        name: String,
        /// Free text.
        description: Option<String>,
        /// Exactly how many bytes follow.
        size_bytes: u64,
        /// Lowercase hex SHA-256 of the bytes; the server refuses a mismatch.
        sha256: String,
    },
    /// A tenant's images, newest first. Answered by [`ManagementResponse::Images`].
    ListImages {
        /// The tenant.
        tenant_id: String,
    },
    /// One image. Answered by [`ManagementResponse::Image`].
    GetImage {
        /// The image.
        image_id: String,
    },
    /// Deletes an image no unfinished instance uses. Answered by
    /// [`ManagementResponse::Done`].
    DeleteImage {
        /// The image.
        image_id: String,
    },
    /// Starts an instance of an image. Answered by [`ManagementResponse::Started`].
    StartInstance {
        /// The image to run (pinned for the instance's whole life).
        image_id: String,
        /// The tenant; must own the image.
        tenant_id: String,
        /// The instance id to use; starting the same id again with the same image and
        /// tenant is idempotent. `None`: the server picks one.
        instance_id: Option<String>,
        /// Start input, JSON text (validated by the server).
        input: Option<ByteBuf>,
        /// Kill the run and mark it failed after this many milliseconds (none by default).
        timeout_ms: Option<u64>,
    },
    /// A page of a tenant's instances, newest first. Answered by
    /// [`ManagementResponse::Instances`], whose instances leave out what costs in
    /// proportion to their history or size: `output`, `checkpoint_id` and `log_tail` are
    /// `None`, `checkpoint_count` and `launches` 0, and `error` is cut to its first 1024
    /// characters (`GetInstanceStatus` has them whole). A page costs O(page), and holds
    /// at most [`MAX_INSTANCES_PER_PAGE`]; `total` tells how many match in all.
    ListInstances {
        /// The tenant.
        tenant_id: String,
        /// Only this status.
        status: Option<crate::InstanceStatus>,
        /// At most this many (`None`, or more than [`MAX_INSTANCES_PER_PAGE`]:
        /// [`MAX_INSTANCES_PER_PAGE`]).
        limit: Option<u32>,
        /// Skip this many first.
        offset: u32,
    },
    /// Pause, resume or cancel. Answered by [`ManagementResponse::Signalled`].
    SendSignal {
        /// The instance.
        instance_id: String,
        /// What to do.
        signal: WireSignalType,
    },
    /// An instance's events, oldest first. Answered by [`ManagementResponse::Events`].
    ListEvents {
        /// The instance.
        instance_id: String,
    },
    /// An instance's checkpoints, in the order recorded. Answered by
    /// [`ManagementResponse::Checkpoints`].
    ListCheckpoints {
        /// The instance.
        instance_id: String,
    },
    /// Server health. Answered by [`ManagementResponse::Health`].
    Health,
    /// One page of an instance's checkpoints, in the order recorded: those after
    /// `after_seq` (`0` for the first page), at most
    /// [`REPLAY_PAGE_BYTES`](crate::REPLAY_PAGE_BYTES) of them and at least one.
    /// Answered by [`ManagementResponse::CheckpointPage`]. (`ListCheckpoints` answers
    /// all of them in one frame and fails when they do not fit.)
    ListCheckpointsPage {
        /// The instance.
        instance_id: String,
        /// Where the page starts: `0`, then the previous page's `more_after`.
        after_seq: i64,
    },
    /// Lets a durable call that failed for good run again: clears its recorded failure
    /// and its retry count. The instance must not have finished. Answered by
    /// [`ManagementResponse::Done`]; `not_found` when no failure is recorded for it.
    RetryStep {
        /// The instance.
        instance_id: String,
        /// The durable call's checkpoint id (`"{fn_name}::{key}"`).
        checkpoint_id: String,
    },
    /// One page of an instance's events, oldest first: those after `after_event_id`
    /// (`0` for the first page), at most `limit` of them (at most and by default
    /// [`MAX_EVENTS_PER_PAGE`]) and at most [`REPLAY_PAGE_BYTES`](crate::REPLAY_PAGE_BYTES)
    /// of them, but at least one when any follow. Answered by
    /// [`ManagementResponse::EventPage`]. (`ListEvents` answers all of them in one frame
    /// and fails when they do not fit.)
    ListEventsPage {
        /// The instance.
        instance_id: String,
        /// Where the page starts: `0`, then the previous page's `more_after`.
        after_event_id: i64,
        /// At most this many events (`None`: [`MAX_EVENTS_PER_PAGE`]).
        limit: Option<u32>,
    },
    /// Where an instance's launch waits for a slot (admission control), and how full
    /// the server is. Answered by [`ManagementResponse::QueuePlace`].
    GetQueuePlace {
        /// The instance.
        instance_id: String,
    },
    /// Runs an image's instances in worker processes from now on (`Some`), or one
    /// process each (`None`). Answered by [`ManagementResponse::Done`].
    SetImageWorkers {
        /// The image.
        image_id: String,
        /// The pool.
        workers: Option<WireWorkerPool>,
    },
    /// Waits until the instance is finished (completed, failed or cancelled) — with
    /// `or_suspended`, or suspended — then answers [`ManagementResponse::Instance`] with
    /// its status. A long poll: the server answers sooner, with the status then, when
    /// `timeout_ms` or its own cap ([`MAX_WAIT_MS`]) passes; the client asks again.
    WaitForCompletion {
        /// The instance.
        instance_id: String,
        /// The longest the server is to wait before answering.
        timeout_ms: u64,
        /// Answer at a suspension too (a paused instance waits for a resume).
        or_suspended: bool,
    },
    /// Sends an external event to an instance: the first `wait_for_event` for `name`
    /// takes it (events of one name are taken in the order sent, each once). Answered by
    /// [`ManagementResponse::EventSent`]; a finished or unknown instance, or a payload
    /// over [`MAX_EVENT_PAYLOAD_LEN`](crate::MAX_EVENT_PAYLOAD_LEN), is an error and
    /// stores nothing.
    SendEvent {
        /// The instance.
        instance_id: String,
        /// The event's name.
        name: String,
        /// Its payload (JSON text from the SDK).
        payload: ByteBuf,
        /// A send repeated with the same key is a no-op (per instance).
        idempotency_key: Option<String>,
    },
    /// The value an instance published under `key` (`set_value`). With `wait_ms` > 0 and
    /// no value yet, the server waits up to that long (capped at [`MAX_WAIT_MS`]) for one.
    /// Answered by [`ManagementResponse::Value`].
    GetValue {
        /// The instance.
        instance_id: String,
        /// The value's key.
        key: String,
        /// How long to wait for a value that is not set yet; 0: answer at once.
        wait_ms: u64,
    },
    /// Creates a schedule: an instance of `image_id` is started at each time the cron
    /// expression names in `timezone`. Answered by [`ManagementResponse::Schedule`].
    CreateSchedule {
        /// Its id; the server picks one when `None`.
        schedule_id: Option<String>,
        /// The owner (the image's tenant).
        tenant_id: String,
        /// The image each fire starts.
        image_id: String,
        /// The cron expression (5 fields, or 6 with seconds first).
        cron: String,
        /// An IANA time zone name (`UTC`, `Europe/Berlin`).
        timezone: String,
        /// Each instance's start input (JSON text).
        input: Option<ByteBuf>,
        /// Missed fires: `skip` or `run_once`.
        missed: String,
    },
    /// A tenant's schedules. Answered by [`ManagementResponse::Schedules`].
    ListSchedules {
        /// The tenant.
        tenant_id: String,
    },
    /// Deletes a schedule (the instances it started stay). Answered by
    /// [`ManagementResponse::Done`].
    DeleteSchedule {
        /// The schedule.
        schedule_id: String,
    },
    /// Pauses (no fires) or resumes a schedule. Answered by
    /// [`ManagementResponse::Schedule`].
    SetSchedulePaused {
        /// The schedule.
        schedule_id: String,
        /// Pause (true) or resume (false).
        paused: bool,
    },
    /// The event a `waiting` instance waits for. Answered by
    /// [`ManagementResponse::WaitingFor`].
    GetWaitingFor {
        /// The instance.
        instance_id: String,
    },
}

/// What a schedule does with the fires it missed (its server or runtime was down, or
/// late). On the wire as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MissedFires {
    /// Start nothing for them; carry on with the next fire.
    Skip,
    /// Start one instance for all of them (at the first missed time), then carry on.
    #[default]
    RunOnce,
}

impl MissedFires {
    /// The name stored and shown: `skip` or `run_once`.
    pub fn as_str(self) -> &'static str {
        match self {
            MissedFires::Skip => "skip",
            MissedFires::RunOnce => "run_once",
        }
    }
}

impl std::fmt::Display for MissedFires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`MissedFires`] policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missed fires policy `{0}` is neither `skip` nor `run_once`")]
pub struct UnknownMissedFires(pub String);

impl std::str::FromStr for MissedFires {
    type Err = UnknownMissedFires;

    /// `skip`, `run_once` (or `run-once`).
    fn from_str(s: &str) -> Result<MissedFires, UnknownMissedFires> {
        match s {
            "skip" => Ok(MissedFires::Skip),
            "run_once" | "run-once" => Ok(MissedFires::RunOnce),
            other => Err(UnknownMissedFires(other.to_owned())),
        }
    }
}

/// A schedule as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSchedule {
    /// Its id.
    pub schedule_id: String,
    /// The owner.
    pub tenant_id: String,
    /// The image each fire starts.
    pub image_id: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// Each instance's start input.
    pub input: Option<ByteBuf>,
    /// Missed fires: `skip` or `run_once`.
    pub missed: String,
    /// Paused.
    pub paused: bool,
    /// The next fire (ms since the Unix epoch); `None` while paused.
    pub next_fire_ms: Option<i64>,
    /// The last fire that started an instance.
    pub last_fire_ms: Option<i64>,
    /// When it was created.
    pub created_at_ms: i64,
}

/// The longest one [`ManagementRequest::WaitForCompletion`] waits on the server before
/// it answers with the status then (5 minutes): a client that waits longer asks again.
pub const MAX_WAIT_MS: u64 = 5 * 60 * 1000;

/// How an image's instances run in worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireWorkerPool {
    /// Workers kept running even with nothing to do (not acted on yet).
    pub min: u32,
    /// Workers at most.
    pub max: u32,
    /// Instances one worker runs at once.
    pub instances: u32,
}

/// Most instances in one [`ManagementResponse::Instances`], and how many come when the
/// request sets no limit.
pub const MAX_INSTANCES_PER_PAGE: u32 = 1000;

/// Most events in one [`ManagementResponse::EventPage`], and how many come when the
/// request sets no limit.
pub const MAX_EVENTS_PER_PAGE: u32 = 1000;

/// One instance as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireInstance {
    /// The instance id.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The image it runs.
    pub image_id: Option<String>,
    /// Its lifecycle status.
    pub status: crate::InstanceStatus,
    /// When it was created.
    pub created_at_ms: i64,
    /// When a process first registered it.
    pub started_at_ms: Option<i64>,
    /// When it finished.
    pub finished_at_ms: Option<i64>,
    /// Output given to `completed`.
    pub output: Option<ByteBuf>,
    /// Error of a failed instance.
    pub error: Option<String>,
    /// Last checkpoint id.
    pub checkpoint_id: Option<String>,
    /// Checkpoints recorded.
    pub checkpoint_count: i64,
    /// Last heartbeat.
    pub heartbeat_at_ms: Option<i64>,
    /// Wake time of a durable sleep.
    pub wake_at_ms: Option<i64>,
    /// How many times a server launched a process for it, across server restarts (counted
    /// from its stored `launched` events).
    pub launches: u32,
    /// The tail of the last process's stdout and stderr (its `output.log`), if it printed.
    pub log_tail: Option<String>,
}

/// One image as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireImage {
    /// The image id.
    pub image_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Version of the name (1, 2, …).
    pub version: i64,
    /// Free text.
    pub description: Option<String>,
    /// Lowercase hex SHA-256 of the binary.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// When it was registered.
    pub created_at_ms: i64,
}

/// One event of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEvent {
    /// Increasing id.
    pub event_id: i64,
    /// What it records.
    pub kind: crate::EventKind,
    /// Subtype.
    pub subtype: Option<String>,
    /// Payload bytes.
    pub payload: Option<ByteBuf>,
    /// When it was stored.
    pub created_at_ms: i64,
}

/// One checkpoint of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCheckpoint {
    /// Its id.
    pub checkpoint_id: String,
    /// The bytes stored.
    pub state: ByteBuf,
    /// When it was stored.
    pub created_at_ms: i64,
    /// Wake time, for a durable sleep's checkpoint.
    pub wake_at_ms: Option<i64>,
}

/// The server's response to a [`ManagementRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagementResponse {
    /// Reply to `Ping`.
    Pong {
        /// Server name and version (`runtara-server/1.0.0`).
        server: String,
        /// The server's clock, milliseconds since the Unix epoch.
        server_time_ms: i64,
    },
    /// One instance.
    Instance(WireInstance),
    /// The request failed.
    Error(WireError),
    /// One image.
    Image(WireImage),
    /// Images.
    Images(Vec<WireImage>),
    /// Done; nothing to report.
    Done,
    /// Reply to `StartInstance`.
    Started {
        /// The instance id.
        instance_id: String,
        /// False when the instance existed already (an idempotent repeat).
        created: bool,
    },
    /// Reply to `ListInstances`.
    Instances {
        /// This page.
        instances: Vec<WireInstance>,
        /// How many matched in all.
        total: u64,
    },
    /// Reply to `SendSignal`.
    Signalled {
        /// The instance's status after the signal.
        status: crate::InstanceStatus,
        /// True when the signal took effect at once (no process was running it); false
        /// when it is queued for the running process.
        applied: bool,
    },
    /// Reply to `ListEvents`.
    Events(Vec<WireEvent>),
    /// Reply to `ListCheckpoints`.
    Checkpoints(Vec<WireCheckpoint>),
    /// Reply to `Health`.
    Health {
        /// Server name and version.
        server: String,
        /// Database backend (`sqlite`, `postgres`).
        database: String,
        /// Seconds since the server started.
        uptime_s: u64,
        /// Instance processes this server is running.
        running_processes: u32,
    },
    /// Reply to `ListCheckpointsPage`.
    CheckpointPage {
        /// The checkpoints of this page.
        checkpoints: Vec<WireCheckpoint>,
        /// `Some(seq)`: more checkpoints follow; ask again with `after_seq: seq`.
        more_after: Option<i64>,
    },
    /// Reply to `ListEventsPage`.
    EventPage {
        /// The events of this page, oldest first.
        events: Vec<WireEvent>,
        /// `Some(event_id)`: more events follow; ask again with `after_event_id: event_id`.
        more_after: Option<i64>,
    },
    /// Reply to `GetQueuePlace`.
    QueuePlace {
        /// 1 for the next launch in line; `None` when the instance's launch does not
        /// wait (it runs, or has no launch ahead).
        position: Option<u64>,
        /// Launches waiting for a slot, in all.
        waiting: u64,
        /// Instance processes holding a slot.
        running: u64,
        /// The server's `--max-running`.
        max_running: u64,
    },
    /// Reply to `SendEvent`.
    EventSent {
        /// The event's number among the instance's events (the first send's, for a send
        /// repeated with its idempotency key).
        seq: i64,
        /// A send with this idempotency key was stored before; nothing changed.
        duplicate: bool,
    },
    /// Reply to `GetValue`.
    Value {
        /// The value, if one is set.
        value: Option<ByteBuf>,
    },
    /// One schedule.
    Schedule(WireSchedule),
    /// Reply to `ListSchedules`, oldest first.
    Schedules(Vec<WireSchedule>),
    /// Reply to `GetWaitingFor`.
    WaitingFor {
        /// The event's name; `None` when the instance is not `waiting`.
        name: Option<String>,
    },
}
