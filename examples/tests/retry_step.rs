//! A durable call that failed for good stays failed across runs until an operator lets it
//! run again with `ManagementSdk::retry_step` or the `runtara-ctl retry-step` command, over
//! real QUIC to a real server.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use runtara_sdk::{durable, RuntaraSdk, SdkConfig, SdkError};
use support::{ctl, Server};

/// `runtara-ctl` exited with `code`; its stderr holds `needle`.
#[track_caller]
fn refused(output: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "{stderr}");
}

/// Fails while `declined` is set; no retries, so a failure is final.
#[durable(max_retries = 0)]
async fn charge(
    order: String,
    declined: &AtomicBool,
    calls: &AtomicUsize,
) -> Result<String, SdkError> {
    calls.fetch_add(1, Ordering::SeqCst);
    if declined.load(Ordering::SeqCst) {
        return Err(SdkError::Input {
            path: "card".into(),
            what: "card declined".into(),
            source: "the bank said no".into(),
        });
    }
    Ok(format!("receipt-{order}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_runs_again_only_after_retry_step() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);
    let management = server.client().await;
    let run = || async {
        let config = SdkConfig::new("retry-1", "acme")
            .with_server_addr(server.instance_addr)
            .with_ca_cert(&server.ca_path)
            .with_heartbeat_interval(Duration::ZERO);
        let sdk = RuntaraSdk::new(config).unwrap();
        sdk.connect().await.unwrap();
        sdk.register(None).await.unwrap();
        sdk
    };
    let (declined, calls) = (AtomicBool::new(true), AtomicUsize::new(0));

    let first = run().await;
    let error = first
        .scope(charge("o-1".into(), &declined, &calls))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("card declined"), "{error}");

    // The card is fine now, but the failure is recorded: the step is not run again.
    declined.store(false, Ordering::SeqCst);
    let second = run().await;
    let error = second
        .scope(charge("o-1".into(), &declined, &calls))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, SdkError::StepFailed { checkpoint_id, message }
            if checkpoint_id == "charge::o-1" && message.contains("card declined")),
        "{error:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // An unknown step is refused; the recorded one is cleared once.
    let unknown = management
        .retry_step("retry-1", "charge::o-2")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some("not_found"), "{unknown}");
    refused(
        &ctl(&server, &["retry-step", "retry-1", "charge::o-2"]),
        1,
        "no failure is recorded for step `charge::o-2`",
    );
    refused(
        &ctl(&server, &["retry-step", "no-such-instance", "charge::o-1"]),
        1,
        "not found",
    );
    let cleared = ctl(&server, &["--json", "retry-step", "retry-1", "charge::o-1"]);
    assert!(
        cleared.status.success(),
        "{}",
        String::from_utf8_lossy(&cleared.stderr)
    );
    let cleared: serde_json::Value = serde_json::from_slice(&cleared.stdout).unwrap();
    assert_eq!(cleared["checkpoint_id"], "charge::o-1");
    assert_eq!(cleared["cleared"], true);
    let again = management
        .retry_step("retry-1", "charge::o-1")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("not_found"), "{again}");

    let third = run().await;
    let receipt = third
        .clone()
        .scope(charge("o-1".into(), &declined, &calls))
        .await
        .unwrap();
    assert_eq!(
        (receipt.as_str(), calls.load(Ordering::SeqCst)),
        ("receipt-o-1", 2)
    );
    third.completed(receipt.as_bytes()).await.unwrap();

    // A finished instance's steps are final.
    let finished = management
        .retry_step("retry-1", "charge::o-1")
        .await
        .unwrap_err();
    assert_eq!(finished.code(), Some("terminal"), "{finished}");
    refused(
        &ctl(&server, &["retry-step", "retry-1", "charge::o-1"]),
        1,
        "completed",
    );
}
