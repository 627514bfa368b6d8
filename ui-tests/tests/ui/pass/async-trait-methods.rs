// `#[durable]` on the methods of an `#[async_trait]` impl and on a default method of an
// `#[async_trait]` trait, with and without `Send`, alone and with `#[tracing::instrument]`
// in either order. async-trait hands `#[durable]` a `fn` returning
// `Box::pin(async move { .. })`; the durable future it returns is `Send` as before.
#![deny(warnings)]
use std::sync::Arc;

use async_trait::async_trait;
use runtara_sdk::{durable, SdkError};

#[async_trait]
trait Gateway {
    async fn charge(&self, order_id: String, cents: u64) -> Result<String, SdkError>;

    async fn refund(self: Arc<Self>, order_id: String) -> Result<u64, SdkError>;

    #[durable(max_retries = 1)]
    async fn quote(&self, order_id: String) -> Result<u64, SdkError> {
        Ok(order_id.len() as u64)
    }
}

struct Stripe {
    account: String,
}

#[async_trait]
impl Gateway for Stripe {
    #[durable]
    async fn charge(&self, order_id: String, cents: u64) -> Result<String, SdkError> {
        Ok(format!("{}:{order_id}:{cents}", self.account))
    }

    #[durable(max_retries = 2)]
    async fn refund(self: Arc<Self>, order_id: String) -> Result<u64, SdkError> {
        Ok(order_id.len() as u64 + self.account.len() as u64)
    }
}

struct Traced;

#[async_trait]
impl Gateway for Traced {
    #[durable]
    #[tracing::instrument(skip(self))]
    async fn charge(&self, order_id: String, cents: u64) -> Result<String, SdkError> {
        Ok(format!("{order_id}:{cents}"))
    }

    #[tracing::instrument(skip(self), err)]
    #[durable(max_retries = 0)]
    async fn refund(self: Arc<Self>, order_id: String) -> Result<u64, SdkError> {
        Ok(order_id.len() as u64)
    }
}

#[async_trait(?Send)]
trait Local {
    async fn load(&self, key: u64) -> Result<u64, SdkError>;
}

#[async_trait(?Send)]
impl Local for std::rc::Rc<u64> {
    #[durable]
    async fn load(&self, key: u64) -> Result<u64, SdkError> {
        Ok(key + **self)
    }
}

fn spawns() {
    let stripe = Arc::new(Stripe { account: "acct".into() });
    tokio::spawn(async move {
        let _ = stripe.charge("o1".into(), 5).await;
        let _ = stripe.quote("o1".into()).await;
        let _ = stripe.clone().refund("o1".into()).await;
    });
    tokio::spawn(async move {
        let _ = Traced.charge("o1".into(), 5).await;
        let _ = Arc::new(Traced).refund("o1".into()).await;
    });
}

fn main() {
    let _ = spawns;
    let _ = std::rc::Rc::new(1u64).load(2);
}
