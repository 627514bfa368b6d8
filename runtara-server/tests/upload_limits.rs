//! Image uploads are bounded, against a real server process (issue 17.8: an upload that
//! declared 1 GiB kept its partial file for as long as its stream stayed open, and
//! nothing bounded concurrent uploads). An upload that does not arrive whole within the
//! upload deadline is cut off, told why, and leaves no partial file, even one that
//! keeps trickling bytes; a tenant with its most uploads in progress is refused another
//! up front, while another tenant's upload goes through.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, ManagementRequest, ManagementResponse,
    Role, DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::process::ServerProcess;

const SERVER: &str = env!("CARGO_BIN_EXE_runtara-server");
/// The deadline the test gives uploads.
const DEADLINE: Duration = Duration::from_secs(2);

fn start(dir: &std::path::Path) -> ServerProcess {
    let mut command = Command::new(SERVER);
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["--instance-addr", "127.0.0.1:0"])
        .args(["--management-addr", "127.0.0.1:0"])
        .args(["--instance-threads", "0"])
        .args(["--upload-timeout-ms", &DEADLINE.as_millis().to_string()])
        .args(["--max-uploads-per-tenant", "2"])
        .env("RUST_LOG", "error")
        .stderr(Stdio::inherit());
    ServerProcess::spawn(command).unwrap()
}

async fn management(server: &ServerProcess) -> quinn::Connection {
    let ca_pem = std::fs::read(server.ready.ca_path.as_ref().unwrap()).unwrap();
    let addr = server.ready.management_addr;
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

#[track_caller]
fn cut_off(response: ManagementResponse) {
    match response {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidInput, "{error:?}");
            assert!(
                error.message.contains("did not arrive whole within 2s"),
                "{error:?}"
            );
            assert!(error.message.contains("nothing was stored"), "{error:?}");
        }
        other => panic!("expected the upload to be cut off, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_a_deadline_and_a_bound_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let connection = management(&server).await;
    let zeros = "0".repeat(64);

    // Tenant a: one upload declares 100 MB and stalls after 1 MiB; another declares
    // 100 MB and keeps trickling 1 KiB every 50 ms.
    let began = Instant::now();
    let (_stalled, mut stalled_answer) =
        upload(&connection, "a", 100 << 20, &zeros, &[1; 1 << 20]).await;
    let (mut trickling, mut trickling_answer) =
        upload(&connection, "a", 100 << 20, &zeros, &[2; 1024]).await;
    let trickled = Arc::new(AtomicUsize::new(0));
    let trickler = {
        let trickled = trickled.clone();
        tokio::spawn(async move {
            while trickling.write_all(&[2; 1024]).await.is_ok() {
                trickled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Both are being received (their partial files exist) before a third is tried.
    while partial_uploads(dir.path()) < 2 {
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the uploads never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A third of tenant a is refused at once, storing nothing.
    let (_third, mut third_answer) = upload(&connection, "a", 10, &zeros, b"").await;
    match answer(&mut third_answer).await {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::Unavailable, "{error:?}");
            assert!(
                error
                    .message
                    .contains("tenant `a` has 2 image uploads in progress"),
                "{error:?}"
            );
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
    let (mut send_b, mut answer_b) =
        upload(&connection, "b", script.len() as u64, &sha, script).await;
    send_b.finish().unwrap();
    assert!(
        matches!(answer(&mut answer_b).await, ManagementResponse::Image(_)),
        "tenant b's upload is not held up by tenant a's"
    );

    // The stalled upload and the trickling one are cut off at the deadline, not before,
    // and leave nothing behind.
    cut_off(answer(&mut stalled_answer).await);
    cut_off(answer(&mut trickling_answer).await);
    let cut_after = began.elapsed();
    assert!(cut_after >= DEADLINE, "cut off after {cut_after:?}");
    let chunks = trickled.load(Ordering::Relaxed);
    assert!(
        chunks >= 10,
        "the trickling upload kept sending until it was cut off ({chunks} chunks)"
    );
    assert_eq!(
        partial_uploads(dir.path()),
        0,
        "a partial upload was left on disk"
    );
    trickler.abort();
    // Their places are given back: tenant a may upload again.
    let (mut send_a, mut answer_a) =
        upload(&connection, "a", script.len() as u64, &sha, script).await;
    send_a.finish().unwrap();
    assert!(matches!(
        answer(&mut answer_a).await,
        ManagementResponse::Image(_)
    ));
}
