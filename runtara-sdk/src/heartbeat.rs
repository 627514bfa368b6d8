//! Automatic heartbeats, sent in the background while an instance runs.

use std::sync::Weak;
use std::time::Duration;

use crate::sdk::Inner;
use crate::SdkError;

/// A background task sending heartbeats; stops when dropped, when the SDK is dropped, or
/// when a heartbeat is refused for good (the run was fenced out by a newer one, or the
/// instance is finished). Any other failure (the server or database unreachable for a
/// while) is transient: it keeps beating, logs once when an outage starts and once when
/// it ends, with the count of failed beats, so that a healthy instance in a long step
/// is not taken for silent after an outage.
#[derive(Debug)]
pub(crate) struct HeartbeatTask {
    handle: tokio::task::JoinHandle<()>,
}

impl HeartbeatTask {
    /// Starts beating every `interval`, or returns `None` outside a Tokio runtime.
    pub(crate) fn spawn(sdk: Weak<Inner>, interval: Duration) -> Option<HeartbeatTask> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let handle = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            let mut failed_in_a_row = 0u64;
            loop {
                ticker.tick().await;
                let Some(inner) = sdk.upgrade() else { return };
                match inner.beat().await {
                    Ok(()) => {
                        if failed_in_a_row > 0 {
                            tracing::info!(
                                failed_beats = failed_in_a_row,
                                "automatic heartbeats resumed"
                            );
                        }
                        failed_in_a_row = 0;
                    }
                    Err(error) if is_final(&error) => {
                        tracing::warn!(%error, "automatic heartbeat refused for good; stopping heartbeats");
                        return;
                    }
                    Err(error) => {
                        failed_in_a_row += 1;
                        if failed_in_a_row == 1 {
                            tracing::warn!(%error, "automatic heartbeat failed; still beating until it gets through");
                        }
                    }
                }
            }
        });
        Some(HeartbeatTask { handle })
    }
}

/// Whether a heartbeat error means no heartbeat of this run can ever succeed.
fn is_final(error: &SdkError) -> bool {
    matches!(
        error,
        SdkError::Persistence(
            runtara_core::Error::Fenced { .. }
                | runtara_core::Error::Terminal { .. }
                | runtara_core::Error::NotRunning { .. }
                | runtara_core::Error::InstanceNotFound { .. }
                | runtara_core::Error::TenantMismatch { .. }
        ) | SdkError::NotRegistered { .. }
    )
}

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
