// In an `#[async_trait]` impl too, a durable method must return a `Result`; the error
// is the same as for an `async fn`, once.
use async_trait::async_trait;
use runtara_sdk::durable;

#[async_trait]
trait Directory {
    async fn lookup(&self, user: String) -> Option<u64>;
}

struct Users;

#[async_trait]
impl Directory for Users {
    #[durable]
    async fn lookup(&self, user: String) -> Option<u64> {
        Some(user.len() as u64)
    }
}

fn main() {}
