//! Automatic heartbeats, sent in the background while an instance runs.

use std::sync::Weak;
use std::time::Duration;

use crate::sdk::Inner;

/// A background task sending heartbeats; stops when dropped or when the SDK is dropped.
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
            loop {
                ticker.tick().await;
                let Some(inner) = sdk.upgrade() else { return };
                if let Err(error) = inner.beat().await {
                    tracing::warn!(%error, "automatic heartbeat failed; stopping heartbeats");
                    return;
                }
            }
        });
        Some(HeartbeatTask { handle })
    }
}

impl Drop for HeartbeatTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
