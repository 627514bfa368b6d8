//! What a `#[durable]` function does at run time: replay, run, retry, record.
//!
//! The code `#[durable]` generates checks the function's types once, through [`kit`]
//! (so each unmet bound is one error, on the return type), picks at the call site, where
//! the types are concrete, how errors are classified and whether the success and error
//! values may be held while they are recorded, then calls [`run_durable`] or
//! [`run_durable_once`].
//!
//! **`Send`.** A durable call's future is `Send` exactly when the plain `async fn`'s would
//! be: the runtime holds no argument by reference across an `.await` (the retry closure
//! owns them), never holds an error it will retry across an `.await`, and holds the
//! success or final error value across the `.await` that records it only when that
//! value's type is known to be `Send` ([`Kit::keep_value`], [`Kit::keep_error`]). Otherwise
//! the value is recorded first and handed back decoded from its record, and a final error
//! comes back as the recorded failure, [`SdkError::StepFailed`], carrying its message.

use std::borrow::Cow;
use std::fmt::Display;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::retry::{RetryPolicy, Retryable};
use crate::{current_sdk, RuntaraSdk, SdkError};

/// The checkpoint id of a durable call: `"{fn_name}::{key}"`.
///
/// This format is part of the stored data and stays stable across versions.
pub fn checkpoint_id<K: IdempotencyKey + ?Sized>(fn_name: &str, key: &K) -> String {
    format!("{fn_name}::{key}")
}

/// The first argument of a durable function: it names the checkpoint.
#[diagnostic::on_unimplemented(
    message = "the first argument of a `#[durable]` function is its idempotency key, so `{Self}` must implement `Display`",
    label = "the idempotency key: it names the checkpoint",
    note = "the checkpoint id is the function's name and the key's `Display`; implement `Display` for `{Self}`, or put an argument that is `Display` first"
)]
pub trait IdempotencyKey: Display {}

impl<K: Display + ?Sized> IdempotencyKey for K {}

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

/// Names the parts of a `Result` type, so the macro can work with aliases such as
/// `anyhow::Result<T>`, `io::Result<T>` or `type Res<T> = Result<T, MyError>`.
#[diagnostic::on_unimplemented(
    message = "`#[durable]` functions must return `Result<T, E>`, not `{Self}`",
    label = "not a `Result`",
    note = "`Ok` values are recorded, `Err` values are retried or returned; aliases of `Result` (`io::Result<T>`, `type Res<T> = Result<T, MyError>`) are fine"
)]
pub trait ResultParts: Sized {
    /// The success type.
    type Ok;
    /// The error type.
    type Err;

    /// The value as a `Result` (itself).
    fn into_result(self) -> Result<Self::Ok, Self::Err>;

    /// A `Result` as the value (itself).
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

impl<T, E> ResultParts for Result<T, E> {
    type Ok = T;
    type Err = E;

    fn into_result(self) -> Self {
        self
    }

    fn from_result(result: Self) -> Self {
        result
    }
}

/// What the runtime does with a durable function's `Result<T, E>`: encode and decode
/// `T`, make an `E` from an [`SdkError`], and read an `E`'s message. Made by [`kit`],
/// where the bounds are checked, so [`run_durable`] needs none.
pub struct Codec<T, E> {
    encode: fn(&T) -> serde_json::Result<Vec<u8>>,
    decode: fn(&[u8]) -> serde_json::Result<T>,
    from_sdk: fn(SdkError) -> E,
    message: fn(&E) -> String,
}

impl<T, E> Clone for Codec<T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T, E> Copy for Codec<T, E> {}

/// Everything the runtime needs to know about a durable function's return type `R`, a
/// `Result<T, E>` (or an alias of one): made by [`kit`], where the bounds are checked,
/// so [`run_durable`] needs none.
pub struct Kit<R, T, E> {
    codec: Codec<T, E>,
    into_result: fn(R) -> Result<T, E>,
    from_result: fn(Result<T, E>) -> R,
}

impl<R, T, E> Clone for Kit<R, T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R, T, E> Copy for Kit<R, T, E> {}

/// The [`Kit`] of a durable function returning `R`. Every requirement on the return type
/// is checked here, once: `R` is a `Result<T, E>` with `T: Recordable` and
/// `E: DurableError`. When `R` is not a `Result`, `T` and `E` are unknown, and nothing
/// else is reported.
pub fn kit<R>() -> Kit<R, R::Ok, R::Err>
where
    R: ResultParts,
    R::Ok: Recordable,
    R::Err: DurableError,
{
    Kit {
        codec: Codec {
            encode: |value| serde_json::to_vec(value),
            decode: |state| serde_json::from_slice(state),
            from_sdk: <R::Err as From<SdkError>>::from,
            message: |error| error.to_string(),
        },
        into_result: R::into_result,
        from_result: R::from_result,
    }
}

impl<T, E> Codec<T, E> {
    fn encode(&self, checkpoint_id: &str, value: &T) -> Result<Vec<u8>, SdkError> {
        (self.encode)(value).map_err(|source| SdkError::Encode {
            checkpoint_id: checkpoint_id.to_owned(),
            type_name: std::any::type_name::<T>(),
            source,
        })
    }

