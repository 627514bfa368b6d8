//! What the calls return: plain structs with owned fields and RFC 3339 UTC timestamps.

use std::time::Duration;

use runtara_protocol::{
    EventKind, InstanceStatus, WireCheckpoint, WireEvent, WireImage, WireInstance,
};

use crate::rfc3339_from_millis;

/// Statuses after which an instance never changes again.
pub const TERMINAL_STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

/// An image registered by [`ManagementSdk::register_image`](crate::ManagementSdk::register_image).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisterImageResult {
    /// The new image's id; start instances of it with this.
    pub image_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Version of the name (1 for the first registration, then 2, …).
    pub version: i64,
    /// Lowercase hex SHA-256 of the binary, as verified by the server.
    pub sha256: String,
    /// Size of the binary in bytes.
    pub size_bytes: u64,
    /// When it was registered (RFC 3339 UTC).
    pub created_at: String,
}

/// An instance started by [`ManagementSdk::start_instance`](crate::ManagementSdk::start_instance).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartInstanceResult {
    /// The instance id.
    pub instance_id: String,
    /// False when the instance existed already (an idempotent repeat of the same start).
    pub created: bool,
}

/// An event sent by [`ManagementSdk::send_event`](crate::ManagementSdk::send_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventSent {
    /// The event's id (the first send's, for a repeat of an idempotent send).
    pub seq: i64,
    /// A send with this idempotency key was delivered before; nothing changed.
    pub duplicate: bool,
}

/// Everything the server reports about one instance
/// ([`ManagementSdk::get_instance_status`](crate::ManagementSdk::get_instance_status)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The instance id.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The image it runs (empty when the server does not know it).
    pub image_id: String,
    /// Its lifecycle status: prints as `pending`, `running`, `suspended`, `sleeping`,
    /// `completed`, `failed` or `cancelled` ([`InstanceStatus::as_str`]), and compares
    /// with those names.
    pub status: InstanceStatus,
    /// When a process first registered it (RFC 3339 UTC); **empty** while it has not
    /// started.
    pub started_at: String,
    /// When it finished (RFC 3339 UTC).
    pub finished_at: Option<String>,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
    /// The output it completed with (usually JSON text).
    pub output: Option<Vec<u8>>,
    /// The error it failed with.
    pub error: Option<String>,
    /// Its last checkpoint id.
    pub checkpoint_id: Option<String>,
    /// Checkpoints recorded.
    pub checkpoint_count: i64,
    /// Its last heartbeat (RFC 3339 UTC).
    pub heartbeat_at: Option<String>,
    /// When a durable sleep ends (RFC 3339 UTC).
    pub wake_at: Option<String>,
    /// How many times a server launched a process for it, across server restarts (the
    /// `launched` events of [`list_events`](crate::ManagementSdk::list_events)).
    pub launches: u32,
    /// The tail of the last process's stdout and stderr (its `output.log`), if it printed.
    pub log_tail: Option<String>,
    /// Where its launch waits for a slot, while it is `pending` behind the server's
    /// `--max-running`; `None` when it does not wait (or the server is older than
    /// admission control).
    pub queue: Option<QueuePlace>,
    /// The event it waits for, while it is `waiting` (`wait_for_event`).
    pub waiting_for: Option<String>,
}

/// Where a launch waits for a slot on the server (admission control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuePlace {
    /// 1 for the next launch in line.
    pub position: u64,
    /// Launches waiting, in all.
    pub waiting: u64,
    /// Instance processes holding a slot.
    pub running: u64,
    /// The server's `--max-running`.
    pub max_running: u64,
}

impl std::fmt::Display for QueuePlace {
    /// `3 of 120 waiting for a slot (64 of 64 running)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} waiting for a slot ({} of {} running)",
            self.position, self.waiting, self.running, self.max_running
        )
    }
}

impl InstanceInfo {
    /// True when the instance is `completed`, `failed` or `cancelled`: it never changes again.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The output decoded as JSON; `None` without output or when it is not JSON.
    pub fn output_json(&self) -> Option<serde_json::Value> {
        self.output
            .as_deref()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
    }
}

