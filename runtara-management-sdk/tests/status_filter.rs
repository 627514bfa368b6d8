//! The status filter of a listing: typed statuses and names both work, and an unknown
//! name is refused before anything is sent.

use runtara_management_sdk::{
    InstanceStatus, ListInstancesOptions, ManagementSdk, SdkConfig, SdkError,
};

#[test]
fn a_status_filter_takes_a_name_or_a_typed_status() {
    let by_name = ListInstancesOptions::new("t").with_status("running");
    let typed = ListInstancesOptions::new("t").with_status(InstanceStatus::Running);
    assert_eq!(by_name, typed);
    assert_eq!(typed.status.as_deref(), Some("running"));
}

#[tokio::test]
async fn an_unknown_status_is_refused_before_anything_is_sent() {
    // Nothing listens on this port: a request that were sent would fail to connect.
    let config = SdkConfig::new("127.0.0.1:9")
        .with_skip_cert_verification(true)
        .with_connect_timeout(std::time::Duration::from_millis(200));
    let sdk = ManagementSdk::new(config).expect("a usable config");
    let error = sdk
        .list_instances(ListInstancesOptions::new("t").with_status("runing"))
        .await
        .expect_err("an unknown status");
    assert!(matches!(error, SdkError::InvalidInput(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("`runing`") && message.contains("`running`"),
        "unclear: {message}"
    );
}
