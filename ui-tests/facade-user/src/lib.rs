//! Durable functions written against a facade crate (`acme_runtime`) and against a
//! renamed dependency (`sdk = { package = "runtara-sdk" }`): `crate = "..."` tells
//! `#[durable]` where the runtime is.

use acme_runtime::durable;

/// Charges an order, through the facade.
#[durable(crate = "acme_runtime::runtara")]
pub async fn charge(order_id: String, cents: u64) -> Result<String, acme_runtime::SdkError> {
    Ok(format!("receipt-{order_id}-{cents}"))
}

/// A ledger whose methods are durable through the facade.
pub struct Ledger;

impl Ledger {
    /// Posts an entry, through the facade, without retries.
    #[durable(crate = "acme_runtime::runtara", max_retries = 0)]
    pub async fn post(&self, entry: String) -> Result<usize, acme_runtime::SdkError> {
        Ok(entry.len())
    }
}

/// Refunds an order, through the renamed dependency.
#[sdk::durable(crate = "sdk")]
pub async fn refund(order_id: String) -> Result<u64, sdk::SdkError> {
    Ok(order_id.len() as u64)
}

/// A method with an owned receiver, cloned for each attempt, through the facade.
#[derive(Clone)]
pub struct Client {
    /// The base of every path.
    pub base: String,
}

impl Client {
    /// Fetches a path, with retries, on a clone of the `Arc` for each attempt.
    #[durable(crate = "acme_runtime::runtara")]
    pub async fn fetch(
        self: std::sync::Arc<Self>,
        path: String,
    ) -> Result<String, acme_runtime::SdkError> {
        Ok(format!("{}{path}", self.base))
    }
}
