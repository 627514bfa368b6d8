//! `RuntaraSdk`: the instance's handle on its durable state.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtara_core::{CheckpointOutcome, InstanceStatus, PendingSignal, Persistence, SignalType};
use runtara_protocol::{ByteBuf, InstanceRequest, InstanceResponse};

use crate::backend::{Backend, Embedded};
use crate::calls::{ask, call, is_older_server, settle};
use crate::heartbeat::HeartbeatTask;
#[cfg(feature = "quic")]
use crate::quic::Quic;
use crate::replay_cache::ReplayCache;
use crate::responses::{CheckpointResult, Signal, StatusResponse};
#[cfg(feature = "quic")]
use crate::SdkConfig;
use crate::{register_sdk, Result, SdkError};

/// Default minimum time between two [`RuntaraSdk::poll_signal`] calls that reach storage.
pub const DEFAULT_SIGNAL_POLL_INTERVAL: Duration = Duration::from_millis(1_000);

/// High-level SDK client for one instance.
///
/// Wraps a backend (the store in this process, or a server over QUIC) and provides every instance lifecycle
/// operation. Cheap to clone: clones share one connection, registration and replay cache.
/// Every method takes `&self`, so many tasks can use one SDK at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use runtara_sdk::RuntaraSdk;
///
/// let persistence = runtara_sdk::persistence::connect("sqlite::memory:").await?;
/// let sdk = RuntaraSdk::embedded(persistence, "order-42", "acme");
/// sdk.connect().await?; // no-op for embedded
/// sdk.register(None).await?;
/// let result = sdk.checkpoint("step-1", b"state").await?;
/// if let Some(earlier) = result.existing_state() {
///     // resuming: restore from `earlier` and skip the work
/// #   let _ = earlier;
/// }
/// sdk.completed(b"done").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RuntaraSdk {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    instance_id: String,
    tenant_id: String,
    backend: Box<dyn Backend>,
    /// Epoch of this run; 0 until registered.
    epoch: AtomicI64,
    pub(crate) replay: ReplayCache,
    /// Durable calls running now, one per checkpoint id.
    pub(crate) in_flight: crate::in_flight::InFlight,
    /// Set once this run has taken a cancel or a pause: errors after it are the run
    /// stopping, not a step failing, and are never recorded as a step's final failure.
    stopping: std::sync::atomic::AtomicBool,
    heartbeat_interval_ms: AtomicU64,
    signal_poll_interval: Duration,
    /// The checkpoint `init` resumes from when none is given (`RUNTARA_CHECKPOINT_ID`).
    resume_from: Option<String>,
    last_signal_poll: Mutex<Option<Instant>>,
    heartbeat: Mutex<Option<HeartbeatTask>>,
    /// Sleeps longer than this end the process (QUIC mode, set by the server); so do
    /// event waits held this long.
    pub(crate) sleep_exit_threshold: Option<Duration>,
    /// The runtime slot this run holds, given back while it sleeps (an instance of a
    /// [`Runtime`](crate::runtime::Runtime)).
    pub(crate) slot: Option<crate::runtime::Slot>,
    /// Hosted by a worker process: a long sleep ends this run, not the process.
    pub(crate) hosted: bool,
    /// How many waits for each event name this run has begun (`wait_for_event`).
    pub(crate) waits: crate::events::WaitCounter,
    /// The runtime that runs this instance, which runs its children too.
    pub(crate) runtime: Option<std::sync::Weak<crate::runtime::Shared>>,
}

impl RuntaraSdk {
    /// Creates an SDK that stores everything through `persistence`, in this process.
    ///
    /// No server is needed: open a SQLite file or PostgreSQL database with
    /// [`persistence::connect`](crate::persistence::connect). Automatic heartbeats are off
    /// by default (nothing watches them without a server); see
    /// [`with_heartbeat_interval`](Self::with_heartbeat_interval).
    pub fn embedded(
        persistence: Arc<dyn Persistence>,
        instance_id: impl Into<String>,
        tenant_id: impl Into<String>,
    ) -> RuntaraSdk {
        RuntaraSdk::embedded_with(persistence, instance_id.into(), tenant_id.into(), false)
    }

