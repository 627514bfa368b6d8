//! Methods of one name on different types do not take each other's results: a method's
//! records name its `Self` type, and a result recorded by a method before that change is
//! still taken by it.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use runtara_sdk::{durable, SdkError};
use support::{unique, Fixture};

on_every_backend!(
    methods_of_different_types_do_not_share_results,
    a_method_takes_a_result_it_recorded_before_methods_named_self,
    free_functions_record_as_before,
);

mod payments {
    use super::*;

    /// Two gateways in one module, each with a `charge` method keyed by the order.
    pub struct Stripe {
        pub calls: AtomicUsize,
    }

    pub struct Paypal {
        pub calls: AtomicUsize,
    }

    impl Stripe {
        #[durable(max_retries = 0)]
        pub async fn charge(&self, order_id: String) -> Result<String, SdkError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(format!("stripe:{order_id}"))
        }
    }

    impl Paypal {
        #[durable(max_retries = 0)]
        pub async fn charge(&self, order_id: String) -> Result<String, SdkError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(format!("paypal:{order_id}"))
        }
    }

    /// A free function of the same module: recorded as `{module}::{fn_name}`, as always.
    #[durable(max_retries = 0)]
    pub async fn refund(order_id: String) -> Result<String, SdkError> {
        Ok(format!("refund:{order_id}"))
    }
}

use payments::{Paypal, Stripe};

fn gateways() -> (Stripe, Paypal) {
    (
        Stripe {
            calls: AtomicUsize::new(0),
        },
        Paypal {
            calls: AtomicUsize::new(0),
        },
    )
}

async fn methods_of_different_types_do_not_share_results(fx: Fixture) {
    let instance = unique("methods");
    let (stripe, paypal) = gateways();
    let sdk = fx.run(&instance).await;
    let receipt = sdk.clone().scope(stripe.charge("o1".into())).await.unwrap();
    assert_eq!(receipt, "stripe:o1");

    // Same run (replay cache), then a new run (replay log from storage).
    for run in [sdk, fx.run(&instance).await] {
        let error = run
            .clone()
            .scope(paypal.charge("o1".into()))
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, SdkError::WrongProducer { .. }), "{error:?}");
        assert!(
            message.contains("durable_method_records::payments::Stripe::charge")
                && message.contains("durable_method_records::payments::Paypal::charge"),
            "the error names both methods: {message}"
        );
        assert_eq!(paypal.calls.load(Ordering::SeqCst), 0, "Paypal's body ran");

        // Stripe's own result is still its own.
        let again = run.scope(stripe.charge("o1".into())).await.unwrap();
        assert_eq!(again, "stripe:o1");
        assert_eq!(stripe.calls.load(Ordering::SeqCst), 1);
    }
    let recorded = fx.store.list_checkpoints(&instance).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].checkpoint_id, "charge::o1");
    assert_eq!(
        recorded[0].producer.as_deref(),
        Some("durable_method_records::payments::Stripe::charge")
    );
}

async fn a_method_takes_a_result_it_recorded_before_methods_named_self(fx: Fixture) {
    // Recorded by a version whose method records named the module and the method only.
    let instance = unique("methods-legacy");
    let (stripe, _) = gateways();
    let sdk = fx.run(&instance).await;
    let epoch = fx
        .store
        .get_instance(&instance)
        .await
        .unwrap()
        .unwrap()
        .epoch;
    fx.store
        .save_step(
            &instance,
            epoch,
            "charge::o2",
            b"\"stripe:o2 (recorded before)\"",
            "durable_method_records::payments::charge",
        )
        .await
        .unwrap();
    let again = fx.run(&instance).await;
    let receipt = again.scope(stripe.charge("o2".into())).await.unwrap();
    assert_eq!(receipt, "stripe:o2 (recorded before)");
    assert_eq!(stripe.calls.load(Ordering::SeqCst), 0, "the body ran again");
    drop(sdk);
}

async fn free_functions_record_as_before(fx: Fixture) {
    let instance = unique("functions");
    let sdk = fx.run(&instance).await;
    let value = sdk.scope(payments::refund("o3".into())).await.unwrap();
    assert_eq!(value, "refund:o3");
    let recorded = fx.store.list_checkpoints(&instance).await.unwrap();
    assert_eq!(
        recorded[0].producer.as_deref(),
        Some("durable_method_records::payments::refund")
    );
}
