//! `#[durable(crate = "...")]` through a facade crate and a renamed dependency records and
//! replays like any durable call.
#![allow(clippy::unwrap_used)]

use acme_runtime::RuntaraSdk;
use facade_user::{Client, Ledger, charge, refund};

#[tokio::test]
async fn durable_calls_through_a_facade_record_and_replay() {
    let store = sdk::persistence::connect("sqlite::memory:").await.unwrap();
    let run = RuntaraSdk::embedded(store.clone(), "facade", "tests");
    run.register(None).await.unwrap();

    let receipt = run.clone().scope(charge("o1".into(), 500)).await.unwrap();
    assert_eq!(receipt, "receipt-o1-500");
    let posted = run.clone().scope(Ledger.post("e1".into())).await.unwrap();
    assert_eq!(posted, 2);
    let refunded = run.clone().scope(refund("o1".into())).await.unwrap();
    assert_eq!(refunded, 2);
    let client = std::sync::Arc::new(Client {
        base: "https://".into(),
    });
    let fetched = run.scope(client.fetch("p".into())).await.unwrap();
    assert_eq!(fetched, "https://p");

    let recorded = store.list_checkpoints("facade").await.unwrap();
    let recorded: Vec<_> = recorded
        .iter()
        .map(|r| (r.checkpoint_id.as_str(), r.producer.as_deref()))
        .collect();
    assert_eq!(
        recorded,
        [
            ("charge::o1", Some("facade_user::charge")),
            ("post::e1", Some("facade_user::Ledger::post")),
            ("refund::o1", Some("facade_user::refund")),
            ("fetch::p", Some("facade_user::Client::fetch")),
        ]
    );
}
