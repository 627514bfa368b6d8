//! A nightly job on a schedule: a runtime in this program, or a server, starts this
//! workflow at the times of a cron expression, each fire an instance of its own.
//!
//! Embedded (no server): the program runs a runtime over a SQLite file and schedules the
//! workflow itself; run it as a service. Fires missed while it was down run once when it
//! is back (`--missed skip` runs none):
//!
//! ```text
//! cargo run -p runtara-examples --bin nightly-report -- --db sqlite://nightly.db \
//!     --cron "0 2 * * *" --tz Europe/Berlin
//! ```
//!
//! On a server: register it and schedule it there, with the same policies:
//!
//! ```text
//! cargo build -p runtara-examples --bin nightly-report
//! IMAGE=$(runtara-ctl register target/debug/nightly-report --tenant acme --name nightly-report)
//! runtara-ctl schedule add $IMAGE --tenant acme --cron "0 2 * * *" --tz Europe/Berlin \
//!     --input '{"report": "sales"}' --id nightly-sales
//! runtara-ctl schedule list --tenant acme
//! runtara-ctl schedule pause nightly-sales     # and `resume`, `rm`
//! ```
//!
//! Each fire's instance id is `sched-nightly-sales-{fire time in ms}`: a restarted program
//! or server, or a second server, never runs one night twice. Input: `{"report": "sales"}`; output:
//! `{"report": "sales", "rows": N}`. Its two steps are `#[durable]`: a crash of the
//! instance re-runs only what was not recorded.

use runtara_sdk::runtime::{Runtime, ScheduleOptions};
use runtara_sdk::{durable, MissedFires, SdkError};
use serde::{Deserialize, Serialize};

/// The start input each fire gets.
#[derive(Debug, Deserialize)]
struct Job {
    #[serde(default = "default_report")]
    report: String,
}

fn default_report() -> String {
    "daily".into()
}

/// What a night produced.
#[derive(Debug, Serialize)]
struct Report {
    report: String,
    rows: u64,
}

/// Gathers the rows of the report (a query, say). Recorded: runs once per night.
#[durable(max_retries = 3, delay = 500)]
async fn gather(report: String) -> Result<u64, SdkError> {
    Ok(report.len() as u64 * 100)
}

/// Publishes the report (a mail, a file). Recorded: never sent twice for one night.
#[durable(max_retries = 3, delay = 500)]
async fn publish(report: String, rows: u64) -> Result<(), SdkError> {
    println!("report {report}: {rows} rows");
    Ok(())
}

/// The workflow of one night.
async fn nightly(job: Job) -> Result<Report, SdkError> {
    let rows = gather(job.report.clone()).await?;
    publish(job.report.clone(), rows).await?;
    Ok(Report {
        report: job.report,
        rows,
    })
}

/// Options of the embedded program.
struct Options {
    db: String,
    cron: String,
    timezone: String,
    missed: MissedFires,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite://nightly.db".into(),
        cron: "0 2 * * *".into(),
        timezone: "Europe/Berlin".into(),
        missed: MissedFires::RunOnce,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--db" => options.db = value()?,
            "--cron" => options.cron = value()?,
            "--tz" => options.timezone = value()?,
            "--missed" => {
                options.missed = value()?.parse::<MissedFires>().map_err(|e| e.to_string())?
            }
            other => {
                return Err(format!(
                    "unknown option `{other}`; expected --db URL, --cron EXPR, --tz ZONE, \
                     --missed skip|run_once"
                ))
            }
        }
    }
    Ok(options)
}

/// Embedded: a runtime over `--db` fires the schedule `nightly-sales` until stopped.
async fn embedded(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let persistence = runtara_sdk::persistence::connect(&options.db).await?;
    let runtime = Runtime::builder(persistence)
        .name("reports")
        .workflow("nightly", nightly)
        .build() // resumes a night a crash interrupted
        .await?;
    // The same definition at every start: the stored schedule (and what it missed
    // while this program was down) is kept.
    let schedule = runtime
        .create_schedule(
            ScheduleOptions::new("nightly-sales", "nightly", options.cron)
                .with_timezone(options.timezone)
                .with_input(serde_json::json!({"report": "sales"}))
                .with_missed(options.missed),
        )
        .await?;
    println!(
        "schedule {} ({} {}, missed fires: {}): next fire at {:?} ms",
        schedule.schedule_id,
        schedule.cron,
        schedule.timezone,
        schedule.missed,
        schedule.next_fire_ms
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let launched = runtara_sdk::runtime::launched_by_server();
    let result = match launched {
        // Launched by runtara-server: a process of its own or a worker.
        true => runtara_sdk::runtime::run_image(nightly)
            .await
            .map_err(Into::into),
        false => match parse_options() {
            Ok(options) => embedded(options).await,
            Err(message) => Err(message.into()),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nightly-report: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
