//! A workflow of N durable steps, used by the crash tests and benchmarks.
//!
//! ```text
//! durable-steps --db sqlite://steps.db --instance run-1 --steps 20 \
//!     [--side-effects effects.log] [--step-delay-ms 20] [--tenant demo]
//!     [--hang-after N | --hang-in N]
//! ```
//!
//! For crash tests, `--hang-after N` stops for good right after step N is recorded
//! (printing `hanging after step N`), and `--hang-in N` stops inside step N's body, after
//! its side effect and before its result is recorded (printing `hanging in step N`), so a
//! kill from outside lands exactly on that point.
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
    hang_after: Option<u32>,
    hang_in: Option<u32>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite://runtara-steps.db".into(),
        instance: "steps-1".into(),
        tenant: "demo".into(),
        steps: 20,
        side_effects: None,
        step_delay: Duration::ZERO,
        hang_after: None,
        hang_in: None,
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
            "--hang-after" => {
                options.hang_after =
                    Some(value()?.parse().map_err(|e| format!("--hang-after: {e}"))?)
            }
            "--hang-in" => {
                options.hang_in = Some(value()?.parse().map_err(|e| format!("--hang-in: {e}"))?)
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
async fn step(
    key: String,
    n: u32,
    side_effects: &Option<PathBuf>,
    hang_in: Option<u32>,
) -> Result<StepResult, SdkError> {
    log_side_effect(side_effects, &format!("step {n}"))?;
    if hang_in == Some(n) {
        hang(&format!("hanging in step {n}")).await;
    }
    // A deterministic value so every run computes the same output.
    let value = (u64::from(n) * 2_654_435_761) % 1_000_003;
    let _ = key;
    Ok(StepResult { step: n, value })
}

/// Says so on stdout, then waits forever (for a kill from outside).
async fn hang(message: &str) {
    println!("{message}");
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
}

async fn run(options: Options) -> Result<String, Box<dyn std::error::Error>> {
    let persistence = runtara_sdk::persistence::connect(&options.db).await?;
    let sdk = RuntaraSdk::embedded(persistence, &options.instance, &options.tenant);
    sdk.register(None).await?;
    runtara_sdk::register_sdk(sdk.clone())?;

    let mut results = Vec::with_capacity(options.steps as usize);
    for n in 1..=options.steps {
        results.push(step(n.to_string(), n, &options.side_effects, options.hang_in).await?);
        println!("step {n} recorded");
        std::io::stdout().flush()?;
        if options.hang_after == Some(n) {
            hang(&format!("hanging after step {n}")).await;
        }
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
