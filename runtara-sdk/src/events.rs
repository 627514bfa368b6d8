//! Waiting for the outside world: [`RuntaraSdk::wait_for_event`] and
//! [`RuntaraSdk::set_value`], and the in-process bell that tells a waiting run of an
//! event sent in this process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use runtara_core::inbox::decode_outcome;
use runtara_core::{Error as EngineError, InstanceStatus, PendingSignal, SignalType};
use runtara_protocol::{ByteBuf, InstanceRequest, InstanceResponse, MAX_EVENT_HOLD_MS};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Notify;

use crate::calls::{ask, call};
use crate::{Result, RuntaraSdk, SdkError};

/// The longest one wait request is held by a server (the server caps it too).
const HOLD_PER_REQUEST: Duration = Duration::from_millis(MAX_EVENT_HOLD_MS / 2);

/// How often an embedded wait looks at the store at first, for an event sent by another
/// process; the look doubles up to [`EMBEDDED_RECHECK_MAX`]. An event sent in this
/// process (a [`Runtime`](crate::runtime::Runtime)'s `send_event`) rings at once.
const EMBEDDED_RECHECK_MIN: Duration = Duration::from_millis(50);
const EMBEDDED_RECHECK_MAX: Duration = Duration::from_secs(1);

/// How many waits for each event name a run has begun: the n-th wait for `name` is
/// recorded under `"{name}#{n}"`, so a rerun's n-th wait finds what the first run's got.
#[derive(Debug, Default)]
pub(crate) struct WaitCounter(Mutex<HashMap<String, u32>>);

impl WaitCounter {
    fn next(&self, name: &str) -> u32 {
        let mut waits = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = waits.entry(name.to_owned()).or_insert(0);
        *n += 1;
        *n
    }
}

/// The checkpoint id of the `n`-th wait for `name`.
pub(crate) fn wait_checkpoint_id(name: &str, n: u32) -> String {
    format!("{name}#{n}")
}

/// The bells of the instances waiting in this process, by instance id.
static BELLS: Mutex<Option<HashMap<String, Weak<Notify>>>> = Mutex::new(None);

/// Tells the runs of `instance_id` waiting in this process that something was sent to
/// it (an event, a signal).
pub(crate) fn ring(instance_id: &str) {
    let bells = BELLS.lock().unwrap_or_else(PoisonError::into_inner);
    let bell = bells
        .as_ref()
        .and_then(|bells| bells.get(instance_id))
        .and_then(Weak::upgrade);
    if let Some(bell) = bell {
        bell.notify_waiters();
    }
}

/// The bell of `instance_id`, held while it waits.
fn bell(instance_id: &str) -> Arc<Notify> {
    let mut bells = BELLS.lock().unwrap_or_else(PoisonError::into_inner);
    let bells = bells.get_or_insert_with(HashMap::new);
    if let Some(bell) = bells.get(instance_id).and_then(Weak::upgrade) {
        return bell;
    }
    bells.retain(|_, bell| bell.strong_count() > 0);
    let bell = Arc::new(Notify::new());
    bells.insert(instance_id.to_owned(), Arc::downgrade(&bell));
    bell
}

/// What one look at the wait found.
enum Look {
    Taken(Option<Vec<u8>>),
    Nothing,
}

