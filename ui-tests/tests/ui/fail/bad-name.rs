// `name` is the function's durable identity: a string of `::`-separated names.
use runtara_sdk::{durable, SdkError};

#[durable(name = "billing:: charge")]
async fn charge(order: String) -> Result<u64, SdkError> {
    Ok(order.len() as u64)
}

#[durable(name = billing)]
async fn refund(order: String) -> Result<u64, SdkError> {
    Ok(order.len() as u64)
}

fn main() {}
