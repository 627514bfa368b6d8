// With retries, arguments cannot be `&mut`: each attempt needs its own copy.
use runtara_sdk::{durable, SdkError};

#[durable(max_retries = 2)]
async fn append(entry: String, log: &mut Vec<String>) -> Result<usize, SdkError> {
    log.push(entry);
    Ok(log.len())
}

fn main() {}
