//! An image of N durable steps written with `run_image`, for the worker tests: the same
//! binary runs one instance per process, or many as a worker.
//!
//! Input: `{"steps": 10, "step_delay_ms": 20, "trace": "/tmp/trace.log", "sleep_ms": 0}`.
//! Each step's body appends `ran {instance}/{n}` to the trace, and each step whose
//! result is recorded appends `acked {instance}/{n}`; output: the sum of the steps.

use std::io::Write;
use std::time::Duration;

use runtara_sdk::{durable, SdkError};
use serde::Deserialize;

/// The start input.
#[derive(Debug, Deserialize)]
struct Input {
    steps: u32,
    #[serde(default)]
    step_delay_ms: u64,
    #[serde(default)]
    sleep_ms: u64,
    #[serde(default)]
    trace: Option<String>,
}

fn trace(path: Option<&str>, line: &str) {
    if let Some(path) = path {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line on an O_APPEND file: a kill leaves whole lines.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// One step: a side effect, then a result.
#[durable(max_retries = 0)]
async fn step(
    key: String,
    n: u32,
    delay_ms: u64,
    trace_file: Option<String>,
) -> Result<u64, SdkError> {
    trace(trace_file.as_deref(), &format!("ran {key}"));
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    Ok(u64::from(n) * 2)
}

/// The workflow: the steps one after another, with an optional durable sleep midway.
async fn steps(input: Input) -> Result<u64, SdkError> {
    let sdk = runtara_sdk::sdk()?;
    let id = sdk.instance_id().to_owned();
    let mut total = 0;
    for n in 0..input.steps {
        if n == input.steps / 2 && input.sleep_ms > 0 {
            sdk.sleep(Duration::from_millis(input.sleep_ms), "nap", b"")
                .await?;
        }
        let key = format!("{id}/{n}");
        total += step(key.clone(), n, input.step_delay_ms, input.trace.clone()).await?;
        trace(input.trace.as_deref(), &format!("acked {key}"));
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), SdkError> {
    runtara_sdk::runtime::run_image(steps).await
}
