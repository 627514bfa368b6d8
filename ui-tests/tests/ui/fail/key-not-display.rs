// The first argument is the idempotency key: it names the checkpoint, so it must be `Display`.
use runtara_sdk::{durable, SdkError};

#[derive(Clone)]
struct OrderId(u64);

#[durable]
async fn charge(order_id: OrderId) -> Result<u64, SdkError> {
    Ok(order_id.0)
}

fn main() {}