    /// Embedded mode, for operators: an explicit takeover of an instance whose live run
    /// holds its lease. This SDK registers without the lease; the other run is fenced out
    /// by epoch at its next write (it may still finish the step body it is in), and this
    /// run does not keep a third one out. Use it only for a run known to be stuck.
    pub fn embedded_takeover(
        persistence: Arc<dyn Persistence>,
        instance_id: impl Into<String>,
        tenant_id: impl Into<String>,
    ) -> RuntaraSdk {
        RuntaraSdk::embedded_with(persistence, instance_id.into(), tenant_id.into(), true)
    }

    fn embedded_with(
        persistence: Arc<dyn Persistence>,
        instance_id: String,
        tenant_id: String,
        take_over: bool,
    ) -> RuntaraSdk {
        let backend = Embedded::new(
            persistence,
            instance_id.clone(),
            tenant_id.clone(),
            take_over,
        );
        RuntaraSdk::with_backend(
            Box::new(backend),
            instance_id,
            tenant_id,
            Duration::ZERO,
            DEFAULT_SIGNAL_POLL_INTERVAL,
            None,
        )
    }

    /// An instance of an in-process runtime: embedded, without a run lease of its own
    /// (the runtime holds one for all its instances), holding `slot`.
    pub(crate) fn for_runtime(
        persistence: Arc<dyn Persistence>,
        instance_id: String,
        tenant_id: String,
        slot: crate::runtime::Slot,
        runtime: std::sync::Weak<crate::runtime::Shared>,
    ) -> RuntaraSdk {
        let mut sdk = RuntaraSdk::embedded_with(persistence, instance_id, tenant_id, true);
        if let Some(inner) = Arc::get_mut(&mut sdk.inner) {
            inner.slot = Some(slot);
            inner.runtime = Some(runtime);
        }
        sdk
    }

    /// Takes `epoch` as this run's, for a run registered when its instance was created
    /// (it has nothing to replay).
    pub(crate) fn assume_registered(&self, epoch: i64) {
        self.inner.epoch.store(epoch, Ordering::Release);
        self.start_heartbeats();
    }

    /// An instance hosted by a worker: its requests go over the worker's connection; a
    /// sleep longer than `sleep_exit_threshold` ends its run (not the worker), and the
    /// server runs it again at the wake time.
    #[cfg(feature = "quic")]
    pub(crate) fn hosted(
        connection: quinn::Connection,
        instance_id: String,
        tenant_id: String,
        sleep_exit_threshold: Option<Duration>,
    ) -> RuntaraSdk {
        let backend = crate::hosted::Hosted::new(connection, instance_id.clone());
        let mut sdk = RuntaraSdk::with_backend(
            Box::new(backend),
            instance_id,
            tenant_id,
            // The server watches the worker, not each of its instances.
            Duration::ZERO,
            DEFAULT_SIGNAL_POLL_INTERVAL,
            None,
        );
        if let Some(inner) = Arc::get_mut(&mut sdk.inner) {
            inner.sleep_exit_threshold = sleep_exit_threshold;
            inner.hosted = true;
        }
        sdk
    }

    #[cfg(feature = "quic")]
    /// Creates an SDK that talks to `runtara-server` over QUIC.
    ///
    /// Reads the CA file named by the config, but does no network I/O: call
    /// [`connect`](Self::connect) and [`register`](Self::register), or [`init`](Self::init).
    /// Verification is on unless the config says otherwise; with neither a CA nor
    /// `skip_cert_verification`, this fails with a message saying what to set.
    pub fn new(config: SdkConfig) -> Result<RuntaraSdk> {
        let (instance_id, tenant_id) = (config.instance_id.clone(), config.tenant_id.clone());
        let (heartbeat, poll) = (config.heartbeat_interval, config.signal_poll_interval);
        let resume_from = config.checkpoint_id.clone();
        let sleep_exit_threshold = config.sleep_exit_threshold;
        let backend = Box::new(Quic::new(config)?);
        let mut sdk = RuntaraSdk::with_backend(
            backend,
            instance_id,
            tenant_id,
            heartbeat,
            poll,
            resume_from,
        );
        if let Some(inner) = Arc::get_mut(&mut sdk.inner) {
            inner.sleep_exit_threshold = sleep_exit_threshold;
        }
        Ok(sdk)
    }

