// The return type must be a `Result`, so failures can be told from results to record.
use runtara_sdk::durable;

#[durable]
async fn lookup(user: String) -> Option<u64> {
    Some(user.len() as u64)
}

fn main() {}
