//! A server killed during an image upload leaves a partial file; the next server removes
//! it at start-up (issue 15.5). Real server processes and SIGKILL.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use runtara_management_sdk::RegisterImageOptions;
use support::*;

fn uploads(images: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(images)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let len = e.metadata().ok()?.len();
                    name.starts_with(".upload-").then_some((name, len))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_upload_of_a_killed_server_is_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let mut server = Server::start(dir.path(), 0, 0, &[]);
    let sdk = server.client().await;
    let mut image = b"#!/bin/sh\nexit 0\n#".to_vec();
    image.resize(128 * 1024 * 1024, b'#');
    let upload = tokio::spawn(async move {
        let _ = sdk
            .register_image(RegisterImageOptions::new("acme", "big", image))
            .await;
    });
    // Kill the server once part of the upload is on its disk.
    let started = Instant::now();
    while !uploads(&images).iter().any(|(_, len)| *len > 0) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the upload never began"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.kill();
    upload.abort();
    let left = uploads(&images);
    assert!(
        !left.is_empty(),
        "the killed server left its partial upload"
    );

    let _server = Server::start(dir.path(), 0, 0, &[]);
    assert_eq!(uploads(&images), [], "the partial upload is gone");
}
