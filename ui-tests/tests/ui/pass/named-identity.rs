// `name = "..."` gives a durable function an identity of its own (kept across renames
// and moves); the checkpoint id takes its last segment.
use runtara_sdk::{durable, SdkError};

mod v2 {
    use super::*;

    #[durable(name = "app::v1::shape", max_retries = 0)]
    pub async fn form(key: String) -> Result<u64, SdkError> {
        Ok(key.len() as u64)
    }
}

fn main() {
    let _ = v2::form("k".to_owned());
}
