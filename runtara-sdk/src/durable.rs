//! What a `#[durable]` function does at run time: replay, run, retry, record.

use std::fmt::Display;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::retry::{RetryPolicy, Retryable};
use crate::{current_sdk, RuntaraSdk, SdkError};

/// The checkpoint id of a durable call: `"{fn_name}::{key}"`.
///
/// This format is part of the stored data and stays stable across versions.
pub fn checkpoint_id(fn_name: &str, key: &dyn Display) -> String {
    format!("{fn_name}::{key}")
}

/// A type a durable function can return as its success value.
#[diagnostic::on_unimplemented(
    message = "the result of a `#[durable]` function is recorded, so `{Self}` must implement `Serialize` and `DeserializeOwned`",
    label = "`{Self}` cannot be recorded",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`"
)]
pub trait Recordable: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> Recordable for T {}

/// A type a durable function can return as its error.
#[diagnostic::on_unimplemented(
    message = "the error type of a `#[durable]` function must implement `From<runtara_sdk::SdkError>` and `Display`",
    label = "`{Self}` cannot carry an `SdkError`",
    note = "recording the result can fail too; add `impl From<runtara_sdk::SdkError> for {Self}` (and `Display`), or return `Result<T, runtara_sdk::SdkError>`"
)]
pub trait DurableError: From<SdkError> + Display {}

impl<E: From<SdkError> + Display> DurableError for E {}

/// Checks, at the user's return type, that `T` and `E` fit a durable function.
pub fn assert_durable_result<T: Recordable, E: DurableError>() {}

/// Runs one durable call whose body may run several times (retries enabled).
///
/// A recorded result is decoded and returned without calling `attempt`. Otherwise
/// `attempt` is called; on `Ok` the value is recorded and returned once the record is
/// acknowledged; on a retryable `Err` the retry is recorded, the policy's delay waited,
/// and `attempt` called again, until `max_retries` retries (counted across restarts).
/// `producer` names the function (its module path, or its `name = "..."`): a result
/// recorded under the id by another function is an error, never taken.
pub async fn run_durable<T, E, F, Fut>(
    producer: &'static str,
    checkpoint_id: String,
    policy: RetryPolicy,
    is_retryable: fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    T: Recordable,
    E: DurableError,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let sdk = current_sdk()?;
    if let Some(recorded) = replayed::<T>(&sdk, producer, &checkpoint_id) {
        return recorded.map_err(E::from);
    }
    // A concurrent call with the same id in this process goes first; its result, once
    // recorded, is this call's too.
    let _turn = sdk.inner.in_flight.turn(&checkpoint_id).await;
    if let Some(recorded) = replayed::<T>(&sdk, producer, &checkpoint_id) {
        return recorded.map_err(E::from);
    }
    let mut retries = sdk.inner.replay.attempts(&checkpoint_id);
    if (1..=policy.max_retries).contains(&retries) {
        // A restart during retry `retries`'s delay waits only what is left of it.
        rest_of_delay(&sdk, &checkpoint_id, policy.delay_for(retries)).await;
    }
    loop {
        match attempt().await {
            Ok(value) => {
                return record(&sdk, producer, &checkpoint_id, value)
                    .await
                    .map_err(E::from)
            }
            Err(error) if retries < policy.max_retries && is_retryable(&error) => {
                retries += 1;
                let message = error.to_string();
                tracing::debug!(%checkpoint_id, retry = retries, error = %message, "durable call failed; retrying");
                sdk.record_retry_attempt(&checkpoint_id, retries, Some(&message))
                    .await?;
                tokio::time::sleep(policy.delay_for(retries)).await;
            }
            Err(error) => return Err(fail_for_good(&sdk, &checkpoint_id, error).await),
        }
    }
}

/// Clones an argument for one more attempt of a durable call.
///
/// Called as `clone_argument(&arg)`, so a `&T` argument clones the reference, not the value.
pub fn clone_argument<T: RetryArgument>(value: &T) -> T {
    value.clone()
}

/// Arguments of a durable function with retries: each attempt gets its own copy.
#[diagnostic::on_unimplemented(
    message = "`#[durable]` clones every owned argument for each retry, but `{Self}` is not `Clone`",
    label = "this argument is not `Clone`",
    note = "implement `Clone` for it, take it by reference, or disable retries with `#[durable(max_retries = 0)]`"
)]
pub trait RetryArgument: Clone {}

impl<T: Clone> RetryArgument for T {}

/// Runs one durable call whose body runs at most once (`max_retries = 0`).
pub async fn run_durable_once<T, E, Fut>(
    producer: &'static str,
    checkpoint_id: String,
    body: Fut,
) -> Result<T, E>
where
    T: Recordable,
    E: DurableError,
    Fut: Future<Output = Result<T, E>>,
{
    let sdk = current_sdk()?;
    if let Some(recorded) = replayed::<T>(&sdk, producer, &checkpoint_id) {
        return recorded.map_err(E::from);
    }
    let _turn = sdk.inner.in_flight.turn(&checkpoint_id).await;
    if let Some(recorded) = replayed::<T>(&sdk, producer, &checkpoint_id) {
        return recorded.map_err(E::from);
    }
    let value = match body.await {
        Ok(value) => value,
        // No retries: any error is final.
        Err(error) => return Err(fail_for_good(&sdk, &checkpoint_id, error).await),
    };
    record(&sdk, producer, &checkpoint_id, value)
        .await
        .map_err(E::from)
}

