//! The instance SDK and the management SDK in one program, imported the recommended way:
//! each crate under a short alias, so their `SdkConfig`, `SdkError` and `Result` never
//! clash and both errors travel through `?` into one application error.

use std::time::Duration;

use runtara_management_sdk as management;
use runtara_sdk as instance;

/// An application error that both SDKs' errors convert into.
#[derive(Debug)]
enum AppError {
    Instance(instance::SdkError),
    Management(management::SdkError),
}

impl From<instance::SdkError> for AppError {
    fn from(error: instance::SdkError) -> Self {
        AppError::Instance(error)
    }
}

impl From<management::SdkError> for AppError {
    fn from(error: management::SdkError) -> Self {
        AppError::Management(error)
    }
}

fn configs() -> (instance::SdkConfig, management::SdkConfig) {
    let worker = instance::SdkConfig::localhost("order-42", "acme")
        .with_request_timeout(Duration::from_secs(5));
    let operator = management::SdkConfig::localhost().with_request_timeout(Duration::from_secs(5));
    (worker, operator)
}

fn instance_step(fail: bool) -> instance::Result<u32> {
    if fail {
        return Err(instance::SdkError::NotInitialized);
    }
    Ok(1)
}

fn management_step(fail: bool) -> management::Result<u32> {
    if fail {
        return Err(management::SdkError::InvalidInput("no tenant".into()));
    }
    Ok(2)
}

fn app(fail_instance: bool, fail_management: bool) -> Result<u32, AppError> {
    Ok(instance_step(fail_instance)? + management_step(fail_management)?)
}

#[test]
fn both_sdks_live_side_by_side_in_one_program() {
    let (worker, operator) = configs();
    assert_eq!(worker.server_addr.port(), 8001);
    assert_eq!(operator.addr, "127.0.0.1:8002");

    assert_eq!(app(false, false).ok(), Some(3));
    assert!(matches!(
        app(true, false),
        Err(AppError::Instance(instance::SdkError::NotInitialized))
    ));
    assert!(matches!(
        app(false, true),
        Err(AppError::Management(management::SdkError::InvalidInput(_)))
    ));

    // Both are std errors: one `Box<dyn Error>` takes either.
    let boxed: Vec<Box<dyn std::error::Error + Send + Sync>> = vec![
        Box::new(instance::SdkError::NotInitialized),
        Box::new(management::SdkError::InvalidInput("no tenant".into())),
    ];
    assert!(boxed.iter().all(|e| !e.to_string().is_empty()));
}
