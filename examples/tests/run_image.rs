//! An image written with `run_image` (one function, one line in `main`) runs under the
//! server: its output is recorded as JSON; a workflow error, a panic and an input that
//! does not fit each fail the instance once, with the message, without a relaunch.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use runtara_management_sdk::{InstanceStatus, RegisterImageOptions, StartInstanceOptions};
use serde_json::json;
use support::*;

const SUM_IMAGE: &str = env!("CARGO_BIN_EXE_sum-image");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_of_one_function_records_its_output_or_its_failure() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path());
    let sdk = server.client().await;
    let image = sdk
        .register_image(RegisterImageOptions::new(
            "acme",
            "sum",
            std::fs::read(SUM_IMAGE).unwrap(),
        ))
        .await
        .unwrap();
    let cases = [
        ("sum-ok", json!({"numbers": [1, 2, 3]})),
        ("sum-err", json!({"numbers": [1], "fail": "no money"})),
        ("sum-panic", json!({"numbers": [1], "panic": true})),
        ("sum-bad", json!({"numbers": "many"})),
        ("sum-none", serde_json::Value::Null),
    ];
    for (id, input) in &cases {
        let mut options =
            StartInstanceOptions::new(image.image_id.as_str(), "acme").with_instance_id(*id);
        if !input.is_null() {
            options = options.with_input(input.clone());
        }
        sdk.start_instance(options).await.unwrap();
    }
    let ended = |id: &'static str| {
        let sdk = &sdk;
        async move { wait_for(sdk, id, Duration::from_secs(60), |s| s.is_terminal()).await }
    };
    let ok = ended("sum-ok").await;
    assert_eq!(ok.status, InstanceStatus::Completed);
    assert_eq!(ok.output_json(), Some(json!(6)));
    assert_eq!(ok.checkpoint_count, 3);

    let err = ended("sum-err").await;
    assert_eq!(
        (err.status, err.error.as_deref()),
        (InstanceStatus::Failed, Some("no money"))
    );
    let panicked = ended("sum-panic").await;
    assert_eq!(panicked.status, InstanceStatus::Failed);
    assert_eq!(
        panicked.error.as_deref(),
        Some("the workflow panicked: asked to panic")
    );
    for id in ["sum-bad", "sum-none"] {
        let bad = ended(id).await;
        assert_eq!(bad.status, InstanceStatus::Failed);
        let error = bad.error.unwrap();
        assert!(error.starts_with("cannot read the start input"), "{error}");
        assert!(error.contains("Numbers"), "{error}");
    }
    // Each failed once, in its one process: no crash loop.
    for (id, _) in &cases {
        assert_eq!(
            sdk.get_instance_status(id).await.unwrap().launches,
            1,
            "{id}"
        );
    }
}