    fn decode(&self, checkpoint_id: &str, state: &[u8]) -> Result<T, SdkError> {
        (self.decode)(state).map_err(|source| SdkError::Decode {
            checkpoint_id: checkpoint_id.to_owned(),
            type_name: std::any::type_name::<T>(),
            source,
        })
    }
}

/// Classifies errors through [`Retryable`] when the error type implements it (an
/// inherent method, chosen first at the call site); else [`RetryFallback`] says every
/// error is retryable.
impl<R, T, E: Retryable> Kit<R, T, E> {
    /// Whether an error may be retried, as its `Retryable` impl says.
    pub fn classifier(&self) -> fn(&E) -> bool {
        |error| error.is_retryable()
    }
}

/// Fallback of [`Kit::classifier`] for error types without a [`Retryable`] impl.
pub trait RetryFallback<E> {
    /// Every error is retryable.
    fn classifier(&self) -> fn(&E) -> bool {
        |_| true
    }
}

impl<R, T, E> RetryFallback<E> for Kit<R, T, E> {}

impl<R, T: Send, E> Kit<R, T, E> {
    /// A `Send` success value is held while it is recorded and returned as it is.
    pub fn keep_value(&self) -> Held {
        Held
    }
}

impl<R, T, E: Send> Kit<R, T, E> {
    /// A `Send` error is held while its failure is recorded and returned as it is.
    pub fn keep_error(&self) -> Held {
        Held
    }
}

/// Fallbacks of [`Kit::keep_value`] and [`Kit::keep_error`] for types not known to be
/// `Send`: such a value is never held across an `.await`, so that the call's future is
/// `Send` whenever the plain function's would be.
pub trait KeepFallback {
    /// The success value is encoded and dropped before it is recorded, and the call
    /// returns it decoded from its record.
    fn keep_value(&self) -> Detached {
        Detached
    }

    /// The final error is dropped before its failure is recorded, and the call returns
    /// the recorded failure, `SdkError::StepFailed`, with the error's message.
    fn keep_error(&self) -> Detached {
        Detached
    }
}

impl<R, T, E> KeepFallback for Kit<R, T, E> {}

/// Holds a value while it is recorded (its type is `Send`).
#[derive(Debug, Clone, Copy)]
pub struct Held;

/// Never holds a value across an `.await` (its type may not be `Send`).
#[derive(Debug, Clone, Copy)]
pub struct Detached;

/// How a call keeps its success value while the value's record is saved: [`Held`] keeps
/// the value, [`Detached`] only its encoded state.
pub trait KeepValue<T>: Copy {
    /// What is kept across the save.
    type Kept;

    /// Keeps `value` (encoded as `state`) for the save; consumes it.
    fn keep(self, value: T, state: &[u8]) -> Self::Kept;

    /// The value the call returns: the one recorded `earlier` under the id if there is
    /// one (the first recorded result wins), else the kept one.
    fn give_back<E>(
        self,
        kept: Self::Kept,
        earlier: Option<Vec<u8>>,
        kit: Codec<T, E>,
        checkpoint_id: &str,
    ) -> Result<T, SdkError>;
}

impl<T> KeepValue<T> for Held {
    type Kept = T;

    fn keep(self, value: T, _state: &[u8]) -> T {
        value
    }

