//! Requests an instance makes and the server's responses.
//!
//! The instance's identity (instance id, tenant id, credential) is bound to the
//! connection by the [`Hello`](crate::Hello); every write carries the run's `epoch`
//! (returned by `Register`), so the server keeps no session: a reconnect after a server
//! restart needs nothing but a new hello, and a fenced-out run is refused with
//! [`ErrorCode::Fenced`](crate::ErrorCode::Fenced) whichever connection it uses.
//!
//! Each request is answered by one response variant (named on the request), or by
//! [`InstanceResponse::Error`]. New variants are appended, never inserted, so that
//! existing ones keep their wire index; changing a variant's fields is a new
//! [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// A signal type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireSignalType {
    /// Cancel.
    Cancel,
    /// Pause.
    Pause,
    /// Resume.
    Resume,
}

impl WireSignalType {
    /// Its name: `cancel`, `pause` or `resume`.
    pub fn as_str(self) -> &'static str {
        match self {
            WireSignalType::Cancel => "cancel",
            WireSignalType::Pause => "pause",
            WireSignalType::Resume => "resume",
        }
    }
}

impl std::fmt::Display for WireSignalType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pending signal on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSignal {
    /// Its id in the queue.
    pub signal_id: i64,
    /// What is asked.
    pub signal_type: WireSignalType,
    /// When it was sent.
    pub created_at_ms: i64,
}

/// One recorded checkpoint in a register reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedStep {
    /// The checkpoint id.
    pub checkpoint_id: String,
    /// Its state.
    pub state: ByteBuf,
}

/// Largest checkpoint state an instance may send, so that any recorded checkpoint fits in
/// one frame again when it is replayed (a page holds at least one checkpoint).
pub const MAX_STATE_LEN: usize = crate::DEFAULT_MAX_FRAME_LEN - 64 * 1024;

/// Bytes of checkpoint state (ids and framing included) the server puts in one page of a
/// replay log or of a checkpoint listing; a page holds at least one checkpoint whatever
/// its size. Small logs, the common case, come whole in the reply to `RegisterPaged`.
pub const REPLAY_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// An instance's status on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireStatus {
    /// The instance id.
    pub instance_id: String,
    /// Its lifecycle status.
    pub status: crate::InstanceStatus,
    /// Last checkpoint id.
    pub checkpoint_id: Option<String>,
    /// Checkpoints recorded.
    pub checkpoint_count: i64,
    /// Output, once completed.
    pub output: Option<ByteBuf>,
    /// Error, once failed.
    pub error: Option<String>,
    /// First registered.
    pub started_at_ms: Option<i64>,
    /// Reached a terminal state.
    pub finished_at_ms: Option<i64>,
    /// Last heartbeat.
    pub heartbeat_at_ms: Option<i64>,
    /// Wake time of the current sleep.
    pub wake_at_ms: Option<i64>,
}

