//! A job runner on the in-process runtime: many durable instances in one process.
//!
//! ```text
//! job-runner [--db sqlite://jobs.db] [--jobs 500] [--steps 10] [--step-delay-ms 0]
//!     [--runtime jobs] [--prefix job] [--max-running 1024] [--trace trace.log]
//! ```
//!
//! Starts `--jobs` instances of workflow `sum` (ids `{prefix}-{n}`), each running
//! `--steps` durable steps, and waits for all of them. Starting is idempotent, so the
//! same command after a crash starts nothing twice: the runtime has already resumed
//! every unfinished job from its last checkpoint, and each start returns its handle.
//!
//! With `--trace`, each step's body appends `ran {id}/{step}`, and each step whose result
//! is recorded appends `acked {id}/{step}` (the crash tests read them). Prints
//! `started N`, then `done N sum S` when every job has completed.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use runtara_sdk::runtime::Runtime;
use runtara_sdk::{durable, SdkError};

struct Options {
    db: String,
    jobs: u64,
    steps: u64,
    step_delay: Duration,
    runtime: String,
    prefix: String,
    max_running: usize,
    trace: Option<std::path::PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite://runtara-jobs.db".into(),
        jobs: 500,
        steps: 10,
        step_delay: Duration::ZERO,
        runtime: "jobs".into(),
        prefix: "job".into(),
        max_running: runtara_sdk::runtime::DEFAULT_MAX_RUNNING,
        trace: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|error| format!("`{flag}`: {error}"))
        };
        match flag.as_str() {
            "--db" => options.db = value()?,
            "--jobs" => options.jobs = number(value()?)?,
            "--steps" => options.steps = number(value()?)?,
            "--step-delay-ms" => options.step_delay = Duration::from_millis(number(value()?)?),
            "--runtime" => options.runtime = value()?,
            "--prefix" => options.prefix = value()?,
            "--max-running" => {
                options.max_running = usize::try_from(number(value()?)?).unwrap_or(usize::MAX)
            }
            "--trace" => options.trace = Some(value()?.into()),
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    Ok(options)
}

/// What every job shares: how many steps, how long each takes, where to trace.
struct Settings {
    steps: u64,
    step_delay: Duration,
    trace: Option<Mutex<std::fs::File>>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn trace(line: &str) {
    if let Some(file) = SETTINGS.get().and_then(|s| s.trace.as_ref()) {
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // One write per line on an O_APPEND file: a kill leaves whole lines.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

/// One step of a job: its side effect happens once per recorded result.
#[durable(max_retries = 0)]
async fn work(key: String, n: u64) -> Result<u64, SdkError> {
    trace(&format!("ran {key}"));
    if let Some(delay) = SETTINGS.get().map(|s| s.step_delay) {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(n * n)
}

/// Workflow `sum`: the job's steps, one after another; the sum of their results.
async fn sum(seed: u64) -> Result<u64, SdkError> {
    let id = runtara_sdk::sdk()?.instance_id().to_owned();
    let steps = SETTINGS.get().map_or(10, |s| s.steps);
    let mut total = 0;
    for step in 0..steps {
        let key = format!("{id}/{step}");
        total += work(key.clone(), seed + step).await?;
        trace(&format!("acked {key}"));
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = parse_options().map_err(|message| format!("job-runner: {message}"))?;
    let trace = match &options.trace {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
        None => None,
    };
    let _ = SETTINGS.set(Settings {
        steps: options.steps,
        step_delay: options.step_delay,
        trace,
    });
    let persistence = runtara_sdk::persistence::connect(&options.db).await?;
    let runtime = Runtime::builder(persistence)
        .name(options.runtime.as_str())
        .max_running(options.max_running)
        .workflow("sum", sum)
        .build()
        .await?;
    let mut handles = Vec::new();
    for n in 0..options.jobs {
        let id = format!("{}-{n}", options.prefix);
        handles.push(runtime.start("sum", id, &n).await?);
    }
    println!("started {}", handles.len());
    let results = Arc::new(Mutex::new(0u64));
    let mut done = 0;
    for handle in handles {
        let value: u64 = handle.result().await?;
        *results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += value;
        done += 1;
    }
    let total = *results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    println!("done {done} sum {total}");
    Ok(())
}