    #[cfg(feature = "quic")]
    /// Creates a QUIC SDK from environment variables (see [`SdkConfig::from_env`]).
    pub fn from_env() -> Result<RuntaraSdk> {
        RuntaraSdk::new(SdkConfig::from_env()?)
    }

    #[cfg(feature = "quic")]
    /// Creates a QUIC SDK for local development: 127.0.0.1:8001, certificate verification off.
    pub fn localhost(
        instance_id: impl Into<String>,
        tenant_id: impl Into<String>,
    ) -> Result<RuntaraSdk> {
        RuntaraSdk::new(SdkConfig::localhost(instance_id, tenant_id))
    }

    fn with_backend(
        backend: Box<dyn Backend>,
        instance_id: String,
        tenant_id: String,
        heartbeat_interval: Duration,
        signal_poll_interval: Duration,
        resume_from: Option<String>,
    ) -> RuntaraSdk {
        RuntaraSdk {
            inner: Arc::new(Inner {
                instance_id,
                tenant_id,
                backend,
                epoch: AtomicI64::new(0),
                replay: ReplayCache::default(),
                in_flight: Default::default(),
                stopping: Default::default(),
                heartbeat_interval_ms: AtomicU64::new(
                    u64::try_from(heartbeat_interval.as_millis()).unwrap_or(u64::MAX),
                ),
                signal_poll_interval,
                resume_from,
                last_signal_poll: Mutex::new(None),
                heartbeat: Mutex::new(None),
                sleep_exit_threshold: None,
                slot: None,
                hosted: false,
                waits: Default::default(),
                runtime: None,
            }),
        }
    }

    /// Sets the automatic heartbeat interval (zero disables); takes effect at `register`.
    pub fn with_heartbeat_interval(self, interval: Duration) -> RuntaraSdk {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.inner
            .heartbeat_interval_ms
            .store(ms, Ordering::Relaxed);
        self
    }

    /// Initializes the SDK in one call: `connect`, `register(checkpoint_id)`, then
    /// [`register_sdk`] so `#[durable]` functions use it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use runtara_sdk::RuntaraSdk;
    /// let persistence = runtara_sdk::persistence::connect("sqlite::memory:").await?;
    /// RuntaraSdk::embedded(persistence, "my-instance", "my-tenant")
    ///     .init(None)
    ///     .await?;
    /// // `#[durable]` functions now record their results.
    /// # Ok(()) }
    /// ```
    pub async fn init(self, checkpoint_id: Option<&str>) -> Result<()> {
        self.connect().await?;
        let resume_from = checkpoint_id.or(self.inner.resume_from.as_deref());
        self.register(resume_from).await?;
        register_sdk(self)
    }

    /// Connects to the backend (a no-op for embedded mode).
    pub async fn connect(&self) -> Result<()> {
        self.inner.backend.connect().await
    }

    /// Whether the backend is connected (always true for embedded mode).
    pub async fn is_connected(&self) -> bool {
        self.inner.backend.is_connected().await
    }

    /// Registers this run of the instance: creates the instance if it is new, or resumes it.
    ///
    /// Loads every recorded step in one round trip so replayed durable calls cost none, and
    /// takes a new epoch, fencing out any older run of the same instance. `checkpoint_id` is
    /// the checkpoint the run says it resumes from (recorded for operators). Registering a
    /// finished instance is an error.
    ///
    /// In embedded mode the run first takes the instance's run lease (held until the run
    /// completes, fails or suspends, or the SDK is dropped): while another live run holds
    /// it, from another process or another SDK here, this fails with
    /// [`runtara_core::Error::Leased`] naming the holder. A run whose process died is taken
    /// over at once.
    pub async fn register(&self, checkpoint_id: Option<&str>) -> Result<()> {
        let registration = crate::calls::register(&*self.inner.backend, checkpoint_id).await?;
        self.take_registration(registration);
        Ok(())
    }

    #[cfg(feature = "quic")]
    /// Takes the registration the server made for this run (a worker's instance): `first`
    /// is the register's answer; the rest of the replay log is read from the server.
    pub(crate) async fn adopt_registration(&self, first: InstanceResponse) -> Result<()> {
        let registration = crate::calls::registered(&*self.inner.backend, first).await?;
        self.take_registration(registration);
        Ok(())
    }