    fn give_back<E>(
        self,
        kept: T,
        earlier: Option<Vec<u8>>,
        kit: Codec<T, E>,
        checkpoint_id: &str,
    ) -> Result<T, SdkError> {
        match earlier {
            Some(earlier) => kit.decode(checkpoint_id, &earlier),
            None => Ok(kept),
        }
    }
}

impl<T> KeepValue<T> for Detached {
    type Kept = Vec<u8>;

    fn keep(self, value: T, state: &[u8]) -> Vec<u8> {
        drop(value);
        state.to_vec()
    }

    fn give_back<E>(
        self,
        kept: Vec<u8>,
        earlier: Option<Vec<u8>>,
        kit: Codec<T, E>,
        checkpoint_id: &str,
    ) -> Result<T, SdkError> {
        kit.decode(checkpoint_id, earlier.as_deref().unwrap_or(&kept))
    }
}

/// How a call keeps its final error while the failure is recorded: [`Held`] keeps the
/// error, [`Detached`] only its message.
pub trait KeepError<E>: Copy {
    /// What is kept across the record.
    type Kept;

    /// Keeps `error` for the record; consumes it.
    fn keep(self, error: E) -> Self::Kept;

    /// The error the call returns once the failure (`message`) is recorded.
    fn give_back<T>(
        self,
        kept: Self::Kept,
        kit: Codec<T, E>,
        checkpoint_id: String,
        message: String,
    ) -> E;
}

impl<E> KeepError<E> for Held {
    type Kept = E;

    fn keep(self, error: E) -> E {
        error
    }

    fn give_back<T>(self, kept: E, _kit: Codec<T, E>, _id: String, _message: String) -> E {
        kept
    }
}

impl<E> KeepError<E> for Detached {
    type Kept = ();

    fn keep(self, error: E) {
        drop(error);
    }

    fn give_back<T>(
        self,
        _kept: (),
        kit: Codec<T, E>,
        checkpoint_id: String,
        message: String,
    ) -> E {
        (kit.from_sdk)(SdkError::StepFailed {
            checkpoint_id,
            message,
        })
    }
}

/// The function a durable result is recorded with: its module path and name (or its
/// `name = "..."`), and for a method also its `Self` type, so that methods of one name on
/// different types never take each other's results.
#[derive(Debug, Clone)]
pub struct Producer {
    name: Cow<'static, str>,
    /// What the same function was recorded as before methods named their `Self` type.
    legacy: Option<&'static str>,
}

impl Producer {
    /// A free function, `concat!(module_path!(), "::", fn_name)`, or a `name = "..."`.
    pub const fn function(name: &'static str) -> Producer {
        Producer {
            name: Cow::Borrowed(name),
            legacy: None,
        }
    }

    /// A method: `function` is `concat!(module_path!(), "::", fn_name)` and `self_type`
    /// is `type_name::<Self>()`. The producer is `"{module}::{Type}::{fn_name}"`, where
    /// `Type` is the last segment of the type's path without its generic arguments (so
    /// it does not depend on how the compiler spells other types); results recorded as
    /// `function` (before producers named `Self`) are still taken.
    pub fn method(function: &'static str, self_type: &'static str) -> Producer {
        let (module, fn_name) = function.rsplit_once("::").unwrap_or(("", function));
        let self_type = short_type_name(self_type);
        let name = if module.is_empty() {
            format!("{self_type}::{fn_name}")
        } else {
            format!("{module}::{self_type}::{fn_name}")
        };
        Producer {
            name: Cow::Owned(name),
            legacy: Some(function),
        }
    }

    /// The producer as recorded.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a result recorded by `recorded_by` is this function's.
    fn accepts(&self, recorded_by: &str) -> bool {
        recorded_by == self.name() || self.legacy == Some(recorded_by)
    }
}

/// `my_app::billing::Stripe<alloc::string::String>` → `Stripe`.
fn short_type_name(type_name: &str) -> &str {
    let path = type_name.split('<').next().unwrap_or(type_name);
    path.rsplit("::").next().unwrap_or(path).trim()
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

// Not recommended, so that an unmet `Clone` deep inside the type (`Box<dyn Trait>`)
// is reported with the message above rather than as a bare `dyn Trait: Clone`.
#[diagnostic::do_not_recommend]
impl<T: Clone> RetryArgument for T {}

/// Clones the receiver for one more attempt of a durable method.
pub fn clone_receiver<T: RetryReceiver>(value: &T) -> T {
    value.clone()
}

/// Receivers of a durable method with retries: each attempt gets its own copy.
#[diagnostic::on_unimplemented(
    message = "`#[durable]` clones the receiver for each retry, but `{Self}` is not `Clone`",
    label = "this receiver is not `Clone`",
    note = "take `&self`, or a receiver that is `Clone` such as `self: Arc<Self>`, or disable retries with `#[durable(max_retries = 0)]`"
)]
pub trait RetryReceiver: Clone {}

