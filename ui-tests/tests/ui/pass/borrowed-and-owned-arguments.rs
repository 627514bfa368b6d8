// Borrowed and owned arguments, `mut` arguments, and a non-`Clone` argument with retries off.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
struct Order {
    items: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    total: u64,
}

struct Connection;

#[durable]
async fn total(order_id: String, order: &Order, mut discount: u64, tags: Vec<String>) -> Result<Receipt, SdkError> {
    discount += tags.len() as u64;
    let _ = order_id;
    Ok(Receipt { total: order.items.len() as u64 * 100 - discount })
}

#[durable(max_retries = 0)]
async fn send(key: u64, connection: Connection) -> Result<bool, SdkError> {
    let _ = (key, connection);
    Ok(true)
}

fn main() {
    let _ = (total, send);
}
