//! One durable call per checkpoint id at a time within a process: a second call with the
//! same id waits for the first, then finds its recorded result instead of running the
//! body again. Calls with different ids never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The checkpoint ids whose durable calls are running now.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    calls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while a durable call with its id runs; the id is free again once dropped.
pub(crate) struct Turn<'a> {
    in_flight: &'a InFlight,
    checkpoint_id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InFlight {
    /// Waits until no other call with `checkpoint_id` runs, and takes the turn.
    pub(crate) async fn turn(&self, checkpoint_id: &str) -> Turn<'_> {
        let lock = {
            let mut calls = lock(&self.calls);
            calls
                .entry(checkpoint_id.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let guard = lock.lock_owned().await;
        Turn {
            in_flight: self,
            checkpoint_id: checkpoint_id.to_owned(),
            guard: Some(guard),
        }
    }

    /// Ids with a call running or waiting (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.calls).len()
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut calls = lock(&self.in_flight.calls);
        // Clones are only taken under this lock: the map's and this turn's guard are the
        // last two when nobody else waits, and then the entry goes.
        if let Some(entry) = calls.get(&self.checkpoint_id) {
            if Arc::strong_count(entry) <= 2 {
                calls.remove(&self.checkpoint_id);
            }
        }
        drop(self.guard.take());
    }
}

// An entry is inserted or removed in one step, so a poisoned lock is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_turn_waits_and_the_map_empties() {
        let in_flight = InFlight::default();
        let first = in_flight.turn("f::a").await;
        let other = in_flight.turn("f::b").await; // another id does not wait
        let waiting = in_flight.turn("f::a");
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        drop(first);
        let second = waiting.await;
        drop((second, other));
        assert_eq!(in_flight.len(), 0);
    }

    /// Polls `future` once: `Some` if it finished.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(value) => Some(value),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
