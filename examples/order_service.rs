//! A small web service on the in-process runtime: each order is a durable workflow.
//!
//! ```text
//! order-service [--db sqlite://orders.db] [--addr 127.0.0.1:3000]
//! curl -X POST localhost:3000/orders/ORD-1 -H 'content-type: application/json' \
//!      -d '{"item": "book", "cents": 1999}'
//! curl localhost:3000/orders/ORD-1
//! ```
//!
//! `POST /orders/{id}` starts workflow `order` for the order (once: posting the same id
//! again waits for the same instance and returns its receipt) and answers with the
//! receipt when it completes. `GET /orders/{id}` answers with the order's status. Kill
//! the service at any point and start it again: the runtime resumes every unfinished
//! order, and no step that was recorded runs twice.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use runtara_sdk::runtime::Runtime;
use runtara_sdk::{durable, SdkError};
use serde::{Deserialize, Serialize};

/// What a client orders.
#[derive(Debug, Serialize, Deserialize)]
struct Order {
    item: String,
    cents: u64,
}

/// What a completed order answers.
#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    order_id: String,
    payment: String,
    shipment: String,
}

/// Charges the customer: once per order, whatever crashes.
#[durable]
async fn charge(order_id: String, cents: u64) -> Result<String, SdkError> {
    Ok(format!("pay-{order_id}-{cents}"))
}

/// Ships the item: once per order.
#[durable]
async fn ship(order_id: String, item: String) -> Result<String, SdkError> {
    Ok(format!("ship-{order_id}-{item}"))
}

/// Workflow `order`: charge, then ship. Ordinary async Rust.
async fn process_order(order: Order) -> Result<Receipt, SdkError> {
    let order_id = runtara_sdk::sdk()?.instance_id().to_owned();
    let payment = charge(order_id.clone(), order.cents).await?;
    let shipment = ship(order_id.clone(), order.item).await?;
    Ok(Receipt {
        order_id,
        payment,
        shipment,
    })
}

type Failure = (StatusCode, String);

/// A start refused: an unknown workflow, an input that does not fit, an id taken.
fn conflict(error: SdkError) -> Failure {
    (StatusCode::CONFLICT, error.to_string())
}

/// An order that failed, or could not be read.
fn internal(error: SdkError) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

/// `POST /orders/{id}`: starts the order once (the same id again is the same
/// instance) and answers with its receipt when it completes.
async fn place(
    State(runtime): State<Runtime>,
    Path(order_id): Path<String>,
    Json(order): Json<Order>,
) -> Result<Json<Receipt>, Failure> {
    let handle = runtime
        .start("order", order_id, &order)
        .await
        .map_err(conflict)?;
    Ok(Json(handle.result().await.map_err(internal)?))
}

/// `GET /orders/{id}`: the order's status.
async fn status(
    State(runtime): State<Runtime>,
    Path(order_id): Path<String>,
) -> Result<Json<serde_json::Value>, Failure> {
    let handle = runtime
        .handle(&order_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no order `{order_id}`")))?;
    Ok(Json(serde_json::json!({
        "order_id": order_id,
        "status": handle.status().as_str(),
    })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = "sqlite://runtara-orders.db".to_owned();
    let mut addr = "127.0.0.1:3000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("`{flag}` needs a value"))?;
        match flag.as_str() {
            "--db" => db = value,
            "--addr" => addr = value,
            other => return Err(format!("unknown flag `{other}`").into()),
        }
    }
    let persistence = runtara_sdk::persistence::connect(&db).await?;
    let runtime = Runtime::builder(persistence)
        .name("orders")
        .workflow("order", process_order)
        .build() // resumes the orders a crash left unfinished
        .await?;
    let app = Router::new()
        .route("/orders/{id}", post(place).get(status))
        .with_state(runtime);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
