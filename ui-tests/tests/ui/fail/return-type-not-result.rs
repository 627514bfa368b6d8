// The return type must be a `Result` (or an alias of one), so failures can be told from
// results to record: one error, on the whole return type.
use runtara_sdk::durable;

#[durable]
async fn lookup(user: String) -> Option<u64> {
    Some(user.len() as u64)
}

#[durable(max_retries = 0)]
async fn name(user: String) -> std::string::String {
    user
}

#[durable]
async fn pair(user: String) -> (u64, u64) {
    (user.len() as u64, 0)
}

fn main() {}
