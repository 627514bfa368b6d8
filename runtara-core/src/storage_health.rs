//! A storage condition, logged once with a count instead of once per attempt.
//!
//! A full disk, or a database that refuses writes, makes every write fail the same way
//! for as long as it lasts, while the instances waiting on those writes retry them: a line
//! per failure filled a server's log with hundreds of identical lines a minute (on the
//! same full disk). Instead the first failure of an episode is logged (`storage is
//! failing: …`), later ones are counted and summed up once a minute, and the end of the
//! episode is logged once with the count (`storage works again after N failed
//! operations …`). An episode ends at the first success that follows
//! [`RECOVERY_QUIET`] without a failure, so a write that squeezes through between
//! failures does not end it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The process's storage (the database and the files beside it).
pub static STORAGE: Condition = Condition::new("storage");

/// How long without a failure before a success ends an episode.
pub const RECOVERY_QUIET: Duration = Duration::from_secs(2);
/// How often a lasting episode is summed up in the log.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// One condition that may fail and recover, such as [`STORAGE`].
#[derive(Debug)]
pub struct Condition {
    what: &'static str,
    /// Fast path for [`Condition::succeeded`]: `false` while all is well.
    failing: AtomicBool,
    episode: Mutex<Option<Episode>>,
}

#[derive(Debug)]
struct Episode {
    since: Instant,
    last_failure: Instant,
    last_report: Instant,
    failures: u64,
}

impl Condition {
    /// A condition named `what` (`storage`), not failing.
    pub const fn new(what: &'static str) -> Condition {
        Condition {
            what,
            failing: AtomicBool::new(false),
            episode: Mutex::new(None),
        }
    }

    fn episode(&self) -> std::sync::MutexGuard<'_, Option<Episode>> {
        self.episode.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An operation failed: logged if it is the first failure of an episode (or a
    /// minute has passed since the last summary), counted otherwise.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let mut episode = self.episode();
        match episode.as_mut() {
            None => {
                *episode = Some(Episode {
                    since: now,
                    last_failure: now,
                    last_report: now,
                    failures: 1,
                });
                self.failing.store(true, Ordering::Release);
                tracing::warn!(
                    %error,
                    "{} is failing: {error}; what needs it waits and retries (further failures are counted, not logged one by one)",
                    self.what
                );
            }
            Some(episode) => {
                episode.failures += 1;
                episode.last_failure = now;
                if now.duration_since(episode.last_report) >= REPORT_EVERY {
                    episode.last_report = now;
                    tracing::warn!(
                        failures = episode.failures,
                        %error,
                        "{} is still failing: {} failed operations over {:.0?}; last: {error}",
                        self.what,
                        episode.failures,
                        now.duration_since(episode.since)
                    );
                }
            }
        }
    }

    /// An operation succeeded: ends a failing episode once no failure has come for
    /// [`RECOVERY_QUIET`], logging it once with the count. One atomic load when all is
    /// well.
    pub fn succeeded(&self) {
        if !self.failing.load(Ordering::Acquire) {
            return;
        }
        let mut slot = self.episode();
        let Some(episode) = slot.as_ref() else {
            return;
        };
        if episode.last_failure.elapsed() < RECOVERY_QUIET {
            return;
        }
        tracing::info!(
            failures = episode.failures,
            "{} works again after {} failed operations over {:.0?}",
            self.what,
            episode.failures,
            episode.last_failure.duration_since(episode.since)
        );
        *slot = None;
        self.failing.store(false, Ordering::Release);
    }

    /// Whether an episode is under way (a failure not yet followed by a recovery).
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_starts_at_a_failure_and_ends_at_a_success_after_a_quiet_spell() {
        let condition = Condition::new("test");
        condition.succeeded();
        assert!(!condition.is_failing());
        condition.failed(&"disk is full");
        condition.failed(&"disk is full");
        assert!(condition.is_failing());
        // A success right after a failure does not end it.
        condition.succeeded();
        assert!(condition.is_failing());
        assert_eq!(condition.episode().as_ref().map(|e| e.failures), Some(2));
        // Backdate the last failure past the quiet spell.
        if let Some(episode) = condition.episode().as_mut() {
            episode.last_failure -= RECOVERY_QUIET;
        }
        condition.succeeded();
        assert!(!condition.is_failing());
        assert!(condition.episode().is_none());
    }
}
