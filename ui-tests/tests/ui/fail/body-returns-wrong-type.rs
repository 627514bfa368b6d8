// The body is checked against the declared return type, as in a plain function.
use runtara_sdk::{durable, SdkError};

#[durable]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id)
}

fn main() {}
