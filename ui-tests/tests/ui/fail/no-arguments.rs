// A durable function needs an argument: the first one is the idempotency key.
use runtara_sdk::{durable, SdkError};

#[durable]
async fn charge() -> Result<u64, SdkError> {
    Ok(1)
}

fn main() {}
