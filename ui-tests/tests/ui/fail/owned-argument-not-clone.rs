// With retries on, each attempt gets its own copy of every owned argument.
use runtara_sdk::{durable, SdkError};

struct Connection;

#[durable]
async fn send(key: String, connection: Connection) -> Result<bool, SdkError> {
    let _ = (key, connection);
    Ok(true)
}

fn main() {}
