//! What the supervisor does when an instance's process has ended: the decision table of
//! [`crate::supervisor`], as pure functions of what is known, so that every row is
//! tested on its own. The supervisor gathers the facts (the stored status, the queued
//! signal, the crash history) and carries out the action.

use std::time::Duration;

use runtara_core::{InstanceStatus, SignalType};

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct HowItEnded {
    /// It exited by itself with status 0.
    pub clean: bool,
    /// It was killed because its run took longer than its timeout.
    pub timed_out: bool,
    /// A resume withdrew a pause while it ran (it may have taken the pause first).
    pub pause_withdrawn: bool,
}

/// The first step, from the stored status alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByStatus {
    /// Finished or suspended: the process stopped as asked.
    Nothing,
    /// `sleeping`: relaunch at the wake time; `waiting`: relaunch when its event is there,
    /// or at its wait's deadline.
    ScheduleWake,
    /// Its run timed out: `failed` with the timeout as the reason.
    FailTimedOut,
    /// `pending` or `running` otherwise: it depends on the signal queued for the run
    /// ([`by_queued_signal`]).
    AskQueuedSignal,
}

/// The stored status after the exit decides first.
pub(crate) fn by_status(status: InstanceStatus, ended: HowItEnded) -> ByStatus {
    match status {
        InstanceStatus::Sleeping | InstanceStatus::Waiting => ByStatus::ScheduleWake,
        InstanceStatus::Pending | InstanceStatus::Running if ended.timed_out => {
            ByStatus::FailTimedOut
        }
        InstanceStatus::Pending | InstanceStatus::Running => ByStatus::AskQueuedSignal,
        InstanceStatus::Suspended
        | InstanceStatus::Completed
        | InstanceStatus::Failed
        | InstanceStatus::Cancelled => ByStatus::Nothing,
    }
}

/// What to do with an unfinished instance whose process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByQueuedSignal {
    /// A cancel is queued: `cancelled`.
    Cancel,
    /// It returned cleanly at a queued pause without acknowledging it: take the pause
    /// (`suspended`) if it is still queued; if a resume withdrew it meanwhile, relaunch
    /// at once.
    SettlePause,
    /// It stopped for a pause that a resume withdrew: relaunch at once, no crash.
    RelaunchNow,
    /// A crash: see [`after_crash`].
    Crashed,
}

/// The signal queued for the run decides an unfinished instance's fate.
pub(crate) fn by_queued_signal(
    status: InstanceStatus,
    queued: Option<SignalType>,
    ended: HowItEnded,
) -> ByQueuedSignal {
    match queued {
        Some(SignalType::Cancel) => ByQueuedSignal::Cancel,
        Some(SignalType::Pause) if ended.clean && status == InstanceStatus::Running => {
            ByQueuedSignal::SettlePause
        }
        None if ended.pause_withdrawn => ByQueuedSignal::RelaunchNow,
        _ => ByQueuedSignal::Crashed,
    }
}

/// An instance's crashes so far and what this one says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CrashHistory {
    /// Crashes in a row before this one.
    pub crashes_before: u32,
    /// It recorded a checkpoint since its last launch (a fresh crash, not a loop).
    pub progressed: bool,
    /// The server's storage is failing: the crash is the server's problem, not counted.
    pub storage_failing: bool,
}

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterCrash {
    /// Relaunch from the last checkpoint after `after`.
    Relaunch {
        /// Crashes in a row, this one included.
        crashes: u32,
        /// None after a first crash; then `restart_backoff`, doubled per crash in a row
        /// after the second.
        after: Duration,
    },
    /// Too many crashes in a row: `failed` with the reason.
    GiveUp {
        /// Crashes in a row, this one included.
        crashes: u32,
    },
}

impl AfterCrash {
    /// Crashes in a row, this one included (to remember for the next one).
    pub(crate) fn crashes(self) -> u32 {
        match self {
            AfterCrash::Relaunch { crashes, .. } | AfterCrash::GiveUp { crashes } => crashes,
        }
    }
}

/// A first crash is relaunched at once (a `kill -9` costs no wait); crashes in a row
/// after it wait a doubling backoff, until `max_restarts` in a row. While the storage
/// fails the relaunch always waits (the process could not register anyway).
pub(crate) fn after_crash(
    history: CrashHistory,
    max_restarts: u32,
    restart_backoff: Duration,
) -> AfterCrash {
    let before = if history.progressed {
        0
    } else {
        history.crashes_before
    };
    let crashes = if history.storage_failing {
        // The relaunch waits as for a first crash, uncounted.
        before.max(1)
    } else {
        before + 1
    };
    if crashes > max_restarts {
        return AfterCrash::GiveUp { crashes };
    }
    let after = match (crashes, history.storage_failing) {
        (1, false) => Duration::ZERO,
        (1, true) => restart_backoff,
        (n, _) => restart_backoff * 2u32.saturating_pow(n - 2),
    };
    AfterCrash::Relaunch { crashes, after }
}

#[cfg(test)]
mod tests {
    use super::*;

    use InstanceStatus::*;

    const CLEAN: HowItEnded = HowItEnded {
        clean: true,
        timed_out: false,
        pause_withdrawn: false,
    };
    const CRASH: HowItEnded = HowItEnded {
        clean: false,
        timed_out: false,
        pause_withdrawn: false,
    };

