// `max_retries` is a non-negative integer literal.
use runtara_sdk::{durable, SdkError};

#[durable(max_retries = "three")]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
