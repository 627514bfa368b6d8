// `crate = "path"` names the `runtara_sdk` crate where the expansion cannot: behind a
// facade module that re-exports it, or under a renamed dependency.
#![deny(warnings)]

mod platform {
    pub use runtara_sdk as runtime;
}

use runtara_sdk::durable;

#[durable(crate = "crate::platform::runtime")]
async fn charge(order_id: String) -> Result<u64, platform::runtime::SdkError> {
    Ok(order_id.len() as u64)
}

#[durable(crate = "::runtara_sdk", max_retries = 0)]
async fn refund(order_id: String) -> Result<u64, runtara_sdk::SdkError> {
    Ok(order_id.len() as u64)
}

struct Ledger;

impl Ledger {
    #[durable(crate = "platform::runtime")]
    async fn post(&self, entry: String) -> Result<u64, platform::runtime::SdkError> {
        Ok(entry.len() as u64)
    }
}

fn main() {
    let _ = (charge, refund);
    let _ = Ledger.post("e".into());
}
