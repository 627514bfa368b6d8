// Only `max_retries`, `strategy`, `delay`, `name` and `crate` are options.
use runtara_sdk::{durable, SdkError};

#[durable(retries = 3)]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
