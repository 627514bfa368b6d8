//! Turns an instance's protocol request into storage operations.

use runtara_protocol::{
    ByteBuf, ErrorCode, InstanceRequest, InstanceResponse, RecordedStep, WireError,
    DEFAULT_MAX_FRAME_LEN, MAX_STATE_LEN, REPLAY_PAGE_BYTES,
};

use crate::wire::to_wire;
use crate::{now_ms, Error, EventQuota, EventTake, Persistence, Producers, Result};

/// Who is calling: the identity bound to the connection by its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// The instance id.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
}

/// What the handler bounds for one caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Custom events per instance (see [`Persistence::record_custom_event`]).
    pub events: EventQuota,
    /// Largest checkpoint state, in bytes.
    pub max_state_len: usize,
}

impl RequestLimits {
    /// A server's limits with `events` as its event quota: states that fit one frame.
    pub fn server(events: EventQuota) -> RequestLimits {
        RequestLimits {
            events,
            max_state_len: MAX_STATE_LEN,
        }
    }

    /// No bound: an embedded run, whose state and events only its own process writes
    /// and which sends no frame. A finished instance still records no event.
    pub const EMBEDDED: RequestLimits = RequestLimits {
        events: EventQuota::UNLIMITED,
        max_state_len: usize::MAX,
    };
}

/// Runs `request` for `who` against `store`, custom events bounded by the default
/// [`EventQuota`]. Never fails: errors become [`InstanceResponse::Error`].
pub async fn handle_instance_request(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    request: InstanceRequest,
) -> InstanceResponse {
    handle_instance_request_within(store, who, request, &EventQuota::default()).await
}

/// [`handle_instance_request`] with the custom events of each instance bounded by
/// `quota` (see [`Persistence::record_custom_event`]).
pub async fn handle_instance_request_within(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    request: InstanceRequest,
    quota: &EventQuota,
) -> InstanceResponse {
    match handle(store, who, request, &RequestLimits::server(*quota)).await {
        Ok(response) => response,
        Err(error) => InstanceResponse::Error(to_wire(&error)),
    }
}

