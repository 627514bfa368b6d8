// `strategy` is `ExponentialBackoff` or `FixedDelay`.
use runtara_sdk::{durable, SdkError};

#[durable(strategy = Linear)]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
