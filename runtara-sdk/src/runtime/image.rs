//! A workflow binary as an image of `runtara-server`: one function, one line in `main`.

use std::fmt;
use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{RuntaraSdk, SdkError};

/// Whether `runtara-server` launched this process, as an instance of its own or as a
/// worker: then [`run_image`] is what it runs. A program that also runs on its own (an
/// embedded runtime, a CLI) asks this first.
///
/// ```no_run
/// # async fn embedded() -> Result<(), runtara_sdk::SdkError> { Ok(()) }
/// # async fn order(_: u64) -> Result<u64, runtara_sdk::SdkError> { Ok(1) }
/// # #[tokio::main]
/// # async fn main() -> Result<(), runtara_sdk::SdkError> {
/// match runtara_sdk::runtime::launched_by_server() {
///     true => runtara_sdk::runtime::run_image(order).await,
///     false => embedded().await,
/// }
/// # }
/// ```
pub fn launched_by_server() -> bool {
    super::worker::is_worker() || std::env::var_os("RUNTARA_INSTANCE_ID").is_some()
}

/// Runs `workflow` as the program the server launched. Launched as a worker (an image
/// with a worker pool: `RUNTARA_WORKER_ID` set), it runs every instance the server sends
/// it, each on a task of its own; otherwise it is one instance:
///
/// Launched for one instance, it connects and registers the
/// instance named by the environment the server sets (`RUNTARA_INSTANCE_ID`, …; see
/// [`SdkConfig::from_env`](crate::SdkConfig::from_env)), decodes the start input as `I`
/// (`null` when it was started without one), runs the workflow with the instance's SDK
/// in force for its `#[durable]` calls and [`sdk()`](crate::sdk), and records how it
/// ended: `Ok(output)` → `completed` with the output as JSON; `Err(e)` → `failed` with
/// `e`'s message; a panic → `failed` with the panic's message. A run that took a cancel
/// or a pause stops without recording anything more (the instance is `cancelled` or
/// `suspended` already).
///
/// ```no_run
/// use runtara_sdk::{durable, SdkError};
///
/// #[durable]
/// async fn charge(order_id: String, cents: u64) -> Result<String, SdkError> {
///     Ok(format!("receipt-{order_id}-{cents}"))
/// }
///
/// #[derive(serde::Deserialize)]
/// struct Order { order_id: String, cents: u64 }
///
/// async fn order(order: Order) -> Result<String, SdkError> {
///     charge(order.order_id, order.cents).await
/// }
///
/// #[tokio::main]
/// async fn main() -> Result<(), SdkError> {
///     runtara_sdk::runtime::run_image(order).await
/// }
/// ```
///
/// An input that does not decode as `I` fails the instance at once with the reason (and
/// is returned). Other errors: the environment is wrong, or the server cannot be
/// reached, or the end could not be recorded (the server relaunches the instance).
pub async fn run_image<F, Fut, I, O, E>(workflow: F) -> Result<(), SdkError>
where
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    I: DeserializeOwned + 'static,
    O: Serialize + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    if super::worker::is_worker() {
        return super::worker::serve(super::workflow::Workflow::new(workflow)).await;
    }
    let sdk = RuntaraSdk::from_env()?;
    sdk.clone().init(None).await?;
    // An input that does not fit never will: the instance fails now, with the reason,
    // rather than crash until the server gives up.
    let input = match start_input::<I>() {
        Ok(input) => input,
        Err(error) => {
            sdk.failed(&chain(&error)).await?;
            return Err(error);
        }
    };
    let running = tokio::spawn(sdk.clone().scope(workflow(input)));
    let ended = match running.await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(error)) => Err(format!("{error:#}")),
        Err(join) if join.is_panic() => Err(format!(
            "the workflow panicked: {}",
            super::run::panic_message(join.into_panic())
        )),
        Err(_) => Err("the workflow's task was aborted".to_owned()),
    };
    match ended {
        Ok(output) => match serde_json::to_vec(&output) {
            Ok(output) => sdk.completed(&output).await,
            Err(error) => {
                let message = format!("the workflow's output cannot be encoded as JSON: {error}");
                sdk.failed(&message).await
            }
        },
        // The cancel or pause is recorded already.
        Err(_) if sdk.is_stopping() => Ok(()),
        Err(message) => sdk.failed(&message).await,
    }
}

/// The start input as `I`; an instance started without one gets `null` decoded as `I`
/// (fine for `()` and `Option<_>`).
fn start_input<I: DeserializeOwned>() -> Result<I, SdkError> {
    if let Some(input) = crate::input::<I>()? {
        return Ok(input);
    }
    serde_json::from_value(serde_json::Value::Null).map_err(|source| SdkError::Input {
        path: std::env::var_os(crate::INPUT_FILE_ENV)
            .map(Into::into)
            .unwrap_or_default(),
        what: format!(
            "holds no input, and the workflow needs a `{}`",
            std::any::type_name::<I>()
        ),
        source: source.into(),
    })
}

/// `error` and its causes, `: ` between.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