#[diagnostic::do_not_recommend]
impl<T: Clone> RetryReceiver for T {}

/// One durable call: what [`run_durable`] and [`run_durable_once`] need besides the body.
pub struct Call<R, T, E, V, X> {
    codec: Codec<T, E>,
    into_result: fn(R) -> Result<T, E>,
    from_result: fn(Result<T, E>) -> R,
    is_retryable: fn(&E) -> bool,
    keep_value: V,
    keep_error: X,
    producer: Producer,
    checkpoint_id: String,
}

impl<R, T, E, V: KeepValue<T>, X: KeepError<E>> Call<R, T, E, V, X> {
    /// A call with the pieces the generated code picked at its call site.
    pub fn new(
        kit: Kit<R, T, E>,
        is_retryable: fn(&E) -> bool,
        keep_value: V,
        keep_error: X,
        producer: Producer,
        checkpoint_id: String,
    ) -> Self {
        Call {
            codec: kit.codec,
            into_result: kit.into_result,
            from_result: kit.from_result,
            is_retryable,
            keep_value,
            keep_error,
            producer,
            checkpoint_id,
        }
    }
}

/// How a call ends once its body returned, short of returning at once: what its
/// [`KeepValue`] or [`KeepError`] keeps while the outcome is recorded.
enum Done<V, X> {
    /// Save `state`, keeping `V` meanwhile.
    Record(Vec<u8>, V),
    /// Record the failure `message`, keeping `X` meanwhile.
    Fail(String, X),
}

/// What a retried call does after an attempt.
enum Step<V, X> {
    Done(Done<V, X>),
    /// Record a retry with the error's message, wait, and try again.
    Retry(String),
}

/// How the call ends with `outcome` (its last attempt's). Errors once the run stopped
/// (took a cancel or a pause) are returned at once (`Err`), not recorded.
///
/// The steps are built from `outcome` in one statement each, so that the `Result` itself
/// is never held across an `.await`: only what the call's [`KeepValue`] and
/// [`KeepError`] keep is.
fn settle<R, T, E, V, X>(
    sdk: &RuntaraSdk,
    call: &Call<R, T, E, V, X>,
    outcome: Result<T, E>,
) -> Result<Done<V::Kept, X::Kept>, Result<T, E>>
where
    V: KeepValue<T>,
    X: KeepError<E>,
{
    let kit = call.codec;
    match outcome {
        Ok(value) => match kit.encode(&call.checkpoint_id, &value) {
            Ok(state) => {
                let kept = call.keep_value.keep(value, &state);
                Ok(Done::Record(state, kept))
            }
            Err(error) => Err(Err((kit.from_sdk)(error))),
        },
        Err(error) if sdk.is_stopping() => Err(Err(error)),
        Err(error) => {
            let message = (kit.message)(&error);
            Ok(Done::Fail(message, call.keep_error.keep(error)))
        }
    }
}

/// Saves the call's result or records its final failure, and returns what the call
/// returns.
async fn finish<R, T, E, V, X>(
    sdk: &RuntaraSdk,
    call: Call<R, T, E, V, X>,
    done: Done<V::Kept, X::Kept>,
) -> Result<T, E>
where
    V: KeepValue<T>,
    X: KeepError<E>,
{
    let Call {
        codec: kit,
        keep_value,
        keep_error,
        producer,
        checkpoint_id,
        ..
    } = call;
    match done {
        Done::Record(state, kept) => save(sdk, &producer, &checkpoint_id, state)
            .await
            .and_then(|earlier| keep_value.give_back(kept, earlier, kit, &checkpoint_id))
            .map_err(kit.from_sdk),
        Done::Fail(message, kept) => {
            record_failure(sdk, &checkpoint_id, &message).await;
            Err(keep_error.give_back(kept, kit, checkpoint_id, message))
        }
    }
}

