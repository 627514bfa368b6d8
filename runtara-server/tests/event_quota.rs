//! Custom events are bounded per event and per instance, a refused one stores nothing,
//! and a finished instance records none (before: 20 events of 15 MB from a failed
//! instance's credential were stored, and listing them then failed). Events are listed in
//! pages of bounded size.
#![allow(clippy::unwrap_used)]

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest, InstanceResponse,
    ManagementRequest, ManagementResponse, Role, DEFAULT_MAX_FRAME_LEN, REPLAY_PAGE_BYTES,
};
use runtara_server::event_quota::EventLimits;
use runtara_server::ServerConfig;

async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    connection: &quinn::Connection,
    request: &Req,
) -> Resp {
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

fn instance_role(instance_id: &str) -> Role {
    Role::Instance {
        instance_id: instance_id.into(),
        tenant_id: "t".into(),
        credential: None,
    }
}

/// A connection to `addr` whose hello as `role` was welcomed.
async fn connect(
    server: &runtara_server::RunningServer,
    addr: std::net::SocketAddr,
    role: Role,
) -> quinn::Connection {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
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
    connection
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
    let connection = connect(&server, server.instance_addr, instance_role("chatty")).await;
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
        call::<_, InstanceResponse>(&connection, &event(2048)).await,
        ErrorCode::InvalidInput,
        "`max_event_bytes`",
    );
    for _ in 0..3 {
        assert!(matches!(
            call::<_, InstanceResponse>(&connection, &event(1024)).await,
            InstanceResponse::Done
        ));
    }
    refused(
        call::<_, InstanceResponse>(&connection, &event(1024)).await,
        ErrorCode::InvalidInput,
        "`max_event_bytes_per_instance`",
    );
    for _ in 0..2 {
        assert!(matches!(
            call::<_, InstanceResponse>(&connection, &event(0)).await,
            InstanceResponse::Done
        ));
    }
    refused(
        call::<_, InstanceResponse>(&connection, &event(0)).await,
        ErrorCode::InvalidInput,
        "quota of 5 custom events (`max_events_per_instance`)",
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
        call::<_, InstanceResponse>(&connection, &event(0)).await,
        ErrorCode::Terminal,
        "is completed; a finished instance cannot change",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_in_bounded_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.event_limits = EventLimits {
        max_event_bytes: 1 << 20,
        max_events_per_instance: 100,
        max_event_bytes_per_instance: 64 << 20,
    };
    let server = runtara_server::start(config).await.unwrap();
    let instance = connect(&server, server.instance_addr, instance_role("big-events")).await;
    let register = InstanceRequest::Register {
        checkpoint_id: None,
    };
    let _: InstanceResponse = call(&instance, &register).await;
    for _ in 0..20 {
        let done: InstanceResponse = call(&instance, &event(1 << 20)).await;
        assert!(matches!(done, InstanceResponse::Done), "{done:?}");
    }
    let management = connect(
        &server,
        server.management_addr,
        Role::Management { token: None },
    )
    .await;
    // 20 MiB of events do not fit one reply: the whole list says so...
    let whole: ManagementResponse = call(
        &management,
        &ManagementRequest::ListEvents {
            instance_id: "big-events".into(),
        },
    )
    .await;
    match whole {
        ManagementResponse::Error(error) => {
            assert!(
                error.message.contains("do not fit in one reply"),
                "{error:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // ...and pages of at most REPLAY_PAGE_BYTES list them all, in order.
    let mut after_event_id = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page: ManagementResponse = call(
            &management,
            &ManagementRequest::ListEventsPage {
                instance_id: "big-events".into(),
                after_event_id,
                limit: None,
            },
        )
        .await;
        let ManagementResponse::EventPage { events, more_after } = page else {
            panic!("{page:?}");
        };
        pages += 1;
        let bytes: usize = events
            .iter()
            .map(|e| e.payload.as_ref().map_or(0, |p| p.len()))
            .sum();
        assert!(bytes <= REPLAY_PAGE_BYTES, "a page of {bytes} bytes");
        assert!(!events.is_empty());
        seen.extend(events.iter().map(|e| e.event_id));
        match more_after {
            Some(next) => after_event_id = next,
            None => break,
        }
    }
    let custom = server.persistence.list_events("big-events").await.unwrap();
    let all: Vec<i64> = custom.iter().map(|e| e.event_id).collect();
    assert_eq!(seen, all, "every event once, in order");
    assert!(pages >= 5, "{pages} pages for 20 MiB");
    server.shutdown().await;
}
