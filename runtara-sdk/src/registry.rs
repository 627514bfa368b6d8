//! The SDK that `#[durable]` functions use: one per process, or one per task scope.

use std::future::Future;
use std::sync::OnceLock;

use crate::{RuntaraSdk, SdkError};

static GLOBAL: OnceLock<RuntaraSdk> = OnceLock::new();

tokio::task_local! {
    static SCOPED: RuntaraSdk;
}

/// Makes `sdk` the process-wide SDK used by `#[durable]` functions.
///
/// Succeeds once; a second call returns [`SdkError::AlreadyRegistered`] and leaves the
/// first SDK in place. [`RuntaraSdk::init`] calls this for you.
pub fn register_sdk(sdk: RuntaraSdk) -> Result<(), SdkError> {
    GLOBAL.set(sdk).map_err(|_| SdkError::AlreadyRegistered)
}

/// The SDK of the instance this code runs for: inside [`RuntaraSdk::scope`] (every
/// instance of a [`Runtime`](crate::runtime::Runtime) runs in one) the scoped SDK,
/// otherwise the process-wide one, or [`SdkError::NotInitialized`].
///
/// A clone: cheap, sharing the original's connection, registration and replay cache.
pub fn sdk() -> Result<RuntaraSdk, SdkError> {
    SCOPED
        .try_with(RuntaraSdk::clone)
        .or_else(|_| GLOBAL.get().cloned().ok_or(SdkError::NotInitialized))
}

/// The SDK in force for this task; the same as [`sdk`].
pub fn current_sdk() -> Result<RuntaraSdk, SdkError> {
    sdk()
}

impl RuntaraSdk {
    /// Runs `future` with this SDK in force for every `#[durable]` call it makes and for
    /// [`sdk`] (on this task; tasks it spawns do not inherit it: run their futures in
    /// `sdk()?.scope(..)` too).
    ///
    /// Lets one process drive many instances, and lets tests install an SDK
    /// without touching the process-wide one.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        SCOPED.scope(self, future).await
    }
}
