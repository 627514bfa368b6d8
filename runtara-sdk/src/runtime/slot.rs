//! A runtime slot: the right to run, held by an instance while it works and given back
//! while it sleeps.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One instance's hold on its runtime's slots, and its wake-up call: a cancel or a pause
/// sent through the runtime ends the instance's sleep early, so it takes the signal at
/// once.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Semaphore>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
    interrupt: Arc<Notify>,
}

impl Slot {
    /// A hold on `slots`, with `permit` if one was taken already.
    pub(crate) fn new(
        slots: Arc<Semaphore>,
        permit: Option<OwnedSemaphorePermit>,
        interrupt: Arc<Notify>,
    ) -> Slot {
        Slot {
            slots,
            held: Mutex::new(permit),
            interrupt,
        }
    }

    /// Waits for a slot, unless one is held (first come, first served).
    pub(crate) async fn take(&self) {
        if self.lock().is_some() {
            return;
        }
        // The semaphore is never closed; a closed one would only mean no limit.
        let permit = self.slots.clone().acquire_owned().await.ok();
        *self.lock() = permit;
    }

    /// Gives the slot back (the instance stopped running).
    pub(crate) fn give_back(&self) {
        self.lock().take();
    }

    /// Runs `sleep` without the slot, then takes one again. Returns `false` when a signal
    /// sent through the runtime ended the sleep early.
    pub(crate) async fn give_back_while(&self, sleep: impl Future<Output = ()>) -> bool {
        self.give_back();
        let slept = tokio::select! {
            () = sleep => true,
            () = self.interrupt.notified() => false,
        };
        self.take().await;
        slept
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
