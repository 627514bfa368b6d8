// With retries, an owned receiver is cloned for each attempt, so it must be `Clone`.
use runtara_sdk::{durable, SdkError};

struct Connection;

impl Connection {
    #[durable]
    async fn send(self, key: String) -> Result<bool, SdkError> {
        let _ = (self, key);
        Ok(true)
    }
}

fn main() {}
