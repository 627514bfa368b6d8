//! `#[durable]` methods of `#[async_trait]` impls and default methods of `#[async_trait]`
//! traits, alone and with `#[tracing::instrument]` in either order: each call is recorded
//! once, replayed after a restart without running the body, and retried as configured.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use runtara_sdk::{durable, SdkError};
use support::{unique, Fixture};

on_every_backend!(
    async_trait_methods_record_once_and_replay_after_a_restart,
    async_trait_methods_retry,
    async_trait_methods_of_two_impls_keep_their_own_results,
);

/// A gateway's error: transient failures are retried.
#[derive(Debug)]
enum GatewayError {
    Transient,
    Sdk(SdkError),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GatewayError::Transient => f.write_str("transient failure"),
            GatewayError::Sdk(error) => write!(f, "{error}"),
        }
    }
}

impl From<SdkError> for GatewayError {
    fn from(error: SdkError) -> Self {
        GatewayError::Sdk(error)
    }
}

#[async_trait]
trait Gateway: Send + Sync {
    async fn charge(&self, order_id: String, cents: u64) -> Result<String, GatewayError>;

    async fn refund(self: Arc<Self>, order_id: String) -> Result<u64, SdkError>;

    /// A durable default method: its `Self` is the implementing type.
    #[durable(max_retries = 0)]
    async fn quote(&self, order_id: String) -> Result<u64, SdkError> {
        self.calls().fetch_add(1, Ordering::SeqCst);
        Ok(order_id.len() as u64 * 100)
    }

    fn calls(&self) -> &AtomicUsize;
}

/// Fails its first `failures` calls with a retryable error.
struct Stripe {
    calls: AtomicUsize,
    failures: usize,
}

#[async_trait]
impl Gateway for Stripe {
    #[durable(max_retries = 3, delay = 1)]
    #[tracing::instrument(skip(self))]
    async fn charge(&self, order_id: String, cents: u64) -> Result<String, GatewayError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(GatewayError::Transient);
        }
        Ok(format!("stripe:{order_id}:{cents}"))
    }

    #[tracing::instrument(skip(self), err)]
    #[durable(max_retries = 2, delay = 1)]
    async fn refund(self: Arc<Self>, order_id: String) -> Result<u64, SdkError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(order_id.len() as u64)
    }

    fn calls(&self) -> &AtomicUsize {
        &self.calls
    }
}

struct Paypal {
    calls: AtomicUsize,
}

#[async_trait]
impl Gateway for Paypal {
    #[durable]
    async fn charge(&self, order_id: String, cents: u64) -> Result<String, GatewayError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(format!("paypal:{order_id}:{cents}"))
    }

    #[durable(max_retries = 0)]
    async fn refund(self: Arc<Self>, order_id: String) -> Result<u64, SdkError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(order_id.len() as u64 + 1000)
    }

    fn calls(&self) -> &AtomicUsize {
        &self.calls
    }
}

fn stripe(failures: usize) -> Arc<Stripe> {
    Arc::new(Stripe {
        calls: AtomicUsize::new(0),
        failures,
    })
}

async fn async_trait_methods_record_once_and_replay_after_a_restart(fx: Fixture) {
    let instance = unique("async-trait");
    let gateway = stripe(0);
    for run in 0..2 {
        let sdk = fx.run(&instance).await;
        let spawned = gateway.clone();
        // Spawned: the durable futures of an `#[async_trait]` impl are `Send`.
        let (receipt, refund, quote) = tokio::spawn(sdk.scope(async move {
            let receipt = spawned.charge("o1".into(), 500).await.unwrap();
            let refund = spawned.clone().refund("o1".into()).await.unwrap();
            let quote = spawned.quote("o1".into()).await.unwrap();
            (receipt, refund, quote)
        }))
        .await
        .unwrap();
        assert_eq!(
            (receipt.as_str(), refund, quote),
            ("stripe:o1:500", 2, 200),
            "run {run}"
        );
        assert_eq!(
            gateway.calls.load(Ordering::SeqCst),
            3,
            "run {run}: each body runs once, in the first run only"
        );
    }
    let mut recorded = fx.store.list_checkpoints(&instance).await.unwrap();
    recorded.sort_by(|a, b| a.checkpoint_id.cmp(&b.checkpoint_id));
    let recorded: Vec<_> = recorded
        .iter()
        .map(|r| (r.checkpoint_id.as_str(), r.producer.as_deref()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("charge::o1", Some("durable_async_trait::Stripe::charge")),
            ("quote::o1", Some("durable_async_trait::Stripe::quote")),
            ("refund::o1", Some("durable_async_trait::Stripe::refund")),
        ]
    );
}

async fn async_trait_methods_retry(fx: Fixture) {
    let instance = unique("async-trait-retry");
    let gateway = stripe(2);
    let sdk = fx.run(&instance).await;
    let receipt = sdk.scope(gateway.charge("o2".into(), 700)).await.unwrap();
    assert_eq!(receipt, "stripe:o2:700");
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 3, "two retries");
}

async fn async_trait_methods_of_two_impls_keep_their_own_results(fx: Fixture) {
    let instance = unique("async-trait-two");
    let gateway = stripe(0);
    let paypal = Arc::new(Paypal {
        calls: AtomicUsize::new(0),
    });
    let sdk = fx.run(&instance).await;
    let quote = sdk.clone().scope(gateway.quote("o3".into())).await.unwrap();
    assert_eq!(quote, 200);
    // The default method, on another implementing type, with the same key.
    let error = sdk
        .clone()
        .scope(paypal.quote("o3".into()))
        .await
        .unwrap_err();
    assert!(matches!(error, SdkError::WrongProducer { .. }), "{error:?}");
    assert_eq!(paypal.calls.load(Ordering::SeqCst), 0);
    let refund = sdk.scope(paypal.clone().refund("o4".into())).await.unwrap();
    assert_eq!(refund, 1002);
}
