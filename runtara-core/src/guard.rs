//! Checks shared by every backend: id validation and the precise error for a refused write.

use crate::{Error, EventQuota, InstanceStatus, Result, MAX_EVENT_SUBTYPE_LEN};

/// Longest id accepted (instance, tenant, checkpoint).
pub const MAX_ID_LEN: usize = 1024;

/// Refuses empty or overlong ids before anything is stored.
pub(crate) fn validate_id(what: &'static str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidInput {
            what,
            reason: "must not be empty".into(),
        });
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::InvalidInput {
            what,
            reason: format!("is {} bytes long; the limit is {MAX_ID_LEN}", id.len()),
        });
    }
    Ok(())
}

/// Refuses an image id that fails [`validate_id`] or a worker pool that cannot run
/// anything.
pub(crate) fn validate_image_workers(
    image_id: &str,
    workers: Option<&crate::WorkerPool>,
) -> Result<()> {
    validate_id("image id", image_id)?;
    match workers.map(crate::WorkerPool::check) {
        Some(Err(reason)) => Err(Error::InvalidInput {
            what: "worker pool",
            reason,
        }),
        _ => Ok(()),
    }
}

/// Largest retry attempt number stored (both dialects store it as a 32-bit integer).
pub(crate) const MAX_ATTEMPT: u32 = i32::MAX as u32;

/// Refuses a retry attempt number that is not 1-based or does not fit the column.
pub(crate) fn validate_attempt(attempt: u32) -> Result<()> {
    let reason = match attempt {
        0 => "is 1-based; 0 is not a retry".to_owned(),
        n if n > MAX_ATTEMPT => format!("{n} is larger than the limit {MAX_ATTEMPT}"),
        _ => return Ok(()),
    };
    Err(Error::InvalidInput {
        what: "retry attempt",
        reason,
    })
}

/// Whether a run holding `epoch` may write to an instance found as `row` (status, epoch).
///
/// Checked in this order: missing, fenced, terminal, not running.
pub(crate) fn check_run(
    instance_id: &str,
    row: Option<(InstanceStatus, i64)>,
    epoch: i64,
) -> Result<()> {
    let Some((status, current)) = row else {
        return Err(Error::InstanceNotFound {
            instance_id: instance_id.to_owned(),
        });
    };
    if current != epoch {
        return Err(Error::Fenced {
            instance_id: instance_id.to_owned(),
            epoch,
            current,
        });
    }
    if status.is_terminal() {
        return Err(Error::Terminal {
            instance_id: instance_id.to_owned(),
            status,
        });
    }
    if status != InstanceStatus::Running {
        return Err(Error::NotRunning {
            instance_id: instance_id.to_owned(),
            status,
        });
    }
    Ok(())
}

/// Refuses a schedule with a bad id, tenant, image, or an empty expression or zone (the
/// server checks that the expression and the zone mean something).
pub(crate) fn check_schedule(new: &crate::NewSchedule) -> Result<()> {
    validate_id("schedule id", &new.schedule_id)?;
    validate_id("tenant id", &new.tenant_id)?;
    validate_id("image id", &new.image_id)?;
    validate_id("cron expression", &new.cron)?;
    validate_id("time zone", &new.timezone)
}

/// [`check_run`] for a run that may also be `waiting` (its wait and its heartbeats).
pub(crate) fn check_run_or_waiting(
    instance_id: &str,
    row: Option<(InstanceStatus, i64)>,
    epoch: i64,
) -> Result<()> {
    let row = row.map(|(status, current)| match status {
        InstanceStatus::Waiting => (InstanceStatus::Running, current),
        status => (status, current),
    });
    check_run(instance_id, row, epoch)
}

