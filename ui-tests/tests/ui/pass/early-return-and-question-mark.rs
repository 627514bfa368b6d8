// `return` and `?` in the body return from the durable call, as in a plain function;
// `?` converts errors with `From`, and a body that always returns is fine.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};

#[derive(Debug)]
enum StepError {
    BadNumber(std::num::ParseIntError),
    Sdk(SdkError),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::BadNumber(e) => write!(f, "bad number: {e}"),
            StepError::Sdk(e) => write!(f, "{e}"),
        }
    }
}

impl From<SdkError> for StepError {
    fn from(e: SdkError) -> Self {
        StepError::Sdk(e)
    }
}

impl From<std::num::ParseIntError> for StepError {
    fn from(e: std::num::ParseIntError) -> Self {
        StepError::BadNumber(e)
    }
}

#[durable]
async fn step(key: String) -> Result<u32, StepError> {
    if key.is_empty() {
        return Ok(0);
    }
    let n: u32 = key.parse()?;
    Ok(n + 1)
}

#[durable(max_retries = 0)]
async fn always_returns(key: String) -> Result<u32, StepError> {
    return Ok(key.len() as u32);
}

fn main() {
    let _ = (step, always_returns);
}
