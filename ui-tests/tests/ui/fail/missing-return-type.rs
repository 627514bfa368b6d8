// A durable function must return `Result<T, E>`.
use runtara_sdk::durable;

#[durable]
async fn notify(user: String) {
    let _ = user;
}

fn main() {}
