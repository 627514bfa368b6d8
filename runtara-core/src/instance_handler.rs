//! Turns an instance's protocol request into storage operations.

use runtara_protocol::{
    ByteBuf, ErrorCode, InstanceRequest, InstanceResponse, RecordedStep, WireError,
};

use crate::wire::to_wire;
use crate::{now_ms, Error, Persistence, Result};

/// Who is calling: the identity bound to the connection by its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// The instance id.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
}

/// Runs `request` for `who` against `store`. Never fails: errors become
/// [`InstanceResponse::Error`].
pub async fn handle_instance_request(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    request: InstanceRequest,
) -> InstanceResponse {
    match run(store, who, request).await {
        Ok(response) => response,
        Err(error) => InstanceResponse::Error(to_wire(&error)),
    }
}

async fn run(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    request: InstanceRequest,
) -> Result<InstanceResponse> {
    let id = who.instance_id.as_str();
    Ok(match request {
        InstanceRequest::Register { checkpoint_id } => {
            let registration = store
                .register_instance(id, &who.tenant_id, checkpoint_id.as_deref())
                .await?;
            let log = store.load_replay(id).await?;
            InstanceResponse::Registered {
                epoch: registration.epoch,
                checkpoints: log
                    .checkpoints
                    .into_iter()
                    .map(|(checkpoint_id, state)| RecordedStep {
                        checkpoint_id,
                        state: ByteBuf::from(state),
                    })
                    .collect(),
                retry_attempts: log.retry_attempts,
            }
        }
        InstanceRequest::Checkpoint {
            epoch,
            checkpoint_id,
            state,
        } => {
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
                .record_event(id, "custom", Some(&subtype), Some(&payload))
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

/// The response to a request that could not be decoded.
pub fn malformed_request(message: impl Into<String>) -> InstanceResponse {
    InstanceResponse::Error(WireError::new(ErrorCode::Malformed, message))
}