/// Runs one durable call whose body may run several times (retries enabled).
///
/// A recorded result is decoded and returned without calling `attempt`. Otherwise
/// `attempt` is called; on `Ok` the value is recorded and returned once the record is
/// acknowledged; on a retryable `Err` the retry is recorded, the policy's delay waited,
/// and `attempt` called again, until `max_retries` retries (counted across restarts).
/// A result recorded under the id by another function is an error, never taken.
pub async fn run_durable<R, T, E, V, X, F, Fut>(
    call: Call<R, T, E, V, X>,
    policy: RetryPolicy,
    attempt: F,
) -> R
where
    V: KeepValue<T>,
    X: KeepError<E>,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let from_result = call.from_result;
    from_result(run_retried(call, policy, attempt).await)
}

async fn run_retried<R, T, E, V, X, F, Fut>(
    call: Call<R, T, E, V, X>,
    policy: RetryPolicy,
    mut attempt: F,
) -> Result<T, E>
where
    V: KeepValue<T>,
    X: KeepError<E>,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let kit = call.codec;
    let sdk = current_sdk().map_err(kit.from_sdk)?;
    if let Some(recorded) = replayed(&sdk, kit, &call.producer, &call.checkpoint_id) {
        return recorded.map_err(kit.from_sdk);
    }
    // A concurrent call with the same id in this process goes first; its result, once
    // recorded, is this call's too.
    let _turn = sdk.inner.in_flight.turn(&call.checkpoint_id).await;
    if let Some(recorded) = replayed(&sdk, kit, &call.producer, &call.checkpoint_id) {
        return recorded.map_err(kit.from_sdk);
    }
    let mut retries = sdk.inner.replay.attempts(&call.checkpoint_id);
    if (1..=policy.max_retries).contains(&retries) {
        // A restart during retry `retries`'s delay waits only what is left of it.
        rest_of_delay(&sdk, &call.checkpoint_id, policy.delay_for(retries)).await;
    }
    loop {
        let step = match (call.into_result)(attempt().await) {
            Err(error) if retries < policy.max_retries && (call.is_retryable)(&error) => {
                Step::Retry((kit.message)(&error))
            }
            outcome => match settle(&sdk, &call, outcome) {
                Ok(done) => Step::Done(done),
                Err(now) => return now,
            },
        };
        match step {
            Step::Done(done) => return finish(&sdk, call, done).await,
            Step::Retry(message) => {
                retries += 1;
                let checkpoint_id = &call.checkpoint_id;
                tracing::debug!(%checkpoint_id, retry = retries, error = %message, "durable call failed; retrying");
                sdk.record_retry_attempt(checkpoint_id, retries, Some(&message))
                    .await
                    .map_err(kit.from_sdk)?;
                tokio::time::sleep(policy.delay_for(retries)).await;
            }
        }
    }
}

/// Runs one durable call whose body runs at most once (`max_retries = 0`).
pub async fn run_durable_once<R, T, E, V, X, Fut>(call: Call<R, T, E, V, X>, body: Fut) -> R
where
    V: KeepValue<T>,
    X: KeepError<E>,
    Fut: Future<Output = R>,
{
    let from_result = call.from_result;
    from_result(run_once(call, body).await)
}

async fn run_once<R, T, E, V, X, Fut>(call: Call<R, T, E, V, X>, body: Fut) -> Result<T, E>
where
    V: KeepValue<T>,
    X: KeepError<E>,
    Fut: Future<Output = R>,
{
    let kit = call.codec;
    let sdk = current_sdk().map_err(kit.from_sdk)?;
    if let Some(recorded) = replayed(&sdk, kit, &call.producer, &call.checkpoint_id) {
        return recorded.map_err(kit.from_sdk);
    }
    let _turn = sdk.inner.in_flight.turn(&call.checkpoint_id).await;
    if let Some(recorded) = replayed(&sdk, kit, &call.producer, &call.checkpoint_id) {
        return recorded.map_err(kit.from_sdk);
    }
    // No retries: any error is final.
    let done = match settle(&sdk, &call, (call.into_result)(body.await)) {
        Ok(done) => done,
        Err(now) => return now,
    };
    finish(&sdk, call, done).await
}

