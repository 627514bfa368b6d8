//! The in-process runtime: many durable instances in one process, no server.
//!
//! An application — a web service, a CLI, a job runner — registers its workflow
//! functions by name, starts instances of them with an input and an instance id, and
//! awaits their results. Each instance runs on a task of its own with its own
//! [`RuntaraSdk`](crate::RuntaraSdk), in scope for its `#[durable]` calls and for [`sdk()`](crate::sdk).
//! When the runtime starts, it resumes every unfinished instance it started before
//! (after a crash, a deploy, a `kill -9`) from its last checkpoint.
//!
//! ```
//! use runtara_sdk::runtime::Runtime;
//! use runtara_sdk::{durable, SdkError};
//!
//! #[durable]
//! async fn charge(order_id: String, cents: u64) -> Result<String, SdkError> {
//!     Ok(format!("receipt-{order_id}-{cents}"))
//! }
//!
//! async fn order(cents: u64) -> Result<String, SdkError> {
//!     let id = runtara_sdk::sdk()?.instance_id().to_owned();
//!     charge(id, cents).await
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let persistence = runtara_sdk::persistence::connect("sqlite::memory:").await?;
//! let runtime = Runtime::builder(persistence)
//!     .workflow("order", order)
//!     .build() // resumes what an earlier run of this runtime left unfinished
//!     .await?;
//! let handle = runtime.start("order", "order-42", &1999).await?;
//! let receipt: String = handle.result().await?;
//! assert_eq!(receipt, "receipt-order-42-1999");
//! # Ok(()) }
//! ```
//!
//! **Identity.** A runtime is named (`default` unless [`RuntimeBuilder::name`] says
//! otherwise) and belongs to a tenant (`default`); the instances it starts are recorded
//! as its own, and only it recovers them. One live process at a time runs a runtime: it
//! holds the runtime's lease (released when the process dies, so a restart takes over at
//! once), and a second process building the same runtime on the same database gets
//! [`SdkError::RuntimeInUse`]. Give different applications sharing a database
//! different names.
//!
//! **Starts are idempotent.** Starting an instance id again with the same workflow
//! returns a handle on the instance that has it, running or finished, and starts
//! nothing; an id held by anything else is [`SdkError::IdTaken`].
//!
//! **Capacity.** At most [`max_running`](RuntimeBuilder::max_running) instances run at
//! once (default [`DEFAULT_MAX_RUNNING`]); the starts beyond it are stored `pending` and
//! run in their order as slots free up, after a restart too. An instance in a durable
//! sleep gives its slot back until it wakes.
//!
//! **Schedules** (feature `schedules`, on by default). [`Runtime::create_schedule`]
//! fires a workflow at the times of a cron expression in a time zone, each fire an
//! instance `sched-{schedule}-{fire ms}` started once; fires missed while the runtime
//! was down run once or not at all ([`MissedFires`](crate::MissedFires)) when it starts
//! again.
//!
//! **Failures.** A workflow's `Err` fails its instance with the error's message; a
//! panic fails its instance only (`workflow `order` panicked: …`). A cancel or a pause
//! ([`Runtime::cancel`], [`Runtime::pause`]) is taken at the instance's next durable call
//! or at once while it sleeps.
//!
//! Tasks the workflow spawns itself do not inherit its SDK: run their futures in
//! `runtara_sdk::sdk()?.scope(..)`.

mod handle;
#[cfg(feature = "quic")]
mod image;
mod run;
#[cfg(feature = "schedules")]
mod schedules;
mod slot;
#[cfg(feature = "quic")]
mod worker;
mod workflow;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use runtara_core::{
    InstanceStatus, NewRuntimeInstance, Persistence, RunLease, RuntimeInstance, RuntimeStart,
    SignalOutcome, SignalType,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Notify, Semaphore};

pub use handle::InstanceHandle;
#[cfg(feature = "quic")]
pub use image::{launched_by_server, run_image};
#[cfg(feature = "schedules")]
pub use schedules::{Schedule, ScheduleOptions};
pub(crate) use slot::Slot;
#[cfg(feature = "quic")]
pub use worker::WORKER_ID_ENV;

use handle::{Ended, Progress};
use run::Launch;
use workflow::Workflow;

use crate::{Result, SdkError};

/// How many instances a runtime runs at once unless told otherwise.
pub const DEFAULT_MAX_RUNNING: usize = 1024;

/// The name and the tenant of a runtime that is not given them.
pub const DEFAULT_NAME: &str = "default";

