//! Answers an instance's request, whether it came on the instance's own connection or
//! through its worker: the engine's handler, the waiters told when the request may have
//! changed what they wait for, and the hold of an event wait (a long poll: the answer
//! comes when an event arrives, not when the run asks again).

use std::time::Duration;

use runtara_core::{
    handle_instance_request_within, now_ms, EventQuota, InstanceIdentity, Persistence,
};
use runtara_protocol::{InstanceRequest, InstanceResponse, MAX_EVENT_HOLD_MS};

use crate::completions::Completions;

/// Where the children that instances start are sent to be launched (the supervisor
/// reads them).
pub(crate) type ChildLaunches = tokio::sync::mpsc::UnboundedSender<String>;

/// Who hears of what a request did.
#[derive(Clone, Copy)]
pub(crate) struct Notices<'a> {
    /// The waiters of instances (`wait_for_completion`, `get_value`, held event waits).
    pub completions: &'a Completions,
    /// The launcher of started children.
    pub children: &'a ChildLaunches,
}

/// Runs `request` for `who`, holding an event wait that finds nothing (see
/// [`InstanceRequest::TakeEvent`]) until an event comes, its deadline passes or its
/// hold ends; a child it starts is sent to be launched.
pub(crate) async fn answer(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    request: InstanceRequest,
    events: &EventQuota,
    notices: Notices<'_>,
) -> InstanceResponse {
    let completions = notices.completions;
    if let InstanceRequest::TakeEvent {
        hold_ms,
        deadline_ms,
        ..
    } = &request
    {
        if *hold_ms > 0 {
            let wait = hold_for(*hold_ms, *deadline_ms);
            return completions
                .look_until(&who.instance_id, wait, || async {
                    let response =
                        handle_instance_request_within(store, who, request.clone(), events).await;
                    let done = !matches!(response, InstanceResponse::EventPending { signal: None });
                    (response, done)
                })
                .await;
        }
    }
    let tells = tells_waiters(&request);
    let response = handle_instance_request_within(store, who, request, events).await;
    if tells {
        completions.changed(&who.instance_id);
    }
    if let InstanceResponse::ChildStarted { instance_id, .. } = &response {
        // Launched unless it runs already (a repeat of the start by a rerun).
        let _ = notices.children.send(instance_id.clone());
    }
    response
}

/// How long an event wait is held: its hold (at most [`MAX_EVENT_HOLD_MS`]), or until
/// its deadline when that comes first.
fn hold_for(hold_ms: u64, deadline_ms: Option<i64>) -> Duration {
    let hold = hold_ms.min(MAX_EVENT_HOLD_MS);
    let left = deadline_ms.map_or(hold, |deadline| {
        u64::try_from(deadline.saturating_sub(now_ms())).unwrap_or(0)
    });
    Duration::from_millis(hold.min(left))
}

/// Whether a request may settle what someone waits for: the instance's end or pause
/// (`wait_for_completion`) or a published value (`get_value`).
fn tells_waiters(request: &InstanceRequest) -> bool {
    matches!(
        request,
        InstanceRequest::Completed { .. }
            | InstanceRequest::Failed { .. }
            | InstanceRequest::Suspended { .. }
            | InstanceRequest::AckSignal { .. }
            | InstanceRequest::SetValue { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_ends_at_the_deadline_or_the_cap() {
        assert_eq!(hold_for(5_000, None), Duration::from_millis(5_000));
        assert_eq!(
            hold_for(u64::MAX, None),
            Duration::from_millis(MAX_EVENT_HOLD_MS)
        );
        assert_eq!(hold_for(5_000, Some(now_ms() - 10)), Duration::ZERO);
        assert!(hold_for(5_000, Some(now_ms() + 1_000)) <= Duration::from_millis(1_000));
    }
}
