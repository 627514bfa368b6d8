// The first argument is the idempotency key: it names the checkpoint, so it must be
// `Display`. The error says so, and covers the whole argument, path and all.
use runtara_sdk::{durable, SdkError};

mod ids {
    #[derive(Clone)]
    pub struct OrderId(pub u64);
}

#[durable]
async fn charge(order_id: ids::OrderId) -> Result<u64, SdkError> {
    Ok(order_id.0)
}

fn main() {}
