//! Fan-out/fan-in with child instances: a parent starts one child per number, waits for
//! each child's output, and sums them.
//!
//! Each child is an instance of its own (`RuntaraSdk::start_child`), started once per key:
//! a parent that crashes and runs again gets the same children back, never a second set,
//! and a child that has already ended is not waited for again (`wait_for_child`).
//! Cancelling the parent cancels its unfinished children.
//!
//! Embedded (SQLite file `fan-out.db`; the children are tasks of the same runtime):
//!
//! ```text
//! cargo run -p runtara-examples --bin fan-out                  # squares of 0..20, summed
//! cargo run -p runtara-examples --bin fan-out -- --id sum-2 --children 50
//! ```
//!
//! As an image of `runtara-server`, the same binary is parent and child; the parent is
//! told its image in its input (`child_target`):
//!
//! ```text
//! runtara-ctl start IMAGE_ID --tenant acme --input '{"children": 20, "child_target": "IMAGE_ID"}'
//! ```
//!
//! Input of a parent: `{"children": 20, "child_target": "fan-out"}`; of a child:
//! `{"square": 7}`. Test hooks: `"hold_after": N` stops the parent for good once N
//! children's results are in (having written its pid to `"marker"`, unless that file
//! exists), `"child_sleep_ms"` makes each child sleep durably first, and `"trace"` is a
//! file each child's step appends a line to.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use runtara_sdk::runtime::Runtime;
use runtara_sdk::{durable, ChildOptions, SdkError};
use serde::{Deserialize, Serialize};

/// A parent's or a child's input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Job {
    /// A child: the number to square.
    square: Option<u64>,
    /// A parent: how many children (numbers 0..children).
    children: u64,
    /// What the children run: a workflow name (runtime) or an image id (server).
    child_target: String,
    /// The last this many children are detached: cancelling the parent leaves them.
    detached_children: u64,
    /// Test hook: stop the parent once this many results are in.
    hold_after: Option<u64>,
    /// Test hook: where the parent writes its pid when it stops.
    marker: Option<String>,
    /// Test hook: each child sleeps durably this long first.
    child_sleep_ms: u64,
    /// Test hook: a file each child's step appends `square <n>` to.
    trace: Option<String>,
}

/// A child's work, recorded: squares `n`.
#[durable(max_retries = 0)]
async fn square(key: String, n: u64, trace: Option<String>) -> Result<u64, SdkError> {
    let _ = key;
    let file = trace.map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    });
    if let Some(Ok(mut file)) = file {
        let _ = writeln!(file, "square {n}");
    }
    Ok(n * n)
}

/// The workflow, parent or child by its input.
async fn job(job: Job) -> Result<u64, SdkError> {
    let sdk = runtara_sdk::sdk()?;
    if let Some(n) = job.square {
        if job.child_sleep_ms > 0 {
            let nap = Duration::from_millis(job.child_sleep_ms);
            sdk.sleep(nap, "nap", b"").await?;
        }
        return square(format!("n{n}"), n, job.trace.clone()).await;
    }
    let mut children = Vec::new();
    for n in 0..job.children {
        let input = Job {
            square: Some(n),
            child_sleep_ms: job.child_sleep_ms,
            trace: job.trace.clone(),
            ..Job::default()
        };
        let detached = n + job.detached_children >= job.children;
        let options = ChildOptions::new().with_detached(detached);
        children.push(
            sdk.start_child_with(&job.child_target, &input, &format!("n{n}"), options)
                .await?,
        );
    }
    let mut sum = 0;
    for (done, child) in children.iter().enumerate() {
        sum += sdk.wait_for_child::<u64>(child).await?;
        if job.hold_after == Some(done as u64 + 1) {
            if let Some(marker) = &job.marker {
                hold(marker).await;
            }
        }
    }
    sdk.set_value("sum", &sum).await?;
    Ok(sum)
}

/// Test hook: the first time, writes the pid to `marker` and never returns.
async fn hold(marker: &str) {
    if Path::new(marker).exists() {
        return;
    }
    let _ = std::fs::write(marker, std::process::id().to_string());
    std::future::pending::<()>().await;
}

fn parse_options() -> Result<(String, String, Job), String> {
    let (mut db, mut id) = ("sqlite://fan-out.db".to_owned(), "sum-1".to_owned());
    let mut job = Job {
        children: 20,
        child_target: "job".into(),
        ..Job::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--db" => db = value()?,
            "--id" => id = value()?,
            "--children" => {
                job.children = value()?
                    .parse()
                    .map_err(|e| format!("`--children` needs a number: {e}"))?;
            }
            "--input" => {
                job = serde_json::from_str(&value()?)
                    .map_err(|e| format!("`--input` is not a job's json: {e}"))?;
                if job.child_target.is_empty() {
                    job.child_target = "job".into();
                }
            }
            other => {
                return Err(format!(
                "unknown option `{other}`; expected --db URL, --id ID, --children N, --input JSON"
            ))
            }
        }
    }
    Ok((db, id, job))
}

/// Embedded: one runtime runs the parent and its children (workflow `job`).
async fn embedded() -> Result<(), Box<dyn std::error::Error>> {
    let (db, id, job_input) = parse_options()?;
    let persistence = runtara_sdk::persistence::connect(&db).await?;
    let runtime = Runtime::builder(persistence)
        .name("fan-out")
        .workflow("job", job)
        .build()
        .await?;
    let handle = runtime.start("job", id.as_str(), &job_input).await?;
    let sum: u64 = handle.result().await?;
    println!("{{\"id\": \"{id}\", \"sum\": {sum}}}");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let launched = runtara_sdk::runtime::launched_by_server();
    let result = match launched {
        true => runtara_sdk::runtime::run_image(job)
            .await
            .map_err(Into::into),
        false => embedded().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fan-out: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
