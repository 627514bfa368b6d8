//! Worker mode: this binary launched by the server as an instance (W2-processes, W4).

use runtara_sdk::RuntaraSdk;
use serde::Deserialize;

use crate::steps::bench_step;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Input {
    steps: u32,
    mark_file: Option<String>,
}

/// Runs the instance described by the environment the server set.
pub async fn run() -> anyhow::Result<()> {
    let sdk = RuntaraSdk::from_env()?;
    sdk.clone().init(None).await?;
    let input: Input = runtara_sdk::input()?.unwrap_or_default();
    for n in 1..=input.steps.max(1) {
        let mark = if n == 1 {
            input.mark_file.as_deref()
        } else {
            None
        };
        bench_step(format!("s{n}"), n, mark).await?;
    }
    sdk.completed(b"{}").await?;
    Ok(())
}
