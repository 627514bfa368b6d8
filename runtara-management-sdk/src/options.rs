//! Builders for the calls that take more than an id.

use std::time::Duration;

/// What [`ManagementSdk::register_image`](crate::ManagementSdk::register_image) uploads.
///
/// ```
/// use runtara_management_sdk::RegisterImageOptions;
///
/// let options = RegisterImageOptions::new("tenant-123", "order-processing", vec![0x7f, b'E'])
///     .with_description("order processing workflow v1.0");
/// assert_eq!(options.description.as_deref(), Some("order processing workflow v1.0"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RegisterImageOptions {
    /// The owner.
    pub tenant_id: String,
    /// The image name; each registration of a name is a new version.
    pub name: String,
    /// The compiled workflow binary.
    pub bytes: Vec<u8>,
    /// Free text.
    pub description: Option<String>,
}

impl std::fmt::Debug for RegisterImageOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterImageOptions")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("description", &self.description)
            .finish()
    }
}

impl RegisterImageOptions {
    /// Registers `bytes` (a compiled workflow binary) as image `name` of `tenant_id`.
    pub fn new(tenant_id: impl Into<String>, name: impl Into<String>, bytes: Vec<u8>) -> Self {
        RegisterImageOptions {
            tenant_id: tenant_id.into(),
            name: name.into(),
            bytes,
            description: None,
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

/// What [`ManagementSdk::start_instance`](crate::ManagementSdk::start_instance) starts.
///
/// ```
/// use runtara_management_sdk::StartInstanceOptions;
/// use std::time::Duration;
///
/// let options = StartInstanceOptions::new("img-1", "tenant-123")
///     .with_input(serde_json::json!({ "order_id": "ORD-456" }))
///     .with_instance_id("order-ORD-456")
///     .with_timeout(Duration::from_secs(600));
/// assert_eq!(options.instance_id.as_deref(), Some("order-ORD-456"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StartInstanceOptions {
    /// The image to run; the instance stays pinned to it.
    pub image_id: String,
    /// The tenant; must own the image.
    pub tenant_id: String,
    /// Start input, sent as JSON text.
    pub input: Option<serde_json::Value>,
    /// The instance id to use (`None`: the server picks one). Starting the same id again
    /// with the same image and tenant is idempotent.
    pub instance_id: Option<String>,
    /// Kill the run and mark it failed after this long (no limit by default).
    pub timeout: Option<Duration>,
}

impl StartInstanceOptions {
    /// Starts an instance of `image_id` for `tenant_id`, without input.
    pub fn new(image_id: impl Into<String>, tenant_id: impl Into<String>) -> Self {
        StartInstanceOptions {
            image_id: image_id.into(),
            tenant_id: tenant_id.into(),
            input: None,
            instance_id: None,
            timeout: None,
        }
    }

    /// Sets the start input.
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = Some(input);
        self
    }

    /// Uses this instance id instead of one picked by the server.
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// Fails the instance when it runs longer than `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Which instances [`ManagementSdk::list_instances`](crate::ManagementSdk::list_instances)
/// returns: a page of one tenant's instances, newest first.
///
/// ```
/// use runtara_management_sdk::ListInstancesOptions;
///
/// let options = ListInstancesOptions::new("tenant-123").with_status("running").with_limit(50);
/// assert_eq!(options.limit, Some(50));
/// assert_eq!(options.offset, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListInstancesOptions {
    /// The tenant.
    pub tenant_id: String,
    /// Only instances in this status, by name (`pending`, `running`, `suspended`,
    /// `sleeping`, `completed`, `failed`, `cancelled`; see [`with_status`](Self::with_status)). Another name is refused before anything is sent.
    ///
    /// [`InstanceStatus`]: crate::InstanceStatus
    pub status: Option<String>,
    /// At most this many (`None`: the server's most per page, 1000).
    pub limit: Option<u32>,
    /// Skip this many first.
    pub offset: u32,
}

impl ListInstancesOptions {
    /// The instances of `tenant_id`, newest first (a page of at most 1000).
    pub fn new(tenant_id: impl Into<String>) -> Self {
        ListInstancesOptions {
            tenant_id: tenant_id.into(),
            status: None,
            limit: None,
            offset: 0,
        }
    }

    /// Only instances in this status: a name such as `"running"`, or an
    /// [`InstanceStatus`](crate::InstanceStatus).
    pub fn with_status(mut self, status: impl AsRef<str>) -> Self {
        self.status = Some(status.as_ref().to_owned());
        self
    }