    /// Loads a registered run's replay log and epoch; starts its heartbeats.
    fn take_registration(&self, (epoch, log): (i64, runtara_core::ReplayLog)) {
        let inner = &self.inner;
        inner.replay.load(log);
        inner.epoch.store(epoch, Ordering::Release);
        tracing::debug!(
            instance_id = %inner.instance_id,
            epoch,
            backend = inner.backend.name(),
            recorded_steps = inner.replay.len(),
            "registered"
        );
        self.start_heartbeats();
    }

    /// Saves `state` under `checkpoint_id`, or returns the state saved there earlier.
    ///
    /// One atomic insert-if-absent: on a fresh run the state is stored and
    /// [`CheckpointResult::existing_state`] is `None`; on a resumed run the earlier state
    /// is returned and nothing changes. Counts as a heartbeat, and reports any pending
    /// cancel or pause ([`CheckpointResult::should_cancel`], [`CheckpointResult::should_pause`]).
    /// Returns only after the state is durable.
    pub async fn checkpoint(&self, checkpoint_id: &str, state: &[u8]) -> Result<CheckpointResult> {
        let request = InstanceRequest::Checkpoint {
            epoch: self.epoch()?,
            checkpoint_id: checkpoint_id.to_owned(),
            state: ByteBuf::from(state.to_vec()),
        };
        ask(self.backend(), request, |r| match r {
            InstanceResponse::Checkpointed {
                existing_state,
                signal,
            } => Some(CheckpointResult {
                existing_state: existing_state.map(ByteBuf::into_vec),
                signal: signal.map(|s| Signal::from(PendingSignal::from(s))),
            }),
            _ => None,
        })
        .await
    }

