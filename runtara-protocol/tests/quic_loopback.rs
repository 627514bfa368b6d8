//! Real QUIC over loopback: handshake and a request with the pinned dev certificate; a
//! client trusting another certificate is refused; skipping verification connects.
#![allow(clippy::unwrap_used)]

use runtara_protocol::endpoint::{self, client_endpoint, server_endpoint};
use runtara_protocol::tls::{ClientTls, DevCertificate};
use runtara_protocol::*;

async fn serve_once(endpoint: quinn::Endpoint) {
    let connection = endpoint.accept().await.unwrap().await.unwrap();
    let (mut send, mut recv) = connection.accept_bi().await.unwrap();
    let hello: Hello = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    let welcome = answer_hello(&hello, "test");
    write_frame(&mut send, &welcome).await.unwrap();
    send.finish().unwrap();
    // Until admitted, a connection may open only its hello stream.
    runtara_protocol::endpoint::admit(&connection);
    let (mut send, mut recv) = connection.accept_bi().await.unwrap();
    let request: InstanceRequest = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(request, InstanceRequest::Checkpoint { .. }));
    let reply = InstanceResponse::Checkpointed {
        existing_state: None,
        signal: None,
    };
    write_frame(&mut send, &reply).await.unwrap();
    send.finish().unwrap();
    connection.closed().await;
}

#[tokio::test]
async fn handshake_and_request_with_the_pinned_dev_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = DevCertificate::load_or_create(dir.path()).unwrap();
    let server = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &cert.cert_pem,
        &cert.key_pem,
        None,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = tokio::spawn(serve_once(server));

    let tls = ClientTls::from_ca_file(&cert.ca_path).unwrap();
    let client = client_endpoint(&tls, addr).unwrap();
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Hello::new(
        "test",
        Role::Instance {
            instance_id: "i".into(),
            tenant_id: "t".into(),
            credential: None,
        },
    );
    write_frame(&mut send, &hello).await.unwrap();
    send.finish().unwrap();
    let reply: HelloReply = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        reply,
        HelloReply::Welcome {
            protocol_version: PROTOCOL_VERSION,
            ..
        }
    ));

    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let request = InstanceRequest::Checkpoint {
        epoch: 1,
        checkpoint_id: "a".into(),
        state: ByteBuf::from(vec![1; 100]),
    };
    write_frame(&mut send, &request).await.unwrap();
    send.finish().unwrap();
    let reply: InstanceResponse = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reply,
        InstanceResponse::Checkpointed {
            existing_state: None,
            signal: None
        }
    );
    connection.close(0u32.into(), b"done");
    serving.await.unwrap();
}

#[tokio::test]
async fn a_client_trusting_another_certificate_is_refused() {
    let server_dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let cert = DevCertificate::load_or_create(server_dir.path()).unwrap();
    let other = DevCertificate::load_or_create(other_dir.path()).unwrap();
    let server = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &cert.cert_pem,
        &cert.key_pem,
        None,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        if let Some(incoming) = server.accept().await {
            let _ = incoming.await;
        }
    });
    let ca_pem = std::fs::read(&other.ca_path).unwrap();
    let client = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let error = client
        .connect(addr, "localhost")
        .unwrap()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}

#[tokio::test]
async fn skipping_verification_connects_to_any_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = DevCertificate::load_or_create(dir.path()).unwrap();
    let secret = endpoint::load_or_create_reset_secret(dir.path()).unwrap();
    let server = server_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        &cert.cert_pem,
        &cert.key_pem,
        Some(&secret),
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let serving = tokio::spawn(serve_once(server));
    let client = client_endpoint(&ClientTls::SkipVerification, addr).unwrap();
    let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
    assert_eq!(
        connection
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol),
        Some(ALPN.to_vec())
    );
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &Hello::new("test", Role::Management { token: None }),
    )
    .await
    .unwrap();
    send.finish().unwrap();
    let reply: HelloReply = read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(reply.into_result().is_ok());
    connection.close(0u32.into(), b"done");
    serving.abort();
}

#[test]
fn verification_without_a_ca_is_refused_with_a_clear_error() {
    let addr = "127.0.0.1:1".parse().unwrap();
    let error = client_endpoint(&ClientTls::Verify { ca_pem: Vec::new() }, addr).unwrap_err();
    assert!(
        error.to_string().contains("needs a CA certificate"),
        "{error}"
    );
}
