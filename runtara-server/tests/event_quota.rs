//! Custom events are bounded per event and per instance, a refused one stores nothing,
//! and a finished instance records none (before: 20 events of 15 MB from a failed
//! instance's credential were stored, and listing them then failed).
#![allow(clippy::unwrap_used)]

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest, InstanceResponse, Role,
    DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::event_quota::EventLimits;
use runtara_server::ServerConfig;

async fn call(connection: &quinn::Connection, request: &InstanceRequest) -> InstanceResponse {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, request).await.unwrap();
    send.finish().unwrap();
    read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
}

fn event(bytes: usize) -> InstanceRequest {
    InstanceRequest::CustomEvent {
        subtype: "progress".into(),
        payload: vec![7u8; bytes].into(),
    }
}

#[track_caller]
fn refused(response: InstanceResponse, code: ErrorCode, needle: &str) {
    match response {
        InstanceResponse::Error(error) => {
            assert_eq!(error.code, code, "{error:?}");
            assert!(error.message.contains(needle), "{error:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_events_are_bounded_and_end_with_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.event_limits = EventLimits {
        max_event_bytes: 1024,
        max_events_per_instance: 5,
        max_event_bytes_per_instance: 3 * 1024,
    };
    let server = runtara_server::start(config).await.unwrap();
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let addr = server.instance_addr;
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let role = Role::Instance {
        instance_id: "chatty".into(),
        tenant_id: "t".into(),
        credential: None,
    };
    write_frame(&mut send, &Hello::new("events-test", role))
        .await
        .unwrap();
    send.finish().unwrap();
    let reply = read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap();
    assert!(
        matches!(reply, Some(HelloReply::Welcome { .. })),
        "{reply:?}"
    );
    let epoch = match call(
        &connection,
        &InstanceRequest::Register {
            checkpoint_id: None,
        },
    )
    .await
    {
        InstanceResponse::Registered { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };

    refused(
        call(&connection, &event(2048)).await,
        ErrorCode::InvalidInput,
        "--max-event-bytes",
    );
    for _ in 0..3 {
        assert!(matches!(
            call(&connection, &event(1024)).await,
            InstanceResponse::Done
        ));
    }
    refused(
        call(&connection, &event(1024)).await,
        ErrorCode::InvalidInput,
        "--max-event-bytes-per-instance",
    );
    for _ in 0..2 {
        assert!(matches!(
            call(&connection, &event(0)).await,
            InstanceResponse::Done
        ));
    }
    refused(
        call(&connection, &event(0)).await,
        ErrorCode::InvalidInput,
        "--max-events-per-instance",
    );
    let stored = server.persistence.list_events("chatty").await.unwrap();
    let custom: Vec<_> = stored.iter().filter(|e| e.kind == "custom").collect();
    assert_eq!(custom.len(), 5, "refused events stored nothing");

    let done = InstanceRequest::Completed {
        epoch,
        output: b"{}".to_vec().into(),
    };
    assert!(matches!(
        call(&connection, &done).await,
        InstanceResponse::Done
    ));
    refused(
        call(&connection, &event(0)).await,
        ErrorCode::Terminal,
        "a finished instance records no events",
    );
    server.shutdown().await;
}
