//! The SDK against a small in-process fake of the management endpoint: handshake,
//! certificate pinning, error codes, image upload and reconnecting. (Tests against the
//! real server live with the server.)

#![allow(clippy::unwrap_used)] // test code: a failed setup should panic

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use runtara_management_sdk::{
    sha256_hex, ManagementSdk, RegisterImageOptions, SdkConfig, SdkError, StartInstanceOptions,
};
use runtara_protocol::endpoint::server_endpoint;
use runtara_protocol::tls::DevCertificate;
use runtara_protocol::{
    read_frame, write_frame, ByteBuf, ErrorCode, Hello, HelloReply, ManagementRequest,
    ManagementResponse, WireError, WireImage, WireInstance, DEFAULT_MAX_FRAME_LEN,
};

struct Fake {
    addr: SocketAddr,
    ca_path: std::path::PathBuf,
    /// Requests served so far.
    served: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

/// Starts a fake server requiring `token`; with `drop_after_first`, it closes each
/// connection after answering its first request.
fn start(token: Option<&str>, drop_after_first: bool) -> Fake {
    let dir = tempfile::tempdir().unwrap();
    let cert = DevCertificate::load_or_create(dir.path()).unwrap();
    let endpoint = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &cert.cert_pem,
        &cert.key_pem,
        None,
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let token = token.map(str::to_owned);
    let counter = served.clone();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let token = token.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(connection) = incoming.await else {
                    return;
                };
                let (mut send, mut recv) = connection.accept_bi().await.unwrap();
                let hello: Hello = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
                    .await
                    .unwrap()
                    .unwrap();
                let reply = if hello.credential() == token.as_deref() {
                    HelloReply::welcome("fake-server/0")
                } else {
                    HelloReply::Refused(WireError::new(ErrorCode::Unauthorized, "wrong token"))
                };
                write_frame(&mut send, &reply).await.unwrap();
                send.finish().unwrap();
                runtara_protocol::endpoint::admit(&connection);
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let request: ManagementRequest = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
                        .await
                        .unwrap()
                        .unwrap();
                    let response = answer(request, &mut recv).await;
                    write_frame(&mut send, &response).await.unwrap();
                    send.finish().unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                    if drop_after_first {
                        let _ = send.stopped().await;
                        connection.close(0u32.into(), b"going away");
                        break;
                    }
                }
            });
        }
    });
    Fake {
        addr,
        ca_path: cert.ca_path,
        served,
        _dir: dir,
    }
}

async fn answer(request: ManagementRequest, recv: &mut quinn::RecvStream) -> ManagementResponse {
    match request {
        ManagementRequest::RegisterImage {
            tenant_id,
            name,
            description,
            size_bytes,
            sha256,
        } => {
            let bytes = recv.read_to_end(64 * 1024 * 1024).await.unwrap();
            if bytes.len() as u64 != size_bytes || sha256_hex(&bytes) != sha256 {
                return ManagementResponse::Error(WireError::new(
                    ErrorCode::InvalidInput,
                    "size or sha-256 mismatch",
                ));
            }
            ManagementResponse::Image(WireImage {
                image_id: format!("img-{name}"),
                tenant_id,
                name,
                version: 1,
                description,
                sha256,
                size_bytes: size_bytes as i64,
                created_at_ms: 0,
            })
        }
        ManagementRequest::GetInstanceStatus { instance_id } if instance_id == "missing" => {
            ManagementResponse::Error(WireError::new(
                ErrorCode::NotFound,
                "instance `missing` not found",
            ))
        }
        ManagementRequest::GetInstanceStatus { instance_id } => {
            ManagementResponse::Instance(WireInstance {
                instance_id,
                tenant_id: "t".into(),
                image_id: Some("img".into()),
                status: runtara_protocol::InstanceStatus::Running,
                created_at_ms: 1_000,
                started_at_ms: None,
                finished_at_ms: None,
                output: None,
                error: None,
                checkpoint_id: None,
                checkpoint_count: 0,
                heartbeat_at_ms: None,
                wake_at_ms: None,
                launches: 1,
                log_tail: None,
            })
        }
        ManagementRequest::StartInstance {
            input, timeout_ms, ..
        } => ManagementResponse::Started {
            // Echo what arrived so the test can check the encoding.
            instance_id: format!(
                "{}|{timeout_ms:?}",
                String::from_utf8(input.map(ByteBuf::into_vec).unwrap_or_default()).unwrap()
            ),
            created: true,
        },
        _ => ManagementResponse::Done,
    }
}

fn config(fake: &Fake) -> SdkConfig {
    SdkConfig::new(fake.addr.to_string()).with_ca_cert(&fake.ca_path)
}