    /// [`checkpoint`](Self::checkpoint) of a durable call's result, recording the function
    /// that produced it; the outcome names the function that recorded an earlier state.
    pub(crate) async fn checkpoint_step(
        &self,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome> {
        let request = InstanceRequest::CheckpointStep {
            epoch: self.epoch()?,
            checkpoint_id: checkpoint_id.to_owned(),
            state: ByteBuf::from(state.to_vec()),
            producer: producer.to_owned(),
        };
        let response = match self.backend().send(request).await.0 {
            Err(error) if is_older_server(&error) => {
                // A server older than producers: record the state alone.
                let result = self.checkpoint(checkpoint_id, state).await?;
                return Ok(CheckpointOutcome {
                    existing_state: result.existing_state,
                    existing_producer: None,
                    signal: result.signal.map(Signal::into_pending),
                });
            }
            response => response?,
        };
        crate::calls::expect("checkpoint", response, |r| match r {
            InstanceResponse::CheckpointedStep {
                existing_state,
                existing_producer,
                signal,
            } => Some(CheckpointOutcome {
                existing_state: existing_state.map(ByteBuf::into_vec),
                existing_producer,
                signal: signal.map(PendingSignal::from),
            }),
            _ => None,
        })
    }

    /// Read-only lookup of a checkpoint; `None` when nothing is recorded under the id.
    pub async fn get_checkpoint(&self, checkpoint_id: &str) -> Result<Option<Vec<u8>>> {
        let request = InstanceRequest::GetCheckpoint {
            checkpoint_id: checkpoint_id.to_owned(),
        };
        ask(self.backend(), request, |r| match r {
            InstanceResponse::Checkpoint { state } => Some(state.map(ByteBuf::into_vec)),
            _ => None,
        })
        .await
    }

    /// Durable sleep: records a checkpoint with `state` and the wake time, then sleeps.
    ///
    /// After a restart the same call finds the recorded wake time and sleeps only the
    /// remaining time (none if it has passed). In embedded mode the sleep always happens
    /// in this process; an instance of a [`Runtime`](crate::runtime::Runtime) gives its
    /// slot back while it sleeps, so another instance runs meanwhile. Over QUIC with a sleep-exit threshold (`RUNTARA_SLEEP_EXIT_THRESHOLD_MS`,
    /// set by the server for the processes it launches), a sleep with more than the
    /// threshold left marks the instance `sleeping` and **exits the process** (status 0)
    /// once the requests under way have finished and stdout and stderr are flushed; the
    /// server relaunches it at the wake time and the run continues after this call. In a
    /// worker process, only the instance's run ends: the call returns
    /// [`SdkError::Sleeping`], which the workflow passes on (with `?`), and the server
    /// runs it again, on a worker, at the wake time.
    ///
    /// A cancel or pause queued for the run wins over the sleep: the sleep is recorded,
    /// the signal is acknowledged (the instance becomes `cancelled` or `suspended`), and
    /// the call returns [`SdkError::Cancelled`] or [`SdkError::Paused`] at once. A
    /// resumed run finds the recorded wake time and sleeps only what is left of it.
    pub async fn sleep(&self, duration: Duration, checkpoint_id: &str, state: &[u8]) -> Result<()> {
        let epoch = self.epoch()?;
        let request = InstanceRequest::Sleep {
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            state: ByteBuf::from(state.to_vec()),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        };
        let (remaining, signal) = ask(self.backend(), request, |r| match r {
            InstanceResponse::Slept {
                remaining_ms,
                signal,
                ..
            } => Some((
                Duration::from_millis(remaining_ms),
                signal.map(PendingSignal::from),
            )),
            _ => None,
        })
        .await?;
        // A cancel or pause queued before the sleep wins over it: the sleep is recorded
        // (a resumed run sleeps only what is left), and the run stops now.
        if let Some(signal) = signal {
            self.mark_stopping();
            self.acknowledge_signal(signal.signal_type, true).await?;
            return Err(match signal.signal_type {
                SignalType::Cancel => SdkError::Cancelled,
                _ => SdkError::Paused,
            });
        }
        if self
            .inner
            .sleep_exit_threshold
            .is_some_and(|threshold| remaining > threshold)
        {
            // A long sleep: the server relaunches the instance at the wake time; this
            // process has nothing left to do until then.
            let request = InstanceRequest::Sleeping { epoch };
            settle(self.backend(), request, InstanceStatus::Sleeping).await?;
            self.stop_heartbeats();
            tracing::info!(
                instance_id = %self.inner.instance_id,
                remaining_ms = remaining.as_millis() as u64,
                "long durable sleep: this run ends until the server wakes the instance"
            );
            if self.inner.hosted {
                // In a worker, only this instance's run ends: the worker hosts others.
                self.mark_stopping();
                return Err(SdkError::Sleeping { remaining });
            }
            self.exit_for_sleep().await;
        }
        match &self.inner.slot {
            Some(slot) => self.sleep_in_runtime(slot, remaining).await,
            None if !remaining.is_zero() => {
                tokio::time::sleep(remaining).await;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// A sleep of an instance of a runtime: its slot is given back meanwhile, and a
    /// cancel or pause sent through the runtime is taken at once.
    async fn sleep_in_runtime(
        &self,
        slot: &crate::runtime::Slot,
        remaining: Duration,
    ) -> Result<()> {
        let wake_at = tokio::time::Instant::now() + remaining;
        while !remaining.is_zero() {
            if slot
                .give_back_while(tokio::time::sleep_until(wake_at))
                .await
            {
                break;
            }
            if let Some(signal) = self.poll_signal_now().await? {
                if matches!(signal.signal_type, SignalType::Cancel | SignalType::Pause) {
                    self.mark_stopping();
                    self.acknowledge_signal(signal.signal_type, true).await?;
                    return Err(match signal.signal_type {
                        SignalType::Cancel => SdkError::Cancelled,
                        _ => SdkError::Paused,
                    });
                }
            }
        }
        Ok(())
    }

    /// Ends the process for a long sleep, once what it started is done: the requests
    /// under way finish and the connection closes, stdout and stderr are flushed.
    /// Destructors of what the program holds do not run (as with any
    /// `std::process::exit`): flush your own buffered writers before a long sleep.
    pub(crate) async fn exit_for_sleep(&self) -> ! {
        self.inner.backend.close().await;
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(0)
    }

    /// Sends a heartbeat ("I'm alive") without checkpointing.
    pub async fn heartbeat(&self) -> Result<()> {
        let epoch = self.epoch()?;
        call(self.backend(), InstanceRequest::Heartbeat { epoch }).await
    }

    /// Reports that the instance finished with `output`; acknowledged once stored.
    pub async fn completed(&self, output: &[u8]) -> Result<()> {
        let request = InstanceRequest::Completed {
            epoch: self.epoch()?,
            output: ByteBuf::from(output.to_vec()),
        };
        settle(self.backend(), request, InstanceStatus::Completed).await?;
        self.stop_heartbeats();
        Ok(())
    }

    /// Reports that the instance failed with `error`; acknowledged once stored.
    pub async fn failed(&self, error: &str) -> Result<()> {
        let request = InstanceRequest::Failed {
            epoch: self.epoch()?,
            error: error.to_owned(),
        };
        settle(self.backend(), request, InstanceStatus::Failed).await?;
        self.stop_heartbeats();
        Ok(())
    }

    /// Reports that the instance suspended itself (after a pause); it resumes from its
    /// last checkpoint when registered again.
    pub async fn suspended(&self) -> Result<()> {
        let request = InstanceRequest::Suspended {
            epoch: self.epoch()?,
        };
        settle(self.backend(), request, InstanceStatus::Suspended).await?;
        self.stop_heartbeats();
        Ok(())
    }

    /// Stores a custom event; the subtype is opaque to Runtara. A finished instance
    /// records none (`terminal`). A server bounds each instance's custom events (by
    /// default 64 KiB each, 10,000 and 64 MiB in all; its settings `--max-event-bytes`,
    /// `--max-events-per-instance`, `--max-event-bytes-per-instance`): an event past a
    /// bound is refused with code `invalid_input` and nothing is stored.
    pub async fn custom_event(&self, subtype: &str, payload: Vec<u8>) -> Result<()> {
        self.epoch()?;
        let request = InstanceRequest::CustomEvent {
            subtype: subtype.to_owned(),
            payload: ByteBuf::from(payload),
        };
        call(self.backend(), request).await
    }

    /// Polls for a pending signal, at most once per poll interval (1 s by default);
    /// calls in between return `None` without reaching storage.
    pub async fn poll_signal(&self) -> Result<Option<Signal>> {
        {
            let mut last = self
                .inner
                .last_signal_poll
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < self.inner.signal_poll_interval) {
                return Ok(None);
            }
            *last = Some(now);
        }
        self.poll_signal_now().await
    }

    /// Polls for a pending signal now, ignoring the rate limit.
    pub async fn poll_signal_now(&self) -> Result<Option<Signal>> {
        ask(self.backend(), InstanceRequest::PollSignal, |r| match r {
            InstanceResponse::Signal(signal) => {
                Some(signal.map(|s| Signal::from(PendingSignal::from(s))))
            }
            _ => None,
        })
        .await
    }

    /// Acknowledges a received signal. With `acknowledged`, the instance takes the
    /// matching state (cancel → `cancelled`, pause → `suspended`) if such a signal is still
    /// queued (a resume may have withdrawn a pause; then nothing changes, and the server
    /// relaunches the run should this process stop anyway); without it, the signal is
    /// dropped.
    pub async fn acknowledge_signal(
        &self,
        signal_type: SignalType,
        acknowledged: bool,
    ) -> Result<()> {
        let request = InstanceRequest::AckSignal {
            epoch: self.epoch()?,
            signal_type: signal_type.into(),
            acknowledged,
        };
        match (acknowledged, signal_type) {
            (true, SignalType::Cancel) => {
                settle(self.backend(), request, InstanceStatus::Cancelled).await?
            }
            (true, SignalType::Pause) => {
                settle(self.backend(), request, InstanceStatus::Suspended).await?
            }
            _ => call(self.backend(), request).await?,
        }
        if acknowledged && signal_type != SignalType::Resume {
            self.stop_heartbeats();
        }
        Ok(())
    }

    /// Returns [`SdkError::Cancelled`] (and acknowledges the cancel) if one is pending.
    /// Uses the rate-limited [`poll_signal`](Self::poll_signal).
    pub async fn check_cancelled(&self) -> Result<()> {
        self.check_signal(SignalType::Cancel, SdkError::Cancelled)
            .await
    }

    /// Returns [`SdkError::Paused`] (and acknowledges the pause) if one is pending.
    pub async fn check_paused(&self) -> Result<()> {
        self.check_signal(SignalType::Pause, SdkError::Paused).await
    }

    async fn check_signal(&self, wanted: SignalType, error: SdkError) -> Result<()> {
        match self.poll_signal().await? {
            Some(signal) if signal.signal_type == wanted => {
                self.mark_stopping();
                self.acknowledge_signal(wanted, true).await?;
                Err(error)
            }
            _ => Ok(()),
        }
    }

    /// Notes that this run took a cancel or a pause and is stopping.
    pub(crate) fn mark_stopping(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this run took a cancel or a pause.
    pub(crate) fn is_stopping(&self) -> bool {
        self.inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records the final failure of durable call `checkpoint_id` with `error`.
    pub(crate) async fn record_step_failure(&self, checkpoint_id: &str, error: &str) -> Result<()> {
        let request = InstanceRequest::StepFailed {
            epoch: self.epoch()?,
            checkpoint_id: checkpoint_id.to_owned(),
            error: error.to_owned(),
        };
        call(self.backend(), request).await?;
        self.inner
            .replay
            .insert_failure(checkpoint_id, error.to_owned());
        Ok(())
    }

    /// Records retry `attempt_number` (1-based) of a durable call, for the audit trail
    /// and so the attempt count survives a restart.
    pub async fn record_retry_attempt(
        &self,
        checkpoint_id: &str,
        attempt_number: u32,
        error_message: Option<&str>,
    ) -> Result<()> {
        let request = InstanceRequest::RetryAttempt {
            epoch: self.epoch()?,
            checkpoint_id: checkpoint_id.to_owned(),
            attempt: attempt_number,
            error: error_message.map(str::to_owned),
        };
        call(self.backend(), request).await?;
        self.inner
            .replay
            .set_attempts(checkpoint_id, attempt_number);
        Ok(())
    }

    /// The current status of this instance.
    pub async fn get_status(&self) -> Result<StatusResponse> {
        self.get_instance_status(&self.inner.instance_id).await
    }

    /// The status of another instance of the same tenant.
    pub async fn get_instance_status(&self, instance_id: &str) -> Result<StatusResponse> {
        let request = InstanceRequest::GetStatus {
            instance_id: Some(instance_id.to_owned()),
        };
        ask(self.backend(), request, |r| match r {
            InstanceResponse::Status(status) => Some(StatusResponse::from_wire(status)),
            _ => None,
        })
        .await
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.inner.tenant_id
    }

    /// Whether `register` has succeeded.
    pub fn is_registered(&self) -> bool {
        self.inner.epoch.load(Ordering::Acquire) > 0
    }

    /// The automatic heartbeat interval in milliseconds; 0 when disabled.
    pub fn heartbeat_interval_ms(&self) -> u64 {
        self.inner.heartbeat_interval_ms.load(Ordering::Relaxed)
    }

    /// The persistence this SDK writes to, in embedded mode (`None` over QUIC).
    pub fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        self.inner.backend.persistence()
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    /// This run's epoch, or `NotRegistered`.
    pub(crate) fn epoch(&self) -> Result<i64> {
        match self.inner.epoch.load(Ordering::Acquire) {
            0 => Err(SdkError::NotRegistered {
                instance_id: self.inner.instance_id.clone(),
            }),
            epoch => Ok(epoch),
        }
    }

    fn start_heartbeats(&self) {
        let interval = self.heartbeat_interval_ms();
        if interval == 0 {
            return;
        }
        let task =
            HeartbeatTask::spawn(Arc::downgrade(&self.inner), Duration::from_millis(interval));
        let mut slot = self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = task;
    }

    pub(crate) fn stop_heartbeats(&self) {
        let mut slot = self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.take();
    }
}

impl Inner {
    /// Sends one heartbeat for the automatic heartbeat task.
    pub(crate) async fn beat(&self) -> Result<()> {
        let epoch = self.epoch.load(Ordering::Acquire);
        call(&*self.backend, InstanceRequest::Heartbeat { epoch }).await
    }
}
