// The return type may be any alias of `Result`: the compiler checks it is one.
#![deny(warnings)]
use runtara_sdk::{durable, SdkError};

#[derive(Debug)]
pub enum PayError {
    Declined,
    Sdk(SdkError),
}

impl std::fmt::Display for PayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl From<SdkError> for PayError {
    fn from(e: SdkError) -> Self {
        PayError::Sdk(e)
    }
}

type Res<T> = Result<T, PayError>;
type Receipt = Result<String, SdkError>;
type Outcome<T, E = SdkError> = std::result::Result<T, E>;

mod billing {
    pub type Result<T> = std::result::Result<T, super::PayError>;
}

#[durable]
async fn charge(order_id: String) -> Res<u64> {
    if order_id.is_empty() {
        return Err(PayError::Declined);
    }
    Ok(order_id.len() as u64)
}

#[durable(max_retries = 0)]
async fn receipt(order_id: String) -> Receipt {
    Ok(order_id)
}

#[durable]
async fn outcome(order_id: String) -> Outcome<Vec<u8>> {
    Ok(order_id.into_bytes())
}

#[durable]
async fn refund(order_id: String) -> billing::Result<()> {
    let _ = order_id;
    Ok(())
}

fn main() {
    let _ = (charge, receipt, outcome, refund);
}
