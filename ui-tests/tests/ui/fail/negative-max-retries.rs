// `max_retries` counts retries after the first attempt: it cannot be negative.
use runtara_sdk::{durable, SdkError};

#[durable(max_retries = -1)]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
