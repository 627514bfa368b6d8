//! What `RuntaraSdk` needs from where the state lives: the embedded persistence
//! today, the server over QUIC tomorrow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtara_core::{
    now_ms, CheckpointOutcome, EventQuota, InstanceRecord, PendingSignal, Persistence, ReplayLog,
    RunLease, SignalType,
};

use crate::Result;

/// The instance-side operations, each scoped to one instance and (for writes) one epoch.
#[async_trait]
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// `embedded` or `quic`.
    fn name(&self) -> &'static str;
    async fn connect(&self) -> Result<()>;
    async fn is_connected(&self) -> bool;
    /// Registers a run; returns its epoch and everything recorded so far.
    async fn register(
        &self,
        instance_id: &str,
        tenant_id: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<(i64, ReplayLog)>;
    async fn checkpoint(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome>;
    /// `checkpoint` of a durable call's result, with the function that produced it.
    async fn save_step(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome>;
    async fn get_checkpoint(
        &self,
        instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>>;
    /// Records a durable sleep of `duration_ms` from now, or finds the one recorded
    /// earlier; returns how much of it remains (measured on the backend's clock) and the
    /// cancel or pause queued for the run, if any.
    async fn sleep(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        duration_ms: i64,
    ) -> Result<(Duration, Option<PendingSignal>)>;
    async fn heartbeat(&self, instance_id: &str, epoch: i64) -> Result<()>;
    async fn completed(&self, instance_id: &str, epoch: i64, output: &[u8]) -> Result<()>;
    async fn failed(&self, instance_id: &str, epoch: i64, error: &str) -> Result<()>;
    async fn suspended(&self, instance_id: &str, epoch: i64) -> Result<()>;
    /// `running → sleeping`: the process exits and the server wakes the instance later.
    async fn sleeping(&self, instance_id: &str, epoch: i64) -> Result<()>;
    async fn custom_event(&self, instance_id: &str, subtype: &str, payload: &[u8]) -> Result<()>;
    async fn pending_signal(&self, instance_id: &str) -> Result<Option<PendingSignal>>;
    async fn acknowledge_signal(
        &self,
        instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()>;
    async fn record_retry_attempt(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<()>;
    /// Records a durable call's final failure.
    async fn record_step_failure(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        error: &str,
    ) -> Result<()>;
    /// Any instance's record (tenant checks are the caller's).
    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>>;
    /// The persistence, when the state lives in this process.
    fn persistence(&self) -> Option<&Arc<dyn Persistence>>;
}

/// Embedded mode: every call goes straight to a `Persistence` in this process.
///
/// A registered run holds the instance's run lease (see
/// [`Persistence::acquire_run_lease`]) until it finishes, suspends, or the SDK is dropped,
/// so that a second run of the instance is refused while this one lives.
#[derive(Debug)]
pub(crate) struct Embedded {
    persistence: Arc<dyn Persistence>,
    lease: tokio::sync::Mutex<Option<RunLease>>,
    /// Register without the lease (an operator's explicit takeover).
    pub(crate) take_over: bool,
}

impl Embedded {
    pub(crate) fn new(persistence: Arc<dyn Persistence>) -> Embedded {
        Embedded {
            persistence,
            lease: tokio::sync::Mutex::new(None),
            take_over: false,
        }
    }

    /// Lets go of the run lease: the run is over (finished or suspended).
    async fn release_lease(&self) {
        self.lease.lock().await.take();
    }

    /// Lets go of the run lease of a finished instance, off the async workers: nothing can
    /// run it again, so nobody waits for the release, and releasing a SQLite lease removes
    /// a file (200 instances finishing at once halved W2's rate when done inline).
    async fn release_finished_lease(&self) {
        if let Some(lease) = self.lease.lock().await.take() {
            tokio::task::spawn_blocking(move || drop(lease));
        }
    }
}

#[async_trait]
impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn connect(&self) -> Result<()> {
        Ok(())
    }

    async fn is_connected(&self) -> bool {
        true
    }

    async fn register(
        &self,
        instance_id: &str,
        tenant_id: &str,
        checkpoint_id: Option<&str>,
    ) -> Result<(i64, ReplayLog)> {
        let mut lease = self.lease.lock().await;
        if lease.is_none() && !self.take_over {
            *lease = self
                .persistence
                .acquire_run_lease(tenant_id, instance_id)
                .await?;
        }
        let registered = async {
            let registration = self
                .persistence
                .register_instance(instance_id, tenant_id, checkpoint_id)
                .await?;
            let log = self.persistence.load_replay(instance_id).await?;
            Ok((registration.epoch, log))
        }
        .await;
        if registered.is_err() {
            // A finished instance, another tenant's: this run does not go ahead.
            lease.take();
        }
        registered
    }

    async fn checkpoint(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome> {
        Ok(self
            .persistence
            .save_checkpoint(instance_id, epoch, checkpoint_id, state)
            .await?)
    }

    async fn save_step(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        producer: &str,
    ) -> Result<CheckpointOutcome> {
        Ok(self
            .persistence
            .save_step(instance_id, epoch, checkpoint_id, state, producer)
            .await?)
    }

    async fn get_checkpoint(
        &self,
        instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .persistence
            .get_checkpoint(instance_id, checkpoint_id)
            .await?)
    }

    async fn sleep(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
        duration_ms: i64,
    ) -> Result<(Duration, Option<PendingSignal>)> {
        let wake_at_ms = now_ms().saturating_add(duration_ms);
        let outcome = self
            .persistence
            .save_sleep(instance_id, epoch, checkpoint_id, state, wake_at_ms)
            .await?;
        Ok((remaining_until(outcome.wake_at_ms), outcome.signal))
    }

    async fn heartbeat(&self, instance_id: &str, epoch: i64) -> Result<()> {
        Ok(self.persistence.heartbeat(instance_id, epoch).await?)
    }

    async fn completed(&self, instance_id: &str, epoch: i64, output: &[u8]) -> Result<()> {
        self.persistence
            .complete_instance(instance_id, epoch, output)
            .await?;
        self.release_finished_lease().await;
        Ok(())
    }

    async fn failed(&self, instance_id: &str, epoch: i64, error: &str) -> Result<()> {
        self.persistence
            .fail_instance(instance_id, epoch, error)
            .await?;
        self.release_finished_lease().await;
        Ok(())
    }

    async fn suspended(&self, instance_id: &str, epoch: i64) -> Result<()> {
        self.persistence
            .suspend_instance(instance_id, epoch)
            .await?;
        self.release_lease().await;
        Ok(())
    }

    async fn sleeping(&self, instance_id: &str, epoch: i64) -> Result<()> {
        Ok(self.persistence.mark_sleeping(instance_id, epoch).await?)
    }

    async fn custom_event(&self, instance_id: &str, subtype: &str, payload: &[u8]) -> Result<()> {
        // Only this process writes an embedded run's events: no quota, but a finished
        // instance records none, as on a server.
        Ok(self
            .persistence
            .record_custom_event(instance_id, subtype, payload, &EventQuota::UNLIMITED)
            .await?)
    }

    async fn pending_signal(&self, instance_id: &str) -> Result<Option<PendingSignal>> {
        Ok(self.persistence.pending_signal(instance_id).await?)
    }

    async fn acknowledge_signal(
        &self,
        instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()> {
        Ok(self
            .persistence
            .acknowledge_signal(instance_id, epoch, signal, acknowledged)
            .await?)
    }

    async fn record_retry_attempt(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<()> {
        Ok(self
            .persistence
            .record_retry_attempt(instance_id, epoch, checkpoint_id, attempt, error)
            .await?)
    }

    async fn record_step_failure(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        error: &str,
    ) -> Result<()> {
        Ok(self
            .persistence
            .record_step_failure(instance_id, epoch, checkpoint_id, error)
            .await?)
    }

    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>> {
        Ok(self.persistence.get_instance(instance_id).await?)
    }

    fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        Some(&self.persistence)
    }
}

/// Time left until `wake_at_ms` on this machine's clock (zero once passed).
pub(crate) fn remaining_until(wake_at_ms: i64) -> Duration {
    let left = wake_at_ms.saturating_sub(now_ms());
    Duration::from_millis(u64::try_from(left).unwrap_or(0))
}
