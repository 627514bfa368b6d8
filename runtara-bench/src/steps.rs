//! The durable step every workload runs: ~100 bytes of JSON.

use runtara_sdk::{durable, SdkError};
use serde::{Deserialize, Serialize};

/// What a step returns (about 100 bytes as JSON).
#[derive(Debug, Serialize, Deserialize)]
pub struct StepOutput {
    /// The step number.
    pub n: u32,
    /// Filler.
    pub text: String,
}

/// One durable step; with `mark`, its body writes the wall-clock time (ns) to that file.
#[durable(max_retries = 0)]
pub async fn bench_step(key: String, n: u32, mark: Option<&str>) -> Result<StepOutput, SdkError> {
    if let Some(path) = mark {
        let _ = std::fs::write(path, now_ns().to_string());
    }
    Ok(StepOutput {
        n,
        text: "x".repeat(72),
    })
}

/// The wall-clock time, in ns since the Unix epoch (what marks hold).
pub fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
