// A durable function must be `async`.
use runtara_sdk::{durable, SdkError};

#[durable]
fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
