// `delay` is a number of milliseconds that fits a `u64`.
use runtara_sdk::{durable, SdkError};

#[durable(delay = 100000000000000000000)]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
