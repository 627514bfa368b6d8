//! A workflow of N durable steps, used by the crash tests and benchmarks.
//!
//! ```text
//! durable-steps --db sqlite://steps.db --instance run-1 --steps 20 \
//!     [--side-effects effects.log] [--step-delay-ms 20] [--tenant demo]
//! ```
//!
//! Each step's body appends `step N` to the side-effect log (fsync'd) before its result
//! is recorded, then the program prints `step N recorded`. The final output is a JSON
//! document computed only from the step results, so an interrupted-and-resumed run
//! prints the same output as an uninterrupted one.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use runtara_sdk::{durable, RuntaraSdk, SdkError};
use serde::{Deserialize, Serialize};

/// What one step produces.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepResult {
    step: u32,
    value: u64,
}

struct Options {
    db: String,
    instance: String,
    tenant: String,
    steps: u32,
    side_effects: Option<PathBuf>,
    step_delay: Duration,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite://runtara-steps.db".into(),
        instance: "steps-1".into(),
        tenant: "demo".into(),
        steps: 20,
        side_effects: None,
        step_delay: Duration::ZERO,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--db" => options.db = value()?,
            "--instance" => options.instance = value()?,
            "--tenant" => options.tenant = value()?,
            "--steps" => options.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--side-effects" => options.side_effects = Some(value()?.into()),
            "--step-delay-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--step-delay-ms: {e}"))?;
                options.step_delay = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    Ok(options)
}

/// Appends one line to the side-effect log and makes it durable.
fn log_side_effect(path: &Option<PathBuf>, line: &str) -> Result<(), SdkError> {
    let Some(path) = path else { return Ok(()) };
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
        file.sync_data()
    };
    write().map_err(|e| SdkError::InvalidEnv {
        var: "--side-effects",
        value: path.display().to_string(),
        reason: e.to_string(),
    })
}

#[durable(max_retries = 0)]
async fn step(key: String, n: u32, side_effects: &Option<PathBuf>) -> Result<StepResult, SdkError> {
    log_side_effect(side_effects, &format!("step {n}"))?;
    // A deterministic value so every run computes the same output.
    let value = (u64::from(n) * 2_654_435_761) % 1_000_003;
    let _ = key;
    Ok(StepResult { step: n, value })
}

async fn run(options: Options) -> Result<String, Box<dyn std::error::Error>> {
    let persistence = runtara_sdk::persistence::connect(&options.db).await?;
    let sdk = RuntaraSdk::embedded(persistence, &options.instance, &options.tenant);
    sdk.register(None).await?;
    runtara_sdk::register_sdk(sdk.clone())?;

    let mut results = Vec::with_capacity(options.steps as usize);
    for n in 1..=options.steps {
        results.push(step(n.to_string(), n, &options.side_effects).await?);
        println!("step {n} recorded");
        std::io::stdout().flush()?;
        if !options.step_delay.is_zero() {
            tokio::time::sleep(options.step_delay).await;
        }
    }
    let total: u64 = results.iter().map(|r| r.value).sum();
    let output = serde_json::json!({ "steps": results, "total": total }).to_string();
    sdk.completed(output.as_bytes()).await?;
    Ok(output)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("durable-steps: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(output) => {
            println!("output: {output}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("durable-steps: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
