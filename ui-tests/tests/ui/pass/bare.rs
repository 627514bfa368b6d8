// `#[durable]` with no options: retries with the defaults.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};

#[durable]
async fn fetch_price(sku: String) -> Result<u64, SdkError> {
    Ok(sku.len() as u64 * 100)
}

fn main() {
    let _ = fetch_price;
}