/// Runs `request` for `who` against `store` within `limits`: the one definition of
/// every instance operation, used by the server's instance endpoint and by an embedded
/// SDK alike. Errors are the engine's own, for the caller to send or to keep.
pub async fn handle(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    request: InstanceRequest,
    limits: &RequestLimits,
) -> Result<InstanceResponse> {
    let id = who.instance_id.as_str();
    Ok(match request {
        InstanceRequest::Register { checkpoint_id } => {
            let registration = store
                .register_instance(id, &who.tenant_id, checkpoint_id.as_deref())
                .await?;
            // The whole log in one frame, for SDKs older than `RegisterPaged`.
            let log = store
                .load_replay_page(id, 0, DEFAULT_MAX_FRAME_LEN - 64 * 1024)
                .await?;
            if log.more_after.is_some()
                || page_bytes(&log.checkpoints, &log.retry_attempts) > ONE_FRAME
            {
                return Err(Error::InvalidInput {
                    what: "register",
                    reason: format!(
                        "the checkpoints of instance `{id}` do not fit in one reply; \
                         this instance's runtara-sdk is too old to read them in pages \
                         (rebuild the workflow with a newer runtara-sdk)"
                    ),
                });
            }
            InstanceResponse::Registered {
                epoch: registration.epoch,
                checkpoints: recorded_steps(log.checkpoints),
                retry_attempts: log.retry_attempts,
            }
        }
        InstanceRequest::RegisterPaged { checkpoint_id } => {
            let registration = store
                .register_instance(id, &who.tenant_id, checkpoint_id.as_deref())
                .await?;
            let mut log = store.load_replay_page(id, 0, REPLAY_PAGE_BYTES).await?;
            // A first checkpoint too large for a page with the retry attempts beside it
            // is sent alone, by the next `ReplayPage`.
            if page_bytes(&log.checkpoints, &log.retry_attempts) > REPLAY_PAGE_BYTES
                && log.checkpoints.len() == 1
            {
                log.checkpoints.clear();
                log.producers = Producers::default();
                log.more_after = Some(0);
            }
            InstanceResponse::RegisteredPage {
                epoch: registration.epoch,
                checkpoints: recorded_steps(log.checkpoints),
                retry_attempts: log.retry_attempts,
                retry_at_ms: log.retry_at_ms,
                failures: log.failures,
                producer_names: log.producers.names,
                produced_by: log.producers.of,
                more_after: log.more_after,
            }
        }
        InstanceRequest::ReplayPage { after_seq } => {
            let log = store
                .load_replay_page(id, after_seq, REPLAY_PAGE_BYTES)
                .await?;
            InstanceResponse::ReplayPage {
                checkpoints: recorded_steps(log.checkpoints),
                producer_names: log.producers.names,
                produced_by: log.producers.of,
                more_after: log.more_after,
            }
        }
        InstanceRequest::CheckpointStep {
            epoch,
            checkpoint_id,
            state,
            producer,
        } => {
            check_state_len(&checkpoint_id, &state, limits.max_state_len)?;
            let outcome = store
                .save_step(id, epoch, &checkpoint_id, &state, &producer)
                .await?;
            InstanceResponse::CheckpointedStep {
                existing_state: outcome.existing_state.map(ByteBuf::from),
                existing_producer: outcome.existing_producer,
                signal: outcome.signal.map(Into::into),
            }
        }
        InstanceRequest::StepFailed {
            epoch,
            checkpoint_id,
            error,
        } => {
            store
                .record_step_failure(id, epoch, &checkpoint_id, &error)
                .await?;
            InstanceResponse::Done
        }
        InstanceRequest::Checkpoint {
            epoch,
            checkpoint_id,
            state,
        } => {
            check_state_len(&checkpoint_id, &state, limits.max_state_len)?;
            let outcome = store
                .save_checkpoint(id, epoch, &checkpoint_id, &state)
                .await?;
            InstanceResponse::Checkpointed {
                existing_state: outcome.existing_state.map(ByteBuf::from),
                signal: outcome.signal.map(Into::into),
            }
        }
        InstanceRequest::GetCheckpoint { checkpoint_id } => InstanceResponse::Checkpoint {
            state: store
                .get_checkpoint(id, &checkpoint_id)
                .await?
                .map(ByteBuf::from),
        },
        InstanceRequest::Sleep {
            epoch,
            checkpoint_id,
            state,
            duration_ms,
        } => {
            check_state_len(&checkpoint_id, &state, limits.max_state_len)?;
            let now = now_ms();
            let wake_at = now.saturating_add(i64::try_from(duration_ms).unwrap_or(i64::MAX));
            let outcome = store
                .save_sleep(id, epoch, &checkpoint_id, &state, wake_at)
                .await?;
            InstanceResponse::Slept {
                wake_at_ms: outcome.wake_at_ms,
                remaining_ms: u64::try_from(outcome.wake_at_ms.saturating_sub(now_ms()))
                    .unwrap_or(0),
                existing_state: outcome.existing_state.map(ByteBuf::from),
                signal: outcome.signal.map(Into::into),
            }
        }
        InstanceRequest::Heartbeat { epoch } => {
            store.heartbeat(id, epoch).await?;
            InstanceResponse::Done
        }
        InstanceRequest::Completed { epoch, output } => {
            store.complete_instance(id, epoch, &output).await?;
            InstanceResponse::Done
        }
        InstanceRequest::Failed { epoch, error } => {
            store.fail_instance(id, epoch, &error).await?;
            InstanceResponse::Done
        }
        InstanceRequest::Suspended { epoch } => {
            store.suspend_instance(id, epoch).await?;
            InstanceResponse::Done
        }
        InstanceRequest::Sleeping { epoch } => {
            store.mark_sleeping(id, epoch).await?;
            InstanceResponse::Done
        }
        InstanceRequest::CustomEvent { subtype, payload } => {
            store
                .record_custom_event(id, &subtype, &payload, &limits.events)
                .await?;
            InstanceResponse::Done
        }
        InstanceRequest::PollSignal => {
            InstanceResponse::Signal(store.pending_signal(id).await?.map(Into::into))
        }
        InstanceRequest::AckSignal {
            epoch,
            signal_type,
            acknowledged,
        } => {
            store
                .acknowledge_signal(id, epoch, signal_type.into(), acknowledged)
                .await?;
            InstanceResponse::Done
        }
        InstanceRequest::RetryAttempt {
            epoch,
            checkpoint_id,
            attempt,
            error,
        } => {
            store
                .record_retry_attempt(id, epoch, &checkpoint_id, attempt, error.as_deref())
                .await?;
            InstanceResponse::Done
        }
        InstanceRequest::TakeEvent {
            epoch,
            checkpoint_id,
            name,
            deadline_ms,
            hold_ms: _,
        } => {
            // The hold is the caller's (the server's endpoint, an embedded backend): one
            // call here is one look.
            match store
                .take_event(id, epoch, &checkpoint_id, &name, deadline_ms)
                .await?
            {
                EventTake::Taken(payload) => InstanceResponse::EventTaken {
                    payload: payload.map(ByteBuf::from),
                },
                EventTake::Pending(signal) => InstanceResponse::EventPending {
                    signal: signal.map(Into::into),
                },
            }
        }
        InstanceRequest::StartChild {
            epoch,
            key,
            image_id,
            input,
        } => start_child(store, who, id, epoch, key, image_id, input, false).await?,
        InstanceRequest::StartChildWith {
            epoch,
            key,
            image_id,
            input,
            detached,
        } => start_child(store, who, id, epoch, key, image_id, input, detached).await?,
        InstanceRequest::SetValue { epoch, key, value } => {
            store.set_value(id, epoch, &key, &value).await?;
            InstanceResponse::Done
        }
        InstanceRequest::GetStatus { instance_id } => {
            let target = instance_id.as_deref().unwrap_or(id);
            let not_found = || Error::InstanceNotFound {
                instance_id: target.to_owned(),
            };
            let record = store.get_instance(target).await?.ok_or_else(not_found)?;
            // Another tenant's instance is reported as missing, never shown.
            if record.tenant_id != who.tenant_id {
                return Err(not_found());
            }
            InstanceResponse::Status(record.into())
        }
    })
}

