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
    /// Per checkpoint id: the highest retry recorded, and when (ms since the Unix epoch).
    attempts: RwLock<HashMap<String, (u32, Option<i64>)>>,
    /// Durable calls that failed for good, with their error.
    failures: RwLock<HashMap<String, String>>,
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
        let times = log.retry_at_ms;
        let attempts: HashMap<_, _> = log
            .retry_attempts
            .into_iter()
            .enumerate()
            .map(|(n, (checkpoint_id, attempt))| (checkpoint_id, (attempt, times.get(n).copied())))
            .collect();
        let failures: HashMap<_, _> = log.failures.into_iter().collect();
        *write(&self.states) = states;
        *write(&self.attempts) = attempts;
        *write(&self.failures) = failures;
    }

    /// The error of `checkpoint_id`'s final failure, when it failed for good.
    pub(crate) fn failure(&self, checkpoint_id: &str) -> Option<String> {
        read(&self.failures).get(checkpoint_id).cloned()
    }

    /// Remembers a final failure this run recorded.
    pub(crate) fn insert_failure(&self, checkpoint_id: &str, error: String) {
        write(&self.failures).insert(checkpoint_id.to_owned(), error);
    }

    /// When the last retry of `checkpoint_id` was recorded, if known.
    pub(crate) fn last_retry_at_ms(&self, checkpoint_id: &str) -> Option<i64> {
        read(&self.attempts)
            .get(checkpoint_id)
            .and_then(|(_, at)| *at)
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
            .map_or(0, |(attempt, _)| *attempt)
    }

    /// Remembers a retry this run recorded.
    pub(crate) fn set_attempts(&self, checkpoint_id: &str, attempt: u32) {
        let mut attempts = write(&self.attempts);
        let entry = attempts
            .entry(checkpoint_id.to_owned())
            .or_insert((0, None));
        if attempt >= entry.0 {
            *entry = (attempt, Some(runtara_core::now_ms()));
        }
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
