// A durable method needs a key argument after `self`.
use runtara_sdk::{durable, SdkError};

struct Payments;

impl Payments {
    #[durable]
    async fn charge(&self) -> Result<u64, SdkError> {
        Ok(1)
    }
}

fn main() {}
