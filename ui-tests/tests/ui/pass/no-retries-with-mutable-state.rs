// With `max_retries = 0` the body runs at most once, so `&mut self`, `&mut T` and
// non-`Clone` owned arguments are fine.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};

struct Connection;

struct Ledger {
    entries: Vec<String>,
}

impl Ledger {
    #[durable(max_retries = 0)]
    async fn append(&mut self, entry: String, log: &mut Vec<String>, connection: Connection) -> Result<usize, SdkError> {
        let _connection = connection;
        log.push(entry.clone());
        self.entries.push(entry);
        Ok(self.entries.len())
    }
}

fn main() {
    let mut ledger = Ledger { entries: Vec::new() };
    let mut log = Vec::new();
    let _ = ledger.append("e1".to_owned(), &mut log, Connection);
}