    #[test]
    fn a_finished_or_suspended_instance_needs_nothing() {
        for status in [Completed, Failed, Cancelled, Suspended] {
            for ended in [CLEAN, CRASH] {
                assert_eq!(by_status(status, ended), ByStatus::Nothing, "{status}");
            }
        }
    }

    #[test]
    fn a_sleeping_instance_is_woken_at_its_time() {
        assert_eq!(by_status(Sleeping, CLEAN), ByStatus::ScheduleWake);
        assert_eq!(by_status(Sleeping, CRASH), ByStatus::ScheduleWake);
        assert_eq!(by_status(Waiting, CLEAN), ByStatus::ScheduleWake);
        assert_eq!(by_status(Waiting, CRASH), ByStatus::ScheduleWake);
    }

    #[test]
    fn an_unfinished_run_that_timed_out_fails() {
        let timed_out = HowItEnded {
            timed_out: true,
            ..CRASH
        };
        assert_eq!(by_status(Running, timed_out), ByStatus::FailTimedOut);
        assert_eq!(by_status(Pending, timed_out), ByStatus::FailTimedOut);
    }

    #[test]
    fn an_unfinished_run_asks_for_the_queued_signal() {
        assert_eq!(by_status(Running, CLEAN), ByStatus::AskQueuedSignal);
        assert_eq!(by_status(Pending, CRASH), ByStatus::AskQueuedSignal);
    }

    #[test]
    fn a_queued_cancel_cancels_however_it_ended() {
        for status in [Running, Pending] {
            for ended in [CLEAN, CRASH] {
                assert_eq!(
                    by_queued_signal(status, Some(SignalType::Cancel), ended),
                    ByQueuedSignal::Cancel
                );
            }
        }
    }

    #[test]
    fn a_clean_exit_at_a_queued_pause_settles_it() {
        assert_eq!(
            by_queued_signal(Running, Some(SignalType::Pause), CLEAN),
            ByQueuedSignal::SettlePause
        );
    }

    #[test]
    fn a_crash_with_a_pause_queued_is_a_crash() {
        // The relaunch settles the pause without a launch (settle_queued_signal).
        assert_eq!(
            by_queued_signal(Running, Some(SignalType::Pause), CRASH),
            ByQueuedSignal::Crashed
        );
        assert_eq!(
            by_queued_signal(Pending, Some(SignalType::Pause), CLEAN),
            ByQueuedSignal::Crashed
        );
    }

    #[test]
    fn a_withdrawn_pause_relaunches_at_once() {
        let withdrawn = HowItEnded {
            pause_withdrawn: true,
            ..CLEAN
        };
        assert_eq!(
            by_queued_signal(Running, None, withdrawn),
            ByQueuedSignal::RelaunchNow
        );
        // A cancel queued since still wins.
        assert_eq!(
            by_queued_signal(Running, Some(SignalType::Cancel), withdrawn),
            ByQueuedSignal::Cancel
        );
    }

    #[test]
    fn an_exit_with_nothing_queued_is_a_crash() {
        assert_eq!(
            by_queued_signal(Running, None, CLEAN),
            ByQueuedSignal::Crashed
        );
        assert_eq!(
            by_queued_signal(Running, None, CRASH),
            ByQueuedSignal::Crashed
        );
        assert_eq!(
            by_queued_signal(Running, Some(SignalType::Resume), CLEAN),
            ByQueuedSignal::Crashed
        );
    }

    const SECOND: Duration = Duration::from_secs(1);

    fn history(crashes_before: u32) -> CrashHistory {
        CrashHistory {
            crashes_before,
            progressed: false,
            storage_failing: false,
        }
    }

    #[test]
    fn a_first_crash_relaunches_at_once_then_crashes_back_off_doubling_then_give_up() {
        let relaunch = |crashes, secs| AfterCrash::Relaunch {
            crashes,
            after: SECOND * secs,
        };
        assert_eq!(after_crash(history(0), 3, SECOND), relaunch(1, 0));
        assert_eq!(after_crash(history(1), 3, SECOND), relaunch(2, 1));
        assert_eq!(after_crash(history(2), 3, SECOND), relaunch(3, 2));
        assert_eq!(
            after_crash(history(3), 3, SECOND),
            AfterCrash::GiveUp { crashes: 4 }
        );
        assert_eq!(
            after_crash(history(0), 0, SECOND),
            AfterCrash::GiveUp { crashes: 1 }
        );
    }

    #[test]
    fn progress_since_the_last_launch_starts_the_count_again() {
        let progressed = CrashHistory {
            progressed: true,
            ..history(3)
        };
        assert_eq!(
            after_crash(progressed, 3, SECOND),
            AfterCrash::Relaunch {
                crashes: 1,
                after: Duration::ZERO
            }
        );
    }

    #[test]
    fn a_crash_while_storage_fails_is_not_counted() {
        let failing = |before| CrashHistory {
            storage_failing: true,
            ..history(before)
        };
        assert_eq!(
            after_crash(failing(0), 3, SECOND),
            AfterCrash::Relaunch {
                crashes: 1,
                after: SECOND
            },
            "no relaunch at once while the storage fails"
        );
        assert_eq!(after_crash(failing(2), 3, SECOND).crashes(), 2);
        assert!(matches!(
            after_crash(failing(3), 3, SECOND),
            AfterCrash::Relaunch { crashes: 3, .. }
        ));
    }
}
