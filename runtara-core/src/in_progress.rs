//! Counting calls in progress, to tell a lone caller from one among many.
//!
//! Both storage backends run a call that is alone right away, on the cheapest path, and
//! send concurrent calls through group commit.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts one call in progress for as long as it lives (even when its caller gives up).
pub(crate) struct InProgress<'a> {
    count: &'a AtomicUsize,
    /// No other call was in progress when this one started.
    pub(crate) alone: bool,
}

impl<'a> InProgress<'a> {
    /// Counts a call in on `count`.
    pub(crate) fn enter(count: &'a AtomicUsize) -> InProgress<'a> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        InProgress {
            count,
            alone: before == 0,
        }
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}
