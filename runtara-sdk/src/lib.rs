//! Durable functions for Rust.
//!
//! Put `#[durable]` on the async functions whose results must survive a crash, call
//! [`RuntaraSdk::init`] at start-up, and a restarted program skips every step already
//! recorded and carries on.
//!
//! ```
//! use runtara_sdk::{durable, RuntaraSdk, SdkError};
//!
//! #[durable]
//! async fn charge(order_id: String, cents: u64) -> Result<String, SdkError> {
//!     // talk to the payment provider; runs once per order, even across crashes
//!     Ok(format!("receipt-{order_id}-{cents}"))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // A file survives the process: `sqlite://runtara.db`. This example keeps it in memory.
//!     let persistence = runtara_sdk::persistence::connect("sqlite::memory:").await?;
//!     RuntaraSdk::embedded(persistence, "order-42", "acme").init(None).await?;
//!     let receipt = charge("order-42".to_string(), 1999).await?;
//!     assert_eq!(receipt, "receipt-order-42-1999");
//!     runtara_sdk::sdk()?.completed(receipt.as_bytes()).await?;
//!     Ok(())
//! }
//! ```
//!
//! A durable call's checkpoint id is `"{fn_name}::{key}"`, where the key is its first
//! argument; see [`durable`] for the full contract.
//!
//! # Both SDKs in one program
//!
//! `runtara-sdk` and `runtara-management-sdk` each have an `SdkConfig`, an `SdkError`
//! and a `Result`. Where one program uses both (a service that runs workflows and also
//! starts them), import each crate under a short alias rather than its types by name:
//!
//! ```
//! use runtara_management_sdk as management;
//! use runtara_sdk as instance;
//!
//! let worker = instance::SdkConfig::localhost("order-42", "acme");
//! let operator = management::SdkConfig::localhost();
//! # let _ = (worker, operator);
//! fn step() -> instance::Result<()> { Ok(()) }
//! fn admin() -> management::Result<()> { Ok(()) }
//! # step().unwrap(); admin().unwrap();
//! ```
//!
//! Both errors are `std::error::Error + Send + Sync`, so `?` takes either into
//! `Box<dyn Error>`, `anyhow::Error`, or an application error with a `From` for each.

mod backend;
mod calls;
mod children;
mod config;
mod durable;
mod error;
mod events;
mod heartbeat;
#[cfg(feature = "quic")]
mod hosted;
mod in_flight;
mod input;
pub mod persistence;
#[cfg(feature = "quic")]
mod quic;
mod registry;
mod replay_cache;
mod responses;
mod retry;
pub mod runtime;
mod sdk;

pub use children::ChildOptions;
pub use config::{SdkConfig, DEFAULT_SERVER_ADDR};
pub use error::{Result, SdkError};
pub use input::{input, INPUT_FILE_ENV};
pub use registry::{current_sdk, register_sdk, sdk};
pub use responses::{CheckpointResult, Signal, StatusResponse};
pub use retry::{RetryPolicy, Retryable, Strategy, MAX_RETRY_DELAY};
pub use runtara_core::{InstanceStatus, MissedFires, Persistence, SignalType};
/// Largest checkpoint state (bytes) a run may record over QUIC: a recorded state must fit
/// in one protocol frame when it is replayed. Embedded mode has no such limit.
pub use runtara_protocol::MAX_STATE_LEN;
pub use sdk::{RuntaraSdk, DEFAULT_SIGNAL_POLL_INTERVAL};

