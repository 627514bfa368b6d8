//! This binary launched by the server as an instance (W2-processes, W4, W3-server), or
//! as a worker of its image (W2-workers, W4-worker, W5-worker, W6-event).

use std::time::Duration;

use runtara_sdk::{RuntaraSdk, SdkError};
use serde::Deserialize;

use crate::steps::bench_step;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Input {
    steps: u32,
    mark_file: Option<String>,
    /// W3-server: before this step, the first run writes the time (ns) to `kill_mark`
    /// and SIGKILLs itself.
    kill_at: Option<u32>,
    kill_mark: Option<String>,
    /// After the steps, a durable sleep of this long (W5-worker: an idle instance).
    sleep_ms: Option<u64>,
    /// W6-event: after the steps, waits for this many `tick` events, writing the time
    /// (ns) each wait returned to `{mark_file}-{n}`.
    events: u32,
}

/// Serves as a worker of this binary's image until the server lets go of it.
pub async fn serve_as_worker() -> anyhow::Result<()> {
    runtara_sdk::runtime::run_image(hosted).await?;
    Ok(())
}

/// The workflow a worker runs for each instance: the steps, then the sleep if asked.
async fn hosted(input: Input) -> Result<(), SdkError> {
    for n in 1..=input.steps.max(1) {
        let mark = if n == 1 {
            input.mark_file.as_deref()
        } else {
            None
        };
        bench_step(format!("s{n}"), n, mark).await?;
    }
    if let Some(ms) = input.sleep_ms {
        runtara_sdk::sdk()?
            .sleep(Duration::from_millis(ms), "nap", b"")
            .await?;
    }
    let sdk = runtara_sdk::sdk()?;
    for n in 0..input.events {
        let _tick: Option<u32> = sdk.wait_for_event("tick", None).await?;
        if let Some(mark) = &input.mark_file {
            let _ = std::fs::write(format!("{mark}-{n}"), crate::steps::now_ns().to_string());
        }
    }
    Ok(())
}

/// Runs the instance described by the environment the server set.
pub async fn run() -> anyhow::Result<()> {
    let sdk = RuntaraSdk::from_env()?;
    sdk.clone().init(None).await?;
    let input: Input = runtara_sdk::input()?.unwrap_or_default();
    for n in 1..=input.steps.max(1) {
        if input.kill_at == Some(n) {
            kill_once(input.kill_mark.as_deref())?;
        }
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

/// The first time (no mark yet): writes the wall-clock time (ns) to `mark`, then
/// SIGKILLs this process, as `kill -9` would.
fn kill_once(mark: Option<&str>) -> anyhow::Result<()> {
    let Some(mark) = mark else {
        return Ok(());
    };
    if std::path::Path::new(mark).exists() {
        return Ok(());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    std::fs::write(mark, nanos.to_string())?;
    std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status()?;
    anyhow::bail!("still alive after SIGKILL")
}
