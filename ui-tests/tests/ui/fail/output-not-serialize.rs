// The success type is recorded, so it must be `Serialize + DeserializeOwned`.
use runtara_sdk::{durable, SdkError};

struct Receipt;

#[durable]
async fn charge(order_id: String) -> Result<Receipt, SdkError> {
    let _ = order_id;
    Ok(Receipt)
}

fn main() {}
