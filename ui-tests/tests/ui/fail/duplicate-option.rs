// Each option may be given once.
use runtara_sdk::{durable, SdkError};

#[durable(delay = 100, delay = 200)]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