#[tokio::test]
async fn a_pinned_certificate_and_an_image_upload() {
    let fake = start(None, false);
    let sdk = ManagementSdk::new(config(&fake)).unwrap();
    sdk.connect().await.unwrap();
    assert_eq!(sdk.server_version().await.unwrap(), "fake-server/0");

    let bytes: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let expected_sha = sha256_hex(&bytes);
    let image = sdk
        .register_image(RegisterImageOptions::new("t", "wf", bytes).with_description("d"))
        .await
        .unwrap();
    assert_eq!(image.image_id, "img-wf");
    assert_eq!(image.sha256, expected_sha);
    assert_eq!(image.size_bytes, 3 * 1024 * 1024 + 17);
    assert_eq!(image.created_at, "1970-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn refusals_carry_the_error_code() {
    let fake = start(None, false);
    let sdk = ManagementSdk::new(config(&fake)).unwrap();
    let error = sdk.get_instance_status("missing").await.unwrap_err();
    assert_eq!(error.code(), Some("not_found"));
    assert!(error.is_not_found());
    assert!(
        error.to_string().contains("instance `missing` not found"),
        "{error}"
    );

    let status = sdk.get_instance_status("i-1").await.unwrap();
    assert_eq!(status.status, "running");
    assert_eq!(status.started_at, "");
    assert_eq!(status.created_at, "1970-01-01T00:00:01.000Z");
}

#[tokio::test]
async fn start_input_is_sent_as_json_text() {
    let fake = start(None, false);
    let sdk = ManagementSdk::new(config(&fake)).unwrap();
    let started = sdk
        .start_instance(
            StartInstanceOptions::new("img", "t")
                .with_input(serde_json::json!({"k": "v"}))
                .with_timeout(std::time::Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(started.instance_id, "{\"k\":\"v\"}|Some(2000)");
    assert!(started.created);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let fake = start(Some("right"), false);
    let sdk = ManagementSdk::new(config(&fake).with_token("wrong")).unwrap();
    let error = sdk.connect().await.unwrap_err();
    assert_eq!(error.code(), Some("unauthorized"), "{error:?}");

    let sdk = ManagementSdk::new(config(&fake).with_token("right")).unwrap();
    sdk.connect().await.unwrap();
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let fake = start(None, false);
    let other = tempfile::tempdir().unwrap();
    let other_cert = DevCertificate::load_or_create(other.path()).unwrap();
    let sdk =
        ManagementSdk::new(SdkConfig::new(fake.addr.to_string()).with_ca_cert(&other_cert.ca_path))
            .unwrap();
    let error = sdk.connect().await.unwrap_err();
    assert!(matches!(error, SdkError::Tls(_)), "{error:?}");
}

#[tokio::test]
async fn a_lost_connection_is_replaced() {
    let fake = start(None, true);
    let sdk = ManagementSdk::new(config(&fake)).unwrap();
    for _ in 0..3 {
        sdk.get_instance_status("i-1").await.unwrap();
    }
    assert_eq!(fake.served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    drop(socket);
    let sdk = ManagementSdk::new(
        SdkConfig::new(addr.to_string())
            .with_skip_cert_verification(true)
            .with_connect_timeout(std::time::Duration::from_millis(300)),
    )
    .unwrap();
    let error = sdk.health().await.unwrap_err();
    assert!(matches!(error, SdkError::Connect { .. }), "{error:?}");
    assert!(error.is_connection_error());
}

#[cfg(feature = "cli")]
/// Runs `runtara-ctl` against `fake` with `args`; returns (exit code, stdout, stderr).
async fn ctl(fake: &Fake, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_runtara-ctl"));
    command
        .arg("--addr")
        .arg(fake.addr.to_string())
        .arg("--ca-cert")
        .arg(&fake.ca_path)
        .args(args)
        .env_remove("RUNTARA_SKIP_CERT_VERIFICATION")
        .env_remove("RUNTARA_MANAGEMENT_TOKEN");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ctl_prints_results_and_exit_codes() {
    let fake = start(None, false);

    let (code, stdout, stderr) = ctl(&fake, &["status", "i-1", "--json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["status"], "running");
    assert_eq!(doc["started_at"], serde_json::Value::Null);

    let (code, stdout, _) = ctl(&fake, &["status", "i-1"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("status           running"), "{stdout}");

    let (code, _, stderr) = ctl(&fake, &["status", "missing"]).await;
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim(),
        "runtara-ctl: get_instance_status failed: instance `missing` not found (not_found)"
    );

    let (code, stdout, stderr) = ctl(
        &fake,
        &["start", "img", "--tenant", "t", "--input", "[1, 2]"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "[1,2]|None\n");
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# not a certificate\n").unwrap();
    let error =
        ManagementSdk::new(SdkConfig::new("127.0.0.1:8002").with_ca_cert(&readme)).unwrap_err();
    assert!(matches!(error, SdkError::Config(_)), "{error:?}");
    assert!(!error.is_connection_error(), "{error:?}");
    assert!(
        error.to_string().contains("not a PEM certificate"),
        "{error}"
    );
    let missing = ManagementSdk::new(
        SdkConfig::new("127.0.0.1:8002").with_ca_cert(dir.path().join("missing.pem")),
    )
    .unwrap_err();
    assert!(matches!(missing, SdkError::Io { .. }), "{missing:?}");
}