/// Refuses a custom event that no instance may record under `quota` (its payload or
/// subtype too large), before anything is touched.
pub(crate) fn check_custom_event(
    subtype: &str,
    payload_len: usize,
    quota: &EventQuota,
) -> Result<()> {
    let invalid = |reason: String| {
        Err(Error::InvalidInput {
            what: "custom event",
            reason,
        })
    };
    if subtype.len() > MAX_EVENT_SUBTYPE_LEN {
        return invalid(format!(
            "its subtype is {} bytes; at most {MAX_EVENT_SUBTYPE_LEN} are allowed; nothing was stored",
            subtype.len()
        ));
    }
    if u64::try_from(payload_len).unwrap_or(u64::MAX) > quota.max_event_bytes {
        return invalid(format!(
            "its payload is {payload_len} bytes; at most {} are allowed per event \
             (`max_event_bytes`); nothing was stored",
            quota.max_event_bytes
        ));
    }
    Ok(())
}

/// A quota as the databases compare it (a signed 64-bit integer).
pub(crate) fn quota_i64(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Why a custom event of `payload_len` bytes was refused for an instance found as `row`
/// (status, custom events recorded, bytes of them): checked in the order missing,
/// terminal, count, bytes.
pub(crate) fn custom_event_refusal(
    instance_id: &str,
    row: Option<(InstanceStatus, i64, i64)>,
    payload_len: usize,
    quota: &EventQuota,
) -> Error {
    let instance_id = instance_id.to_owned();
    let Some((status, events, bytes)) = row else {
        return Error::InstanceNotFound { instance_id };
    };
    if status.is_terminal() {
        return Error::Terminal {
            instance_id,
            status,
        };
    }
    if events >= quota_i64(quota.max_events_per_instance) {
        return Error::QuotaExceeded {
            instance_id,
            reason: format!(
                "has reached its quota of {} custom events (`max_events_per_instance`)",
                quota.max_events_per_instance
            ),
        };
    }
    let len = i64::try_from(payload_len).unwrap_or(i64::MAX);
    if bytes.saturating_add(len) > quota_i64(quota.max_event_bytes_per_instance) {
        return Error::QuotaExceeded {
            instance_id,
            reason: format!(
                "has recorded {bytes} bytes of custom events; {len} more would pass its \
                 quota of {} bytes (`max_event_bytes_per_instance`)",
                quota.max_event_bytes_per_instance
            ),
        };
    }
    Error::Corrupt(format!(
        "a custom event of instance `{instance_id}` was refused, yet it is {status} with \
         {events} custom events of {bytes} bytes, within its quota"
    ))
}

/// Parses a status read from the database.
pub(crate) fn parse_status(raw: &str) -> Result<InstanceStatus> {
    raw.parse()
        .map_err(|_| Error::Corrupt(format!("unknown instance status `{raw}`")))
}

/// Statuses a register may resume from.
pub(crate) const RESUMABLE: [InstanceStatus; 5] = [
    InstanceStatus::Pending,
    InstanceStatus::Running,
    InstanceStatus::Suspended,
    InstanceStatus::Sleeping,
    InstanceStatus::Waiting,
];

/// What `send_signal` should do for an instance in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalPlan {
    /// Put it in the queue for the running process.
    Queue,
    /// No process runs it: move it to this status at once.
    Apply(InstanceStatus),
    /// A resume of an instance that has not stopped yet: it withdraws the queued pauses
    /// (refused when there is none).
    WithdrawPause,
    /// Refuse it.
    Reject,
}