impl From<WireInstance> for InstanceInfo {
    fn from(wire: WireInstance) -> Self {
        InstanceInfo {
            instance_id: wire.instance_id,
            tenant_id: wire.tenant_id,
            image_id: wire.image_id.unwrap_or_default(),
            status: wire.status,
            started_at: wire
                .started_at_ms
                .map(rfc3339_from_millis)
                .unwrap_or_default(),
            finished_at: wire.finished_at_ms.map(rfc3339_from_millis),
            created_at: rfc3339_from_millis(wire.created_at_ms),
            output: wire.output.map(|bytes| bytes.into_vec()),
            error: wire.error,
            checkpoint_id: wire.checkpoint_id,
            checkpoint_count: wire.checkpoint_count,
            heartbeat_at: wire.heartbeat_at_ms.map(rfc3339_from_millis),
            wake_at: wire.wake_at_ms.map(rfc3339_from_millis),
            launches: wire.launches,
            log_tail: wire.log_tail,
            queue: None,
            waiting_for: None,
        }
    }
}

/// One row of [`ManagementSdk::list_instances`](crate::ManagementSdk::list_instances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSummary {
    /// The instance id.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The image it runs (empty when the server does not know it).
    pub image_id: String,
    /// Its status (see [`InstanceInfo::status`]).
    pub status: InstanceStatus,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
    /// When it started (RFC 3339 UTC); empty while it has not started.
    pub started_at: String,
    /// When it finished (RFC 3339 UTC).
    pub finished_at: Option<String>,
}

impl From<WireInstance> for InstanceSummary {
    fn from(wire: WireInstance) -> Self {
        let info = InstanceInfo::from(wire);
        InstanceSummary {
            instance_id: info.instance_id,
            tenant_id: info.tenant_id,
            image_id: info.image_id,
            status: info.status,
            created_at: info.created_at,
            started_at: info.started_at,
            finished_at: info.finished_at,
        }
    }
}

/// A page of instances and how many matched in all
/// ([`ManagementSdk::list_instances_page`](crate::ManagementSdk::list_instances_page)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePage {
    /// This page, newest first.
    pub instances: Vec<InstanceSummary>,
    /// How many instances matched, over all pages.
    pub total: u64,
}

/// What a pause, resume or cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalOutcome {
    /// The instance's status after the signal.
    pub status: InstanceStatus,
    /// True when the signal took effect at once (no process was running the instance, or
    /// a resume withdrew a pause that the running process had not taken yet); false when
    /// it is queued: for the running process, which acts on it at its next checkpoint, or,
    /// for a resume of a suspended instance, for the process the server relaunches. A
    /// queued cancel or pause may come too late: an instance that records no further
    /// checkpoint can still end `completed`.
    pub applied: bool,
}

/// A registered image.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Image {
    /// The image id.
    pub image_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Version of the name.
    pub version: i64,
    /// Free text.
    pub description: Option<String>,
    /// Lowercase hex SHA-256 of the binary.
    pub sha256: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// When it was registered (RFC 3339 UTC).
    pub created_at: String,
}

impl From<WireImage> for Image {
    fn from(wire: WireImage) -> Self {
        Image {
            image_id: wire.image_id,
            tenant_id: wire.tenant_id,
            name: wire.name,
            version: wire.version,
            description: wire.description,
            sha256: wire.sha256,
            size_bytes: u64::try_from(wire.size_bytes).unwrap_or_default(),
            created_at: rfc3339_from_millis(wire.created_at_ms),
        }
    }
}

impl From<Image> for RegisterImageResult {
    fn from(image: Image) -> Self {
        RegisterImageResult {
            image_id: image.image_id,
            tenant_id: image.tenant_id,
            name: image.name,
            version: image.version,
            sha256: image.sha256,
            size_bytes: image.size_bytes,
            created_at: image.created_at,
        }
    }
}

/// One event of an instance ([`ManagementSdk::list_events`](crate::ManagementSdk::list_events)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Increasing id.
    pub event_id: i64,
    /// What it records: prints as `created`, `registered`, a status the instance took
    /// (`completed`, `suspended`, …), `signal`, `custom`, `launched` or `exited`
    /// ([`EventKind::as_str`]), and compares with those names.
    pub kind: EventKind,
    /// Subtype.
    pub subtype: Option<String>,
    /// Payload bytes.
    pub payload: Option<Vec<u8>>,
    /// When it was stored (RFC 3339 UTC).
    pub created_at: String,
}

impl From<WireEvent> for Event {
    fn from(wire: WireEvent) -> Self {
        Event {
            event_id: wire.event_id,
            kind: wire.kind,
            subtype: wire.subtype,
            payload: wire.payload.map(|bytes| bytes.into_vec()),
            created_at: rfc3339_from_millis(wire.created_at_ms),
        }
    }
}