/// Many durable instances in this process: see the [module docs](self).
///
/// Cheap to clone; clones share the instances. Dropping every clone does not stop the
/// instances running: they run to their end on the Tokio runtime. It stops firing its
/// schedules.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
    /// Held by the handles the application has (not by the runtime's own tasks): the
    /// scheduler stops when the last one goes.
    #[cfg_attr(not(feature = "schedules"), allow(dead_code))]
    handles: Arc<Handles>,
}

/// What the application's handles on a runtime share: dropped with the last one, it
/// wakes the scheduler to stop.
pub(crate) struct Handles {
    changed: Arc<Notify>,
}

impl Drop for Handles {
    fn drop(&mut self) {
        self.changed.notify_one();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.shared.name)
            .field("tenant_id", &self.shared.tenant_id)
            .field("max_running", &self.shared.max_running)
            .finish_non_exhaustive()
    }
}

/// Sets up a [`Runtime`]: its workflows, name, tenant and capacity.
pub struct RuntimeBuilder {
    persistence: Arc<dyn Persistence>,
    tenant_id: String,
    name: String,
    max_running: usize,
    workflows: BTreeMap<String, Workflow>,
}

impl fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .field("max_running", &self.max_running)
            .field("workflows", &self.workflows.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a runtime and its instances' tasks share.
pub(crate) struct Shared {
    pub(crate) persistence: Arc<dyn Persistence>,
    pub(crate) tenant_id: String,
    name: String,
    max_running: usize,
    workflows: BTreeMap<String, Workflow>,
    pub(crate) slots: Arc<Semaphore>,
    /// The instances this process runs or holds (queued, running, paused), by id.
    instances: Mutex<HashMap<String, Arc<Entry>>>,
    /// The runtime's lease: one process at a time runs its instances.
    _lease: Option<RunLease>,
    /// Wakes the runtime's scheduler when its schedules change.
    #[cfg_attr(not(feature = "schedules"), allow(dead_code))]
    schedules_changed: Arc<Notify>,
}

/// One instance this process runs or holds.
pub(crate) struct Entry {
    workflow: String,
    pub(crate) progress: watch::Sender<Progress>,
    /// Wakes the instance's sleep for a signal sent through the runtime.
    pub(crate) interrupt: Arc<Notify>,
}

impl Entry {
    fn new(workflow: &str, progress: Progress) -> Arc<Entry> {
        Arc::new(Entry {
            workflow: workflow.to_owned(),
            progress: watch::Sender::new(progress),
            interrupt: Arc::new(Notify::new()),
        })
    }
}

impl RuntimeBuilder {
    /// The tenant the runtime's instances belong to (default `default`).
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> RuntimeBuilder {
        self.tenant_id = tenant_id.into();
        self
    }

    /// The runtime's name (default `default`): it owns the instances it starts, and
    /// recovers them when it starts again under this name.
    pub fn name(mut self, name: impl Into<String>) -> RuntimeBuilder {
        self.name = name.into();
        self
    }

    /// How many instances run at once (default [`DEFAULT_MAX_RUNNING`]; at least 1).
    /// Starts beyond it wait, stored as `pending`, and run in their order.
    pub fn max_running(mut self, max_running: usize) -> RuntimeBuilder {
        self.max_running = max_running.max(1);
        self
    }

    /// Registers `function` as workflow `name`: an async function taking the start
    /// input (any `DeserializeOwned` type, decoded from the input's JSON) and returning
    /// `Result<O, E>`, where the `Ok` value (any `Serialize` type) is the instance's
    /// output and the `Err` value's message (`Display`) its error. A second function
    /// under the same name replaces the first.
    pub fn workflow<F, Fut, I, O, E>(mut self, name: impl Into<String>, function: F) -> Self
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<O, E>> + Send + 'static,
        I: DeserializeOwned + 'static,
        O: Serialize + 'static,
        E: fmt::Display + 'static,
    {
        self.workflows.insert(name.into(), Workflow::new(function));
        self
    }

    /// Starts the runtime: takes its lease ([`SdkError::RuntimeInUse`] while another
    /// live process runs it) and resumes every unfinished instance it started before,
    /// oldest first, each from its last checkpoint. Paused instances wait for
    /// [`Runtime::resume`]. An instance of a workflow this runtime does not have is
    /// left unfinished, with an error in the log.
    pub async fn build(self) -> Result<Runtime> {
        let lease_name = format!("runtime:{}", self.name);
        let lease = match self
            .persistence
            .acquire_run_lease(&self.tenant_id, &lease_name)
            .await
        {
            Ok(lease) => lease,
            Err(runtara_core::Error::Leased { holder, .. }) => {
                return Err(SdkError::RuntimeInUse {
                    runtime: self.name,
                    tenant_id: self.tenant_id,
                    holder,
                })
            }
            Err(error) => return Err(error.into()),
        };
        let unfinished = self
            .persistence
            .list_runtime_instances(&self.tenant_id, &self.name)
            .await?;
        let schedules_changed = Arc::new(Notify::new());
        let runtime = Runtime {
            handles: Arc::new(Handles {
                changed: Arc::clone(&schedules_changed),
            }),
            shared: Arc::new(Shared {
                persistence: self.persistence,
                tenant_id: self.tenant_id,
                name: self.name,
                max_running: self.max_running,
                workflows: self.workflows,
                slots: Arc::new(Semaphore::new(self.max_running)),
                instances: Mutex::new(HashMap::new()),
                _lease: lease,
                schedules_changed,
            }),
        };
        let recovered = unfinished.len();
        for instance in unfinished {
            runtime.recover(instance);
        }
        #[cfg(feature = "schedules")]
        schedules::spawn_scheduler(&runtime.shared, &runtime.handles);
        tracing::info!(
            runtime = %runtime.shared.name,
            tenant_id = %runtime.shared.tenant_id,
            recovered,
            "runtime started"
        );
        Ok(runtime)
    }
}

impl Runtime {
    /// A runtime storing its instances through `persistence`; see [`RuntimeBuilder`].
    pub fn builder(persistence: Arc<dyn Persistence>) -> RuntimeBuilder {
        RuntimeBuilder {
            persistence,
            tenant_id: DEFAULT_NAME.to_owned(),
            name: DEFAULT_NAME.to_owned(),
            max_running: DEFAULT_MAX_RUNNING,
            workflows: BTreeMap::new(),
        }
    }

    /// Starts instance `instance_id` of `workflow` with `input` (encoded as JSON), once
    /// the start is stored; the instance runs at once when a slot is free, or later.
    ///
    /// Idempotent: when the id already holds an instance of this workflow started by
    /// this runtime, nothing starts and the handle is that instance's (running,
    /// finished, or resumed here if its run stopped). Errors, before anything is stored:
    /// [`SdkError::UnknownWorkflow`]; [`SdkError::StartInput`] when the input does not
    /// decode as the workflow's input type; [`SdkError::IdTaken`] when the id holds
    /// another instance.
    pub async fn start<I: Serialize + ?Sized>(
        &self,
        workflow: &str,
        instance_id: impl Into<String>,
        input: &I,
    ) -> Result<InstanceHandle> {
        let input = serde_json::to_vec(input).map_err(|source| SdkError::StartInput {
            workflow: workflow.to_owned(),
            source,
        })?;
        self.start_json(workflow, instance_id.into(), input, None, false)
            .await
    }

    /// [`start`](Self::start) with the input as JSON text, and the instance's parent
    /// (a child started by `start_child`; `detached`: not cancelled with it).
    pub(crate) async fn start_json(
        &self,
        workflow: &str,
        instance_id: String,
        input: Vec<u8>,
        parent_id: Option<String>,
        detached: bool,
    ) -> Result<InstanceHandle> {
        let function = self.workflow(workflow)?.clone();
        function
            .check_input(&input)
            .map_err(|source| SdkError::StartInput {
                workflow: workflow.to_owned(),
                source,
            })?;
        let entry = {
            let mut instances = self.shared.lock();
            if let Some(entry) = instances.get(&instance_id) {
                if entry.workflow != workflow {
                    return Err(SdkError::IdTaken {
                        holder: format!("and runs workflow `{}`", entry.workflow),
                        instance_id,
                    });
                }
                return Ok(InstanceHandle::new(instance_id, entry.progress.subscribe()));
            }
            let entry = Entry::new(workflow, Progress::Queued);
            instances.insert(instance_id.clone(), Arc::clone(&entry));
            entry
        };
        let handle = InstanceHandle::new(instance_id.clone(), entry.progress.subscribe());
        let permit = Arc::clone(&self.shared.slots).try_acquire_owned().ok();
        let new = NewRuntimeInstance {
            instance_id: instance_id.clone(),
            tenant_id: self.shared.tenant_id.clone(),
            runtime: self.shared.name.clone(),
            workflow: workflow.to_owned(),
            input: input.clone(),
            run_now: permit.is_some(),
            parent_id,
            detached,
        };
        let started = match self.shared.persistence.start_runtime_instance(new).await {
            Ok(started) => started,
            Err(error) => {
                self.shared.forget(&instance_id, &entry);
                return Err(error.into());
            }
        };
        let registered = match started {
            RuntimeStart::Created { epoch } => (epoch > 0).then_some(epoch),
            RuntimeStart::Existing(existing) => {
                if let Some(holder) = self.held_otherwise(&existing, workflow) {
                    self.shared.forget(&instance_id, &entry);
                    return Err(SdkError::IdTaken {
                        instance_id,
                        holder,
                    });
                }
                match ended_in_store(&existing) {
                    Some(progress) => {
                        self.shared.publish(&instance_id, &entry, progress);
                        return Ok(handle);
                    }
                    // Ours and unfinished, and not running here (its run stopped):
                    // resume it.
                    None => None,
                }
            }
        };
        let permit = if registered.is_some() { permit } else { None };
        self.spawn(
            Launch {
                instance_id,
                workflow_name: workflow.to_owned(),
                workflow: function,
                input,
                registered,
                permit,
            },
            entry,
        );
        Ok(handle)
    }

    /// A handle on instance `instance_id`: one this process runs or holds (queued,
    /// running, paused), or a finished one of this runtime's tenant from the store;
    /// `None` when there is no such instance, or it is unfinished and not this
    /// runtime's to run.
    pub async fn handle(&self, instance_id: &str) -> Result<Option<InstanceHandle>> {
        if let Some(entry) = self.shared.lock().get(instance_id) {
            return Ok(Some(InstanceHandle::new(
                instance_id.to_owned(),
                entry.progress.subscribe(),
            )));
        }
        let Some(record) = self.shared.persistence.get_instance(instance_id).await? else {
            return Ok(None);
        };
        if record.tenant_id != self.shared.tenant_id || !record.status.is_terminal() {
            // A run here may have ended between the two looks: ask again.
            return Ok(self.shared.lock().get(instance_id).map(|entry| {
                InstanceHandle::new(instance_id.to_owned(), entry.progress.subscribe())
            }));
        }
        let ended = ended_in_store(&runtime_instance(record));
        let (_, progress) = watch::channel(ended.unwrap_or(Progress::Running));
        Ok(Some(InstanceHandle::new(instance_id.to_owned(), progress)))
    }

    /// Cancels an instance: one not running now (queued, paused) is `cancelled` at
    /// once; a running one takes the cancel at its next durable call, or at once while
    /// it sleeps or waits. Its handles end with [`SdkError::InstanceCancelled`]. Its
    /// unfinished children (`start_child`), and theirs, are cancelled too.
    pub async fn cancel(&self, instance_id: &str) -> Result<()> {
        self.signal(instance_id, SignalType::Cancel).await?;
        let mut parents = vec![instance_id.to_owned()];
        while let Some(parent) = parents.pop() {
            for child in self.shared.persistence.list_children(&parent).await? {
                // A child that finished meanwhile takes no cancel.
                if self.signal(&child, SignalType::Cancel).await.is_ok() {
                    parents.push(child);
                }
            }
        }
        Ok(())
    }

    /// The runtime of `shared`, for a child started from one of its instances.
    /// (Not a handle of the application's: it does not keep the scheduler going.)
    pub(crate) fn of(shared: Arc<Shared>) -> Runtime {
        let handles = Arc::new(Handles {
            changed: Arc::new(Notify::new()),
        });
        Runtime { shared, handles }
    }

    /// Pauses an instance: it suspends at its next durable call (at once while it
    /// sleeps) with everything so far recorded, and gives its slot back until
    /// [`resume`](Self::resume).
    pub async fn pause(&self, instance_id: &str) -> Result<()> {
        self.signal(instance_id, SignalType::Pause).await
    }

    /// Resumes a paused instance from its last checkpoint (or withdraws a pause it has
    /// not taken yet).
    pub async fn resume(&self, instance_id: &str) -> Result<()> {
        self.signal(instance_id, SignalType::Resume).await
    }

    /// Sends the event `name` with `payload` (as JSON) to an instance: the first
    /// [`wait_for_event`](crate::RuntaraSdk::wait_for_event) for `name` in it takes it —
    /// at once if it is waiting for it here, else when it gets there (events of one name
    /// are taken in the order sent, each once). A finished or unknown instance, or a
    /// payload over 1 MiB, is an error and stores nothing.
    pub async fn send_event<T: Serialize + ?Sized>(
        &self,
        instance_id: &str,
        name: &str,
        payload: &T,
    ) -> Result<()> {
        self.send(instance_id, name, payload, None).await.map(drop)
    }

    /// [`send_event`](Self::send_event) that a repeat with the same `idempotency_key`
    /// makes no more of: true when the event was stored now, false for a repeat.
    pub async fn send_event_once<T: Serialize + ?Sized>(
        &self,
        instance_id: &str,
        name: &str,
        payload: &T,
        idempotency_key: &str,
    ) -> Result<bool> {
        self.send(instance_id, name, payload, Some(idempotency_key))
            .await
            .map(|sent| !sent.duplicate)
    }

    async fn send<T: Serialize + ?Sized>(
        &self,
        instance_id: &str,
        name: &str,
        payload: &T,
        idempotency_key: Option<&str>,
    ) -> Result<runtara_core::EventSent> {
        let payload = serde_json::to_vec(payload).map_err(|source| SdkError::EventPayload {
            what: "event",
            name: name.to_owned(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        let sent = self
            .shared
            .persistence
            .send_event(instance_id, name, &payload, idempotency_key)
            .await?;
        crate::events::ring(instance_id);
        Ok(sent)
    }

    /// The value an instance published under `key` with
    /// [`set_value`](crate::RuntaraSdk::set_value), or `None`.
    pub async fn get_value(
        &self,
        instance_id: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>> {
        let Some(bytes) = self.shared.persistence.get_value(instance_id, key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| SdkError::EventPayload {
                what: "value",
                name: key.to_owned(),
                type_name: "serde_json::Value",
                source,
            })
    }

    /// How many instances hold a slot now (running, not sleeping).
    pub fn running(&self) -> usize {
        self.shared.max_running - self.shared.slots.available_permits()
    }

    /// The runtime's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The tenant its instances belong to.
    pub fn tenant_id(&self) -> &str {
        &self.shared.tenant_id
    }

    /// Where its instances are stored.
    pub fn persistence(&self) -> &Arc<dyn Persistence> {
        &self.shared.persistence
    }

    fn workflow(&self, name: &str) -> Result<&Workflow> {
        self.shared
            .workflows
            .get(name)
            .ok_or_else(|| SdkError::UnknownWorkflow {
                workflow: name.to_owned(),
                known: match self.shared.workflows.len() {
                    0 => "none".to_owned(),
                    _ => self
                        .shared
                        .workflows
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            })
    }

    /// What holds `existing`'s id, when it is not this runtime's instance of `workflow`.
    fn held_otherwise(&self, existing: &RuntimeInstance, workflow: &str) -> Option<String> {
        if existing.tenant_id != self.shared.tenant_id {
            return Some("and belongs to another tenant".to_owned());
        }
        match (&existing.runtime, &existing.workflow) {
            (None, _) | (_, None) => Some("and was not started by a runtime".to_owned()),
            (Some(runtime), _) if *runtime != self.shared.name => {
                Some(format!("and belongs to runtime `{runtime}`"))
            }
            (_, Some(other)) if other != workflow => Some(format!("and runs workflow `{other}`")),
            _ => None,
        }
    }

    /// Takes up an unfinished instance found in the store at start-up.
    fn recover(&self, instance: RuntimeInstance) {
        let Some(workflow) = instance.workflow.as_deref() else {
            return;
        };
        let Some(function) = self.shared.workflows.get(workflow).cloned() else {
            tracing::error!(
                instance_id = %instance.instance_id,
                workflow,
                "the instance runs a workflow this runtime does not have; it stays unfinished \
                 until a runtime with that workflow starts"
            );
            return;
        };
        let paused = instance.status == InstanceStatus::Suspended;
        let entry = Entry::new(
            workflow,
            if paused {
                Progress::Suspended
            } else {
                Progress::Queued
            },
        );
        self.shared
            .lock()
            .insert(instance.instance_id.clone(), Arc::clone(&entry));
        if !paused {
            self.spawn(
                Launch {
                    instance_id: instance.instance_id,
                    workflow_name: workflow.to_owned(),
                    workflow: function,
                    input: instance.input.unwrap_or_else(|| b"null".to_vec()),
                    registered: None,
                    permit: None,
                },
                entry,
            );
        }
    }

    fn spawn(&self, launch: Launch, entry: Arc<Entry>) {
        tokio::spawn(run::run(Arc::clone(&self.shared), launch, entry));
    }

    async fn signal(&self, instance_id: &str, signal: SignalType) -> Result<()> {
        let outcome = self
            .shared
            .persistence
            .send_signal(instance_id, signal)
            .await?;
        let Some(entry) = self.shared.lock().get(instance_id).cloned() else {
            return Ok(());
        };
        // A sleeping or waiting run takes it now (a waiting one finds it applied).
        entry.interrupt.notify_waiters();
        match outcome {
            SignalOutcome::Queued(_) => {
                let paused = matches!(*entry.progress.borrow(), Progress::Suspended);
                if signal == SignalType::Resume && paused {
                    self.resume_here(instance_id, entry);
                }
            }
            SignalOutcome::Applied(InstanceStatus::Cancelled) => {
                let ended = Progress::Ended(Arc::new(Ended::Cancelled));
                self.shared.publish(instance_id, &entry, ended);
            }
            SignalOutcome::Applied(_) => {}
        }
        Ok(())
    }

    /// Runs a paused instance again after its resume was queued.
    fn resume_here(&self, instance_id: &str, entry: Arc<Entry>) {
        let Some(function) = self.shared.workflows.get(&entry.workflow).cloned() else {
            return;
        };
        entry.progress.send_replace(Progress::Queued);
        let shared = Arc::clone(&self.shared);
        let (instance_id, workflow_name) = (instance_id.to_owned(), entry.workflow.clone());
        tokio::spawn(async move {
            let input = match shared.persistence.get_instance(&instance_id).await {
                Ok(Some(record)) => record.input.unwrap_or_else(|| b"null".to_vec()),
                Ok(None) | Err(_) => {
                    let progress = shared
                        .progress_in_store(&instance_id, "its input could not be read")
                        .await;
                    shared.publish(&instance_id, &entry, progress);
                    return;
                }
            };
            let launch = Launch {
                instance_id,
                workflow_name,
                workflow: function,
                input,
                registered: None,
                permit: None,
            };
            run::run(shared, launch, entry).await;
        });
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `entry` from the instances held here, if it is still the one held.
    fn forget(&self, instance_id: &str, entry: &Arc<Entry>) {
        let mut instances = self.lock();
        if instances
            .get(instance_id)
            .is_some_and(|held| Arc::ptr_eq(held, entry))
        {
            instances.remove(instance_id);
        }
    }

    /// Tells `entry`'s handles where the instance is; an instance that ended here is no
    /// longer held.
    pub(crate) fn publish(&self, instance_id: &str, entry: &Arc<Entry>, progress: Progress) {
        let ended = matches!(progress, Progress::Ended(_));
        entry.progress.send_replace(progress);
        if ended {
            self.forget(instance_id, entry);
        }
    }

    /// Where an instance is after its run could not record its end (`reason`): as the
    /// store has it, or stopped unfinished.
    pub(crate) async fn progress_in_store(&self, instance_id: &str, reason: &str) -> Progress {
        let stopped = || Progress::Ended(Arc::new(Ended::Stopped(reason.to_owned())));
        match self.persistence.get_instance(instance_id).await {
            Ok(Some(record)) => {
                let instance = runtime_instance(record);
                match instance.status {
                    InstanceStatus::Suspended => Progress::Suspended,
                    _ => ended_in_store(&instance).unwrap_or_else(stopped),
                }
            }
            Ok(None) | Err(_) => stopped(),
        }
    }
}

/// The parts of `record` a runtime reads to tell how it ended.
fn runtime_instance(record: runtara_core::InstanceRecord) -> RuntimeInstance {
    RuntimeInstance {
        instance_id: record.instance_id,
        tenant_id: record.tenant_id,
        runtime: None,
        workflow: None,
        status: record.status,
        input: None,
        output: record.output,
        error: record.error,
    }
}

/// How a finished instance ended, from the store; `None` while it is unfinished.
fn ended_in_store(instance: &RuntimeInstance) -> Option<Progress> {
    let ended = match instance.status {
        InstanceStatus::Completed => Ended::Completed(instance.output.clone().unwrap_or_default()),
        InstanceStatus::Failed => Ended::Failed(instance.error.clone().unwrap_or_default()),
        InstanceStatus::Cancelled => Ended::Cancelled,
        InstanceStatus::Suspended => return Some(Progress::Suspended),
        _ => return None,
    };
    Some(Progress::Ended(Arc::new(ended)))
}