/// A request from an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceRequest {
    /// Start or resume a run (`pending`, `running`, `suspended` or `sleeping` →
    /// `running`) and fence out any earlier run. Answered by `Registered` with the new
    /// epoch and the replay log; a terminal instance is refused (`terminal`).
    Register {
        /// Checkpoint the run says it resumes from.
        checkpoint_id: Option<String>,
    },
    /// Insert-if-absent of a checkpoint, atomic. Answered by `Checkpointed`: the state
    /// recorded earlier under the id (then `state` is not stored) and the pending signal.
    Checkpoint {
        /// The run's epoch.
        epoch: i64,
        /// Checkpoint id.
        checkpoint_id: String,
        /// State to store.
        state: ByteBuf,
    },
    /// Read-only lookup of a checkpoint. Answered by `Checkpoint`.
    GetCheckpoint {
        /// Checkpoint id.
        checkpoint_id: String,
    },
    /// A durable sleep: records the checkpoint and a wake time `duration_ms` from now on
    /// the server's clock (kept if one is already recorded under the id). Answered by
    /// `Slept`.
    Sleep {
        /// The run's epoch.
        epoch: i64,
        /// Checkpoint id.
        checkpoint_id: String,
        /// State to store.
        state: ByteBuf,
        /// How long.
        duration_ms: u64,
    },
    /// "I'm alive". Answered by `Done`.
    Heartbeat {
        /// The run's epoch.
        epoch: i64,
    },
    /// Finished with an output (→ `completed`). Answered by `Done`.
    Completed {
        /// The run's epoch.
        epoch: i64,
        /// Output bytes.
        output: ByteBuf,
    },
    /// Finished with an error (→ `failed`). Answered by `Done`.
    Failed {
        /// The run's epoch.
        epoch: i64,
        /// Error message.
        error: String,
    },
    /// Paused itself at a checkpoint and is exiting (→ `suspended`). Answered by `Done`.
    Suspended {
        /// The run's epoch.
        epoch: i64,
    },
    /// Exiting for a long sleep (→ `sleeping`); the server relaunches it at the recorded
    /// wake time. Answered by `Done`.
    Sleeping {
        /// The run's epoch.
        epoch: i64,
    },
    /// A custom event, stored with an opaque subtype. Answered by `Done`.
    CustomEvent {
        /// Opaque subtype.
        subtype: String,
        /// Payload.
        payload: ByteBuf,
    },
    /// The pending signal, if any (cancel outranks pause). Answered by `Signal`.
    PollSignal,
    /// Acknowledge a signal: act on it (a cancel → `cancelled`, a pause → `suspended`)
    /// or drop it. Answered by `Done`.
    AckSignal {
        /// The run's epoch.
        epoch: i64,
        /// Which signal.
        signal_type: WireSignalType,
        /// Act on it (true) or drop it (false).
        acknowledged: bool,
    },
    /// Record a retry attempt of a durable call; the highest attempt per id comes back
    /// in `Registered`. Answered by `Done`.
    RetryAttempt {
        /// The run's epoch.
        epoch: i64,
        /// The durable call's checkpoint id.
        checkpoint_id: String,
        /// 1-based attempt.
        attempt: u32,
        /// Error of the previous attempt.
        error: Option<String>,
    },
    /// Status of this instance (`None`: `get_status`) or of another instance of the
    /// same tenant (`get_instance_status`); another tenant's instance is `not_found`.
    /// Answered by `Status`.
    GetStatus {
        /// Another instance's id; `None` for the caller itself.
        instance_id: Option<String>,
    },
    /// `Register`, with the replay log in pages: answered by `RegisteredPage`, whose
    /// first page holds at most [`REPLAY_PAGE_BYTES`] of checkpoints; the rest is read
    /// with `ReplayPage`. (`Register` answers the whole log in one frame and fails when
    /// it does not fit.)
    RegisterPaged {
        /// Checkpoint the run says it resumes from.
        checkpoint_id: Option<String>,
    },
    /// The next page of the replay log: the checkpoints recorded after `after_seq` (a
    /// `more_after` of the previous page). Answered by `ReplayPage`.
    ReplayPage {
        /// Where the page starts: the previous page's `more_after`.
        after_seq: i64,
    },
    /// `Checkpoint` of a durable call's result, recording the function that produced it.
    /// Answered by `CheckpointedStep`, which names the function that recorded an earlier
    /// state under the id.
    CheckpointStep {
        /// The run's epoch.
        epoch: i64,
        /// Checkpoint id.
        checkpoint_id: String,
        /// State to store.
        state: ByteBuf,
        /// The durable function (its module path).
        producer: String,
    },
    /// A durable call failed for good (retries spent, or an error that is not
    /// retryable): a later run gets the failure instead of running it again. Answered by
    /// `Done`.
    StepFailed {
        /// The run's epoch.
        epoch: i64,
        /// The durable call's checkpoint id.
        checkpoint_id: String,
        /// The error.
        error: String,
    },
    /// `wait_for_event`: the payload recorded under `checkpoint_id` if any; else the
    /// oldest unconsumed event named `name`, consumed and recorded there; else, once
    /// `deadline_ms` has passed, the timeout (`None`) recorded there. Otherwise the
    /// instance is `waiting` for `name` and the answer is `EventPending`, given after at
    /// most `hold_ms` (the server holds the request until an event arrives, the deadline
    /// passes or the hold ends, so a waiting run needs no polling loop). Answered by
    /// `EventTaken` or `EventPending`.
    TakeEvent {
        /// The run's epoch.
        epoch: i64,
        /// Where the wait's outcome is recorded.
        checkpoint_id: String,
        /// The event's name.
        name: String,
        /// When the wait times out (ms since the Unix epoch); `None`: never.
        deadline_ms: Option<i64>,
        /// The longest the server holds the request with nothing to answer (at most
        /// [`MAX_EVENT_HOLD_MS`]).
        hold_ms: u64,
    },
    /// Publishes `value` under `key` for the management side
    /// (`ManagementSdk::get_value`); a later value replaces it. Answered by `Done`.
    SetValue {
        /// The run's epoch.
        epoch: i64,
        /// The value's key.
        key: String,
        /// The value (JSON text from the SDK).
        value: ByteBuf,
    },
    /// Starts a child of this instance: an instance of image `image_id` (of the same
    /// tenant) with id `"{parent}:{key}"`, once per key — a repeat (a rerun) starts
    /// nothing. When it ends, this instance's inbox gets the event `child:{id}`.
    /// Answered by `ChildStarted`.
    StartChild {
        /// The run's epoch.
        epoch: i64,
        /// The child's key among this instance's children.
        key: String,
        /// The image it runs.
        image_id: String,
        /// Its start input (JSON text).
        input: Option<ByteBuf>,
    },
    /// [`StartChild`](Self::StartChild) with the child's options. Answered by
    /// `ChildStarted`.
    StartChildWith {
        /// The run's epoch.
        epoch: i64,
        /// The child's key among this instance's children.
        key: String,
        /// The image it runs.
        image_id: String,
        /// Its start input (JSON text).
        input: Option<ByteBuf>,
        /// Not cancelled when this instance is (it still tells this one when it ends).
        detached: bool,
    },
}

