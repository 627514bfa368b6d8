//! The process-wide SDK: `init`, `sdk()`, and `register_sdk` succeeding once.
#![allow(clippy::unwrap_used)]

use runtara_sdk::{durable, RuntaraSdk, SdkError};

#[durable]
async fn greet(name: String) -> Result<String, SdkError> {
    Ok(format!("hello {name}"))
}

#[tokio::test]
async fn init_registers_the_sdk_once_for_durable_functions() {
    // Before init: a clear error, not a panic.
    let error = greet("early".into()).await.unwrap_err();
    assert!(matches!(error, SdkError::NotInitialized), "{error:?}");
    assert!(error.to_string().contains("RuntaraSdk::init"));
    assert!(runtara_sdk::sdk().is_err());

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("global.db").display());
    let persistence = runtara_sdk::persistence::connect(&url).await.unwrap();
    RuntaraSdk::embedded(persistence.clone(), "global-1", "tests")
        .init(None)
        .await
        .unwrap();
    assert_eq!(runtara_sdk::sdk().unwrap().instance_id(), "global-1");
    assert_eq!(greet("ada".into()).await.unwrap(), "hello ada");
    assert!(persistence
        .get_checkpoint("global-1", "greet::ada")
        .await
        .unwrap()
        .is_some());

    // A second registration is refused and the first SDK stays.
    let second = RuntaraSdk::embedded(persistence, "global-2", "tests");
    let error = runtara_sdk::register_sdk(second).unwrap_err();
    assert!(matches!(error, SdkError::AlreadyRegistered));
    assert_eq!(runtara_sdk::sdk().unwrap().instance_id(), "global-1");
}
