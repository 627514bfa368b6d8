//! A company facade over `runtara-sdk`, as a user of `#[durable]` may write one: it
//! re-exports the attribute and the crate, and its users depend on it alone. Their
//! durable functions name the crate with `#[durable(crate = "acme_runtime::runtara")]`.

/// The `runtara_sdk` crate, re-exported whole (`#[durable]`'s expansion names items in
/// it through this path).
pub use runtara_sdk as runtara;
pub use runtara_sdk::{durable, RuntaraSdk, SdkError};
