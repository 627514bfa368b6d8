// The error type must be `From<SdkError>`: recording can fail too. Reported once per
// function, on the whole return type, with retries or without, in a method too.
use runtara_sdk::durable;

#[durable]
async fn charge(order_id: String) -> Result<u64, String> {
    Ok(order_id.len() as u64)
}

#[durable(max_retries = 0)]
async fn refund(order_id: String) -> std::result::Result<u64, String> {
    Ok(order_id.len() as u64)
}

struct Ledger;

impl Ledger {
    #[durable]
    async fn post(&self, entry: String) -> std::result::Result<u64, String> {
        Ok(entry.len() as u64)
    }
}

fn main() {}
