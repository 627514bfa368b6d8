// With retries, a method must take `&self`: each attempt needs its own copy of the receiver.
use runtara_sdk::{durable, SdkError};

struct Ledger {
    entries: Vec<String>,
}

impl Ledger {
    #[durable]
    async fn append(&mut self, entry: String) -> Result<usize, SdkError> {
        self.entries.push(entry);
        Ok(self.entries.len())
    }
}

fn main() {}
