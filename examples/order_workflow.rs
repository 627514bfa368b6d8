//! An order workflow run by `runtara-server`: register it as an image, start instances
//! with JSON input, and watch, pause, resume or cancel them with `runtara-ctl`.
//!
//! The server launches it with `RUNTARA_INSTANCE_ID`, `RUNTARA_TENANT_ID`,
//! `RUNTARA_SERVER_ADDR`, `RUNTARA_CA_CERT` and `RUNTARA_INPUT_FILE` set. Input (all
//! fields optional):
//!
//! ```json
//! {"order_id": "ORD-1", "items": ["a", "b"], "steps": 5, "step_delay_ms": 100,
//!  "sleep_ms": 0, "log_file": "/tmp/side-effects.log", "manual_checkpoints": false,
//!  "pause_exit_delay_ms": 0}
//! ```
//!
//! Each step is a `#[durable]` function; after a crash, a pause or a long sleep the
//! relaunched process skips the recorded steps. With `log_file`, every step body that
//! actually runs appends a line there, so tests can prove no step ran twice.
//!
//! Registered as an image with a worker pool, the same binary runs as a worker: many
//! instances in one process, each a call of `order` (`runtara_sdk::runtime::run_image`).
//!
//! With `manual_checkpoints`, the steps use the SDK's `checkpoint` call directly, as the
//! `RuntaraSdk` reference shows it: a pause makes the program return cleanly without
//! acknowledging it, and the server records the instance as suspended.

use std::io::Write;
use std::time::Duration;

use runtara_sdk::{durable, RuntaraSdk, SdkError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(default)]
struct Input {
    order_id: String,
    items: Vec<String>,
    steps: u32,
    step_delay_ms: u64,
    sleep_ms: u64,
    log_file: Option<String>,
    manual_checkpoints: bool,
    /// With `manual_checkpoints`: how long to linger after seeing a pause before returning.
    pause_exit_delay_ms: u64,
    /// A file to append `<order_id> acked <n>` to each time step `n`'s durable call
    /// returns (its result recorded, or replayed); with `log_file` the same path, a step
    /// body that runs after its result was recorded shows as a `step <n>` line after an
    /// `acked <n>` line.
    trace_file: Option<String>,
    /// A file this process holds an exclusive lock on for its whole life; if another
    /// process of the instance holds it already, `<order_id> OVERLAP <pid>` is appended
    /// to `trace_file` (two processes running one instance at once).
    overlap_lock: Option<String>,
    /// Print nothing from the steps (a test whose output file is on a full disk).
    quiet: bool,
    /// Bytes of padding in each step's recorded result.
    pad_bytes: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            order_id: "ORD-1".into(),
            items: vec!["item-1".into()],
            steps: 5,
            step_delay_ms: 0,
            sleep_ms: 0,
            log_file: None,
            manual_checkpoints: false,
            pause_exit_delay_ms: 0,
            trace_file: None,
            overlap_lock: None,
            quiet: false,
            pad_bytes: 0,
        }
    }
}

/// The input's `quiet`.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The input's `pad_bytes`.
static PAD_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[derive(Debug, Serialize, Deserialize)]
struct StepResult {
    step: u32,
    value: u64,
    /// `pad_bytes` of padding, so that each recorded result takes room.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pad: String,
}

#[derive(Debug, thiserror::Error)]
enum WorkflowError {
    #[error(transparent)]
    Sdk(#[from] SdkError),
    #[error("side-effect log: {0}")]
    Log(#[from] std::io::Error),
    #[error("recorded state does not decode: {0}")]
    State(serde_json::Error),
}

#[durable(max_retries = 0)]
async fn step(
    key: String,
    n: u32,
    order_id: &str,
    log_file: Option<&str>,
) -> Result<StepResult, WorkflowError> {
    if let Some(path) = log_file {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(log, "{order_id} step {n}")?;
    }
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        println!("step {n}: processing {key}");
    }
    let value = order_id.bytes().fold(u64::from(n), |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let pad = "x".repeat(PAD_BYTES.load(std::sync::atomic::Ordering::Relaxed));
    Ok(StepResult {
        step: n,
        value,
        pad,
    })
}

async fn run(sdk: &RuntaraSdk, input: Input) -> Result<serde_json::Value, WorkflowError> {
    let log_file = input.log_file.as_deref();
    let mut total = 0u64;
    let half = input.steps / 2;
    for n in 1..=input.steps {
        if n == half + 1 && input.sleep_ms > 0 {
            println!("sleeping {} ms (durable)", input.sleep_ms);
            sdk.sleep(Duration::from_millis(input.sleep_ms), "nap", b"")
                .await?;
        }
        let key = format!("{}-{n}", input.order_id);
        let result = step(key, n, &input.order_id, log_file).await?;
        if let Some(path) = &input.trace_file {
            append_line(path, &format!("{} acked {n}", input.order_id))?;
        }
        total = total.wrapping_add(result.value);
        if input.step_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(input.step_delay_ms)).await;
        }
    }
    Ok(serde_json::json!({
        "order_id": input.order_id,
        "items": input.items,
        "steps": input.steps,
        "total": total,
    }))
}