/// Makes an async function durable: its result is recorded once and replayed after a restart.
///
/// ```ignore
/// #[durable]                                                               // defaults
/// #[durable(max_retries = 5, strategy = ExponentialBackoff, delay = 500)]  // delay in ms
/// async fn charge(key: String, order: &Order) -> Result<Receipt, MyError> { .. }
/// ```
///
/// - Applies to `async fn` returning `Result<T, E>` with `T: Serialize + DeserializeOwned`
///   and `E: From<SdkError> + Display`. The return type may be any alias of `Result`
///   (`io::Result<T>`, `anyhow::Result<T>`, `type Res<T> = Result<T, MyError>`): the
///   compiler checks that it is one.
/// - The first argument (after `self`) is the idempotency key (`Display`); the checkpoint
///   id is `"{fn_name}::{key}"`, stable across versions. **The first argument alone is
///   the key**: the other arguments take no part in it, so two calls with the same key and
///   different other arguments share one recorded result.
/// - Each result is recorded with the function that produced it (its module path, such
///   as `billing::charge`; for a method, with its `Self` type: `billing::Stripe::charge`).
///   A result recorded under the id by another function (two functions of one name in
///   different modules, or two methods of one name on different types) is
///   [`SdkError::WrongProducer`], naming both, never taken. `#[durable(name =
///   "billing::v1::charge")]` sets the identity instead: give one of two same-named
///   functions a distinct name (a distinct last segment, to give it distinct checkpoint
///   ids too), or keep a moved or renamed function's old identity (the checkpoint id then
///   uses the name's last segment). Results recorded without a producer (by
///   [`RuntaraSdk::checkpoint`], or by versions before producers) are taken by any
///   caller, and a method takes the results recorded by versions whose method records
///   did not name `Self` (`billing::charge`).
/// - Hit: the recorded value is returned without running the body. A recorded value that
///   no longer decodes into `T` is [`SdkError::Decode`], naming the key and the type.
/// - Miss: the body runs; on `Ok(v)`, `v` is recorded and returned once the record is
///   acknowledged. A failed record is an error, never a silent non-durable success.
/// - Retries (defaults: `max_retries = 3`, `strategy = ExponentialBackoff`,
///   `delay = 1000`): retry k waits `delay * 2^(k-1)` ms (capped at [`MAX_RETRY_DELAY`]),
///   is recorded with [`RuntaraSdk::record_retry_attempt`], and the count and the delay
///   survive a restart (a restart during a delay waits only what is left of it). Errors
///   whose type implements [`Retryable`] returning false are not retried.
/// - A final failure (retries spent, or an error that is not retryable) is recorded once
///   under the checkpoint id: later runs return [`SdkError::StepFailed`] (through
///   `E: From<SdkError>`, with the original message) without running the body, until an
///   operator clears it (`ManagementSdk::retry_step`, `runtara-ctl retry-step`). Errors
///   after the run took a cancel or a pause are not recorded as failures.
/// - With retries enabled, each attempt gets its own copy of the arguments: owned
///   arguments and an owned receiver (`self`, `self: Arc<Self>`) are cloned, so they must
///   be `Clone`, and `&mut` arguments and `&mut self` are refused; `max_retries = 0` lifts
///   all of it (the body then runs at most once, with the arguments themselves).
/// - The call's future is `Send` exactly when the plain `async fn`'s would be, so it can
///   be `tokio::spawn`ed: owned arguments need not be `Sync`, and a success or error
///   value is held across an `.await` only when its type is `Send`. When the error type
///   is not known to be `Send` (`Box<dyn Error>`, or a generic `E` without an `E: Send`
///   bound), a final failure is returned as the recorded failure,
///   [`SdkError::StepFailed`] with the original message, in the run where it happened
///   too; when `T` is not known to be `Send`, the value returned is the one decoded from
///   its record.
/// - Within one process, a second call with the same key waits for the first and
///   returns its recorded result (or its recorded failure); calls with different keys do
///   not wait for each other.
/// - A pending cancel seen when the result is recorded returns [`SdkError::Cancelled`];
///   a pending pause returns [`SdkError::Paused`] after the value is recorded.
///
/// # Supported shapes
///
/// - Free functions, `pub`, `pub(crate)`, in any module; `async fn` in any edition.
/// - Generic functions (`<T, E>`, `where` clauses, lifetimes), `impl Trait` arguments.
/// - Arguments as patterns: `mut key`, `ref key` (their names stay in the signature and
///   the documentation), `(a, b)`, `Point { x, y }`, `_` (bound to a hygienic name such
///   as `arg1` or `point`, destructured in the body). The key may be a pattern too.
/// - Methods and associated functions of inherent impls, with `Self` in the return type.
///   Receivers: `&self` (and `self: &Self`); with retries also any receiver that is
///   `Clone` (`self`, `self: Arc<Self>`, `self: Rc<Self>`), cloned for each attempt;
///   without retries also `&mut self` and any other receiver.
/// - Trait methods, native: `async fn` in a trait impl, or as a trait's default method.
/// - Trait methods with [`async-trait`](https://docs.rs/async-trait): `#[durable]` on a
///   method of an `#[async_trait]` impl (`Send` or `?Send`), or on a default method of an
///   `#[async_trait]` trait. async-trait turns the method into a `fn` returning
///   `Box::pin(async move { .. })` before `#[durable]` sees it; `#[durable]` makes that
///   future durable. Any `fn` whose whole body is `Box::pin(async move { .. })` or
///   `async move { .. }`, returning a future with `Output = Result<T, E>`, is durable the
///   same way.
/// - With `#[tracing::instrument]`, in either order: `#[durable]` written above it
///   (expanded first) puts the whole call, replay included, in the span; written below
///   it, each attempt gets a span.
/// - Facades and renamed dependencies: the expansion names the runtime through
///   `::runtara_sdk`; where that path does not exist, `crate = "path"` gives it, as
///   serde's and tokio's attributes do:
///
/// ```ignore
/// // A company facade that re-exports the crate: `pub use runtara_sdk as runtara;`
/// #[acme::durable(crate = "acme::runtara")]
/// async fn charge(order_id: String) -> Result<Receipt, acme::runtara::SdkError> { .. }
///
/// // A renamed dependency: `sdk = { package = "runtara-sdk", .. }` in Cargo.toml
/// #[sdk::durable(crate = "sdk")]
/// async fn refund(order_id: String) -> Result<u64, sdk::SdkError> { .. }
/// ```
///
/// Not supported: closures (`#[durable]` says so; move the body into an `async fn`),
/// functions without a body, `const fn`, and non-`async` functions of any other shape.
pub use runtara_macros::durable;

/// Items used by the code `#[durable]` generates. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::durable::{
        checkpoint_id, clone_argument, clone_receiver, kit, run_durable, run_durable_once, Call,
        Detached, DurableError, Held, IdempotencyKey, KeepError, KeepFallback, KeepValue, Kit,
        Producer, Recordable, ResultParts, RetryArgument, RetryFallback, RetryReceiver,
    };
    pub use crate::retry::{RetryPolicy, Strategy};
}
