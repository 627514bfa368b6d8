//! Runtara quickstart: an order-processing workflow on the embedded SQLite default.
//!
//! ```text
//! cargo run -p runtara-examples --bin quickstart                    # process order ORD-1001
//! cargo run -p runtara-examples --bin quickstart -- --crash-after 2 # die after step 2
//! cargo run -p runtara-examples --bin quickstart                    # resumes at step 3
//! cargo run -p runtara-examples --bin quickstart -- --order ORD-1002
//! ```
//!
//! Interrupt it with Ctrl-C at any point (each step takes `--step-delay-ms`, 300 ms by
//! default) and run it again: the steps already recorded are skipped, not re-run.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use runtara_sdk::{durable, RuntaraSdk, SdkError};
use serde::{Deserialize, Serialize};

/// Names of the steps whose bodies ran in this process (the rest were replayed).
static RAN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

fn ran(step: &'static str) {
    RAN.lock().unwrap_or_else(|e| e.into_inner()).insert(step);
}

fn did_run(step: &'static str) -> bool {
    RAN.lock().unwrap_or_else(|e| e.into_inner()).contains(step)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    order_id: String,
    items: Vec<String>,
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reservation {
    reservation_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Receipt {
    payment_id: String,
    cents: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shipment {
    tracking_number: String,
}

#[durable]
async fn validate_order(order_id: String, items: &[String]) -> Result<Order, SdkError> {
    ran("validate order");
    let cents = 1_250 * items.len() as u64;
    Ok(Order {
        order_id,
        items: items.to_vec(),
        cents,
    })
}

#[durable]
async fn reserve_inventory(order_id: String, order: &Order) -> Result<Reservation, SdkError> {
    ran("reserve inventory");
    Ok(Reservation {
        reservation_id: format!("RSV-{order_id}-{}", order.items.len()),
    })
}

#[durable]
async fn charge_payment(order_id: String, order: &Order) -> Result<Receipt, SdkError> {
    ran("charge payment");
    // In real code: call the payment provider. A durable step runs to completion once.
    Ok(Receipt {
        payment_id: format!("PAY-{order_id}"),
        cents: order.cents,
    })
}

#[durable]
async fn create_shipment(
    order_id: String,
    reservation: &Reservation,
) -> Result<Shipment, SdkError> {
    ran("create shipment");
    Ok(Shipment {
        tracking_number: format!("TRK-{}", reservation.reservation_id),
    })
}

#[durable]
async fn send_confirmation(order_id: String, shipment: &Shipment) -> Result<String, SdkError> {
    ran("send confirmation");
    Ok(format!(
        "order {order_id} shipped, tracking {}",
        shipment.tracking_number
    ))
}

struct Options {
    db: String,
    order_id: String,
    crash_after: Option<usize>,
    step_delay: Duration,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        db: "sqlite://runtara-quickstart.db".into(),
        order_id: "ORD-1001".into(),
        crash_after: None,
        step_delay: Duration::from_millis(300),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--db" => options.db = value()?,
            "--order" => options.order_id = value()?,
            "--crash-after" => {
                options.crash_after = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--crash-after: {e}"))?,
                )
            }
            "--step-delay-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--step-delay-ms: {e}"))?;
                options.step_delay = Duration::from_millis(ms);
            }
            "-h" | "--help" => return Err(
                "usage: quickstart [--db URL] [--order ID] [--crash-after N] [--step-delay-ms MS]"
                    .into(),
            ),
            other => return Err(format!("unknown flag `{other}` (try --help)")),
        }
    }
    Ok(options)
}

/// Prints one step's line and simulates a crash when asked to.
async fn report(options: &Options, index: usize, name: &'static str) {
    let how = if did_run(name) {
        "ran"
    } else {
        "skipped (replayed from checkpoint)"
    };
    println!("  [{index}/5] {name:<18} {how}");
    if options.crash_after == Some(index) {
        println!("simulated crash after step {index} (--crash-after {index}); run again to resume");
        // No cleanup, no completion: like a kill -9.
        std::process::abort();
    }
    tokio::time::sleep(options.step_delay).await;
}

async fn process(options: &Options) -> Result<String, SdkError> {
    let id = options.order_id.clone();
    let items = vec!["keyboard".to_string(), "mouse".to_string()];

    let order = validate_order(id.clone(), &items).await?;
    report(options, 1, "validate order").await;
    let reservation = reserve_inventory(id.clone(), &order).await?;
    report(options, 2, "reserve inventory").await;
    let receipt = charge_payment(id.clone(), &order).await?;
    report(options, 3, "charge payment").await;
    let shipment = create_shipment(id.clone(), &reservation).await?;
    report(options, 4, "create shipment").await;
    let message = send_confirmation(id.clone(), &shipment).await?;
    report(options, 5, "send confirmation").await;

    Ok(serde_json::json!({
        "order_id": id,
        "payment_id": receipt.payment_id,
        "charged_cents": receipt.cents,
        "tracking_number": shipment.tracking_number,
        "message": message,
    })
    .to_string())
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let instance_id = format!("order-{}", options.order_id);
    println!(
        "Runtara quickstart: order {} (instance `{instance_id}`, {})",
        options.order_id, options.db
    );
    let persistence = runtara_sdk::persistence::connect(&options.db).await?;
    if let Some(done) = persistence.get_instance(&instance_id).await? {
        if done.status.is_terminal() {
            let output = done
                .output
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!("already {}: {output}", done.status);
            println!("(use --order <ID> to process another order)");
            return Ok(());
        }
    }
    RuntaraSdk::embedded(persistence, &instance_id, "quickstart")
        .init(None)
        .await?;
    let sdk = runtara_sdk::sdk()?;

    let output = process(&options).await?;
    sdk.completed(output.as_bytes()).await?;
    let ran = RAN.lock().unwrap_or_else(|e| e.into_inner()).len();
    println!("completed: {ran} step(s) ran, {} replayed", 5 - ran);
    println!("output: {output}");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
