// A durable call is `Send` when its arguments are, so it can be `tokio::spawn`ed.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};

#[derive(Clone)]
struct Order {
    cents: u64,
}

#[durable]
async fn charge(order_id: String, order: Order) -> Result<String, SdkError> {
    Ok(format!("{order_id}:{}", order.cents))
}

#[durable(max_retries = 0)]
async fn notify(order_id: String) -> Result<(), SdkError> {
    let _ = order_id;
    Ok(())
}

fn assert_send<T: Send + 'static>(_: T) {}

fn main() {
    assert_send(charge("o1".to_owned(), Order { cents: 5 }));
    assert_send(notify("o1".to_owned()));
}