/// The recorded outcome of the call, if it has one: its result, or its final failure.
fn replayed<T, E>(
    sdk: &RuntaraSdk,
    kit: Codec<T, E>,
    producer: &Producer,
    checkpoint_id: &str,
) -> Option<Result<T, SdkError>> {
    let replay = &sdk.inner.replay;
    let result = replay.with_state(checkpoint_id, |state, recorded_by| {
        same_producer(checkpoint_id, recorded_by, producer)?;
        kit.decode(checkpoint_id, state)
    });
    result.or_else(|| {
        let message = replay.failure(checkpoint_id)?;
        Some(Err(SdkError::StepFailed {
            checkpoint_id: checkpoint_id.to_owned(),
            message,
        }))
    })
}

/// Records that the call failed for good with `message` (its retries are spent, or its
/// error is not retryable). A failure to record it is logged: a later run then tries the
/// step again.
async fn record_failure(sdk: &RuntaraSdk, checkpoint_id: &str, message: &str) {
    tracing::debug!(%checkpoint_id, error = %message, "durable call failed for good; recording the failure");
    if let Err(record_error) = sdk.record_step_failure(checkpoint_id, message).await {
        tracing::warn!(%checkpoint_id, error = %record_error, "could not record the durable call's failure; a later run will try it again");
    }
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
/// is taken by any caller, and so is one a method recorded before producers named `Self`.
fn same_producer(
    checkpoint_id: &str,
    recorded_by: Option<&str>,
    caller: &Producer,
) -> Result<(), SdkError> {
    match recorded_by {
        Some(recorded_by) if !caller.accepts(recorded_by) => Err(SdkError::WrongProducer {
            checkpoint_id: checkpoint_id.to_owned(),
            recorded_by: recorded_by.to_owned(),
            caller: caller.name().to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Saves `state` as the call's result, then reports a pending cancel or pause. Returns
/// the state recorded earlier under the id, if there was one (the first recorded result
/// wins), or `None` when `state` is now the record.
async fn save(
    sdk: &RuntaraSdk,
    producer: &Producer,
    checkpoint_id: &str,
    state: Vec<u8>,
) -> Result<Option<Vec<u8>>, SdkError> {
    let outcome = sdk
        .checkpoint_step(checkpoint_id, &state, producer.name())
        .await?;
    let replay = &sdk.inner.replay;
    let earlier = match outcome.existing_state {
        // Recorded earlier (outside this cache).
        Some(earlier) => {
            let recorded_by = outcome.existing_producer.as_deref();
            same_producer(checkpoint_id, recorded_by, producer)?;
            replay.insert_state(checkpoint_id, earlier.clone(), recorded_by);
            Some(earlier)
        }
        None => {
            replay.insert_state(checkpoint_id, state, Some(producer.name()));
            None
        }
    };
    let Some(signal) = outcome.signal.map(|signal| signal.signal_type) else {
        return Ok(earlier);
    };
    let stop = match signal {
        runtara_core::SignalType::Cancel => SdkError::Cancelled,
        runtara_core::SignalType::Pause => SdkError::Paused,
        // A resume is never reported to a run.
        runtara_core::SignalType::Resume => return Ok(earlier),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_name_their_self_type_by_its_last_segment() {
        let producer = Producer::method("app::billing::charge", "app::billing::Stripe");
        assert_eq!(producer.name(), "app::billing::Stripe::charge");
        let producer = Producer::method(
            "app::charge",
            "app::model::Wrapper<alloc::string::String, app::Other>",
        );
        assert_eq!(producer.name(), "app::Wrapper::charge");
        let producer = Producer::method("app::charge", "dyn app::Gateway");
        assert_eq!(producer.name(), "app::Gateway::charge");
    }

    #[test]
    fn methods_take_results_recorded_before_producers_named_self() {
        let stripe = Producer::method("app::charge", "app::Stripe");
        assert!(stripe.accepts("app::Stripe::charge"));
        assert!(
            stripe.accepts("app::charge"),
            "a record from before the change"
        );
        assert!(!stripe.accepts("app::Paypal::charge"));
        let function = Producer::function("app::charge");
        assert!(function.accepts("app::charge"));
        assert!(!function.accepts("app::Stripe::charge"));
    }
}
