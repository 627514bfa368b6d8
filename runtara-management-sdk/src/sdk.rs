//! [`ManagementSdk`]: one method per management request.

use std::time::{Duration, Instant};

use runtara_protocol::{
    ByteBuf, ErrorCode, InstanceStatus, ManagementRequest, ManagementResponse, WireSignalType,
    WireWorkerPool,
};

use crate::connection::Connection;
use crate::{
    Checkpoint, CreateScheduleOptions, Event, EventPage, EventSent, Health, Image, InstanceInfo,
    InstancePage, InstanceSummary, ListInstancesOptions, QueuePlace, RegisterImageOptions,
    RegisterImageResult, Result, Schedule, SdkConfig, SdkError, SendEventOptions, SignalOutcome,
    StartInstanceOptions, StartInstanceResult, WorkerPool,
};

/// How often [`ManagementSdk::wait_for_completion`] reads the status from a server
/// too old to wait on its side.
const OLD_SERVER_POLL: Duration = Duration::from_millis(100);

/// A client of the server's management endpoint.
///
/// Create it with [`ManagementSdk::new`] (no network I/O), then call
/// [`connect`](Self::connect) to check that the server answers — or just make calls:
/// the first one connects. The SDK keeps one QUIC connection and is cheap to share by
/// reference across tasks (`&ManagementSdk` is `Send + Sync`; wrap it in an `Arc` to
/// share ownership).
#[derive(Debug)]
pub struct ManagementSdk {
    connection: Connection,
}

impl ManagementSdk {
    /// Checks `config` (the address, the certificate to trust) and builds the SDK. No
    /// network I/O happens here.
    ///
    /// Fails with [`SdkError::Config`] for an address that is not `host:port`, or when
    /// there is neither a CA certificate to trust nor permission to skip verification.
    pub fn new(config: SdkConfig) -> Result<ManagementSdk> {
        Ok(ManagementSdk {
            connection: Connection::new(config)?,
        })
    }

    /// Connects and performs the handshake (presenting the token, if any), retrying until
    /// the connect timeout while the server is not answering. Calling it again while
    /// connected does nothing.
    pub async fn connect(&self) -> Result<()> {
        self.connection.connect().await.map(|_| ())
    }

    /// Connects if needed and returns the server's name and version
    /// (`runtara-server/1.0.0`).
    pub async fn server_version(&self) -> Result<String> {
        self.connection.connect().await
    }

    /// Closes the connection (the next call opens a new one).
    pub async fn close(&self) {
        self.connection.close().await;
    }

    /// The server's address, resolved.
    pub fn server_addr(&self) -> std::net::SocketAddr {
        self.connection.addr()
    }

