// `crate` names the path of the `runtara_sdk` crate as a string, as serde's does.
use runtara_sdk::{durable, SdkError};

#[durable(crate = runtara_sdk)]
async fn charge(order_id: String) -> Result<u64, SdkError> {
    Ok(order_id.len() as u64)
}

fn main() {}
