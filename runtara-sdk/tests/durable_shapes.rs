//! Shapes of ordinary Rust under `#[durable]` record and replay like any durable call:
//! methods taking `self: Arc<Self>` or `self` with retries, `Result` aliases, and calls
//! `tokio::spawn`ed with errors, results and arguments that are not `Send` or not `Sync`.
#![allow(clippy::unwrap_used)]

mod support;

use std::cell::RefCell;
use std::error::Error;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use runtara_sdk::{durable, Retryable, SdkError};
use support::{unique, Fixture};

on_every_backend!(
    arc_self_methods_retry_on_a_clone_of_the_receiver,
    owned_self_methods_retry_on_a_clone_of_the_receiver,
    result_aliases_record_and_replay,
    a_spawned_call_with_an_error_that_is_not_send_returns_the_recorded_failure,
    a_spawned_call_with_a_result_that_is_not_send_returns_it_decoded,
    a_spawned_call_with_arguments_that_are_not_sync_retries,
);

#[derive(Debug)]
enum FetchError {
    Transient,
    Sdk(SdkError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Transient => f.write_str("transient failure"),
            FetchError::Sdk(error) => write!(f, "{error}"),
        }
    }
}

impl From<SdkError> for FetchError {
    fn from(error: SdkError) -> Self {
        FetchError::Sdk(error)
    }
}

impl Retryable for FetchError {
    fn is_retryable(&self) -> bool {
        matches!(self, FetchError::Transient)
    }
}

/// Fails its first `failures` calls.
#[derive(Clone)]
struct Client {
    calls: Arc<AtomicUsize>,
    failures: usize,
}

impl Client {
    #[durable(max_retries = 3, delay = 1)]
    async fn fetch(self: Arc<Self>, path: String) -> Result<String, FetchError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(FetchError::Transient);
        }
        // `self` in the body is this attempt's clone of the `Arc`: the caller's, the
        // closure's and this one.
        Ok(format!("{path}@{call} (refs {})", Arc::strong_count(&self)))
    }

    #[durable(max_retries = 3, delay = 1)]
    async fn fetch_owned(self, path: String) -> Result<String, FetchError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(FetchError::Transient);
        }
        Ok(format!("{path}@{call}"))
    }
}

async fn arc_self_methods_retry_on_a_clone_of_the_receiver(fx: Fixture) {
    let instance = unique("arc-self");
    let client = Arc::new(Client {
        calls: Arc::default(),
        failures: 2,
    });
    let sdk = fx.run(&instance).await;
    let value = sdk.scope(client.clone().fetch("/a".into())).await.unwrap();
    assert_eq!(value, "/a@2 (refs 3)");
    assert_eq!(client.calls.load(Ordering::SeqCst), 3, "two retries");
    assert_eq!(Arc::strong_count(&client), 1, "every clone was dropped");

    let again = fx.run(&instance).await;
    let value = again
        .scope(client.clone().fetch("/a".into()))
        .await
        .unwrap();
    assert_eq!(value, "/a@2 (refs 3)");
    assert_eq!(client.calls.load(Ordering::SeqCst), 3, "replayed, not run");
    let recorded = fx.store.list_checkpoints(&instance).await.unwrap();
    assert_eq!(
        recorded[0].producer.as_deref(),
        Some("durable_shapes::Client::fetch")
    );
}

async fn owned_self_methods_retry_on_a_clone_of_the_receiver(fx: Fixture) {
    let instance = unique("owned-self");
    let client = Client {
        calls: Arc::default(),
        failures: 1,
    };
    let sdk = fx.run(&instance).await;
    let value = sdk.scope(client.clone().fetch_owned("/b".into())).await;
    assert_eq!(value.unwrap(), "/b@1");
    assert_eq!(client.calls.load(Ordering::SeqCst), 2, "one retry");
}

type Res<T> = Result<T, FetchError>;

mod api {
    pub type Result<T> = std::result::Result<T, runtara_sdk::SdkError>;
}

#[durable(max_retries = 1, delay = 1)]
async fn aliased(key: String, calls: &AtomicUsize) -> Res<Vec<u8>> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(key.into_bytes())
}

#[durable(max_retries = 0)]
async fn module_aliased(key: String, calls: &AtomicUsize) -> api::Result<usize> {
    calls.fetch_add(1, Ordering::SeqCst);
    Ok(key.len())
}