/// The signal rules of the lifecycle (`docs/architecture.md`; terminal instances are
/// refused before this).
pub(crate) fn plan_signal(signal: crate::SignalType, status: InstanceStatus) -> SignalPlan {
    use crate::SignalType::*;
    use InstanceStatus::*;
    match (signal, status) {
        (Cancel, Running) => SignalPlan::Queue,
        (Cancel, Pending | Suspended | Sleeping | Waiting) => SignalPlan::Apply(Cancelled),
        (Pause, Running | Pending) => SignalPlan::Queue,
        (Pause, Sleeping | Waiting) => SignalPlan::Apply(Suspended),
        (Resume, Suspended) => SignalPlan::Queue,
        (Resume, Running | Pending) => SignalPlan::WithdrawPause,
        _ => SignalPlan::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_checked_in_order() {
        let err = check_run("i", None, 1).unwrap_err();
        assert!(matches!(err, Error::InstanceNotFound { .. }));
        let err = check_run("i", Some((InstanceStatus::Completed, 2)), 1).unwrap_err();
        assert!(
            matches!(err, Error::Fenced { current: 2, .. }),
            "fenced before terminal"
        );
        let err = check_run("i", Some((InstanceStatus::Completed, 1)), 1).unwrap_err();
        assert!(matches!(err, Error::Terminal { .. }));
        let err = check_run("i", Some((InstanceStatus::Suspended, 1)), 1).unwrap_err();
        assert!(matches!(err, Error::NotRunning { .. }));
        assert!(check_run("i", Some((InstanceStatus::Running, 1)), 1).is_ok());
    }

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("instance id", "").is_err());
        assert!(validate_id("instance id", &"x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(validate_id("instance id", "ok").is_ok());
    }

    #[test]
    fn attempts_are_one_based_and_bounded() {
        assert!(validate_attempt(0).is_err());
        assert!(validate_attempt(1).is_ok());
        assert!(validate_attempt(MAX_ATTEMPT).is_ok());
        assert!(validate_attempt(MAX_ATTEMPT + 1).is_err());
    }

    #[test]
    fn custom_event_refusals_say_which_bound() {
        let quota = EventQuota {
            max_event_bytes: 10,
            max_events_per_instance: 2,
            max_event_bytes_per_instance: 15,
        };
        assert!(check_custom_event("s", 10, &quota).is_ok());
        let big = check_custom_event("s", 11, &quota).unwrap_err().to_string();
        assert!(big.contains("`max_event_bytes`"), "{big}");
        let subtype = "x".repeat(MAX_EVENT_SUBTYPE_LEN + 1);
        assert!(check_custom_event(&subtype, 0, &quota).is_err());
        let refusal = |row| custom_event_refusal("i", row, 5, &quota);
        assert!(matches!(refusal(None), Error::InstanceNotFound { .. }));
        let done = refusal(Some((InstanceStatus::Failed, 9, 99)));
        assert!(matches!(done, Error::Terminal { .. }), "terminal first");
        let count = refusal(Some((InstanceStatus::Running, 2, 0))).to_string();
        assert!(count.contains("quota of 2 custom events"), "{count}");
        let bytes = refusal(Some((InstanceStatus::Running, 1, 11))).to_string();
        assert!(bytes.contains("`max_event_bytes_per_instance`"), "{bytes}");
        assert!(bytes.ends_with("nothing was stored"), "{bytes}");
    }

    #[test]
    fn signal_rules() {
        use crate::SignalType::*;
        use InstanceStatus::*;
        assert_eq!(plan_signal(Cancel, Running), SignalPlan::Queue);
        assert_eq!(plan_signal(Cancel, Sleeping), SignalPlan::Apply(Cancelled));
        assert_eq!(plan_signal(Pause, Pending), SignalPlan::Queue);
        assert_eq!(plan_signal(Pause, Sleeping), SignalPlan::Apply(Suspended));
        assert_eq!(plan_signal(Cancel, Waiting), SignalPlan::Apply(Cancelled));
        assert_eq!(plan_signal(Pause, Waiting), SignalPlan::Apply(Suspended));
        assert_eq!(plan_signal(Resume, Waiting), SignalPlan::Reject);
        assert_eq!(plan_signal(Pause, Suspended), SignalPlan::Reject);
        assert_eq!(plan_signal(Resume, Suspended), SignalPlan::Queue);
        assert_eq!(plan_signal(Resume, Running), SignalPlan::WithdrawPause);
        assert_eq!(plan_signal(Resume, Pending), SignalPlan::WithdrawPause);
        assert_eq!(plan_signal(Resume, Sleeping), SignalPlan::Reject);
    }
}
