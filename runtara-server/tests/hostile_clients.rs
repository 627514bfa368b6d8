//! Hostile input on the instance endpoint: garbage, oversized and truncated frames, a
//! wrong protocol version, and a flood of streams. Each gets a clear error or is cut
//! off; the server stays up and an honest instance running alongside is unaffected.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest, InstanceResponse, Role,
    DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use runtara_sdk::{durable, RuntaraSdk, SdkConfig, SdkError};
use runtara_server::{RunningServer, ServerConfig};

#[durable(max_retries = 0)]
async fn honest_step(key: String, n: u32) -> Result<u32, SdkError> {
    Ok(n * 2)
}

async fn connect(server: &RunningServer) -> quinn::Connection {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, server.instance_addr).unwrap();
    endpoint
        .connect(server.instance_addr, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// Sends raw bytes as the first stream of a new connection; returns the hello reply.
async fn raw_hello(server: &RunningServer, bytes: &[u8]) -> Option<HelloReply> {
    let connection = connect(server).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .ok()
        .flatten()
}

fn refused_with(reply: Option<HelloReply>, code: ErrorCode) {
    match reply {
        Some(HelloReply::Refused(error)) => assert_eq!(error.code, code, "{error:?}"),
        other => panic!("expected a {code} refusal, got {other:?}"),
    }
}

/// A connection that said a valid hello for `instance_id`.
async fn hello(server: &RunningServer, instance_id: &str) -> quinn::Connection {
    let connection = connect(server).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let hello = Hello::new(
        "hostile",
        Role::Instance {
            instance_id: instance_id.into(),
            tenant_id: "tests".into(),
            credential: None,
        },
    );
    write_frame(&mut send, &hello).await.unwrap();
    send.finish().unwrap();
    let reply = read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(reply, HelloReply::Welcome { .. }), "{reply:?}");
    connection
}

async fn raw_request(connection: &quinn::Connection, bytes: &[u8]) -> Option<InstanceResponse> {
    let (mut send, mut recv) = connection.open_bi().await.ok()?;
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    read_frame::<_, InstanceResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_errors_and_honest_instances_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    let server = runtara_server::start(config).await.unwrap();

    // An honest instance works all along.
    let sdk = RuntaraSdk::new(
        SdkConfig::new("honest", "tests")
            .with_server_addr(server.instance_addr)
            .with_ca_cert(server.ca_path.clone().unwrap())
            .with_heartbeat_interval(Duration::ZERO),
    )
    .unwrap();
    sdk.connect().await.unwrap();
    sdk.register(None).await.unwrap();
    let honest = tokio::spawn(sdk.clone().scope(async move {
        for n in 1..=200u32 {
            honest_step(n.to_string(), n).await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        runtara_sdk::current_sdk()?.completed(b"ok").await
    }));

    // Hello: garbage, oversized, truncated, wrong version.
    refused_with(
        raw_hello(&server, &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff]).await,
        ErrorCode::Malformed,
    );
    refused_with(
        raw_hello(&server, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await,
        ErrorCode::FrameTooLarge,
    );
    let truncated = raw_hello(&server, &[0, 0, 0, 200, 1, 2, 3]).await;
    assert!(
        matches!(truncated, None | Some(HelloReply::Refused(_))),
        "{truncated:?}"
    );
    let mut old = Hello::new(
        "old",
        Role::Instance {
            instance_id: "x".into(),
            tenant_id: "tests".into(),
            credential: None,
        },
    );
    old.protocol_version = PROTOCOL_VERSION + 1;
    let old = runtara_protocol::encode_frame(&old).unwrap();
    refused_with(raw_hello(&server, &old).await, ErrorCode::VersionMismatch);

    // After a valid hello: garbage and oversized requests get errors; the connection
    // still serves well-formed requests afterwards.
    let connection = hello(&server, "hostile-1").await;
    let garbage = raw_request(&connection, &[0, 0, 0, 3, 0xee, 0xee, 0xee]).await;
    assert!(
        matches!(garbage, Some(InstanceResponse::Error(ref e)) if e.code == ErrorCode::Malformed),
        "{garbage:?}"
    );
    let oversized = raw_request(&connection, &[0x7f, 0xff, 0xff, 0xff]).await;
    assert!(
        matches!(oversized, Some(InstanceResponse::Error(ref e)) if e.code == ErrorCode::FrameTooLarge),
        "{oversized:?}"
    );
    let register = runtara_protocol::encode_frame(&InstanceRequest::Register {
        checkpoint_id: None,
    })
    .unwrap();
    let registered = raw_request(&connection, &register).await;
    assert!(
        matches!(registered, Some(InstanceResponse::Registered { .. })),
        "{registered:?}"
    );

    // A flood: 3,000 garbage streams, 64 at a time, on one connection.
    let flood = hello(&server, "hostile-2").await;
    let mut answered = 0;
    for _ in 0..3_000 / 64 {
        let batch: Vec<_> = (0..64)
            .map(|_| {
                let flood = flood.clone();
                tokio::spawn(async move { raw_request(&flood, &[0, 0, 0, 1, 0xaa]).await })
            })
            .collect();
        for task in batch {
            if matches!(task.await.unwrap(), Some(InstanceResponse::Error(_))) {
                answered += 1;
            }
        }
    }
    assert!(
        answered >= 2_900,
        "{answered} of 2,944 flood streams answered with an error"
    );

    // The honest instance finished untouched, and the server still serves.
    honest.await.unwrap().unwrap();
    let record = server
        .persistence
        .get_instance("honest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.checkpoint_count, 200);
    assert_eq!(record.status, runtara_core::InstanceStatus::Completed);
    let again = hello(&server, "hostile-3").await;
    assert!(matches!(
        raw_request(&again, &register).await,
        Some(InstanceResponse::Registered { .. })
    ));
    server.shutdown().await;
}