    /// At most this many (the server sends at most 1000 in one page).
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Skip this many first.
    pub fn with_offset(mut self, offset: u32) -> Self {
        self.offset = offset;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_options() {
        let options = RegisterImageOptions::new("t", String::from("n"), vec![1, 2, 3]);
        assert_eq!(options.tenant_id, "t");
        assert_eq!(options.name, "n");
        assert_eq!(options.bytes, vec![1, 2, 3]);
        assert_eq!(options.description, None);
        assert!(format!("{options:?}").contains("<3 bytes>"));
        assert_eq!(
            options.with_description("d").description.as_deref(),
            Some("d")
        );
    }

    #[test]
    fn start_options_take_borrowed_and_owned_ids() {
        let image_id = String::from("img");
        let options = StartInstanceOptions::new(&image_id, "t");
        assert_eq!(options.image_id, "img");
        assert_eq!(options.input, None);
        let options = StartInstanceOptions::new(image_id, String::from("t"))
            .with_input(serde_json::json!({"a": 1}))
            .with_instance_id("i")
            .with_timeout(Duration::from_millis(5));
        assert_eq!(options.input, Some(serde_json::json!({"a": 1})));
        assert_eq!(options.instance_id.as_deref(), Some("i"));
        assert_eq!(options.timeout, Some(Duration::from_millis(5)));
    }

    #[test]
    fn list_options() {
        let options = ListInstancesOptions::new("t");
        assert_eq!(
            (options.status.as_deref(), options.limit, options.offset),
            (None, None, 0)
        );
        let options = options.with_status("failed").with_limit(5).with_offset(10);
        assert_eq!(options.status.as_deref(), Some("failed"));
        assert_eq!(options.limit, Some(5));
        assert_eq!(options.offset, 10);
    }
}

/// How a server runs an image's instances in worker processes
/// ([`ManagementSdk::set_image_workers`](crate::ManagementSdk::set_image_workers)): long-lived
/// processes of the image, each running up to `instances` of its instances at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// At least `min` and at most `max` workers, each running up to `instances`
    /// instances at once.
    pub fn new(min: u32, max: u32, instances: u32) -> WorkerPool {
        WorkerPool {
            min,
            max,
            instances,
        }
    }
}

/// What [`ManagementSdk::send_event_with`](crate::ManagementSdk::send_event_with) sends:
/// an event for an instance's `wait_for_event`, with an optional idempotency key.
///
/// ```
/// use runtara_management_sdk::SendEventOptions;
///
/// let options = SendEventOptions::new("order-42", "approved")
///     .with_payload(serde_json::json!({"by": "ana"}))
///     .with_idempotency_key("approval-mail-17");
/// assert_eq!(options.idempotency_key.as_deref(), Some("approval-mail-17"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SendEventOptions {
    /// The instance.
    pub instance_id: String,
    /// The event's name: the first `wait_for_event` for it takes the event.
    pub name: String,
    /// Its payload, sent as JSON text (`null` when not set).
    pub payload: serde_json::Value,
    /// A send repeated with the same key (for the same instance) changes nothing.
    pub idempotency_key: Option<String>,
}

impl SendEventOptions {
    /// An event `name` for `instance_id`, with a `null` payload.
    pub fn new(instance_id: impl Into<String>, name: impl Into<String>) -> Self {
        SendEventOptions {
            instance_id: instance_id.into(),
            name: name.into(),
            payload: serde_json::Value::Null,
            idempotency_key: None,
        }
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// Makes a repeated send with `key` a no-op.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

pub use runtara_protocol::MissedFires;

/// What [`ManagementSdk::create_schedule`](crate::ManagementSdk::create_schedule) creates:
/// an instance of `image_id` started at each time `cron` names in `timezone` (UTC unless
/// set).
///
/// The expression has 5 fields (`minute hour day-of-month month day-of-week`), or 6 with
/// seconds first. Each fire's instance id is `sched-{schedule_id}-{fire time in ms}`, so
/// a server restart (or a second server) never starts one fire twice.
///
/// ```
/// use runtara_management_sdk::{CreateScheduleOptions, MissedFires};
///
/// let nightly = CreateScheduleOptions::new("img-1", "acme", "0 2 * * *")
///     .with_timezone("Europe/Berlin")
///     .with_input(serde_json::json!({"report": "daily"}))
///     .with_missed(MissedFires::Skip)
///     .with_schedule_id("nightly-report");
/// assert_eq!(nightly.timezone, "Europe/Berlin");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CreateScheduleOptions {
    /// The image.
    pub image_id: String,
    /// The tenant owning the image.
    pub tenant_id: String,
    /// The cron expression.
    pub cron: String,
    /// An IANA time zone name.
    pub timezone: String,
    /// Each instance's start input.
    pub input: Option<serde_json::Value>,
    /// Missed fires.
    pub missed: MissedFires,
    /// The schedule's id; the server picks one when `None`.
    pub schedule_id: Option<String>,
}

impl CreateScheduleOptions {
    /// A schedule of `image_id` for `tenant_id` at the times of `cron`, in UTC.
    pub fn new(
        image_id: impl Into<String>,
        tenant_id: impl Into<String>,
        cron: impl Into<String>,
    ) -> Self {
        CreateScheduleOptions {
            image_id: image_id.into(),
            tenant_id: tenant_id.into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            input: None,
            missed: MissedFires::default(),
            schedule_id: None,
        }
    }

    /// Reads the expression in `timezone` (an IANA name such as `Europe/Berlin`).
    pub fn with_timezone(mut self, timezone: impl Into<String>) -> Self {
        self.timezone = timezone.into();
        self
    }

    /// Starts each instance with `input`.
    pub fn with_input(mut self, input: serde_json::Value) -> Self {
        self.input = Some(input);
        self
    }

    /// What to do with missed fires.
    pub fn with_missed(mut self, missed: MissedFires) -> Self {
        self.missed = missed;
        self
    }

    /// Names the schedule (letters, digits, `-`, `_`, `.`, `:`; at most 100).
    pub fn with_schedule_id(mut self, schedule_id: impl Into<String>) -> Self {
        self.schedule_id = Some(schedule_id.into());
        self
    }
}
