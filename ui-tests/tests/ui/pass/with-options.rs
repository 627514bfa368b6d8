// Every option, and a custom error type that can refuse retries.
#![deny(warnings)]
use runtara_sdk::{durable, Retryable, SdkError};

#[derive(Debug)]
enum PaymentError {
    Declined,
    Sdk(SdkError),
}

impl std::fmt::Display for PaymentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PaymentError::Declined => f.write_str("card declined"),
            PaymentError::Sdk(e) => write!(f, "{e}"),
        }
    }
}

impl From<SdkError> for PaymentError {
    fn from(e: SdkError) -> Self {
        PaymentError::Sdk(e)
    }
}

impl Retryable for PaymentError {
    fn is_retryable(&self) -> bool {
        !matches!(self, PaymentError::Declined)
    }
}

#[durable(max_retries = 5, strategy = ExponentialBackoff, delay = 500)]
async fn charge(order_id: String, cents: u64) -> Result<String, PaymentError> {
    if cents == 0 {
        return Err(PaymentError::Declined);
    }
    Ok(format!("{order_id}:{cents}"))
}

#[durable(max_retries = 2, strategy = FixedDelay, delay = 10)]
async fn refund(order_id: String) -> Result<(), PaymentError> {
    let _ = order_id;
    Ok(())
}

fn main() {
    let _ = (charge, refund);
}