/// One page of an instance's events, oldest first
/// ([`ManagementSdk::list_events_page`](crate::ManagementSdk::list_events_page)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// The events of this page.
    pub events: Vec<Event>,
    /// `Some(event_id)` when more events follow: ask for the page after this id.
    pub more_after: Option<i64>,
}

/// One checkpoint of an instance
/// ([`ManagementSdk::list_checkpoints`](crate::ManagementSdk::list_checkpoints)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Its id (`"{fn_name}::{key}"` for a durable call).
    pub checkpoint_id: String,
    /// The bytes stored.
    pub state: Vec<u8>,
    /// When it was stored (RFC 3339 UTC).
    pub created_at: String,
    /// When the durable sleep it records ends (RFC 3339 UTC).
    pub wake_at: Option<String>,
}

impl From<WireCheckpoint> for Checkpoint {
    fn from(wire: WireCheckpoint) -> Self {
        Checkpoint {
            checkpoint_id: wire.checkpoint_id,
            state: wire.state.into_vec(),
            created_at: rfc3339_from_millis(wire.created_at_ms),
            wake_at: wire.wake_at_ms.map(rfc3339_from_millis),
        }
    }
}

/// The server's health ([`ManagementSdk::health`](crate::ManagementSdk::health)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Server name and version (`runtara-server/1.0.0`).
    pub server: String,
    /// Database backend (`sqlite`, `postgres`).
    pub database: String,
    /// Time since the server started.
    pub uptime: Duration,
    /// Instance processes the server is running.
    pub running_processes: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtara_protocol::ByteBuf;

    fn wire_instance() -> WireInstance {
        WireInstance {
            instance_id: "i-1".into(),
            tenant_id: "t".into(),
            image_id: Some("img".into()),
            status: InstanceStatus::Completed,
            created_at_ms: 0,
            started_at_ms: Some(1_000),
            finished_at_ms: Some(2_000),
            output: Some(ByteBuf::from(b"{\"ok\":true}".to_vec())),
            error: None,
            checkpoint_id: Some("step::1".into()),
            checkpoint_count: 3,
            heartbeat_at_ms: None,
            wake_at_ms: None,
            launches: 1,
            log_tail: None,
        }
    }

    #[test]
    fn instances_convert_with_rfc3339_times() {
        let info = InstanceInfo::from(wire_instance());
        assert_eq!(info.image_id, "img");
        assert_eq!(info.created_at, "1970-01-01T00:00:00.000Z");
        assert_eq!(info.started_at, "1970-01-01T00:00:01.000Z");
        assert_eq!(
            info.finished_at.as_deref(),
            Some("1970-01-01T00:00:02.000Z")
        );
        assert!(info.is_terminal());
        assert_eq!(info.output_json(), Some(serde_json::json!({"ok": true})));
    }

    #[test]
    fn not_started_instances_have_an_empty_start_time() {
        let mut wire = wire_instance();
        wire.started_at_ms = None;
        wire.image_id = None;
        wire.status = InstanceStatus::Pending;
        let summary = InstanceSummary::from(wire);
        assert_eq!(summary.started_at, "");
        assert_eq!(summary.image_id, "");
    }
}

/// A schedule ([`ManagementSdk::create_schedule`](crate::ManagementSdk::create_schedule)).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Schedule {
    /// Its id.
    pub schedule_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The image each fire starts an instance of.
    pub image_id: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// Each instance's start input.
    pub input: Option<serde_json::Value>,
    /// What happens to missed fires.
    pub missed: crate::MissedFires,
    /// Paused: no fires until resumed.
    pub paused: bool,
    /// The next fire (ms since the Unix epoch); `None` while paused.
    pub next_fire_ms: Option<i64>,
    /// The last fire that started an instance.
    pub last_fire_ms: Option<i64>,
    /// When it was created (RFC 3339 UTC).
    pub created_at: String,
}

impl From<runtara_protocol::WireSchedule> for Schedule {
    fn from(wire: runtara_protocol::WireSchedule) -> Self {
        Schedule {
            schedule_id: wire.schedule_id,
            tenant_id: wire.tenant_id,
            image_id: wire.image_id,
            cron: wire.cron,
            timezone: wire.timezone,
            input: wire
                .input
                .and_then(|bytes| serde_json::from_slice(&bytes).ok()),
            missed: wire.missed.parse().unwrap_or_default(),
            paused: wire.paused,
            next_fire_ms: wire.next_fire_ms,
            last_fire_ms: wire.last_fire_ms,
            created_at: rfc3339_from_millis(wire.created_at_ms),
        }
    }
}
