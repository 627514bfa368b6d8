//! A start whose id is taken reads the existing instance to tell an idempotent repeat
//! from a conflict; when that read fails, the start says why instead of reporting
//! `already_exists` (issue 14.7). Real server over QUIC, on a SQLite file the test
//! damages.
#![allow(clippy::unwrap_used)]

mod support;

use runtara_management_sdk::{RegisterImageOptions, StartInstanceOptions};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_of_a_taken_id_is_reported_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);
    let sdk = server.client().await;
    let script = b"#!/bin/sh\nsleep 30\n".to_vec();
    let image = sdk
        .register_image(RegisterImageOptions::new("acme", "sleeper", script))
        .await
        .unwrap()
        .image_id;
    let start = || StartInstanceOptions::new(&image, "acme").with_instance_id("dup-1");
    sdk.start_instance(start()).await.unwrap();
    // An idempotent repeat is fine.
    let again = sdk.start_instance(start()).await.unwrap();
    assert!(!again.created);

    // The stored row becomes unreadable (a status this version does not know).
    let db = rusqlite::Connection::open(dir.path().join("runtara.db")).unwrap();
    db.execute_batch(
        "PRAGMA ignore_check_constraints = ON; \
         UPDATE instances SET status = 'bogus' WHERE instance_id = 'dup-1';",
    )
    .unwrap();
    let error = sdk.start_instance(start()).await.unwrap_err();
    assert_ne!(error.code(), Some("already_exists"), "{error}");
    assert!(
        error.to_string().contains("bogus"),
        "the cause is named: {error}"
    );
}
