// `#[durable]` applies to functions, not closures (attributes on expressions are
// unstable too): one error from `#[durable]`, and the closure is kept.
use runtara_sdk::{durable, SdkError};

fn main() {
    let charge = #[durable] async move |key: String| -> Result<u64, SdkError> { Ok(key.len() as u64) };
    let _ = charge;
}
