//! Images and their binaries stay consistent when registrations, deletions and starts
//! race (issue 15.4), against a real server over QUIC.
#![allow(clippy::unwrap_used)]

mod support;

use runtara_management_sdk::{ManagementSdk, RegisterImageOptions, StartInstanceOptions};
use support::*;

const TENANT: &str = "acme";

async fn register(sdk: &ManagementSdk, name: &str, bytes: &[u8]) -> Result<String, String> {
    sdk.register_image(RegisterImageOptions::new(TENANT, name, bytes.to_vec()))
        .await
        .map(|image| image.image_id)
        .map_err(|e| e.to_string())
}

/// Registering a binary while another image with the same bytes is deleted never leaves
/// an image without its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_racing_a_delete_of_the_same_bytes_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);
    let (one, two) = (server.client().await, server.client().await);
    for round in 0..25 {
        let bytes = format!("#!/bin/sh\n# round {round}\nexit 0\n").into_bytes();
        let first = register(&one, &format!("a{round}"), &bytes).await.unwrap();
        let name = format!("b{round}");
        let (deleted, second) =
            tokio::join!(one.delete_image(&first), register(&two, &name, &bytes));
        deleted.unwrap();
        let second = second.unwrap();
        let image = one.get_image(&second).await.unwrap();
        let file = dir.path().join("images").join(&image.sha256);
        assert!(
            file.exists(),
            "round {round}: image {second} is registered but its binary is gone"
        );
    }
}

/// A start racing the delete of its image: one of the two wins, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_racing_the_delete_of_its_image_never_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);
    let (one, two) = (server.client().await, server.client().await);
    let (mut starts, mut deletes) = (0, 0);
    for round in 0..25 {
        let bytes = format!("#!/bin/sh\n# start {round}\nsleep 30\n").into_bytes();
        let image = register(&one, &format!("s{round}"), &bytes).await.unwrap();
        let (deleted, started) = tokio::join!(
            one.delete_image(&image),
            two.start_instance(StartInstanceOptions::new(&image, TENANT))
        );
        match (deleted, started) {
            (Ok(()), Err(error)) => {
                assert!(error.is_not_found(), "round {round}: {error}");
                deletes += 1;
            }
            (Err(error), Ok(started)) => {
                assert_eq!(error.code(), Some("in_use"), "round {round}: {error}");
                let instance = one.get_instance_status(&started.instance_id).await.unwrap();
                assert_eq!(instance.image_id, image);
                one.get_image(&image).await.unwrap();
                one.cancel_instance(&started.instance_id).await.unwrap();
                starts += 1;
            }
            (deleted, started) => {
                panic!("round {round}: delete {deleted:?}, start {started:?}")
            }
        }
    }
    eprintln!("of 25 races: {starts} starts won, {deletes} deletes won");
}
