//! The smallest image for `runtara-server`: one workflow function and one line in
//! `main` (`runtara_sdk::runtime::run_image`).
//!
//! Input: `{"numbers": [1, 2, 3]}`; output: their sum. With `"fail": "why"` the
//! workflow returns that error, with `"panic": true` it panics (both fail the instance
//! with the message).

use runtara_sdk::{durable, SdkError};
use serde::Deserialize;

/// The start input.
#[derive(Debug, Deserialize)]
struct Numbers {
    numbers: Vec<i64>,
    #[serde(default)]
    fail: Option<String>,
    #[serde(default)]
    panic: bool,
}

/// Adds one number to the running total; recorded, so a relaunch skips it.
#[durable(max_retries = 0)]
async fn add(key: String, total: i64, number: i64) -> Result<i64, SdkError> {
    let _ = key;
    Ok(total + number)
}

/// The workflow.
async fn sum(input: Numbers) -> Result<i64, String> {
    if let Some(why) = input.fail {
        return Err(why);
    }
    assert!(!input.panic, "asked to panic");
    let mut total = 0;
    for (n, number) in input.numbers.into_iter().enumerate() {
        total = add(format!("n{n}"), total, number)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), SdkError> {
    runtara_sdk::runtime::run_image(sum).await
}
