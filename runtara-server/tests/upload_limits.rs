//! Image uploads are bounded: one that does not arrive whole within the upload deadline
//! is cut off, told why, and leaves no partial file; a tenant with its most uploads in
//! progress is refused another up front, while another tenant's upload goes through.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, ManagementRequest, ManagementResponse,
    Role, DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::{RunningServer, ServerConfig};

async fn management(server: &RunningServer) -> quinn::Connection {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let addr = server.management_addr;
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Hello::new("upload-test", Role::Management { token: None });
    write_frame(&mut send, &hello).await.unwrap();
    send.finish().unwrap();
    let reply = read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap();
    assert!(
        matches!(reply, Some(HelloReply::Welcome { .. })),
        "{reply:?}"
    );
    connection
}

/// Starts an upload of `tenant` declaring `size` bytes, sends `body` and keeps the
/// stream open; returns the stream halves.
async fn upload(
    connection: &quinn::Connection,
    tenant: &str,
    size: u64,
    sha256: &str,
    body: &[u8],
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = connection.open_bi().await.unwrap();
    let request = ManagementRequest::RegisterImage {
        tenant_id: tenant.into(),
        name: "big".into(),
        description: None,
        size_bytes: size,
        sha256: sha256.into(),
    };
    write_frame(&mut send, &request).await.unwrap();
    send.write_all(body).await.unwrap();
    (send, recv)
}

async fn answer(recv: &mut quinn::RecvStream) -> ManagementResponse {
    tokio::time::timeout(
        Duration::from_secs(30),
        read_frame::<_, ManagementResponse>(recv, DEFAULT_MAX_FRAME_LEN),
    )
    .await
    .expect("the server answers")
    .unwrap()
    .unwrap()
}

fn partial_uploads(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("images"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".upload-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_a_deadline_and_a_bound_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.upload_limits.timeout = Duration::from_secs(2);
    config.upload_limits.max_uploads_per_tenant = 2;
    let server = runtara_server::start(config).await.unwrap();
    let connection = management(&server).await;
    let zeros = "0".repeat(64);

    // Two uploads of tenant a declare 100 MB each and trickle 1 MiB.
    let (_send1, mut recv1) = upload(&connection, "a", 100 << 20, &zeros, &[1; 1 << 20]).await;
    let (_send2, mut recv2) = upload(&connection, "a", 100 << 20, &zeros, &[1; 1 << 20]).await;
    // Both are being received (their partial files exist) before a third is tried.
    let started = std::time::Instant::now();
    while partial_uploads(dir.path()) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the uploads never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A third of tenant a is refused at once, storing nothing.
    let (_send3, mut recv3) = upload(&connection, "a", 10, &zeros, b"").await;
    match answer(&mut recv3).await {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}");
            assert!(
                error.message.contains("--max-uploads-per-tenant"),
                "{error:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Tenant b's upload goes through meanwhile (a script is an image).
    let script = b"#!/bin/sh\necho hi\n";
    let digest = ring::digest::digest(&ring::digest::SHA256, script);
    let sha: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let (mut send_b, mut recv_b) =
        upload(&connection, "b", script.len() as u64, &sha, script).await;
    send_b.finish().unwrap();
    assert!(
        matches!(answer(&mut recv_b).await, ManagementResponse::Image(_)),
        "tenant b's upload is not held up by tenant a's"
    );

    // The stalled uploads are cut off at their deadline and leave nothing behind.
    for recv in [&mut recv1, &mut recv2] {
        match answer(recv).await {
            ManagementResponse::Error(error) => {
                assert!(error.message.contains("did not arrive whole"), "{error:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        partial_uploads(dir.path()),
        0,
        "a partial upload was left on disk"
    );
    // Their places are given back: tenant a may upload again.
    let (mut send_a, mut recv_a) =
        upload(&connection, "a", script.len() as u64, &sha, script).await;
    send_a.finish().unwrap();
    assert!(matches!(
        answer(&mut recv_a).await,
        ManagementResponse::Image(_)
    ));
    server.shutdown().await;
}