impl RuntaraSdk {
    /// Waits for the external event `name` and returns its payload, or `None` when
    /// `timeout` passes first (`None`: wait as long as it takes).
    ///
    /// Durable: the payload (or the timeout) is recorded, so a rerun returns the same
    /// value at once, and the timeout counts from the first run's wait. The `n`-th wait
    /// for `name` in a run is recorded under checkpoint id `"{name}#{n}"`; keep the order
    /// of waits for one name the same from run to run, as for durable calls.
    ///
    /// Events are sent with `ManagementSdk::send_event` or `runtara-ctl send` (server
    /// mode), or [`Runtime::send_event`](crate::runtime::Runtime::send_event) (embedded).
    /// An event sent before the wait begins is kept for it: each event is taken by one
    /// wait, in the order sent. The payload is JSON, decoded as `T`.
    ///
    /// While it waits, the instance is `waiting`. Over QUIC with a sleep-exit threshold
    /// (set by the server), a wait held that long lets go of its slot as a long sleep
    /// does: the process exits (in a worker, the run ends with [`SdkError::Waiting`],
    /// which the workflow passes on with `?`), and the server runs the instance again
    /// when the event comes or the wait times out. An instance of a
    /// [`Runtime`](crate::runtime::Runtime) gives its slot back while it waits.
    ///
    /// A cancel or pause wins over the wait: [`SdkError::Cancelled`] or
    /// [`SdkError::Paused`], as at a durable call.
    ///
    /// ```no_run
    /// # async fn f(sdk: &runtara_sdk::RuntaraSdk) -> runtara_sdk::Result<()> {
    /// use std::time::Duration;
    /// #[derive(serde::Deserialize)]
    /// struct Approval { by: String }
    ///
    /// match sdk.wait_for_event::<Approval>("approved", Some(Duration::from_secs(3600))).await? {
    ///     Some(approval) => println!("approved by {}", approval.by),
    ///     None => println!("nobody approved within the hour"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_for_event<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<T>> {
        let checkpoint_id = wait_checkpoint_id(name, self.inner.waits.next(name));
        let payload = self.wait_recorded(&checkpoint_id, name, timeout).await?;
        payload
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|source| SdkError::EventPayload {
                    what: "event",
                    name: name.to_owned(),
                    type_name: std::any::type_name::<T>(),
                    source,
                })
            })
            .transpose()
    }

    /// Publishes `value` (as JSON) under `key`, for `ManagementSdk::get_value` and
    /// `runtara-ctl value` to read: progress, intermediate results. A later value under
    /// the same key replaces it; values stay after the instance ends. At most 1 MiB.
    pub async fn set_value<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let value = serde_json::to_vec(value).map_err(|source| SdkError::EventPayload {
            what: "value",
            name: key.to_owned(),
            type_name: std::any::type_name::<T>(),
            source,
        })?;
        let request = InstanceRequest::SetValue {
            epoch: self.epoch()?,
            key: key.to_owned(),
            value: ByteBuf::from(value),
        };
        call(self.backend(), request).await?;
        ring(self.instance_id());
        Ok(())
    }

    /// The wait recorded under `checkpoint_id`: from this run's replay if a run recorded
    /// it, else from the store, waiting there until an event or the deadline.
    async fn wait_recorded(
        &self,
        checkpoint_id: &str,
        name: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<Vec<u8>>> {
        let replayed = self.inner.replay.with_state(checkpoint_id, |state, _| {
            decode_outcome(checkpoint_id, state)
        });
        if let Some(outcome) = replayed {
            return Ok(outcome?);
        }
        let deadline_ms = match timeout {
            Some(timeout) => Some(self.wait_deadline(checkpoint_id, timeout).await?),
            None => None,
        };
        let embedded = self.persistence().is_some();
        let bell = bell(self.instance_id());
        let started = Instant::now();
        let mut recheck = EMBEDDED_RECHECK_MIN;
        loop {
            // Armed before the look, so that an event sent between the two rings it.
            let rung = bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            let hold = if embedded {
                Duration::ZERO
            } else {
                HOLD_PER_REQUEST
            };
            if let Look::Taken(payload) = self.look(checkpoint_id, name, deadline_ms, hold).await? {
                let state = runtara_core::inbox::encode_outcome(payload.as_deref());
                self.inner.replay.insert_state(checkpoint_id, state, None);
                return Ok(payload);
            }
            if self
                .inner
                .sleep_exit_threshold
                .is_some_and(|threshold| started.elapsed() >= threshold)
            {
                return self.let_go(name).await;
            }
            if embedded {
                let left = deadline_ms.map(|at| {
                    Duration::from_millis(u64::try_from(at - runtara_core::now_ms()).unwrap_or(0))
                });
                let nap = left.map_or(recheck, |left| left.min(recheck));
                let woken = async {
                    tokio::select! {
                        () = &mut rung => {}
                        () = tokio::time::sleep(nap) => {}
                    }
                };
                match &self.inner.slot {
                    Some(slot) => {
                        slot.give_back_while(woken).await;
                    }
                    None => woken.await,
                }
                recheck = (recheck * 2).min(EMBEDDED_RECHECK_MAX);
            }
        }
    }

    /// One look at the wait (held by a server up to `hold`): taken, or nothing yet. A
    /// cancel or pause is taken here and ends the wait with its error.
    async fn look(
        &self,
        checkpoint_id: &str,
        name: &str,
        deadline_ms: Option<i64>,
        hold: Duration,
    ) -> Result<Look> {
        let request = InstanceRequest::TakeEvent {
            epoch: self.epoch()?,
            checkpoint_id: checkpoint_id.to_owned(),
            name: name.to_owned(),
            deadline_ms,
            hold_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = ask(self.backend(), request, |r| match r {
            InstanceResponse::EventTaken { payload } => {
                Some(Ok(Look::Taken(payload.map(ByteBuf::into_vec))))
            }
            InstanceResponse::EventPending { signal: None } => Some(Ok(Look::Nothing)),
            InstanceResponse::EventPending {
                signal: Some(signal),
            } => Some(Err(PendingSignal::from(signal))),
            _ => None,
        })
        .await;
        match answer {
            Ok(Ok(look)) => Ok(look),
            Ok(Err(signal)) => Err(self.take_signal(signal.signal_type).await),
            // A cancel or pause applied while the instance waited (no run to queue it for).
            Err(SdkError::Persistence(EngineError::Terminal {
                status: InstanceStatus::Cancelled,
                ..
            })) => {
                self.mark_stopping();
                Err(SdkError::Cancelled)
            }
            Err(SdkError::Persistence(EngineError::NotRunning {
                status: InstanceStatus::Suspended,
                ..
            })) => {
                self.mark_stopping();
                Err(SdkError::Paused)
            }
            Err(error) => Err(error),
        }
    }

    /// Takes a cancel or pause queued for the run, and the error that ends it.
    async fn take_signal(&self, signal: SignalType) -> SdkError {
        self.mark_stopping();
        if let Err(error) = self.acknowledge_signal(signal, true).await {
            return error;
        }
        match signal {
            SignalType::Cancel => SdkError::Cancelled,
            _ => SdkError::Paused,
        }
    }

    /// The wait's deadline, recorded at its first run (a checkpoint of its own, so a
    /// rerun keeps the first run's deadline).
    async fn wait_deadline(&self, checkpoint_id: &str, timeout: Duration) -> Result<i64> {
        let id = format!("{checkpoint_id}@deadline");
        let recorded = self
            .inner
            .replay
            .with_state(&id, |state, _| state.try_into().map(i64::from_be_bytes));
        if let Some(Ok(deadline)) = recorded {
            return Ok(deadline);
        }
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let deadline = runtara_core::now_ms().saturating_add(timeout_ms);
        let result = self.checkpoint(&id, &deadline.to_be_bytes()).await?;
        let deadline = match result.existing_state() {
            Some(earlier) => earlier.try_into().map(i64::from_be_bytes).map_err(|_| {
                SdkError::Persistence(EngineError::InvalidInput {
                    what: "event wait",
                    reason: format!("checkpoint `{id}` does not hold a wait's deadline"),
                })
            })?,
            None => deadline,
        };
        self.inner
            .replay
            .insert_state(&id, deadline.to_be_bytes().to_vec(), None);
        Ok(deadline)
    }

    /// The wait was held as long as a long sleep may be: the instance stays `waiting`
    /// without this run, and the server runs it again when its event comes.
    async fn let_go(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.stop_heartbeats();
        tracing::info!(
            instance_id = %self.instance_id(),
            event = name,
            "long wait for an event: this run ends until the event comes"
        );
        if self.inner.hosted {
            self.mark_stopping();
            return Err(SdkError::Waiting {
                name: name.to_owned(),
            });
        }
        self.exit_for_sleep().await
    }
}