    /// The server's health.
    pub async fn health(&self) -> Result<Health> {
        const OP: &str = "health";
        match self
            .connection
            .call(OP, &ManagementRequest::Health, None)
            .await?
        {
            ManagementResponse::Health {
                server,
                database,
                uptime_s,
                running_processes,
            } => Ok(Health {
                server,
                database,
                uptime: std::time::Duration::from_secs(uptime_s),
                running_processes,
            }),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Uploads a compiled workflow binary; each registration of a name is a new version.
    ///
    /// The bytes are streamed after the request with their SHA-256, which the server
    /// verifies. The upload must fit in the request timeout.
    pub async fn register_image(
        &self,
        options: RegisterImageOptions,
    ) -> Result<RegisterImageResult> {
        const OP: &str = "register_image";
        let size_bytes = u64::try_from(options.bytes.len())
            .map_err(|_| SdkError::InvalidInput("the image is too large".into()))?;
        let request = ManagementRequest::RegisterImage {
            tenant_id: options.tenant_id,
            name: options.name,
            description: options.description,
            size_bytes,
            sha256: sha256_hex(&options.bytes),
        };
        match self
            .connection
            .call(OP, &request, Some(&options.bytes))
            .await?
        {
            ManagementResponse::Image(image) => Ok(Image::from(image).into()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Starts an instance of an image. Its input is sent as JSON text.
    pub async fn start_instance(
        &self,
        options: StartInstanceOptions,
    ) -> Result<StartInstanceResult> {
        const OP: &str = "start_instance";
        let input = options
            .input
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| SdkError::InvalidInput(format!("cannot encode the input as json: {e}")))?;
        let timeout_ms = options
            .timeout
            .map(|timeout| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let request = ManagementRequest::StartInstance {
            image_id: options.image_id,
            tenant_id: options.tenant_id,
            instance_id: options.instance_id,
            input: input.map(ByteBuf::from),
            timeout_ms,
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Started {
                instance_id,
                created,
            } => Ok(StartInstanceResult {
                instance_id,
                created,
            }),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Everything the server knows about one instance: status, times, output or error.
    pub async fn get_instance_status(&self, instance_id: &str) -> Result<InstanceInfo> {
        const OP: &str = "get_instance_status";
        let request = ManagementRequest::GetInstanceStatus {
            instance_id: instance_id.to_owned(),
        };
        let mut info: InstanceInfo = match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Instance(instance) => instance.into(),
            other => return Err(unexpected(OP, &other)),
        };
        if info.status == InstanceStatus::Pending {
            info.queue = self.queue_place(instance_id).await?;
        }
        if info.status == InstanceStatus::Waiting {
            info.waiting_for = self.waiting_for(instance_id).await?;
        }
        Ok(info)
    }

    /// The event a waiting instance waits for (`None` from a server older than events).
    async fn waiting_for(&self, instance_id: &str) -> Result<Option<String>> {
        const OP: &str = "get_waiting_for";
        let request = ManagementRequest::GetWaitingFor {
            instance_id: instance_id.to_owned(),
        };
        match self.call_if_known(OP, &request).await? {
            Some(ManagementResponse::WaitingFor { name }) => Ok(name),
            None => Ok(None),
            Some(other) => Err(unexpected(OP, &other)),
        }
    }

    /// Waits until the instance is finished — `completed`, `failed` or `cancelled` — and
    /// returns its final status, with its output or error. The server holds the request
    /// until then (a long poll, asked again every few minutes), so the answer comes as
    /// soon as the instance ends, with no polling loop on either side.
    ///
    /// `timeout`: give up after this long with [`SdkError::WaitTimedOut`] (naming the
    /// status then); `None` waits as long as it takes — a paused instance waits for its
    /// resume. An unknown instance is `not_found`.
    ///
    /// ```no_run
    /// # async fn f(sdk: runtara_management_sdk::ManagementSdk) -> runtara_management_sdk::Result<()> {
    /// use std::time::Duration;
    /// let done = sdk
    ///     .wait_for_completion("order-ORD-456", Some(Duration::from_secs(60)))
    ///     .await?;
    /// println!("{}: {:?}", done.status, done.output_json());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_completion(
        &self,
        instance_id: &str,
        timeout: Option<Duration>,
    ) -> Result<InstanceInfo> {
        self.wait_until(instance_id, timeout, false).await
    }

    /// [`wait_for_completion`](Self::wait_for_completion), which also returns when the
    /// instance is `suspended` (paused: nothing happens until it is resumed). What
    /// `runtara-ctl wait` does.
    pub async fn wait_until_settled(
        &self,
        instance_id: &str,
        timeout: Option<Duration>,
    ) -> Result<InstanceInfo> {
        self.wait_until(instance_id, timeout, true).await
    }

    async fn wait_until(
        &self,
        instance_id: &str,
        timeout: Option<Duration>,
        or_suspended: bool,
    ) -> Result<InstanceInfo> {
        const OP: &str = "wait_for_completion";
        let settled = |info: &InstanceInfo| {
            info.is_terminal() || (or_suspended && info.status == InstanceStatus::Suspended)
        };
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let longest = Duration::from_millis(runtara_protocol::MAX_WAIT_MS);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ask = left.map_or(longest, |left| left.min(longest));
            let request = ManagementRequest::WaitForCompletion {
                instance_id: instance_id.to_owned(),
                timeout_ms: u64::try_from(ask.as_millis()).unwrap_or(u64::MAX),
                or_suspended,
            };
            // The server answers by `ask`; the request deadline covers the round trip.
            let within = ask + self.connection.request_timeout();
            let info: InstanceInfo = match self
                .connection
                .call_within(OP, &request, None, within)
                .await
            {
                Ok(ManagementResponse::Instance(instance)) => instance.into(),
                Ok(other) => return Err(unexpected(OP, &other)),
                // A server older than the request: ask for the status instead.
                Err(SdkError::Server {
                    code: ErrorCode::Malformed,
                    ..
                }) => {
                    let info = self.get_instance_status(instance_id).await?;
                    if !settled(&info) && left.is_none_or(|left| !left.is_zero()) {
                        tokio::time::sleep(OLD_SERVER_POLL.min(ask)).await;
                    }
                    info
                }
                Err(error) => return Err(error),
            };
            if settled(&info) {
                return Ok(info);
            }
            if let (Some(deadline), Some(timeout)) = (deadline, timeout) {
                if Instant::now() >= deadline {
                    return Err(SdkError::WaitTimedOut {
                        instance_id: instance_id.to_owned(),
                        after: timeout,
                        status: info.status,
                    });
                }
            }
        }
    }

    /// Runs `image_id`'s instances in worker processes from now on (`Some(pool)`): the
    /// server starts workers of the image as load needs them, up to `pool.max`, each
    /// running up to `pool.instances` instances; `None` goes back to one process per
    /// instance. Instances running now finish where they run. A pool with no worker or
    /// no instance per worker, or a minimum above its maximum, is `invalid_input`.
    pub async fn set_image_workers(
        &self,
        image_id: &str,
        workers: Option<WorkerPool>,
    ) -> Result<()> {
        const OP: &str = "set_image_workers";
        let request = ManagementRequest::SetImageWorkers {
            image_id: image_id.to_owned(),
            workers: workers.map(|pool| WireWorkerPool {
                min: pool.min,
                max: pool.max,
                instances: pool.instances,
            }),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Done => Ok(()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Where the instance's launch waits for a slot (`None`: it does not wait, or the
    /// server is older than admission control).
    async fn queue_place(&self, instance_id: &str) -> Result<Option<QueuePlace>> {
        const OP: &str = "get_queue_place";
        let request = ManagementRequest::GetQueuePlace {
            instance_id: instance_id.to_owned(),
        };
        match self.call_if_known(OP, &request).await? {
            Some(ManagementResponse::QueuePlace {
                position,
                waiting,
                running,
                max_running,
            }) => Ok(position.map(|position| QueuePlace {
                position,
                waiting,
                running,
                max_running,
            })),
            None => Ok(None),
            Some(other) => Err(unexpected(OP, &other)),
        }
    }

    /// Sends a request that older servers do not know: `None` when the server cannot
    /// decode it (it answers `malformed`).
    async fn call_if_known(
        &self,
        operation: &'static str,
        request: &ManagementRequest,
    ) -> Result<Option<ManagementResponse>> {
        match self.connection.call(operation, request, None).await {
            Ok(response) => Ok(Some(response)),
            Err(SdkError::Server {
                code: ErrorCode::Malformed,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A page of a tenant's instances, newest first (see [`list_instances_page`](Self::list_instances_page)
    /// for the total count).
    pub async fn list_instances(
        &self,
        options: ListInstancesOptions,
    ) -> Result<Vec<InstanceSummary>> {
        self.list_instances_page(options)
            .await
            .map(|page| page.instances)
    }

    /// A page of a tenant's instances, newest first, with how many matched in all. A
    /// page holds at most 1000 instances (also without a limit); page on with
    /// [`ListInstancesOptions::with_offset`]. A listed instance's error is cut to its
    /// first 1024 characters ([`get_instance_status`](Self::get_instance_status) has it
    /// whole).
    pub async fn list_instances_page(&self, options: ListInstancesOptions) -> Result<InstancePage> {
        const OP: &str = "list_instances";
        let status = match options.status.as_deref() {
            None | Some("") => None,
            Some(name) => Some(
                name.parse::<InstanceStatus>()
                    .map_err(|e| SdkError::InvalidInput(e.to_string()))?,
            ),
        };
        let request = ManagementRequest::ListInstances {
            tenant_id: options.tenant_id,
            status,
            limit: options.limit,
            offset: options.offset,
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Instances { instances, total } => Ok(InstancePage {
                instances: instances.into_iter().map(InstanceSummary::from).collect(),
                total,
            }),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Asks a running instance to pause: it stops at its next checkpoint and becomes
    /// `suspended`.
    pub async fn pause_instance(&self, instance_id: &str) -> Result<SignalOutcome> {
        self.signal("pause_instance", instance_id, WireSignalType::Pause)
            .await
    }

    /// Resumes a suspended instance from its last checkpoint, with its original input.
    /// On an instance still running with a pause its process has not taken yet, it
    /// withdraws the pause and the instance carries on (`applied`, status `running`, or
    /// `pending` if its process has not registered yet).
    pub async fn resume_instance(&self, instance_id: &str) -> Result<SignalOutcome> {
        self.signal("resume_instance", instance_id, WireSignalType::Resume)
            .await
    }

    /// Cancels an instance: cooperatively at its next checkpoint, then after a grace
    /// period by force. It ends `cancelled`.
    pub async fn cancel_instance(&self, instance_id: &str) -> Result<SignalOutcome> {
        self.signal("cancel_instance", instance_id, WireSignalType::Cancel)
            .await
    }

    /// Lets a durable call that failed for good run again: clears its recorded failure
    /// and its retry count, so the instance's next run calls it again (with a fresh
    /// retry budget). `checkpoint_id` is the call's `"{fn_name}::{key}"`. An instance that
    /// already ended `failed` because of the step stays failed; this is for instances
    /// that are still alive (running, suspended, sleeping, or waiting for a relaunch).
    /// Fails with code `not_found` when no failure is recorded for the call, and with
    /// `terminal` for a finished instance.
    pub async fn retry_step(&self, instance_id: &str, checkpoint_id: &str) -> Result<()> {
        const OP: &str = "retry_step";
        let request = ManagementRequest::RetryStep {
            instance_id: instance_id.to_owned(),
            checkpoint_id: checkpoint_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Done => Ok(()),
            other => Err(unexpected(OP, &other)),
        }
    }

    async fn signal(
        &self,
        operation: &'static str,
        instance_id: &str,
        signal: WireSignalType,
    ) -> Result<SignalOutcome> {
        let request = ManagementRequest::SendSignal {
            instance_id: instance_id.to_owned(),
            signal,
        };
        match self.connection.call(operation, &request, None).await? {
            ManagementResponse::Signalled { status, applied } => {
                Ok(SignalOutcome { status, applied })
            }
            other => Err(unexpected(operation, &other)),
        }
    }

    /// A tenant's images, newest first.
    pub async fn list_images(&self, tenant_id: &str) -> Result<Vec<Image>> {
        const OP: &str = "list_images";
        let request = ManagementRequest::ListImages {
            tenant_id: tenant_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Images(images) => Ok(images.into_iter().map(Image::from).collect()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// One image.
    pub async fn get_image(&self, image_id: &str) -> Result<Image> {
        const OP: &str = "get_image";
        let request = ManagementRequest::GetImage {
            image_id: image_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Image(image) => Ok(image.into()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Deletes an image. An image that unfinished instances still use is refused with
    /// code `in_use`.
    pub async fn delete_image(&self, image_id: &str) -> Result<()> {
        const OP: &str = "delete_image";
        let request = ManagementRequest::DeleteImage {
            image_id: image_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Done => Ok(()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// An instance's events, oldest first.
    ///
    /// Read page by page ([`list_events_page`](Self::list_events_page)), each reply at
    /// most a few MiB, so an instance whose events add up to more than one message can
    /// hold is listed whole. They are all held in memory here: to go through a long list
    /// page by page, call `list_events_page`.
    pub async fn list_events(&self, instance_id: &str) -> Result<Vec<Event>> {
        const OP: &str = "list_events";
        let mut all = Vec::new();
        let mut after_event_id = 0;
        loop {
            let page = match self
                .list_events_page(instance_id, after_event_id, None)
                .await
            {
                Ok(page) => page,
                Err(SdkError::Server { code, .. })
                    if code == "malformed" && after_event_id == 0 =>
                {
                    // A server older than paged listings.
                    return self.list_events_whole(instance_id).await;
                }
                Err(error) => return Err(error),
            };
            let empty = page.events.is_empty();
            all.extend(page.events);
            match page.more_after {
                Some(next) if !empty && next > after_event_id => after_event_id = next,
                Some(_) => {
                    return Err(SdkError::UnexpectedResponse {
                        operation: OP,
                        response: "a page that says more follow but moves no further".into(),
                    })
                }
                None => return Ok(all),
            }
        }
    }

    /// One page of an instance's events, oldest first: those after `after_event_id` (`0`
    /// for the first page; then the previous page's
    /// [`more_after`](EventPage::more_after)), at most `limit` of them (`None`, or more
    /// than the server's most per page: 1000) and at most about 4 MiB of them, but at
    /// least one when any follow.
    ///
    /// ```no_run
    /// # async fn run(sdk: &runtara_management_sdk::ManagementSdk) -> runtara_management_sdk::Result<()> {
    /// let mut after = 0;
    /// loop {
    ///     let page = sdk.list_events_page("order-42", after, None).await?;
    ///     for event in &page.events {
    ///         println!("{} {}", event.event_id, event.kind);
    ///     }
    ///     match page.more_after {
    ///         Some(next) => after = next,
    ///         None => break,
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_events_page(
        &self,
        instance_id: &str,
        after_event_id: i64,
        limit: Option<u32>,
    ) -> Result<EventPage> {
        const OP: &str = "list_events_page";
        let request = ManagementRequest::ListEventsPage {
            instance_id: instance_id.to_owned(),
            after_event_id,
            limit,
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::EventPage { events, more_after } => Ok(EventPage {
                events: events.into_iter().map(Event::from).collect(),
                more_after,
            }),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// `list_events` in one message, for servers that do not page it.
    async fn list_events_whole(&self, instance_id: &str) -> Result<Vec<Event>> {
        const OP: &str = "list_events";
        let request = ManagementRequest::ListEvents {
            instance_id: instance_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Events(events) => Ok(events.into_iter().map(Event::from).collect()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// An instance's checkpoints, in the order recorded.
    ///
    /// Read in pages of at most a few MiB each, so an instance whose checkpoints add up
    /// to more than one message can hold is listed whole.
    pub async fn list_checkpoints(&self, instance_id: &str) -> Result<Vec<Checkpoint>> {
        const OP: &str = "list_checkpoints";
        let mut all = Vec::new();
        let mut after_seq = 0;
        loop {
            let request = ManagementRequest::ListCheckpointsPage {
                instance_id: instance_id.to_owned(),
                after_seq,
            };
            let (checkpoints, more_after) = match self.connection.call(OP, &request, None).await {
                Ok(ManagementResponse::CheckpointPage {
                    checkpoints,
                    more_after,
                }) => (checkpoints, more_after),
                Err(SdkError::Server { code, .. }) if code == "malformed" && after_seq == 0 => {
                    // A server older than paged listings.
                    return self.list_checkpoints_whole(instance_id).await;
                }
                Ok(other) => return Err(unexpected(OP, &other)),
                Err(error) => return Err(error),
            };
            let empty = checkpoints.is_empty();
            all.extend(checkpoints.into_iter().map(Checkpoint::from));
            match more_after {
                Some(next) if !empty => after_seq = next,
                Some(_) => {
                    return Err(SdkError::UnexpectedResponse {
                        operation: OP,
                        response: "an empty page that says more follow".into(),
                    })
                }
                None => return Ok(all),
            }
        }
    }

    /// `list_checkpoints` in one message, for servers that do not page it.
    async fn list_checkpoints_whole(&self, instance_id: &str) -> Result<Vec<Checkpoint>> {
        const OP: &str = "list_checkpoints";
        let request = ManagementRequest::ListCheckpoints {
            instance_id: instance_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Checkpoints(checkpoints) => {
                Ok(checkpoints.into_iter().map(Checkpoint::from).collect())
            }
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Sends the event `name` with `payload` (sent as JSON) to an instance: the first
    /// `wait_for_event` for `name` in the instance takes it — now, if it is waiting for
    /// it, else when it gets there (events of one name are taken in the order sent, each
    /// once). An instance that let go of its slot to wait is run again.
    ///
    /// A finished or unknown instance, or a payload over 1 MiB, is an error and stores
    /// nothing. To make a repeated send harmless, give it an idempotency key
    /// ([`send_event_with`](Self::send_event_with)).
    ///
    /// ```no_run
    /// # async fn f(sdk: runtara_management_sdk::ManagementSdk) -> runtara_management_sdk::Result<()> {
    /// sdk.send_event("order-42", "approved", &serde_json::json!({"by": "ana"}))
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_event(
        &self,
        instance_id: &str,
        name: &str,
        payload: &impl serde::Serialize,
    ) -> Result<EventSent> {
        let payload = serde_json::to_value(payload).map_err(|e| {
            SdkError::InvalidInput(format!("cannot encode the event's payload as json: {e}"))
        })?;
        self.send_event_with(SendEventOptions::new(instance_id, name).with_payload(payload))
            .await
    }

    /// [`send_event`](Self::send_event) with every option: a repeat of a send with the
    /// same idempotency key is a no-op (`duplicate` in the answer). A send without a key
    /// gets one of its own, so that a resend by this SDK after a lost answer does not
    /// deliver it twice (each call is still a send of its own).
    pub async fn send_event_with(&self, options: SendEventOptions) -> Result<EventSent> {
        const OP: &str = "send_event";
        let payload = serde_json::to_vec(&options.payload).map_err(|e| {
            SdkError::InvalidInput(format!("cannot encode the event's payload as json: {e}"))
        })?;
        if payload.len() > runtara_protocol::MAX_EVENT_PAYLOAD_LEN {
            return Err(SdkError::InvalidInput(format!(
                "the event's payload is {} bytes of json; at most {} are allowed",
                payload.len(),
                runtara_protocol::MAX_EVENT_PAYLOAD_LEN
            )));
        }
        // Without a key of the caller's, the send gets one of its own: a resend after an
        // answer lost on the way (the connection retries) then delivers nothing twice.
        let idempotency_key = match options.idempotency_key {
            Some(key) => key,
            None => own_send_key()?,
        };
        let request = ManagementRequest::SendEvent {
            instance_id: options.instance_id,
            name: options.name,
            payload: ByteBuf::from(payload),
            idempotency_key: Some(idempotency_key),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::EventSent { seq, duplicate } => Ok(EventSent { seq, duplicate }),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// The value the instance published under `key` with `set_value`, or `None` when it
    /// has published none (yet). An unknown instance is `not_found`.
    pub async fn get_value(
        &self,
        instance_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>> {
        self.value(instance_id, key, Duration::ZERO).await
    }

    /// [`get_value`](Self::get_value), waiting up to `timeout` for a value that is not
    /// published yet (the server answers as soon as it is); `None` when none came in time.
    pub async fn wait_for_value(
        &self,
        instance_id: &str,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        let longest = Duration::from_millis(runtara_protocol::MAX_WAIT_MS);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let value = self.value(instance_id, key, left.min(longest)).await?;
            if value.is_some() || left <= longest {
                return Ok(value);
            }
        }
    }

    async fn value(
        &self,
        instance_id: &str,
        key: &str,
        wait: Duration,
    ) -> Result<Option<serde_json::Value>> {
        const OP: &str = "get_value";
        let request = ManagementRequest::GetValue {
            instance_id: instance_id.to_owned(),
            key: key.to_owned(),
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let within = wait + self.connection.request_timeout();
        match self
            .connection
            .call_within(OP, &request, None, within)
            .await?
        {
            ManagementResponse::Value { value: None } => Ok(None),
            ManagementResponse::Value { value: Some(bytes) } => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| SdkError::UnexpectedResponse {
                    operation: OP,
                    response: format!("a value that is not json: {e}"),
                }),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Creates a schedule: an instance of the image is started at each time of its cron
    /// expression, in its time zone. A bad expression or zone, or an unknown image, is an
    /// error that says which.
    ///
    /// ```no_run
    /// # async fn f(sdk: runtara_management_sdk::ManagementSdk) -> runtara_management_sdk::Result<()> {
    /// use runtara_management_sdk::CreateScheduleOptions;
    /// let options = CreateScheduleOptions::new("img-1", "acme", "0 2 * * *")
    ///     .with_timezone("Europe/Berlin");
    /// let schedule = sdk.create_schedule(options).await?;
    /// println!("{} fires next at {:?}", schedule.schedule_id, schedule.next_fire_ms);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_schedule(&self, options: CreateScheduleOptions) -> Result<Schedule> {
        const OP: &str = "create_schedule";
        let input = options
            .input
            .as_ref()
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| SdkError::InvalidInput(format!("cannot encode the input as json: {e}")))?;
        let request = ManagementRequest::CreateSchedule {
            schedule_id: options.schedule_id,
            tenant_id: options.tenant_id,
            image_id: options.image_id,
            cron: options.cron,
            timezone: options.timezone,
            input: input.map(ByteBuf::from),
            missed: options.missed.as_str().to_owned(),
        };
        self.schedule_call(OP, request).await
    }

    /// A tenant's schedules, oldest first.
    pub async fn list_schedules(&self, tenant_id: &str) -> Result<Vec<Schedule>> {
        const OP: &str = "list_schedules";
        let request = ManagementRequest::ListSchedules {
            tenant_id: tenant_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Schedules(schedules) => {
                Ok(schedules.into_iter().map(Schedule::from).collect())
            }
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Deletes a schedule; the instances it started stay.
    pub async fn delete_schedule(&self, schedule_id: &str) -> Result<()> {
        const OP: &str = "delete_schedule";
        let request = ManagementRequest::DeleteSchedule {
            schedule_id: schedule_id.to_owned(),
        };
        match self.connection.call(OP, &request, None).await? {
            ManagementResponse::Done => Ok(()),
            other => Err(unexpected(OP, &other)),
        }
    }

    /// Pauses a schedule: nothing fires until it is resumed.
    pub async fn pause_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        self.set_schedule_paused(schedule_id, true).await
    }

    /// Resumes a paused schedule from now on (the times it passed while paused do not
    /// fire).
    pub async fn resume_schedule(&self, schedule_id: &str) -> Result<Schedule> {
        self.set_schedule_paused(schedule_id, false).await
    }

    async fn set_schedule_paused(&self, schedule_id: &str, paused: bool) -> Result<Schedule> {
        let request = ManagementRequest::SetSchedulePaused {
            schedule_id: schedule_id.to_owned(),
            paused,
        };
        let operation = if paused {
            "pause_schedule"
        } else {
            "resume_schedule"
        };
        self.schedule_call(operation, request).await
    }

    async fn schedule_call(
        &self,
        operation: &'static str,
        request: ManagementRequest,
    ) -> Result<Schedule> {
        match self.connection.call(operation, &request, None).await? {
            ManagementResponse::Schedule(schedule) => Ok(schedule.into()),
            other => Err(unexpected(operation, &other)),
        }
    }
}

/// Lowercase hex SHA-256 of `bytes`, as the server checks it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// The error for a response of the wrong kind.
fn unexpected(operation: &'static str, response: &ManagementResponse) -> SdkError {
    let kind = match response {
        ManagementResponse::Pong { .. } => "pong",
        ManagementResponse::Instance(_) => "instance",
        ManagementResponse::Error(_) => "error",
        ManagementResponse::Image(_) => "image",
        ManagementResponse::Images(_) => "images",
        ManagementResponse::Done => "done",
        ManagementResponse::Started { .. } => "started",
        ManagementResponse::Instances { .. } => "instances",
        ManagementResponse::Signalled { .. } => "signalled",
        ManagementResponse::Events(_) => "events",
        ManagementResponse::Checkpoints(_) => "checkpoints",
        ManagementResponse::Health { .. } => "health",
        ManagementResponse::CheckpointPage { .. } => "checkpoint_page",
        ManagementResponse::EventPage { .. } => "event_page",
        ManagementResponse::QueuePlace { .. } => "queue_place",
        ManagementResponse::EventSent { .. } => "event_sent",
        ManagementResponse::Value { .. } => "value",
        ManagementResponse::Schedule(_) => "schedule",
        ManagementResponse::Schedules(_) => "schedules",
        ManagementResponse::WaitingFor { .. } => "waiting_for",
    };
    SdkError::UnexpectedResponse {
        operation,
        response: kind.into(),
    }
}

/// A fresh idempotency key for a send the caller gave none: `sdk-` and 32 random hex digits.
fn own_send_key() -> Result<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SdkError::InvalidInput("no randomness for an idempotency key".into()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sdk-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_send_without_a_key_gets_a_fresh_one() {
        let (a, b) = (own_send_key().unwrap(), own_send_key().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("sdk-") && a.len() == 36, "{a}");
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"").len(), 64);
    }

    #[test]
    fn new_checks_the_trust_settings() {
        let error = ManagementSdk::new(SdkConfig::new("127.0.0.1:8002")).unwrap_err();
        assert!(matches!(error, SdkError::Config(_)), "{error:?}");
        assert!(error.to_string().contains("RUNTARA_CA_CERT"), "{error}");
        assert!(
            error.to_string().contains("<data-dir>/tls/ca.pem"),
            "{error}"
        );

        let error = ManagementSdk::new(
            SdkConfig::new("127.0.0.1:8002").with_ca_cert("/nonexistent/runtara/ca.pem"),
        )
        .unwrap_err();
        assert!(matches!(error, SdkError::Io { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/runtara/ca.pem"));

        let error = ManagementSdk::new(SdkConfig::new("not an address")).unwrap_err();
        assert!(error.to_string().contains("`not an address`"), "{error}");

        let sdk = ManagementSdk::new(SdkConfig::localhost()).unwrap();
        assert_eq!(sdk.server_addr().port(), 8002);
    }

    #[test]
    fn the_sdk_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ManagementSdk>();
        assert_send_sync::<SdkError>();
    }
}