/// The recorded outcome of the call, if it has one: its result, or its final failure.
fn replayed<T: DeserializeOwned>(
    sdk: &RuntaraSdk,
    producer: &str,
    checkpoint_id: &str,
) -> Option<Result<T, SdkError>> {
    let replay = &sdk.inner.replay;
    let result = replay.with_state(checkpoint_id, |state, recorded_by| {
        same_producer(checkpoint_id, recorded_by, producer)?;
        decode::<T>(checkpoint_id, state)
    });
    result.or_else(|| {
        let message = replay.failure(checkpoint_id)?;
        Some(Err(SdkError::StepFailed {
            checkpoint_id: checkpoint_id.to_owned(),
            message,
        }))
    })
}

/// Records that the call failed for good with `error` (its retries are spent, or the
/// error is not retryable), then hands the error back. Nothing is recorded once the run
/// took a cancel or a pause: an error then is the run stopping, not the step failing.
async fn fail_for_good<E: Display>(sdk: &RuntaraSdk, checkpoint_id: &str, error: E) -> E {
    if sdk.is_stopping() {
        return error;
    }
    let message = error.to_string();
    tracing::debug!(%checkpoint_id, error = %message, "durable call failed for good; recording the failure");
    if let Err(record_error) = sdk.record_step_failure(checkpoint_id, &message).await {
        tracing::warn!(%checkpoint_id, error = %record_error, "could not record the durable call's failure; a later run will try it again");
    }
    error
}

/// Sleeps what is left of a retry's `delay`, counted from when the retry was recorded.
async fn rest_of_delay(sdk: &RuntaraSdk, checkpoint_id: &str, delay: std::time::Duration) {
    let Some(recorded_at) = sdk.inner.replay.last_retry_at_ms(checkpoint_id) else {
        return;
    };
    let elapsed = u64::try_from(runtara_core::now_ms().saturating_sub(recorded_at)).unwrap_or(0);
    let rest = delay.saturating_sub(std::time::Duration::from_millis(elapsed));
    if !rest.is_zero() {
        tracing::debug!(%checkpoint_id, ?rest, "waiting the rest of a retry's delay from before the restart");
        tokio::time::sleep(rest).await;
    }
}

/// Refuses a result recorded by another function than `caller`. A result recorded
/// without a producer (by a version before producers, or by `RuntaraSdk::checkpoint`)
/// is taken by any caller.
fn same_producer(
    checkpoint_id: &str,
    recorded_by: Option<&str>,
    caller: &str,
) -> Result<(), SdkError> {
    match recorded_by {
        Some(recorded_by) if recorded_by != caller => Err(SdkError::WrongProducer {
            checkpoint_id: checkpoint_id.to_owned(),
            recorded_by: recorded_by.to_owned(),
            caller: caller.to_owned(),
        }),
        _ => Ok(()),
    }
}

fn decode<T: DeserializeOwned>(checkpoint_id: &str, state: &[u8]) -> Result<T, SdkError> {
    serde_json::from_slice(state).map_err(|source| SdkError::Decode {
        checkpoint_id: checkpoint_id.to_owned(),
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Records `value` durably, then reports a pending cancel or pause.
async fn record<T>(
    sdk: &RuntaraSdk,
    producer: &str,
    checkpoint_id: &str,
    value: T,
) -> Result<T, SdkError>
where
    T: Serialize + DeserializeOwned,
{
    let state = serde_json::to_vec(&value).map_err(|source| SdkError::Encode {
        checkpoint_id: checkpoint_id.to_owned(),
        type_name: std::any::type_name::<T>(),
        source,
    })?;
    let outcome = sdk.checkpoint_step(checkpoint_id, &state, producer).await?;
    let replay = &sdk.inner.replay;
    let value = match outcome.existing_state {
        // Recorded earlier (outside this cache): the first recorded result wins.
        Some(earlier) => {
            let recorded_by = outcome.existing_producer.as_deref();
            same_producer(checkpoint_id, recorded_by, producer)?;
            let earlier_value = decode::<T>(checkpoint_id, &earlier)?;
            replay.insert_state(checkpoint_id, earlier, recorded_by);
            earlier_value
        }
        None => {
            replay.insert_state(checkpoint_id, state, Some(producer));
            value
        }
    };
    let Some(signal) = outcome.signal.map(|signal| signal.signal_type) else {
        return Ok(value);
    };
    let stop = match signal {
        runtara_core::SignalType::Cancel => SdkError::Cancelled,
        runtara_core::SignalType::Pause => SdkError::Paused,
        // A resume is never reported to a run.
        runtara_core::SignalType::Resume => return Ok(value),
    };
    sdk.mark_stopping();
    acknowledge(sdk, signal).await;
    Err(stop)
}

async fn acknowledge(sdk: &RuntaraSdk, signal: runtara_core::SignalType) {
    if let Err(error) = sdk.acknowledge_signal(signal, true).await {
        tracing::warn!(%error, %signal, "could not acknowledge signal");
    }
}

/// Classifies an error as retryable: through [`Retryable`] when the error type
/// implements it (an inherent method, chosen first), else always retryable (the
/// [`RetryFallback`] trait method).
pub struct Classify<'a, E>(pub &'a E);

impl<E: Retryable> Classify<'_, E> {
    /// Whether the error may be retried, as its `Retryable` impl says.
    pub fn retryable(&self) -> bool {
        self.0.is_retryable()
    }
}

/// Fallback of [`Classify`] for error types without a [`Retryable`] impl.
pub trait RetryFallback {
    /// Always true: errors are retryable unless their type says otherwise.
    fn retryable(&self) -> bool {
        true
    }
}

impl<E> RetryFallback for Classify<'_, E> {}

/// Names the parts of a `Result` type, so the macro can work with aliases such as
/// `anyhow::Result<T>` or `io::Result<T>`.
pub trait ResultParts {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;
}

impl<T, E> ResultParts for Result<T, E> {
    type Ok = T;
    type Err = E;
}
