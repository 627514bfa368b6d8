// The error type must be `From<SdkError>`: recording can fail too.
use runtara_sdk::durable;

#[durable]
async fn charge(order_id: String) -> Result<u64, String> {
    Ok(order_id.len() as u64)
}

fn main() {}
