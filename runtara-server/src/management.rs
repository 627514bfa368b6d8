//! What the management endpoint does with each request.
//!
//! Every call is scoped to the tenants the caller may act for; another tenant's image
//! or instance is reported exactly like a missing one (`not_found`), so ids of other
//! tenants cannot be probed. Bad input is refused before anything is stored.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_core::wire::to_wire;
use runtara_core::{
    now_ms, Error, ImageRecord, InstanceFilter, InstanceRecord, InstanceStatus, NewImage,
    NewInstance, Persistence, SignalOutcome, SignalType,
};
use runtara_protocol::{
    ByteBuf, ErrorCode, Hello, ManagementRequest, ManagementResponse, Role, WireCheckpoint,
    WireError, WireEvent, WireImage, WireInstance, WireSignalType, DEFAULT_MAX_FRAME_LEN,
    MAX_EVENTS_PER_PAGE, MAX_INSTANCES_PER_PAGE, REPLAY_PAGE_BYTES,
};
use tokio::io::AsyncRead;

use crate::admission::Launch;
use crate::image_store::{random_hex, ImageStore};
use crate::log_text::{client_text, Refusals};
use crate::management_tokens::ManagementTokens;
use crate::supervisor::Supervisor;
use crate::upload_limits::Uploads;
use crate::valid_ids::check_id;

/// Management hellos refused for their token, logged as a count.
static REFUSED: Refusals = Refusals::new("management hello refused");

/// Who is calling, after the handshake.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Tenants the caller may act for; `None`: every tenant (no tokens configured).
    tenants: Option<HashSet<String>>,
}

impl Caller {
    /// Whose request-byte budget the caller's requests use: its tenants (`*`: all).
    pub fn budget_key(&self) -> String {
        match &self.tenants {
            None => "*".to_owned(),
            Some(tenants) => {
                let mut tenants: Vec<&str> = tenants.iter().map(String::as_str).collect();
                tenants.sort_unstable();
                tenants.join(",")
            }
        }
    }

    /// A caller allowed every tenant.
    pub fn unrestricted() -> Caller {
        Caller { tenants: None }
    }

    pub(crate) fn may_act_for(&self, tenant_id: &str) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|tenants| tenants.contains(tenant_id))
    }
}

/// The management side of the server.
#[derive(Debug)]
pub struct Management {
    store: Arc<dyn Persistence>,
    images: ImageStore,
    supervisor: Arc<Supervisor>,
    tokens: ManagementTokens,
    started: Instant,
    uploads: Arc<Uploads>,
    /// Told when a schedule is created or resumed (the scheduler looks again).
    pub(crate) schedules_changed: Arc<tokio::sync::Notify>,
}

