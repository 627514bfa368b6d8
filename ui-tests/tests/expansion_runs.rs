//! The shapes `#[durable]` accepts (patterns, methods, generics, `max_retries = 0` with
//! `&mut self`) run and record under the documented checkpoint id, on in-memory SQLite.
//! The runtime behaviour itself is tested in `runtara-sdk/tests/durable_behaviour.rs`.
#![deny(warnings)]
// Generated code uses the arguments (the key names the checkpoint, each attempt clones
// them): that is no use of an `_`-prefixed binding by the user.
#![warn(clippy::used_underscore_binding)]
#![allow(clippy::unwrap_used)]

use std::fmt::Display;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use runtara_sdk::{durable, Persistence, Retryable, RuntaraSdk, SdkError};
use serde::{de::DeserializeOwned, Serialize};

async fn registered(instance: &str) -> (RuntaraSdk, Arc<dyn Persistence>) {
    let store = runtara_sdk::persistence::connect("sqlite::memory:")
        .await
        .unwrap();
    let sdk = RuntaraSdk::embedded(store.clone(), instance, "ui-tests");
    sdk.register(None).await.unwrap();
    (sdk, store)
}

async fn recorded(store: &Arc<dyn Persistence>, instance: &str, id: &str) -> Option<String> {
    let state = store.get_checkpoint(instance, id).await.unwrap();
    state.map(|bytes| String::from_utf8(bytes).unwrap())
}

#[derive(Clone)]
struct Size {
    width: u32,
    height: u32,
}

#[durable(max_retries = 0)]
async fn area(
    mut key: String,
    (x, y): (u32, u32),
    Size { width, height }: Size,
) -> Result<String, SdkError> {
    key.push('!');
    Ok(format!("{key}{}", (x + y) * width * height))
}

#[tokio::test]
async fn patterns_are_destructured_and_the_key_names_the_checkpoint() {
    let (sdk, store) = registered("patterns").await;
    let size = Size {
        width: 2,
        height: 3,
    };
    let value = sdk.scope(area("k1".into(), (1, 1), size)).await.unwrap();
    assert_eq!(value, "k1!12");
    assert_eq!(
        recorded(&store, "patterns", "area::k1").await.as_deref(),
        Some("\"k1!12\"")
    );
}

#[derive(Debug)]
enum FlakyError {
    Transient,
    Fatal,
    Sdk(SdkError),
}

impl Display for FlakyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl From<SdkError> for FlakyError {
    fn from(e: SdkError) -> Self {
        FlakyError::Sdk(e)
    }
}

impl Retryable for FlakyError {
    fn is_retryable(&self) -> bool {
        matches!(self, FlakyError::Transient)
    }
}

struct Service {
    calls: AtomicU32,
}

impl Service {
    #[durable(max_retries = 3, strategy = FixedDelay, delay = 1)]
    async fn flaky(&self, key: u32, failures: u32) -> Result<u32, FlakyError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < failures {
            return Err(FlakyError::Transient);
        }
        Ok(key * 10 + call)
    }

    #[durable(max_retries = 3, delay = 1)]
    async fn fatal(&self, key: u32) -> Result<u32, FlakyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(FlakyError::Fatal)?;
        Ok(key)
    }
}

#[tokio::test]
async fn methods_retry_until_success_and_replay_without_running() {
    let (sdk, store) = registered("methods").await;
    let service = Service {
        calls: AtomicU32::new(0),
    };
    let value = sdk.clone().scope(service.flaky(7, 2)).await.unwrap();
    assert_eq!((value, service.calls.load(Ordering::SeqCst)), (72, 3));
    assert_eq!(
        recorded(&store, "methods", "flaky::7").await.as_deref(),
        Some("72")
    );
    let again = sdk.scope(service.flaky(7, 0)).await.unwrap();
    assert_eq!((again, service.calls.load(Ordering::SeqCst)), (72, 3));
}

#[tokio::test]
async fn errors_that_are_not_retryable_are_returned_at_once() {
    let (sdk, store) = registered("fatal").await;
    let service = Service {
        calls: AtomicU32::new(0),
    };
    let error = sdk.scope(service.fatal(1)).await.unwrap_err();
    assert!(matches!(error, FlakyError::Fatal), "{error}");
    assert_eq!(service.calls.load(Ordering::SeqCst), 1);
    assert_eq!(recorded(&store, "fatal", "fatal::1").await, None);
}

#[durable(max_retries = 1, delay = 1)]
async fn generic<T, E>(key: impl Display + Clone, value: T) -> Result<T, E>
where
    T: Serialize + DeserializeOwned + Clone,
    E: From<SdkError> + Display,
{
    let _ = key.to_string();
    Ok(value)
}

#[tokio::test]
async fn generic_functions_record_their_value() {
    let (sdk, store) = registered("generic").await;
    let value = sdk
        .scope(generic::<Vec<u8>, SdkError>("g", vec![1, 2]))
        .await
        .unwrap();
    assert_eq!(value, [1, 2]);
    assert_eq!(
        recorded(&store, "generic", "generic::g").await.as_deref(),
        Some("[1,2]")
    );
}

struct Ledger {
    entries: Vec<String>,
}

impl Ledger {
    #[durable(max_retries = 0)]
    async fn append(&mut self, entry: String) -> Result<usize, SdkError> {
        self.entries.push(entry);
        Ok(self.entries.len())
    }
}

#[tokio::test]
async fn no_retries_allows_mut_self() {
    let (sdk, _store) = registered("ledger").await;
    let mut ledger = Ledger {
        entries: Vec::new(),
    };
    let count = sdk.scope(ledger.append("e1".into())).await.unwrap();
    assert_eq!((count, ledger.entries.len()), (1, 1));
}

/// The key and another argument are unused by the body, and named so.
#[durable(max_retries = 1, delay = 1)]
async fn unused_arguments(_key: String, _note: String) -> Result<u8, SdkError> {
    Ok(1)
}

#[tokio::test]
async fn underscore_arguments_name_the_checkpoint() {
    let (sdk, store) = registered("underscore").await;
    let value = sdk
        .scope(unused_arguments("u1".into(), "n".into()))
        .await
        .unwrap();
    assert_eq!(value, 1);
    assert_eq!(
        recorded(&store, "underscore", "unused_arguments::u1")
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn without_an_sdk_the_call_fails_and_the_body_does_not_run() {
    let service = Service {
        calls: AtomicU32::new(0),
    };
    let error = service.flaky(1, 0).await.unwrap_err();
    assert!(
        matches!(error, FlakyError::Sdk(SdkError::NotInitialized)),
        "{error}"
    );
    assert_eq!(service.calls.load(Ordering::SeqCst), 0);
}
