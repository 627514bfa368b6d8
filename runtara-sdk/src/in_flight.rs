//! One durable call per checkpoint id at a time within a process: a second call with the
//! same id waits for the first, then finds its recorded result instead of running the
//! body again. Calls with different ids never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The checkpoint ids whose durable calls are running or waiting now.
///
/// The map's own lock is held only to add or drop an entry, never across an await, so
/// calls with different ids never wait for each other.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    calls: Mutex<HashMap<String, Entry>>,
}

/// The calls of one checkpoint id: the lock they take turns on, and how many of them
/// hold or wait for it (the entry goes when the last one is dropped).
#[derive(Debug)]
struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    calls: usize,
}

/// Held while a durable call with its id runs; the id is free again once dropped.
pub(crate) struct Turn<'a> {
    // Declared first so it is released before the call stops being counted.
    _guard: OwnedMutexGuard<()>,
    _counted: Counted<'a>,
}

/// One call counted in its id's entry, from before it waits until it is dropped, so a
/// call given up while waiting (its task cancelled) is uncounted too.
struct Counted<'a> {
    in_flight: &'a InFlight,
    checkpoint_id: String,
}

impl InFlight {
    /// Waits until no other call with `checkpoint_id` runs, and takes the turn.
    pub(crate) async fn turn(&self, checkpoint_id: &str) -> Turn<'_> {
        let lock = {
            let mut calls = lock(&self.calls);
            let entry = calls
                .entry(checkpoint_id.to_owned())
                .or_insert_with(|| Entry {
                    lock: Arc::default(),
                    calls: 0,
                });
            entry.calls += 1;
            entry.lock.clone()
        };
        let counted = Counted {
            in_flight: self,
            checkpoint_id: checkpoint_id.to_owned(),
        };
        let guard = lock.lock_owned().await;
        Turn {
            _guard: guard,
            _counted: counted,
        }
    }

    /// Ids with a call running or waiting (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.calls).len()
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let mut calls = lock(&self.in_flight.calls);
        if let Some(entry) = calls.get_mut(&self.checkpoint_id) {
            entry.calls = entry.calls.saturating_sub(1);
            if entry.calls == 0 {
                calls.remove(&self.checkpoint_id);
            }
        }
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

    #[tokio::test]
    async fn a_waiter_given_up_leaves_no_entry_behind() {
        let in_flight = InFlight::default();
        let first = in_flight.turn("f::a").await;
        {
            // A call that waits for the id, then is dropped (its task cancelled).
            let waiting = in_flight.turn("f::a");
            tokio::pin!(waiting);
            assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        }
        drop(first);
        assert_eq!(in_flight.len(), 0, "an entry outlived every call of its id");

        // And the other way round: the holder goes first, then the waiter gives up.
        let first = in_flight.turn("f::b").await;
        let waiting = Box::pin(in_flight.turn("f::b"));
        let mut waiting = waiting;
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        drop(first);
        drop(waiting);
        assert_eq!(in_flight.len(), 0, "an entry outlived every call of its id");
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