/// The longest one [`InstanceRequest::TakeEvent`] is held by the server (10 s): a run
/// that waits longer asks again.
pub const MAX_EVENT_HOLD_MS: u64 = 10_000;

/// The largest payload of an external event or a published value (1 MiB).
pub const MAX_EVENT_PAYLOAD_LEN: usize = 1024 * 1024;

/// The server's response to an [`InstanceRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceResponse {
    /// Reply to `Register`.
    Registered {
        /// The run's epoch.
        epoch: i64,
        /// Every checkpoint, in record order.
        checkpoints: Vec<RecordedStep>,
        /// Highest retry attempt per checkpoint id.
        retry_attempts: Vec<(String, u32)>,
    },
    /// Reply to `Checkpoint`.
    Checkpointed {
        /// The state stored earlier under the id, if any.
        existing_state: Option<ByteBuf>,
        /// The pending signal.
        signal: Option<WireSignal>,
    },
    /// Reply to `GetCheckpoint`.
    Checkpoint {
        /// The state, if recorded.
        state: Option<ByteBuf>,
    },
    /// Reply to `Sleep`.
    Slept {
        /// Wake time in force.
        wake_at_ms: i64,
        /// Time left on the server's clock when it answered.
        remaining_ms: u64,
        /// Earlier state under the id, if any.
        existing_state: Option<ByteBuf>,
        /// The pending signal.
        signal: Option<WireSignal>,
    },
    /// Reply to the requests that return nothing: the write is durable.
    Done,
    /// Reply to `PollSignal`.
    Signal(Option<WireSignal>),
    /// Reply to `GetStatus`.
    Status(WireStatus),
    /// The request failed; nothing was changed.
    Error(crate::WireError),
    /// Reply to `RegisterPaged`: the first page of the replay log.
    RegisteredPage {
        /// The run's epoch.
        epoch: i64,
        /// The first checkpoints, in record order.
        checkpoints: Vec<RecordedStep>,
        /// Highest retry attempt per checkpoint id.
        retry_attempts: Vec<(String, u32)>,
        /// When the last retry of each entry of `retry_attempts` was recorded (server
        /// clock, ms since the Unix epoch), in the same order.
        retry_at_ms: Vec<i64>,
        /// The durable calls that failed for good: `(checkpoint id, error)`.
        failures: Vec<(String, String)>,
        /// The distinct functions that recorded the page's checkpoints.
        producer_names: Vec<String>,
        /// For each checkpoint of the page, in order, its index in `producer_names`
        /// (`None`: it did not say); may be shorter than the page.
        produced_by: Vec<Option<u32>>,
        /// `Some(seq)`: more checkpoints follow; ask `ReplayPage { after_seq: seq }`.
        more_after: Option<i64>,
    },
    /// Reply to `ReplayPage`.
    ReplayPage {
        /// The checkpoints of this page, in record order (at least one).
        checkpoints: Vec<RecordedStep>,
        /// The distinct functions that recorded the page's checkpoints.
        producer_names: Vec<String>,
        /// For each checkpoint of the page, in order, its index in `producer_names`
        /// (`None`: it did not say); may be shorter than the page.
        produced_by: Vec<Option<u32>>,
        /// `Some(seq)`: more checkpoints follow.
        more_after: Option<i64>,
    },
    /// Reply to `CheckpointStep`.
    CheckpointedStep {
        /// The state stored earlier under the id, if any.
        existing_state: Option<ByteBuf>,
        /// The function that recorded it, when it said.
        existing_producer: Option<String>,
        /// The pending signal.
        signal: Option<WireSignal>,
    },
    /// Reply to `TakeEvent`: the wait's outcome, recorded — the event's payload, or
    /// `None` when it timed out.
    EventTaken {
        /// The event's payload; `None`: the wait timed out.
        payload: Option<ByteBuf>,
    },
    /// Reply to `TakeEvent`: nothing to take yet; the instance is `waiting` (unless a
    /// cancel or pause is queued: then it is still `running`, and `signal` says which).
    EventPending {
        /// The pending signal.
        signal: Option<WireSignal>,
    },
    /// Reply to `StartChild`.
    ChildStarted {
        /// The child's id.
        instance_id: String,
        /// False when the child existed already (a repeat of the same start).
        created: bool,
    },
}

