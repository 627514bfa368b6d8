//! Recorded results of this run, held in memory so a replayed step costs no round trip.

use std::collections::HashMap;
use std::sync::RwLock;

use runtara_core::ReplayLog;

/// Checkpoint states and retry counts of one instance, loaded once at register.
///
/// Authoritative while this run holds the instance's epoch: no other process can
/// write to the instance without fencing this one out first.
#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    states: RwLock<HashMap<String, Vec<u8>>>,
    attempts: RwLock<HashMap<String, u32>>,
    producers: RwLock<HashMap<String, String>>,
}

impl ReplayCache {
    /// Replaces the contents with a freshly loaded log.
    pub(crate) fn load(&self, log: ReplayLog) {
        let states: HashMap<_, _> = log.checkpoints.into_iter().collect();
        let attempts: HashMap<_, _> = log.retry_attempts.into_iter().collect();
        let producers: HashMap<_, _> = log.producers.into_iter().collect();
        *write(&self.states) = states;
        *write(&self.attempts) = attempts;
        *write(&self.producers) = producers;
    }

    /// The function that recorded `checkpoint_id`, when it said.
    pub(crate) fn producer(&self, checkpoint_id: &str) -> Option<String> {
        read(&self.producers).get(checkpoint_id).cloned()
    }

    /// Remembers the function that recorded `checkpoint_id`.
    pub(crate) fn insert_producer(&self, checkpoint_id: &str, producer: String) {
        write(&self.producers).insert(checkpoint_id.to_owned(), producer);
    }

    /// Decodes the recorded state of `checkpoint_id` with `f`, if there is one.
    pub(crate) fn with_state<R>(
        &self,
        checkpoint_id: &str,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        read(&self.states).get(checkpoint_id).map(|state| f(state))
    }

    /// Remembers a state this run recorded.
    pub(crate) fn insert_state(&self, checkpoint_id: &str, state: Vec<u8>) {
        write(&self.states).insert(checkpoint_id.to_owned(), state);
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
