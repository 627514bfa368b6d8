// `#[durable]` applies to async functions only.
use runtara_sdk::durable;

#[durable]
struct Charge {
    order_id: String,
}

fn main() {}
