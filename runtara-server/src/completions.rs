//! Waiting for an instance to finish, for
//! [`ManagementRequest::WaitForCompletion`](runtara_protocol::ManagementRequest::WaitForCompletion):
//! a long poll on the server, not a polling loop in the client.
//!
//! Whatever may end an instance — a request of its run (completed, failed, a signal
//! taken), its run's end (after the supervisor's decision), a launch that failed, a signal
//! settled without a run — calls [`Completions::changed`], and the instance's waiters read
//! it again. They also read it every [`RECHECK`], so that a change no path announces is
//! seen within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use runtara_core::{InstanceRecord, InstanceStatus, Persistence};
use tokio::sync::Notify;

/// How often a waiter reads the instance again without being told of a change.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Prune the table of waited-for instances once it holds this many.
const PRUNE_AT: usize = 256;

/// The instances being waited for, each with the [`Notify`] its waiters share.
#[derive(Debug, Default)]
pub struct Completions {
    waiting: Mutex<HashMap<String, Weak<Notify>>>,
}

/// Whether a wait for `record` is over: it is finished, or (when asked) suspended.
pub fn is_settled(record: &InstanceRecord, or_suspended: bool) -> bool {
    record.status.is_terminal() || (or_suspended && record.status == InstanceStatus::Suspended)
}

impl Completions {
    /// No one waits yet.
    pub fn new() -> Arc<Completions> {
        Arc::new(Completions::default())
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Notify>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Something about `instance_id` may have changed: its waiters read it again.
    pub fn changed(&self, instance_id: &str) {
        let notify = self.waiting().get(instance_id).and_then(Weak::upgrade);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// What wakes the waiters of `instance_id` (held while waiting).
    fn watch(&self, instance_id: &str) -> Arc<Notify> {
        let mut waiting = self.waiting();
        if let Some(notify) = waiting.get(instance_id).and_then(Weak::upgrade) {
            return notify;
        }
        if waiting.len() >= PRUNE_AT {
            waiting.retain(|_, notify| notify.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        waiting.insert(instance_id.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Reads `instance_id` until it is settled ([`is_settled`]) or `wait` has passed,
    /// and returns it as it is then; `None` when there is no such instance.
    pub async fn wait(
        &self,
        store: &dyn Persistence,
        instance_id: &str,
        wait: Duration,
        or_suspended: bool,
    ) -> runtara_core::Result<Option<InstanceRecord>> {
        self.look_until(instance_id, wait, || async {
            match store.get_instance(instance_id).await {
                Ok(Some(record)) => {
                    let settled = is_settled(&record, or_suspended);
                    (Ok(Some(record)), settled)
                }
                other => (other, true),
            }
        })
        .await
    }

    /// Calls `look` until it says it is done or `wait` has passed, and returns its last
    /// answer. It looks again whenever `instance_id` may have changed ([`changed`](Self::changed))
    /// and every [`RECHECK`] otherwise: a long poll on anything about one instance.
    pub async fn look_until<T, F, Fut>(&self, instance_id: &str, wait: Duration, mut look: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = (T, bool)>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        let notify = self.watch(instance_id);
        loop {
            // Armed before the look, so that a change between the two is not missed.
            let changed = notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (answer, done) = look().await;
            if done || tokio::time::Instant::now() >= deadline {
                return answer;
            }
            let recheck = (tokio::time::Instant::now() + RECHECK).min(deadline);
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(recheck) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn watchers_share_one_notify_and_gone_ones_are_pruned() {
        let completions = Completions::default();
        let a = completions.watch("a");
        let again = completions.watch("a");
        assert!(Arc::ptr_eq(&a, &again));
        drop((a, again));
        for n in 0..PRUNE_AT {
            completions.watch(&format!("x{n}"));
        }
        let _kept = completions.watch("kept");
        assert!(completions.waiting().len() <= 2, "dead entries pruned");
        // Telling a gone waiter is a no-op.
        completions.changed("x1");
    }
}