impl InstanceRequest {
    /// The operation's name for logs and errors (`checkpoint`, `get_status`, …).
    pub fn operation(&self) -> &'static str {
        match self {
            InstanceRequest::Register { .. } => "register",
            InstanceRequest::Checkpoint { .. } => "checkpoint",
            InstanceRequest::GetCheckpoint { .. } => "get_checkpoint",
            InstanceRequest::Sleep { .. } => "sleep",
            InstanceRequest::Heartbeat { .. } => "heartbeat",
            InstanceRequest::Completed { .. } => "completed",
            InstanceRequest::Failed { .. } => "failed",
            InstanceRequest::Suspended { .. } => "suspended",
            InstanceRequest::Sleeping { .. } => "sleeping",
            InstanceRequest::CustomEvent { .. } => "custom_event",
            InstanceRequest::PollSignal => "poll_signal",
            InstanceRequest::AckSignal { .. } => "acknowledge_signal",
            InstanceRequest::RetryAttempt { .. } => "record_retry_attempt",
            InstanceRequest::GetStatus { instance_id: None } => "get_status",
            InstanceRequest::GetStatus {
                instance_id: Some(_),
            } => "get_instance_status",
            InstanceRequest::RegisterPaged { .. } => "register",
            InstanceRequest::ReplayPage { .. } => "replay_page",
            InstanceRequest::CheckpointStep { .. } => "checkpoint",
            InstanceRequest::StepFailed { .. } => "step_failed",
            InstanceRequest::TakeEvent { .. } => "wait_for_event",
            InstanceRequest::SetValue { .. } => "set_value",
            InstanceRequest::StartChild { .. } | InstanceRequest::StartChildWith { .. } => {
                "start_child"
            }
        }
    }

    /// The checkpoint id and state this request stores, for the requests that store one
    /// (bounded by [`MAX_STATE_LEN`] over QUIC).
    pub fn checkpoint_state(&self) -> Option<(&str, &[u8])> {
        match self {
            InstanceRequest::Checkpoint {
                checkpoint_id,
                state,
                ..
            }
            | InstanceRequest::CheckpointStep {
                checkpoint_id,
                state,
                ..
            }
            | InstanceRequest::Sleep {
                checkpoint_id,
                state,
                ..
            } => Some((checkpoint_id, state)),
            _ => None,
        }
    }

    /// The run's epoch, for the requests that write to the instance.
    pub fn epoch(&self) -> Option<i64> {
        match self {
            InstanceRequest::Checkpoint { epoch, .. }
            | InstanceRequest::Sleep { epoch, .. }
            | InstanceRequest::Heartbeat { epoch }
            | InstanceRequest::Completed { epoch, .. }
            | InstanceRequest::Failed { epoch, .. }
            | InstanceRequest::Suspended { epoch }
            | InstanceRequest::Sleeping { epoch }
            | InstanceRequest::AckSignal { epoch, .. }
            | InstanceRequest::CheckpointStep { epoch, .. }
            | InstanceRequest::StepFailed { epoch, .. }
            | InstanceRequest::TakeEvent { epoch, .. }
            | InstanceRequest::SetValue { epoch, .. }
            | InstanceRequest::StartChild { epoch, .. }
            | InstanceRequest::StartChildWith { epoch, .. }
            | InstanceRequest::RetryAttempt { epoch, .. } => Some(*epoch),
            InstanceRequest::Register { .. }
            | InstanceRequest::GetCheckpoint { .. }
            | InstanceRequest::CustomEvent { .. }
            | InstanceRequest::PollSignal
            | InstanceRequest::GetStatus { .. }
            | InstanceRequest::RegisterPaged { .. }
            | InstanceRequest::ReplayPage { .. } => None,
        }
    }
}
