//! TLS is always on: a client with the wrong CA is refused, one with no trust setting is
//! told what to set, `localhost()` may skip verification; a peer speaking another
//! protocol version gets a clear refusal.
#![allow(clippy::unwrap_used)]

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::{ClientTls, DevCertificate};
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, Role, DEFAULT_MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};
use runtara_sdk::{RuntaraSdk, SdkConfig, SdkError};
use runtara_server::{RunningServer, ServerConfig};

async fn server(dir: &std::path::Path) -> RunningServer {
    let mut config = ServerConfig::new(dir);
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    runtara_server::start(config).await.unwrap()
}

#[tokio::test]
async fn a_client_pinning_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let other = tempfile::tempdir().unwrap();
    let wrong = DevCertificate::load_or_create(other.path()).unwrap();
    let config = SdkConfig::new("i", "t")
        .with_server_addr(server.instance_addr)
        .with_ca_cert(&wrong.ca_path);
    let sdk = RuntaraSdk::new(config).unwrap();
    let error = sdk.connect().await.unwrap_err();
    assert!(matches!(error, SdkError::Tls(_)), "{error:?}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    assert!(!sdk.is_connected().await);

    // The right CA is accepted.
    let config = SdkConfig::new("i", "t")
        .with_server_addr(server.instance_addr)
        .with_ca_cert(server.ca_path.clone().unwrap());
    let sdk = RuntaraSdk::new(config).unwrap();
    sdk.connect().await.unwrap();
    assert!(sdk.is_connected().await);
}

#[test]
fn verification_without_a_ca_says_what_to_set() {
    let error = RuntaraSdk::new(SdkConfig::new("i", "t")).unwrap_err();
    assert!(error.to_string().contains("RUNTARA_CA_CERT"), "{error}");
}

#[tokio::test]
async fn localhost_config_skips_verification() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let sdk =
        RuntaraSdk::new(SdkConfig::localhost("i", "t").with_server_addr(server.instance_addr))
            .unwrap();
    sdk.connect().await.unwrap();
    sdk.register(None).await.unwrap();
    assert!(sdk.is_registered());
}

#[tokio::test]
async fn a_mismatched_protocol_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, server.instance_addr).unwrap();
    let connection = endpoint
        .connect(server.instance_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let mut hello = Hello::new(
        "old-client",
        Role::Instance {
            instance_id: "i".into(),
            tenant_id: "t".into(),
            credential: None,
        },
    );
    hello.protocol_version = PROTOCOL_VERSION + 1;
    write_frame(&mut send, &hello).await.unwrap();
    send.finish().unwrap();
    let reply: HelloReply = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    let HelloReply::Refused(error) = reply else {
        panic!("accepted a mismatched version")
    };
    assert_eq!(error.code, ErrorCode::VersionMismatch);
    assert!(
        error
            .message
            .contains("runtara protocol v2, the server speaks v1"),
        "{}",
        error.message
    );
}