/// The workflow as one function, for worker processes: the same steps as a process of
/// its own runs (`manual_checkpoints` and `overlap_lock` are for one process per
/// instance; `quiet` and `pad_bytes` apply to the whole worker).
async fn order(input: Option<Input>) -> Result<serde_json::Value, WorkflowError> {
    let input = input.unwrap_or_default();
    QUIET.store(input.quiet, std::sync::atomic::Ordering::Relaxed);
    PAD_BYTES.store(input.pad_bytes, std::sync::atomic::Ordering::Relaxed);
    run(&runtara_sdk::sdk()?, input).await
}

fn append_line(path: &str, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")
}

/// Takes the input's `overlap_lock` for the life of the process (see [`Input`]).
fn hold_overlap_lock(input: &Option<Input>) -> std::io::Result<Option<std::fs::File>> {
    let Some(input) = input else {
        return Ok(None);
    };
    let Some(path) = &input.overlap_lock else {
        return Ok(None);
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        let trace = input.trace_file.as_deref().unwrap_or(path);
        let line = format!("{} OVERLAP {}", input.order_id, std::process::id());
        append_line(trace, &line)?;
        // Wait for the other process to end, so the run can still finish.
        file.lock()?;
    }
    Ok(Some(file))
}

/// The reference's checkpoint loop: the state so far is checkpointed before each step;
/// a recorded checkpoint means the step was reached before, so it is skipped. `None`
/// when a pause stopped the loop (the program then just exits).
async fn run_with_checkpoints(
    sdk: &RuntaraSdk,
    input: &Input,
) -> Result<Option<serde_json::Value>, WorkflowError> {
    let mut done: Vec<u32> = Vec::new();
    for n in 1..=input.steps {
        let state = serde_json::to_vec(&done).unwrap_or_default();
        let result = sdk.checkpoint(&format!("item-{n}"), &state).await?;
        if result.should_cancel() {
            return Err(SdkError::Cancelled.into());
        }
        if result.should_pause() {
            println!("pause seen at item-{n}");
            tokio::time::sleep(Duration::from_millis(input.pause_exit_delay_ms)).await;
            // Exit cleanly - will be resumed later.
            return Ok(None);
        }
        if let Some(existing) = result.existing_state() {
            done = serde_json::from_slice(existing).map_err(WorkflowError::State)?;
            continue;
        }
        println!("step {n}: processing item-{n}");
        done.push(n);
        if input.step_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(input.step_delay_ms)).await;
        }
    }
    Ok(Some(serde_json::json!({
        "order_id": input.order_id,
        "steps": input.steps,
    })))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::var_os(runtara_sdk::runtime::WORKER_ID_ENV).is_some() {
        // An image with a worker pool: this process runs many instances, each a call of
        // `order` (with its own SDK in scope).
        return match runtara_sdk::runtime::run_image(order).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("order-workflow (worker): {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let sdk = match RuntaraSdk::from_env() {
        Ok(sdk) => sdk,
        Err(error) => {
            eprintln!(
                "order-workflow: {error} (this program is meant to be launched by runtara-server)"
            );
            return std::process::ExitCode::from(2);
        }
    };
    let input = runtara_sdk::input::<Input>();
    // Taken before registering, so that any overlap of two processes' lives shows.
    let _overlap_lock = match input.as_ref().map(hold_overlap_lock) {
        Ok(Ok(lock)) => lock,
        Ok(Err(error)) => {
            eprintln!("order-workflow: overlap lock: {error}");
            return std::process::ExitCode::FAILURE;
        }
        Err(_) => None,
    };
    if let Err(error) = sdk.clone().init(None).await {
        eprintln!("order-workflow: cannot register: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let input: Input = match input {
        Ok(input) => input.unwrap_or_default(),
        Err(error) => {
            let _ = sdk.failed(&error.to_string()).await;
            eprintln!("order-workflow: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    QUIET.store(input.quiet, std::sync::atomic::Ordering::Relaxed);
    PAD_BYTES.store(input.pad_bytes, std::sync::atomic::Ordering::Relaxed);
    if input.manual_checkpoints {
        return match run_with_checkpoints(&sdk, &input).await {
            Ok(Some(output)) => match sdk.completed(output.to_string().as_bytes()).await {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("order-workflow: cannot report completion: {error}");
                    std::process::ExitCode::FAILURE
                }
            },
            Ok(None) => {
                println!("paused");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("order-workflow: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let input_quiet = input.quiet;
    match run(&sdk, input).await {
        Ok(output) => match sdk.completed(output.to_string().as_bytes()).await {
            Ok(()) => {
                if !input_quiet {
                    println!("completed: {output}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("order-workflow: cannot report completion: {error}");
                std::process::ExitCode::FAILURE
            }
        },
        // Paused or cancelled at a checkpoint: the server already knows; just stop.
        Err(WorkflowError::Sdk(SdkError::Paused)) => {
            println!("paused; the server resumes this instance from its last step");
            std::process::ExitCode::SUCCESS
        }
        Err(WorkflowError::Sdk(SdkError::Cancelled)) => {
            println!("cancelled");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = sdk.failed(&error.to_string()).await;
            eprintln!("order-workflow: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