/// Most bytes of a reply holding a whole replay log.
const ONE_FRAME: usize = DEFAULT_MAX_FRAME_LEN - 1024;

/// Starts the child `key` of instance `id` (once per key: a repeat answers with the
/// child started before), for its current run only: a run fenced out by a newer one,
/// or of an instance that has ended (cancelled while it ran), starts none.
#[allow(clippy::too_many_arguments)]
async fn start_child(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    id: &str,
    epoch: i64,
    key: String,
    image_id: String,
    input: Option<ByteBuf>,
    detached: bool,
) -> Result<InstanceResponse> {
    let child_id = crate::inbox::child_instance_id(id, &key)?;
    let parent = store.get_instance(id).await?;
    crate::guard::check_run_or_waiting(id, parent.map(|p| (p.status, p.epoch)), epoch)?;
    // Another tenant's image is missing, as everywhere.
    let image = store
        .get_image(&image_id)
        .await?
        .filter(|image| image.tenant_id == who.tenant_id)
        .ok_or(Error::ImageNotFound {
            image_id: image_id.clone(),
        })?;
    let new = crate::NewInstance {
        instance_id: child_id.clone(),
        tenant_id: who.tenant_id.clone(),
        image_id: Some(image.image_id),
        input: input.map(ByteBuf::into_vec),
        run_now: false,
        parent_id: Some(id.to_owned()),
        detached,
    };
    // The id is the parent's and the key's: one that exists is this child, started by
    // an earlier run.
    let created = match store.create_instance(new).await {
        Ok(_) => true,
        Err(Error::InstanceExists { .. }) => false,
        Err(error) => return Err(error),
    };
    Ok(InstanceResponse::ChildStarted {
        instance_id: child_id,
        created,
    })
}

/// Bytes a page of checkpoints and retry attempts takes on the wire, counted as the
/// storage's pages count them (a checkpoint: state, id and 16 bytes).
fn page_bytes(checkpoints: &[(String, Vec<u8>)], attempts: &[(String, u32)]) -> usize {
    let steps: usize = checkpoints
        .iter()
        .map(|(id, s)| id.len() + s.len() + 16)
        .sum();
    let retries: usize = attempts.iter().map(|(id, _)| id.len() + 16).sum();
    steps + retries
}

fn recorded_steps(checkpoints: Vec<(String, Vec<u8>)>) -> Vec<RecordedStep> {
    checkpoints
        .into_iter()
        .map(|(checkpoint_id, state)| RecordedStep {
            checkpoint_id,
            state: ByteBuf::from(state),
        })
        .collect()
}

/// Refuses a state that could not be replayed in one frame.
fn check_state_len(checkpoint_id: &str, state: &[u8], max_state_len: usize) -> Result<()> {
    if state.len() > max_state_len {
        return Err(Error::InvalidInput {
            what: "checkpoint state",
            reason: format!(
                "the state of `{checkpoint_id}` is {} bytes; the limit is {max_state_len}",
                state.len()
            ),
        });
    }
    Ok(())
}

/// The response to a request that could not be decoded.
pub fn malformed_request(message: impl Into<String>) -> InstanceResponse {
    InstanceResponse::Error(WireError::new(ErrorCode::Malformed, message))
}

#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{InstanceStatus, SignalType};

    fn start_child(epoch: i64) -> InstanceRequest {
        InstanceRequest::StartChild {
            epoch,
            key: "part-1".into(),
            // No such image: a start that passes the run's check fails on it instead.
            image_id: "img-none".into(),
            input: None,
        }
    }

    #[tokio::test]
    async fn only_the_current_run_of_a_live_instance_starts_children() {
        let store = crate::connect("sqlite::memory:").await.unwrap();
        let who = InstanceIdentity {
            instance_id: "parent".into(),
            tenant_id: "t".into(),
        };
        let first = store.register_instance("parent", "t", None).await.unwrap();
        let second = store.register_instance("parent", "t", None).await.unwrap();
        let code = |response: InstanceResponse| match response {
            InstanceResponse::Error(error) => error.code,
            other => panic!("expected an error, got {other:?}"),
        };
        // The current run gets as far as the image.
        let current = handle_instance_request(store.as_ref(), &who, start_child(second.epoch));
        assert_eq!(code(current.await), ErrorCode::NotFound);
        // A run fenced out by a newer one starts nothing.
        let stale = handle_instance_request(store.as_ref(), &who, start_child(first.epoch));
        assert_eq!(code(stale.await), ErrorCode::Fenced);
        // Nor does the run of an instance cancelled while it ran.
        store
            .send_signal("parent", SignalType::Cancel)
            .await
            .unwrap();
        let from = [InstanceStatus::Running];
        store
            .set_status("parent", &from, InstanceStatus::Cancelled, None)
            .await
            .unwrap();
        let ended = handle_instance_request(store.as_ref(), &who, start_child(second.epoch));
        assert_ne!(code(ended.await), ErrorCode::NotFound);
    }
}
