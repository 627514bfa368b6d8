//! What `RuntaraSdk` needs from where the state lives: the embedded persistence
//! today, the server over QUIC tomorrow.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtara_core::{
    now_ms, CheckpointOutcome, InstanceRecord, PendingSignal, Persistence, ReplayLog, SignalType,
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
#[derive(Debug)]
pub(crate) struct Embedded(pub(crate) Arc<dyn Persistence>);

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
        let registration = self
            .0
            .register_instance(instance_id, tenant_id, checkpoint_id)
            .await?;
        let log = self.0.load_replay(instance_id).await?;
        Ok((registration.epoch, log))
    }

    async fn checkpoint(
        &self,
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
        state: &[u8],
    ) -> Result<CheckpointOutcome> {
        Ok(self
            .0
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
            .0
            .save_step(instance_id, epoch, checkpoint_id, state, producer)
            .await?)
    }

    async fn get_checkpoint(
        &self,
        instance_id: &str,
        checkpoint_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get_checkpoint(instance_id, checkpoint_id).await?)
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
            .0
            .save_sleep(instance_id, epoch, checkpoint_id, state, wake_at_ms)
            .await?;
        Ok((remaining_until(outcome.wake_at_ms), outcome.signal))
    }

    async fn heartbeat(&self, instance_id: &str, epoch: i64) -> Result<()> {
        Ok(self.0.heartbeat(instance_id, epoch).await?)
    }

    async fn completed(&self, instance_id: &str, epoch: i64, output: &[u8]) -> Result<()> {
        Ok(self.0.complete_instance(instance_id, epoch, output).await?)
    }

    async fn failed(&self, instance_id: &str, epoch: i64, error: &str) -> Result<()> {
        Ok(self.0.fail_instance(instance_id, epoch, error).await?)
    }

    async fn suspended(&self, instance_id: &str, epoch: i64) -> Result<()> {
        Ok(self.0.suspend_instance(instance_id, epoch).await?)
    }

    async fn sleeping(&self, instance_id: &str, epoch: i64) -> Result<()> {
        Ok(self.0.mark_sleeping(instance_id, epoch).await?)
    }

    async fn custom_event(&self, instance_id: &str, subtype: &str, payload: &[u8]) -> Result<()> {
        Ok(self
            .0
            .record_event(instance_id, "custom", Some(subtype), Some(payload))
            .await?)
    }

    async fn pending_signal(&self, instance_id: &str) -> Result<Option<PendingSignal>> {
        Ok(self.0.pending_signal(instance_id).await?)
    }

    async fn acknowledge_signal(
        &self,
        instance_id: &str,
        epoch: i64,
        signal: SignalType,
        acknowledged: bool,
    ) -> Result<()> {
        Ok(self
            .0
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
            .0
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
            .0
            .record_step_failure(instance_id, epoch, checkpoint_id, error)
            .await?)
    }

    async fn instance(&self, instance_id: &str) -> Result<Option<InstanceRecord>> {
        Ok(self.0.get_instance(instance_id).await?)
    }

    fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        Some(&self.0)
    }
}

/// Time left until `wake_at_ms` on this machine's clock (zero once passed).
pub(crate) fn remaining_until(wake_at_ms: i64) -> Duration {
    let left = wake_at_ms.saturating_sub(now_ms());
    Duration::from_millis(u64::try_from(left).unwrap_or(0))
}