async fn result_aliases_record_and_replay(fx: Fixture) {
    let instance = unique("aliases");
    let calls = AtomicUsize::new(0);
    for _ in 0..2 {
        let sdk = fx.run(&instance).await;
        let bytes = sdk.clone().scope(aliased("ab".into(), &calls)).await;
        assert_eq!(bytes.unwrap(), b"ab");
        let len = sdk.scope(module_aliased("abc".into(), &calls)).await;
        assert_eq!(len.unwrap(), 3);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "each body ran once");
}

/// `Box<dyn Error>` is not `Send`: the call's future does not hold it across an `.await`.
#[durable(max_retries = 1, delay = 1)]
async fn declines(key: String, calls: Arc<AtomicUsize>) -> Result<u64, Box<dyn Error>> {
    calls.fetch_add(1, Ordering::SeqCst);
    if key.starts_with("bad") {
        return Err(format!("card declined for {key}").into());
    }
    Ok(key.len() as u64)
}

async fn a_spawned_call_with_an_error_that_is_not_send_returns_the_recorded_failure(fx: Fixture) {
    let instance = unique("not-send-error");
    let calls = Arc::new(AtomicUsize::new(0));
    for run in 0..2 {
        let sdk = fx.run(&instance).await;
        let spawned = calls.clone();
        let (good, bad) = tokio::spawn(sdk.scope(async move {
            let good = declines("good".into(), spawned.clone())
                .await
                .map_err(|e| e.to_string());
            let bad = declines("bad-1".into(), spawned)
                .await
                .map_err(|e| e.to_string());
            (good, bad)
        }))
        .await
        .unwrap();
        assert_eq!(good, Ok(4), "run {run}");
        // The original error cannot be held while its failure is recorded: the call
        // returns the recorded failure, in this run as in later ones.
        assert_eq!(
            bad,
            Err(
                "durable call `declines::bad-1` failed for good and is not run again: \
                 card declined for bad-1"
                    .to_owned()
            ),
            "run {run}"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "run {run}: `good` once, `bad-1` twice (one retry), in the first run only"
        );
    }
}

/// `PhantomData<Rc<_>>` is not `Send`: the value is recorded, then decoded from its record.
#[durable]
async fn local_marker(key: String) -> Result<(String, PhantomData<Rc<u8>>), SdkError> {
    Ok((key, PhantomData))
}

async fn a_spawned_call_with_a_result_that_is_not_send_returns_it_decoded(fx: Fixture) {
    let instance = unique("not-send-value");
    let sdk = fx.run(&instance).await;
    let value =
        tokio::spawn(sdk.scope(async { local_marker("m".into()).await.map(|(key, _)| key) }))
            .await
            .unwrap();
    assert_eq!(value.unwrap(), "m");
    let stored = fx.store.get_checkpoint(&instance, "local_marker::m").await;
    assert_eq!(stored.unwrap().as_deref(), Some(&b"[\"m\",null]"[..]));
}

/// `T: Send + Clone` and `RefCell` arguments, not `Sync`, owned by the retry closure.
#[durable(max_retries = 2, delay = 1)]
async fn not_sync<T: Send + Clone + std::fmt::Debug>(
    key: String,
    value: T,
    seen: RefCell<Vec<String>>,
    calls: Arc<AtomicUsize>,
) -> Result<String, FetchError> {
    seen.borrow_mut().push(format!("{value:?}"));
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        return Err(FetchError::Transient);
    }
    Ok(format!("{key}:{}", seen.borrow().join(",")))
}

async fn a_spawned_call_with_arguments_that_are_not_sync_retries(fx: Fixture) {
    let instance = unique("not-sync");
    let calls = Arc::new(AtomicUsize::new(0));
    let sdk = fx.run(&instance).await;
    let spawned = calls.clone();
    let value = tokio::spawn(sdk.scope(not_sync(
        "k".into(),
        NotSync(7, PhantomData),
        RefCell::new(vec!["start".into()]),
        spawned,
    )))
    .await
    .unwrap();
    // Each attempt got its own copy of the `RefCell`, as it was before the first.
    assert_eq!(value.unwrap(), "k:start,NotSync(7)");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// `Send` and `Clone`, not `Sync`.
#[derive(Clone)]
struct NotSync(u8, PhantomData<std::cell::Cell<u8>>);

impl std::fmt::Debug for NotSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NotSync({})", self.0)
    }
}
