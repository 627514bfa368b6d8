//! A nightly job on a schedule: the server starts this workflow at the times of a cron
//! expression, each fire an instance of its own.
//!
//! Register it and schedule it for 02:00 Berlin time; fires missed while the server was
//! down run once when it is back (`--missed skip` runs none):
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
//! Each fire's instance id is `sched-nightly-sales-{fire time in ms}`: a restarted server,
//! or a second one, never runs one night twice. Input: `{"report": "sales"}`; output:
//! `{"report": "sales", "rows": N}`. Its two steps are `#[durable]`: a crash of the
//! instance re-runs only what was not recorded.

use runtara_sdk::{durable, SdkError};
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

#[tokio::main]
async fn main() -> Result<(), SdkError> {
    runtara_sdk::runtime::run_image(nightly).await
}
