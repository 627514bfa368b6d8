//! Sending an instance's requests through its backend and reading their answers: what
//! every public operation of [`RuntaraSdk`](crate::RuntaraSdk) shares.

use runtara_core::{InstanceStatus, Producers, ReplayLog};
use runtara_protocol::{ErrorCode, InstanceRequest, InstanceResponse, RecordedStep};

use crate::backend::Backend;
use crate::{Result, SdkError};

/// Runs `request`; a refusal is an `Err`.
pub(crate) async fn call(backend: &dyn Backend, request: InstanceRequest) -> Result<()> {
    backend.send(request).await.0.map(|_| ())
}

/// Runs `request` and takes the answer `pick` wants out of its response.
pub(crate) async fn ask<T>(
    backend: &dyn Backend,
    request: InstanceRequest,
    pick: impl FnOnce(InstanceResponse) -> Option<T>,
) -> Result<T> {
    let operation = request.operation();
    let response = backend.send(request).await.0?;
    expect(operation, response, pick)
}

/// A write that moves the instance to `already_done`: when it had to be sent again
/// (its first answer was lost) and the instance is found in the very state it asks for,
/// the first send was applied and this one is done.
pub(crate) async fn settle(
    backend: &dyn Backend,
    request: InstanceRequest,
    already_done: InstanceStatus,
) -> Result<()> {
    match backend.send(request).await {
        (Ok(_), _) => Ok(()),
        (
            Err(SdkError::Persistence(
                runtara_core::Error::Terminal { status, .. }
                | runtara_core::Error::NotRunning { status, .. },
            )),
            true,
        ) if status == already_done => Ok(()),
        (Err(error), _) => Err(error),
    }
}

/// The answer of the kind `pick` wants, or an error saying the server sent another.
pub(crate) fn expect<T>(
    operation: &'static str,
    response: InstanceResponse,
    pick: impl FnOnce(InstanceResponse) -> Option<T>,
) -> Result<T> {
    pick(response).ok_or_else(|| SdkError::UnexpectedResponse {
        operation,
        detail: "a response of another kind".into(),
    })
}

/// Whether `error` is a server refusing a request it cannot decode: a server older than
/// the request's kind.
pub(crate) fn is_older_server(error: &SdkError) -> bool {
    matches!(
        error,
        SdkError::Server {
            code: ErrorCode::Malformed,
            ..
        }
    )
}

/// Registers a run: its epoch and the whole replay log, read page by page.
pub(crate) async fn register(
    backend: &dyn Backend,
    checkpoint_id: Option<&str>,
) -> Result<(i64, ReplayLog)> {
    let checkpoint_id = checkpoint_id.map(str::to_owned);
    let request = InstanceRequest::RegisterPaged {
        checkpoint_id: checkpoint_id.clone(),
    };
    let first = match backend.send(request).await.0 {
        Err(error) if is_older_server(&error) => {
            return register_whole(backend, checkpoint_id).await;
        }
        response => response?,
    };
    registered(backend, first).await
}

/// The epoch and the whole replay log of a run whose register was answered with
/// `first` (its first page): reads the pages that follow.
pub(crate) async fn registered(
    backend: &dyn Backend,
    first: InstanceResponse,
) -> Result<(i64, ReplayLog)> {
    let (epoch, mut log) = expect("register", first, |r| match r {
        InstanceResponse::RegisteredPage {
            epoch,
            checkpoints,
            retry_attempts,
            retry_at_ms,
            failures,
            producer_names,
            produced_by,
            more_after,
        } => Some((
            epoch,
            ReplayLog {
                checkpoints: recorded(checkpoints),
                retry_attempts,
                retry_at_ms,
                failures,
                producers: Producers {
                    names: producer_names,
                    of: produced_by,
                },
                more_after,
            },
        )),
        _ => None,
    })?;
    while let Some(after_seq) = log.more_after {
        let request = InstanceRequest::ReplayPage { after_seq };
        let (checkpoints, producers, more_after) = ask(backend, request, |r| match r {
            InstanceResponse::ReplayPage {
                checkpoints,
                producer_names,
                produced_by,
                more_after,
            } => Some((
                checkpoints,
                Producers {
                    names: producer_names,
                    of: produced_by,
                },
                more_after,
            )),
            _ => None,
        })
        .await?;
        if checkpoints.is_empty() && more_after.is_some() {
            return Err(SdkError::UnexpectedResponse {
                operation: "replay_page",
                detail: format!(
                    "an empty page of the replay log after {after_seq} that says more follow"
                ),
            });
        }
        log.producers.extend(log.checkpoints.len(), producers);
        log.checkpoints.extend(recorded(checkpoints));
        log.more_after = more_after;
    }
    Ok((epoch, log))
}

/// `register` in one frame, for servers that do not page the replay log.
async fn register_whole(
    backend: &dyn Backend,
    checkpoint_id: Option<String>,
) -> Result<(i64, ReplayLog)> {
    ask(
        backend,
        InstanceRequest::Register { checkpoint_id },
        |r| match r {
            InstanceResponse::Registered {
                epoch,
                checkpoints,
                retry_attempts,
            } => Some((
                epoch,
                ReplayLog {
                    checkpoints: recorded(checkpoints),
                    retry_attempts,
                    retry_at_ms: Vec::new(),
                    failures: Vec::new(),
                    producers: Producers::default(),
                    more_after: None,
                },
            )),
            _ => None,
        },
    )
    .await
}

fn recorded(steps: Vec<RecordedStep>) -> Vec<(String, Vec<u8>)> {
    steps
        .into_iter()
        .map(|step| (step.checkpoint_id, step.state.into_vec()))
        .collect()
}
