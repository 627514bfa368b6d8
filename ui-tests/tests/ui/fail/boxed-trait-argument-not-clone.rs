// With retries, each attempt gets its own copy of every owned argument; a `Box<dyn Trait>`
// is not `Clone`, and the error says how to do without.
use runtara_sdk::{durable, SdkError};

trait Notifier {
    fn notify(&self, message: &str);
}

#[durable]
async fn notify(key: String, notifier: Box<dyn Notifier>) -> Result<bool, SdkError> {
    notifier.notify(&key);
    Ok(true)
}

fn main() {}