pub(crate) fn error(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

/// The refusal of a whole-list request (from a client older than paged listings) whose
/// list does not fit one reply.
fn not_one_reply(what: &str, instance_id: &str) -> WireError {
    error(
        ErrorCode::InvalidInput,
        format!(
            "the {what} of instance `{instance_id}` do not fit in one reply; \
             use a newer management SDK or runtara-ctl, which read them in pages"
        ),
    )
}

pub(crate) fn engine_error(error: &Error) -> WireError {
    to_wire(error)
}

fn not_found(what: &str, id: &str) -> WireError {
    error(ErrorCode::NotFound, format!("{what} `{id}` not found"))
}

fn wire_checkpoints(checkpoints: Vec<runtara_core::CheckpointRecord>) -> Vec<WireCheckpoint> {
    checkpoints
        .into_iter()
        .map(|c| WireCheckpoint {
            checkpoint_id: c.checkpoint_id,
            state: ByteBuf::from(c.state),
            created_at_ms: c.created_at_ms,
            wake_at_ms: c.wake_at_ms,
        })
        .collect()
}

/// An instance in a listing: what its record holds, without launches or log tail.
fn wire_summary(record: InstanceRecord) -> WireInstance {
    WireInstance {
        instance_id: record.instance_id,
        tenant_id: record.tenant_id,
        image_id: record.image_id,
        status: record.status,
        created_at_ms: record.created_at_ms,
        started_at_ms: record.started_at_ms,
        finished_at_ms: record.finished_at_ms,
        output: None,
        error: record.error,
        checkpoint_id: None,
        checkpoint_count: 0,
        heartbeat_at_ms: record.heartbeat_at_ms,
        wake_at_ms: record.wake_at_ms,
        launches: 0,
        log_tail: None,
    }
}

/// Most bytes of records in a reply that must hold a whole listing (old clients).
const ONE_REPLY: usize = DEFAULT_MAX_FRAME_LEN - 64 * 1024;

fn wire_events(events: Vec<runtara_core::EventRecord>) -> Vec<WireEvent> {
    events
        .into_iter()
        .map(|e| WireEvent {
            event_id: e.event_id,
            kind: e.kind,
            subtype: e.subtype,
            payload: e.payload.map(ByteBuf::from),
            created_at_ms: e.created_at_ms,
        })
        .collect()
}

fn wire_image(image: ImageRecord) -> WireImage {
    WireImage {
        image_id: image.image_id,
        tenant_id: image.tenant_id,
        name: image.name,
        version: image.version,
        description: image.description,
        sha256: image.sha256,
        size_bytes: image.size_bytes,
        created_at_ms: image.created_at_ms,
    }
}

impl Management {
    /// The management side over `store`, `images` and `supervisor`, admitting callers
    /// with one of `tokens` (everyone when there are none).
    pub fn new(
        store: Arc<dyn Persistence>,
        images: ImageStore,
        supervisor: Arc<Supervisor>,
        tokens: ManagementTokens,
        uploads: Arc<Uploads>,
    ) -> Management {
        Management {
            store,
            images,
            supervisor,
            tokens,
            started: Instant::now(),
            uploads,
            schedules_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The store it keeps everything in.
    pub(crate) fn store(&self) -> &Arc<dyn Persistence> {
        &self.store
    }

    /// Checks a management hello's token. Without configured tokens everyone is let in,
    /// for every tenant; with tokens, the caller gets the tenants of the token it shows.
    pub fn authenticate(&self, hello: &Hello) -> Result<Caller, WireError> {
        if self.tokens.is_empty() {
            return Ok(Caller::unrestricted());
        }
        let token = match &hello.role {
            Role::Management { token: Some(token) } if !token.is_empty() => token,
            _ => return Err(error(
                ErrorCode::Unauthorized,
                "this server requires a management token (set RUNTARA_MANAGEMENT_TOKEN or --token)",
            )),
        };
        match self.tokens.lookup(token) {
            Some(tenants) => Ok(Caller { tenants }),
            None => {
                REFUSED.note(&format!(
                    "an invalid token (client `{}`)",
                    client_text(&hello.client)
                ));
                Err(error(
                    ErrorCode::Unauthorized,
                    "the management token is not valid",
                ))
            }
        }
    }

    async fn wire_instance(&self, mut record: InstanceRecord) -> WireInstance {
        let info = self.supervisor.info(&record).await;
        WireInstance {
            output: record.output.take().map(ByteBuf::from),
            checkpoint_id: record.checkpoint_id.take(),
            checkpoint_count: record.checkpoint_count,
            launches: info.launches,
            log_tail: info.log_tail,
            ..wire_summary(record)
        }
    }

    /// The instance, if it exists and the caller may see it.
    async fn visible_instance(
        &self,
        caller: &Caller,
        instance_id: &str,
    ) -> Result<InstanceRecord, WireError> {
        check_id("instance id", instance_id)?;
        match self.store.get_instance(instance_id).await {
            Ok(Some(record)) if caller.may_act_for(&record.tenant_id) => Ok(record),
            Ok(_) => Err(not_found("instance", instance_id)),
            Err(Error::InvalidInput { .. }) => Err(not_found("instance", instance_id)),
            Err(e) => Err(engine_error(&e)),
        }
    }

    /// The image, if it exists and the caller may see it.
    pub(crate) async fn visible_image(
        &self,
        caller: &Caller,
        image_id: &str,
    ) -> Result<ImageRecord, WireError> {
        check_id("image id", image_id)?;
        match self.store.get_image(image_id).await {
            Ok(Some(image)) if caller.may_act_for(&image.tenant_id) => Ok(image),
            Ok(_) => Err(not_found("image", image_id)),
            Err(Error::InvalidInput { .. }) => Err(not_found("image", image_id)),
            Err(e) => Err(engine_error(&e)),
        }
    }

    pub(crate) fn check_tenant(caller: &Caller, tenant_id: &str) -> Result<(), WireError> {
        check_id("tenant id", tenant_id)?;
        if !caller.may_act_for(tenant_id) {
            return Err(error(
                ErrorCode::Unauthorized,
                format!("this token may not act for tenant `{tenant_id}`"),
            ));
        }
        Ok(())
    }

    /// Answers every request but `RegisterImage`.
    pub async fn handle(&self, caller: &Caller, request: ManagementRequest) -> ManagementResponse {
        self.dispatch(caller, request)
            .await
            .unwrap_or_else(ManagementResponse::Error)
    }

    async fn dispatch(
        &self,
        caller: &Caller,
        request: ManagementRequest,
    ) -> Result<ManagementResponse, WireError> {
        let engine = |e: Error| engine_error(&e);
        Ok(match request {
            ManagementRequest::Ping => ManagementResponse::Pong {
                server: format!("runtara-server/{}", env!("CARGO_PKG_VERSION")),
                server_time_ms: now_ms(),
            },
            ManagementRequest::Health => ManagementResponse::Health {
                server: format!("runtara-server/{}", env!("CARGO_PKG_VERSION")),
                database: self.store.backend_name().to_owned(),
                uptime_s: self.started.elapsed().as_secs(),
                running_processes: self.supervisor.live_processes(),
            },
            ManagementRequest::GetInstanceStatus { instance_id } => {
                let record = self.visible_instance(caller, &instance_id).await?;
                ManagementResponse::Instance(self.wire_instance(record).await)
            }
            ManagementRequest::ListImages { tenant_id } => {
                Self::check_tenant(caller, &tenant_id)?;
                let images = self.store.list_images(&tenant_id).await.map_err(engine)?;
                ManagementResponse::Images(images.into_iter().map(wire_image).collect())
            }
            ManagementRequest::GetImage { image_id } => {
                ManagementResponse::Image(wire_image(self.visible_image(caller, &image_id).await?))
            }
            ManagementRequest::DeleteImage { image_id } => {
                self.visible_image(caller, &image_id).await?;
                // The row and (when no other image uses it) the file go together, never
                // between a registration's file and row.
                let _catalog = self.images.catalog().await;
                let deleted = self.store.delete_image(&image_id).await.map_err(engine)?;
                if !deleted.binary_still_used {
                    self.images.remove(&deleted.image.sha256).await;
                }
                // No pool is kept for it any more; its idle workers stop.
                self.supervisor.note_image(&runtara_core::ImageRecord {
                    workers: None,
                    ..deleted.image
                });
                ManagementResponse::Done
            }
            ManagementRequest::StartInstance {
                image_id,
                tenant_id,
                instance_id,
                input,
                timeout_ms,
            } => {
                self.start_instance(caller, image_id, tenant_id, instance_id, input, timeout_ms)
                    .await?
            }
            ManagementRequest::ListInstances {
                tenant_id,
                status,
                limit,
                offset,
            } => {
                Self::check_tenant(caller, &tenant_id)?;
                // A listing reads no history, log or output: O(page) (the management
                // SDK's `InstanceSummary` shows none of them; read one instance for them),
                // and a page is bounded however many instances the tenant has.
                let limit = limit.map_or(MAX_INSTANCES_PER_PAGE, |l| l.min(MAX_INSTANCES_PER_PAGE));
                let page = self
                    .store
                    .list_instances_brief(&InstanceFilter {
                        tenant_id,
                        status,
                        limit: Some(limit),
                        offset,
                    })
                    .await
                    .map_err(engine)?;
                let instances = page.instances.into_iter().map(wire_summary).collect();
                ManagementResponse::Instances {
                    instances,
                    total: page.total,
                }
            }
            ManagementRequest::SendSignal {
                instance_id,
                signal,
            } => self.signal(caller, &instance_id, signal).await?,
            ManagementRequest::ListEvents { instance_id } => {
                // The whole list in one frame, for clients older than `ListEventsPage`;
                // what does not fit is refused, having read at most one frame of it.
                self.visible_instance(caller, &instance_id).await?;
                let page = self
                    .store
                    .list_events_page(&instance_id, 0, usize::MAX, ONE_REPLY)
                    .await
                    .map_err(engine)?;
                if page.more_after.is_some() {
                    return Err(not_one_reply("events", &instance_id));
                }
                ManagementResponse::Events(wire_events(page.events))
            }
            ManagementRequest::SetImageWorkers { image_id, workers } => {
                let image = self.visible_image(caller, &image_id).await?;
                let pool = workers.map(|w| runtara_core::WorkerPool {
                    min: w.min,
                    max: w.max,
                    instances: w.instances,
                });
                let image = self
                    .store
                    .set_image_workers(&image.image_id, pool)
                    .await
                    .map_err(engine)?;
                self.supervisor.note_image(&image);
                tracing::info!(%image_id, ?pool, "image worker pool set");
                ManagementResponse::Done
            }
            ManagementRequest::WaitForCompletion {
                instance_id,
                timeout_ms,
                or_suspended,
            } => {
                self.visible_instance(caller, &instance_id).await?;
                let wait = Duration::from_millis(timeout_ms.min(runtara_protocol::MAX_WAIT_MS));
                let completions = self.supervisor.completions();
                let record = completions
                    .wait(&*self.store, &instance_id, wait, or_suspended)
                    .await
                    .map_err(engine)?
                    .ok_or_else(|| {
                        error(
                            ErrorCode::NotFound,
                            format!("instance `{instance_id}` not found"),
                        )
                    })?;
                ManagementResponse::Instance(self.wire_instance(record).await)
            }
            ManagementRequest::SendEvent {
                instance_id,
                name,
                payload,
                idempotency_key,
            } => {
                self.visible_instance(caller, &instance_id).await?;
                let sent = self
                    .store
                    .send_event(&instance_id, &name, &payload, idempotency_key.as_deref())
                    .await
                    .map_err(engine)?;
                if sent.wakes {
                    self.supervisor.event_sent(&instance_id);
                }
                // A run holding its wait here takes the event at once.
                self.supervisor.completions().changed(&instance_id);
                tracing::info!(%instance_id, event = %name, seq = sent.seq, duplicate = sent.duplicate, wakes = sent.wakes, "event sent");
                ManagementResponse::EventSent {
                    seq: sent.seq,
                    duplicate: sent.duplicate,
                }
            }
            ManagementRequest::CreateSchedule {
                schedule_id,
                tenant_id,
                image_id,
                cron,
                timezone,
                input,
                missed,
            } => {
                let request = crate::schedules::ScheduleRequest {
                    schedule_id,
                    tenant_id,
                    image_id,
                    cron,
                    timezone,
                    input,
                    missed,
                };
                self.create_schedule(caller, request).await?
            }
            ManagementRequest::ListSchedules { tenant_id } => {
                self.list_schedules(caller, &tenant_id).await?
            }
            ManagementRequest::DeleteSchedule { schedule_id } => {
                self.delete_schedule(caller, &schedule_id).await?
            }
            ManagementRequest::SetSchedulePaused {
                schedule_id,
                paused,
            } => self.pause_schedule(caller, &schedule_id, paused).await?,
            ManagementRequest::GetWaitingFor { instance_id } => {
                self.visible_instance(caller, &instance_id).await?;
                let name = self.store.waiting_for(&instance_id).await.map_err(engine)?;
                ManagementResponse::WaitingFor { name }
            }
            ManagementRequest::GetValue {
                instance_id,
                key,
                wait_ms,
            } => {
                self.visible_instance(caller, &instance_id).await?;
                let wait = Duration::from_millis(wait_ms.min(runtara_protocol::MAX_WAIT_MS));
                let store = &*self.store;
                let value = self
                    .supervisor
                    .completions()
                    .look_until(&instance_id, wait, || async {
                        match store.get_value(&instance_id, &key).await {
                            Ok(None) => (Ok(None), false),
                            other => (other, true),
                        }
                    })
                    .await
                    .map_err(engine)?;
                ManagementResponse::Value {
                    value: value.map(ByteBuf::from),
                }
            }
            ManagementRequest::GetQueuePlace { instance_id } => {
                self.visible_instance(caller, &instance_id).await?;
                let place = self.supervisor.queue_place(&instance_id);
                let (running, waiting) = self.supervisor.slots();
                let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
                ManagementResponse::QueuePlace {
                    position: place.map(|p| count(p.position)),
                    waiting: count(waiting),
                    running: count(running),
                    max_running: count(self.supervisor.limits().max_running),
                }
            }
            ManagementRequest::ListEventsPage {
                instance_id,
                after_event_id,
                limit,
            } => {
                self.visible_instance(caller, &instance_id).await?;
                let limit = limit
                    .unwrap_or(MAX_EVENTS_PER_PAGE)
                    .min(MAX_EVENTS_PER_PAGE);
                let limit = usize::try_from(limit.max(1)).unwrap_or(1);
                let page = self
                    .store
                    .list_events_page(&instance_id, after_event_id, limit, REPLAY_PAGE_BYTES)
                    .await
                    .map_err(engine)?;
                ManagementResponse::EventPage {
                    events: wire_events(page.events),
                    more_after: page.more_after,
                }
            }
            ManagementRequest::ListCheckpoints { instance_id } => {
                // The whole list in one frame, for clients older than `ListCheckpointsPage`.
                self.visible_instance(caller, &instance_id).await?;
                let page = self
                    .store
                    .list_checkpoints_page(&instance_id, 0, ONE_REPLY)
                    .await
                    .map_err(engine)?;
                if page.more_after.is_some() {
                    return Err(not_one_reply("checkpoints", &instance_id));
                }
                ManagementResponse::Checkpoints(wire_checkpoints(page.checkpoints))
            }
            ManagementRequest::ListCheckpointsPage {
                instance_id,
                after_seq,
            } => {
                self.visible_instance(caller, &instance_id).await?;
                let page = self
                    .store
                    .list_checkpoints_page(&instance_id, after_seq, REPLAY_PAGE_BYTES)
                    .await
                    .map_err(engine)?;
                ManagementResponse::CheckpointPage {
                    checkpoints: wire_checkpoints(page.checkpoints),
                    more_after: page.more_after,
                }
            }
            ManagementRequest::RetryStep {
                instance_id,
                checkpoint_id,
            } => {
                self.visible_instance(caller, &instance_id).await?;
                let cleared = self
                    .store
                    .clear_step_failure(&instance_id, &checkpoint_id)
                    .await
                    .map_err(engine)?;
                if !cleared {
                    return Err(error(
                        ErrorCode::NotFound,
                        format!(
                            "no failure is recorded for step `{checkpoint_id}` of instance \
                             `{instance_id}`"
                        ),
                    ));
                }
                tracing::info!(%instance_id, %checkpoint_id, "step failure cleared; the step runs again on the next run");
                ManagementResponse::Done
            }
            ManagementRequest::RegisterImage { .. } => {
                return Err(error(
                    ErrorCode::Malformed,
                    "an image upload must be followed by its bytes on the same stream",
                ))
            }
        })
    }

    pub(crate) async fn start_instance(
        &self,
        caller: &Caller,
        image_id: String,
        tenant_id: String,
        instance_id: Option<String>,
        input: Option<ByteBuf>,
        timeout_ms: Option<u64>,
    ) -> Result<ManagementResponse, WireError> {
        Self::check_tenant(caller, &tenant_id)?;
        let image = self.visible_image(caller, &image_id).await?;
        if image.tenant_id != tenant_id {
            return Err(error(
                ErrorCode::NotFound,
                format!("image `{image_id}` not found for tenant `{tenant_id}`"),
            ));
        }
        if let Some(input) = &input {
            if let Err(e) = serde_json::from_slice::<serde_json::Value>(input) {
                return Err(error(
                    ErrorCode::InvalidInput,
                    format!("the input is not valid JSON: {e}"),
                ));
            }
        }
        let instance_id = match instance_id {
            Some(id) => {
                check_id("instance id", &id)?;
                id
            }
            None => format!("inst-{}", random_hex(12)),
        };
        // An image run by workers with a free slot: the instance is created registered
        // for its first run, which is sent to a worker with no write of its own.
        self.supervisor.note_image(&image);
        let mut launch = Launch {
            instance_id: instance_id.clone(),
            tenant_id: tenant_id.clone(),
            image_id: image_id.clone(),
            resume: false,
            registered: false,
        };
        launch.registered = image.workers.is_some() && self.supervisor.reserve(&launch);
        let created = self
            .store
            .create_instance(NewInstance {
                instance_id: instance_id.clone(),
                tenant_id: tenant_id.clone(),
                image_id: Some(image_id.clone()),
                input: input.map(ByteBuf::into_vec),
                run_now: launch.registered,
                parent_id: None,
                detached: false,
            })
            .await;
        if created.is_err() && launch.registered {
            self.supervisor.release_reserved(&instance_id);
        }
        match created {
            Ok(_) => {}
            Err(Error::InstanceExists { .. }) => {
                // Idempotent start: the same id, tenant and image is the same start.
                let existing = self.store.get_instance(&instance_id).await;
                return match existing {
                    Ok(Some(record))
                        if record.tenant_id == tenant_id
                            && record.image_id.as_deref() == Some(image_id.as_str()) =>
                    {
                        Ok(ManagementResponse::Started {
                            instance_id,
                            created: false,
                        })
                    }
                    // A failed read is not "exists with another image": say what failed.
                    Err(e) => Err(engine_error(&e)),
                    _ => Err(error(
                        ErrorCode::AlreadyExists,
                        format!(
                            "instance `{instance_id}` already exists with another image or tenant"
                        ),
                    )),
                };
            }
            Err(e) => return Err(engine_error(&e)),
        }
        self.supervisor
            .set_timeout(&instance_id, timeout_ms.map(Duration::from_millis));
        // Launched now, or queued for a slot in the order of the starts.
        if launch.registered {
            self.supervisor.launch_reserved(launch);
        } else {
            self.supervisor.admit(launch);
        }
        tracing::info!(%instance_id, %tenant_id, %image_id, "instance started");
        Ok(ManagementResponse::Started {
            instance_id,
            created: true,
        })
    }

    async fn signal(
        &self,
        caller: &Caller,
        instance_id: &str,
        signal: WireSignalType,
    ) -> Result<ManagementResponse, WireError> {
        self.visible_instance(caller, instance_id).await?;
        let signal = match signal {
            WireSignalType::Cancel => SignalType::Cancel,
            WireSignalType::Pause => SignalType::Pause,
            WireSignalType::Resume => SignalType::Resume,
        };
        let outcome = self
            .store
            .send_signal(instance_id, signal)
            .await
            .map_err(|e| engine_error(&e))?;
        // A launch still waiting for a slot takes a cancel or a pause here, and never
        // runs (a resume of it launches it when its turn comes).
        let outcome = match outcome {
            SignalOutcome::Queued(_) if signal != SignalType::Resume => {
                self.settle_before_launch(instance_id, signal, outcome)
                    .await
            }
            SignalOutcome::Applied(_) if signal == SignalType::Cancel => {
                self.supervisor.withdraw_queued(instance_id);
                outcome
            }
            outcome => outcome,
        };
        let (status, applied) = match outcome {
            SignalOutcome::Applied(status) => (status, true),
            SignalOutcome::Queued(_) => {
                let status = self
                    .store
                    .get_instance(instance_id)
                    .await
                    .ok()
                    .flatten()
                    .map_or(InstanceStatus::Running, |r| r.status);
                (status, false)
            }
        };
        match signal {
            SignalType::Cancel if applied => {
                // A process that had not registered yet must not carry on.
                self.supervisor.kill(instance_id);
            }
            SignalType::Cancel => self.supervisor.cancel_after_grace(instance_id),
            // Applied only when it withdrew a queued pause: the process carries on (or,
            // had it taken the pause already, is relaunched when it exits).
            SignalType::Resume if applied => self.supervisor.pause_withdrawn(instance_id),
            SignalType::Resume => self.supervisor.spawn_resume(instance_id.to_owned()),
            SignalType::Pause => {}
        }
        tracing::info!(%instance_id, %signal, %status, applied, "signal sent");
        self.supervisor.completions().changed(instance_id);
        if signal == SignalType::Cancel {
            self.cancel_children(instance_id).await;
        }
        Ok(ManagementResponse::Signalled { status, applied })
    }

    /// Cancels the unfinished children of a cancelled instance, and theirs, depth first.
    /// A child that cannot take it (it finished meanwhile) is passed over.
    async fn cancel_children(&self, instance_id: &str) {
        let mut parents = vec![instance_id.to_owned()];
        while let Some(parent) = parents.pop() {
            let children = match self.store.list_children(&parent).await {
                Ok(children) => children,
                Err(error) => {
                    tracing::warn!(%parent, %error, "cannot list the children to cancel");
                    continue;
                }
            };
            for child in children {
                match self.store.send_signal(&child, SignalType::Cancel).await {
                    Ok(SignalOutcome::Applied(_)) => {
                        self.supervisor.withdraw_queued(&child);
                        self.supervisor.kill(&child);
                    }
                    Ok(SignalOutcome::Queued(_)) => self.supervisor.cancel_after_grace(&child),
                    Err(error) => {
                        tracing::debug!(%child, %error, "child not cancelled");
                        continue;
                    }
                }
                tracing::info!(%parent, %child, "child cancelled with its parent");
                self.supervisor.completions().changed(&child);
                parents.push(child);
            }
        }
    }

    /// A cancel or pause queued for an instance whose launch waits for a slot: the launch
    /// is withdrawn and the signal taken at once (`cancelled`, `suspended`). Otherwise, or
    /// should that fail (the launch is then queued again), the signal stays queued.
    async fn settle_before_launch(
        &self,
        instance_id: &str,
        signal: SignalType,
        queued: SignalOutcome,
    ) -> SignalOutcome {
        if !self.supervisor.withdraw_queued(instance_id) {
            return queued;
        }
        let taken = match self.store.get_instance(instance_id).await {
            Ok(Some(record)) => {
                self.store
                    .acknowledge_signal(instance_id, record.epoch, signal, true)
                    .await
            }
            Ok(None) => return queued,
            Err(error) => Err(error),
        };
        match taken {
            Ok(()) => {
                tracing::info!(%instance_id, %signal, "a launch waiting for a slot took the signal without running");
                SignalOutcome::Applied(match signal {
                    SignalType::Cancel => InstanceStatus::Cancelled,
                    _ => InstanceStatus::Suspended,
                })
            }
            Err(error) => {
                tracing::warn!(%instance_id, %signal, %error, "a waiting launch could not take the signal; it waits again and takes it when launched");
                self.supervisor
                    .spawn_launch(instance_id.to_owned(), Duration::ZERO);
                queued
            }
        }
    }

    /// Receives an image upload (the bytes follow the request on `stream`).
    #[allow(clippy::too_many_arguments)]
    pub async fn register_image(
        &self,
        caller: &Caller,
        stream: &mut (impl AsyncRead + Unpin),
        tenant_id: String,
        name: String,
        description: Option<String>,
        size_bytes: u64,
        sha256: &str,
    ) -> ManagementResponse {
        if let Err(e) = Self::check_tenant(caller, &tenant_id) {
            return ManagementResponse::Error(e);
        }
        if name.trim().is_empty() {
            return ManagementResponse::Error(error(
                ErrorCode::InvalidInput,
                "the image name is empty",
            ));
        }
        if let Err(e) = self.images.check_declaration(size_bytes, sha256) {
            return ManagementResponse::Error(e);
        }
        // Counted against the tenant's bounds from before the first byte to the answer.
        let _slot = match self.uploads.begin(&tenant_id, size_bytes) {
            Ok(slot) => slot,
            Err(e) => return ManagementResponse::Error(e),
        };
        let deadline = self.uploads.timeout();
        let staged = match self
            .images
            .receive(stream, size_bytes, sha256, deadline)
            .await
        {
            Ok(staged) => staged,
            Err(e) => return ManagementResponse::Error(e),
        };
        // The file and its row appear together, never between a delete's row and file.
        let _catalog = self.images.catalog().await;
        let stored = match self.images.place(staged).await {
            Ok(stored) => stored,
            Err(e) => return ManagementResponse::Error(e),
        };
        let image = self
            .store
            .insert_image(NewImage {
                image_id: format!("img-{}", random_hex(12)),
                tenant_id,
                name,
                description,
                sha256: stored.sha256,
                size_bytes: i64::try_from(stored.size).unwrap_or(i64::MAX),
            })
            .await;
        match image {
            Ok(image) => {
                tracing::info!(image_id = %image.image_id, name = %client_text(&image.name), version = image.version, "image registered");
                ManagementResponse::Image(wire_image(image))
            }
            Err(e) => ManagementResponse::Error(engine_error(&e)),
        }
    }
}
