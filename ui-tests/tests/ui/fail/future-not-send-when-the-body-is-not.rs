// A durable call's future is `Send` exactly when the plain function's would be: a body
// that holds an `Rc` across an `.await` makes both not `Send`.
use std::rc::Rc;

use runtara_sdk::{durable, SdkError};

#[durable]
async fn count(key: String) -> Result<usize, SdkError> {
    let shared = Rc::new(key);
    tokio::task::yield_now().await;
    Ok(shared.len())
}

fn main() {
    tokio::spawn(count("k".into()));
}
