//! Human in the loop: an order waits, durably, for someone to approve it.
//!
//! The workflow submits the order (a `#[durable]` step), waits for the external event
//! `approved` (`RuntaraSdk::wait_for_event`, with an optional timeout), and ships the
//! order if it was approved in time. The wait is recorded like a step: a crash after the
//! approval came does not ask for it again, and a timeout stays a timeout.
//!
//! Embedded (SQLite file `approval.db`), with an approver in the same program:
//!
//! ```text
//! cargo run -p runtara-examples --bin approval                       # approved after 1 s
//! cargo run -p runtara-examples --bin approval -- --order ORD-2 --approve-after-ms 0
//! cargo run -p runtara-examples --bin approval -- --order ORD-3 --no-approver --timeout-ms 2000
//! ```
//!
//! As an image of `runtara-server` (the same binary; the server launches it), approve
//! from the command line:
//!
//! ```text
//! runtara-ctl start IMAGE_ID --tenant acme --input '{"order_id": "ORD-9"}'
//! runtara-ctl send INSTANCE_ID approved --data '{"by": "ana"}'
//! runtara-ctl wait INSTANCE_ID
//! ```
//!
//! Input (all optional): `{"order_id": "ORD-1", "timeout_ms": 60000}`. For tests, two
//! more: `"gate": PATH` stops before the wait until `PATH.go` exists (having written
//! `PATH.ready`), and `"hold_after_wait": PATH` writes the process id to `PATH` once the
//! wait is over and then stops for good (to be killed) — unless `PATH` exists already.

use std::path::Path;
use std::time::Duration;

use runtara_sdk::runtime::Runtime;
use runtara_sdk::{durable, SdkError};
use serde::{Deserialize, Serialize};

/// The start input.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Order {
    order_id: String,
    /// How long to wait for the approval; none: as long as it takes.
    timeout_ms: Option<u64>,
    /// Test hook: stop before the wait until `{gate}.go` exists.
    gate: Option<String>,
    /// Test hook: after the wait, write the pid here and stop (unless it exists).
    hold_after_wait: Option<String>,
}

/// The payload of the `approved` event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Approval {
    by: String,
}

/// What became of the order.
#[derive(Debug, Serialize, Deserialize)]
struct Outcome {
    order_id: String,
    approved_by: Option<String>,
    shipment: Option<String>,
}

/// Puts the order up for approval (say, mails the approver). Recorded: runs once.
#[durable(max_retries = 0)]
async fn submit(order_id: String) -> Result<String, SdkError> {
    println!("{order_id}: submitted for approval");
    Ok(format!("ticket-{order_id}"))
}

/// Ships an approved order. Recorded: runs once.
#[durable(max_retries = 0)]
async fn ship(order_id: String, approved_by: String) -> Result<String, SdkError> {
    println!("{order_id}: shipping (approved by {approved_by})");
    Ok(format!("shipment-{order_id}"))
}

/// The workflow.
async fn approval(order: Order) -> Result<Outcome, SdkError> {
    let sdk = runtara_sdk::sdk()?;
    submit(order.order_id.clone()).await?;
    // Published for `runtara-ctl value ID stage` / `ManagementSdk::get_value`.
    sdk.set_value("stage", "awaiting approval").await?;
    if let Some(gate) = &order.gate {
        pass_gate(gate).await;
    }
    let timeout = order.timeout_ms.map(Duration::from_millis);
    let approval: Option<Approval> = sdk.wait_for_event("approved", timeout).await?;
    match &approval {
        Some(approval) => println!("{}: approved by {}", order.order_id, approval.by),
        None => println!("{}: no approval in time", order.order_id),
    }
    if let Some(marker) = &order.hold_after_wait {
        hold(marker).await;
    }
    let Some(approval) = approval else {
        return Ok(Outcome {
            order_id: order.order_id,
            approved_by: None,
            shipment: None,
        });
    };
    let shipment = ship(order.order_id.clone(), approval.by.clone()).await?;
    sdk.set_value("stage", "shipped").await?;
    Ok(Outcome {
        order_id: order.order_id,
        approved_by: Some(approval.by),
        shipment: Some(shipment),
    })
}

/// Test hook: writes `{gate}.ready` and waits for `{gate}.go`.
async fn pass_gate(gate: &str) {
    let _ = std::fs::write(format!("{gate}.ready"), std::process::id().to_string());
    while !Path::new(&format!("{gate}.go")).exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Test hook: the first time, writes the pid to `marker` and never returns.
async fn hold(marker: &str) {
    if Path::new(marker).exists() {
        return;
    }
    let _ = std::fs::write(marker, std::process::id().to_string());
    std::future::pending::<()>().await;
}

/// Options of the embedded program.
struct Options {
    db: String,
    order: Order,
    approver: Option<Duration>,
    by: String,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite://approval.db".into(),
        order: Order {
            order_id: "ORD-1".into(),
            ..Order::default()
        },
        approver: Some(Duration::from_secs(1)),
        by: "ana".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|e| format!("`{flag}` needs a number of milliseconds: {e}"))
        };
        match flag.as_str() {
            "--db" => options.db = value()?,
            "--order" => options.order.order_id = value()?,
            "--input" => {
                options.order = serde_json::from_str(&value()?)
                    .map_err(|e| format!("`--input` is not an order's json: {e}"))?;
            }
            "--timeout-ms" => options.order.timeout_ms = Some(number(value()?)?),
            "--approve-after-ms" => {
                options.approver = Some(Duration::from_millis(number(value()?)?))
            }
            "--no-approver" => options.approver = None,
            "--by" => options.by = value()?,
            other => {
                return Err(format!(
                    "unknown option `{other}`; expected --db URL, --order ID, --input JSON, \
                     --timeout-ms MS, --approve-after-ms MS, --no-approver, --by NAME"
                ))
            }
        }
    }
    Ok(options)
}

/// Embedded: a runtime runs the order; an approver in this program approves it.
async fn embedded(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let persistence = runtara_sdk::persistence::connect(&options.db).await?;
    let runtime = Runtime::builder(persistence)
        .name("approvals")
        .workflow("approval", approval)
        .build()
        .await?;
    let order_id = options.order.order_id.clone();
    let handle = runtime
        .start("approval", order_id.as_str(), &options.order)
        .await?;
    if let Some(after) = options.approver {
        tokio::time::sleep(after).await;
        let approval = Approval { by: options.by };
        // Idempotent: a second run of this program does not approve twice.
        let key = format!("approver-{order_id}");
        match runtime
            .send_event_once(&order_id, "approved", &approval, &key)
            .await
        {
            Ok(true) => println!("{order_id}: approval sent"),
            Ok(false) => println!("{order_id}: approval was sent before"),
            // The order may be finished already (a timeout, an earlier run).
            Err(error) => println!("{order_id}: approval not sent: {error}"),
        }
    }
    let outcome: Outcome = handle.result().await?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let launched = runtara_sdk::runtime::launched_by_server();
    let result = match launched {
        // Launched by runtara-server: a process of its own or a worker.
        true => runtara_sdk::runtime::run_image(approval)
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
            eprintln!("approval: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
