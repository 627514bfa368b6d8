//! What instance calls return: checkpoint results, signals and status.

use runtara_core::{InstanceRecord, InstanceStatus, PendingSignal, SignalType};
use runtara_protocol::{ByteBuf, WireStatus};

/// A control signal delivered to this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Signal {
    /// What is asked (cancel, pause, resume).
    pub signal_type: SignalType,
    /// The signal's id in the queue.
    pub signal_id: i64,
    /// When it was sent (ms since the Unix epoch).
    pub created_at_ms: i64,
}

impl From<PendingSignal> for Signal {
    fn from(signal: PendingSignal) -> Self {
        Signal {
            signal_type: signal.signal_type,
            signal_id: signal.signal_id,
            created_at_ms: signal.created_at_ms,
        }
    }
}

impl Signal {
    /// Back to the engine's form.
    pub(crate) fn into_pending(self) -> PendingSignal {
        PendingSignal {
            signal_type: self.signal_type,
            signal_id: self.signal_id,
            created_at_ms: self.created_at_ms,
        }
    }
}

/// Result of [`RuntaraSdk::checkpoint`](crate::RuntaraSdk::checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointResult {
    pub(crate) existing_state: Option<Vec<u8>>,
    pub(crate) signal: Option<Signal>,
}

impl CheckpointResult {
    /// The state recorded earlier under this id (the run is resuming), or `None`
    /// when this call recorded the state it was given.
    pub fn existing_state(&self) -> Option<&[u8]> {
        self.existing_state.as_deref()
    }

    /// Takes the earlier state out of the result.
    pub fn into_existing_state(self) -> Option<Vec<u8>> {
        self.existing_state
    }

    /// Whether the checkpoint existed before this call.
    pub fn is_resumed(&self) -> bool {
        self.existing_state.is_some()
    }

    /// The pending signal the server reported with the checkpoint, if any.
    pub fn pending_signal(&self) -> Option<&Signal> {
        self.signal.as_ref()
    }

    /// Whether a cancel is pending: stop work and return.
    pub fn should_cancel(&self) -> bool {
        self.signal_is(SignalType::Cancel)
    }

    /// Whether a pause is pending: exit cleanly; the instance resumes from its last checkpoint.
    pub fn should_pause(&self) -> bool {
        self.signal_is(SignalType::Pause)
    }

    fn signal_is(&self, wanted: SignalType) -> bool {
        self.signal
            .as_ref()
            .is_some_and(|s| s.signal_type == wanted)
    }
}

/// Status of an instance, as returned by [`RuntaraSdk::get_status`](crate::RuntaraSdk::get_status).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusResponse {
    /// The instance id.
    pub instance_id: String,
    /// Its lifecycle status.
    pub status: InstanceStatus,
    /// Id of the last checkpoint recorded.
    pub checkpoint_id: Option<String>,
    /// Number of checkpoints recorded.
    pub checkpoint_count: i64,
    /// Output, once completed.
    pub output: Option<Vec<u8>>,
    /// Error, once failed.
    pub error: Option<String>,
    /// When a process first registered it (ms since the Unix epoch).
    pub started_at_ms: Option<i64>,
    /// When it reached a terminal state.
    pub finished_at_ms: Option<i64>,
    /// Last heartbeat.
    pub heartbeat_at_ms: Option<i64>,
    /// Wake time of the current durable sleep.
    pub wake_at_ms: Option<i64>,
}

impl From<InstanceRecord> for StatusResponse {
    fn from(record: InstanceRecord) -> Self {
        StatusResponse {
            instance_id: record.instance_id,
            status: record.status,
            checkpoint_id: record.checkpoint_id,
            checkpoint_count: record.checkpoint_count,
            output: record.output,
            error: record.error,
            started_at_ms: record.started_at_ms,
            finished_at_ms: record.finished_at_ms,
            heartbeat_at_ms: record.heartbeat_at_ms,
            wake_at_ms: record.wake_at_ms,
        }
    }
}

impl StatusResponse {
    /// Reads a status reply.
    pub(crate) fn from_wire(status: WireStatus) -> StatusResponse {
        StatusResponse {
            instance_id: status.instance_id,
            status: status.status,
            checkpoint_id: status.checkpoint_id,
            checkpoint_count: status.checkpoint_count,
            output: status.output.map(ByteBuf::into_vec),
            error: status.error,
            started_at_ms: status.started_at_ms,
            finished_at_ms: status.finished_at_ms,
            heartbeat_at_ms: status.heartbeat_at_ms,
            wake_at_ms: status.wake_at_ms,
        }
    }
}
