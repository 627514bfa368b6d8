//! Recorded results of this run, held in memory so a replayed step costs no round trip.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use runtara_core::ReplayLog;

/// Checkpoint states and retry counts of one instance, loaded once at register.
///
/// Authoritative while this run holds the instance's epoch: no other process can
/// write to the instance without fencing this one out first.
#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    states: RwLock<HashMap<String, Recorded>>,
    attempts: RwLock<HashMap<String, u32>>,
}

/// One recorded state and the function that recorded it, when it said.
#[derive(Debug)]
struct Recorded {
    state: Vec<u8>,
    /// Shared among the states one function recorded.
    producer: Option<Arc<str>>,
}

impl ReplayCache {
    /// Replaces the contents with a freshly loaded log.
    pub(crate) fn load(&self, log: ReplayLog) {
        let names: Vec<Arc<str>> = log
            .producers
            .names
            .iter()
            .map(|name| Arc::from(name.as_str()))
            .collect();
        let of = &log.producers.of;
        let states: HashMap<_, _> = log
            .checkpoints
            .into_iter()
            .enumerate()
            .map(|(n, (checkpoint_id, state))| {
                let index = of.get(n).copied().flatten();
                let producer = index.and_then(|i| names.get(i as usize).cloned());
                (checkpoint_id, Recorded { state, producer })
            })
            .collect();
        let attempts: HashMap<_, _> = log.retry_attempts.into_iter().collect();
        *write(&self.states) = states;
        *write(&self.attempts) = attempts;
    }

    /// Calls `f` with the recorded state of `checkpoint_id` and the function that
    /// recorded it (when it said), if there is one.
    pub(crate) fn with_state<R>(
        &self,
        checkpoint_id: &str,
        f: impl FnOnce(&[u8], Option<&str>) -> R,
    ) -> Option<R> {
        read(&self.states)
            .get(checkpoint_id)
            .map(|recorded| f(&recorded.state, recorded.producer.as_deref()))
    }

    /// Remembers a state this run recorded (or found recorded), with its producer.
    pub(crate) fn insert_state(&self, checkpoint_id: &str, state: Vec<u8>, producer: Option<&str>) {
        let producer = producer.map(Arc::from);
        write(&self.states).insert(checkpoint_id.to_owned(), Recorded { state, producer });
    }

    /// Retries already recorded for `checkpoint_id` (before a restart, or in this run).
    pub(crate) fn attempts(&self, checkpoint_id: &str) -> u32 {
        read(&self.attempts)
            .get(checkpoint_id)
            .copied()
            .unwrap_or(0)
    }

    /// Remembers a retry this run recorded.
    pub(crate) fn set_attempts(&self, checkpoint_id: &str, attempt: u32) {
        let mut attempts = write(&self.attempts);
        let entry = attempts.entry(checkpoint_id.to_owned()).or_insert(0);
        *entry = (*entry).max(attempt);
    }

    /// Number of recorded states held.
    pub(crate) fn len(&self) -> usize {
        read(&self.states).len()
    }
}

// A panic while a lock is held cannot leave these maps half-updated (every update is
// one insert), so a poisoned lock is still safe to use.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
