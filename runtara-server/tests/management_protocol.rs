//! The management endpoint at the wire level: inputs no well-behaved SDK sends
//! (corrupt or cut-short uploads, invalid JSON, garbage frames, the wrong role) get a
//! clear error and change nothing.
#![allow(clippy::unwrap_used)]

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ByteBuf, ErrorCode, Hello, HelloReply, ManagementRequest,
    ManagementResponse, Role, DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::{RunningServer, ServerConfig};

struct Fixture {
    server: RunningServer,
    connection: quinn::Connection,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.max_image_bytes = 1024 * 1024;
    let server = runtara_server::start(config).await.unwrap();
    let connection = connect(&server, Role::Management { token: None })
        .await
        .unwrap();
    Fixture {
        server,
        connection,
        dir,
    }
}

/// Connects to the management endpoint and says hello as `role`.
async fn connect(server: &RunningServer, role: Role) -> Result<quinn::Connection, String> {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, server.management_addr).unwrap();
    let connection = endpoint
        .connect(server.management_addr, "localhost")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &Hello::new("test", role))
        .await
        .unwrap();
    send.finish().unwrap();
    match read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
    {
        HelloReply::Welcome { .. } => Ok(connection),
        HelloReply::Refused(error) => Err(error.message),
    }
}

/// One request; `body` is written raw after the frame (image bytes).
async fn call(
    connection: &quinn::Connection,
    request: &ManagementRequest,
    body: &[u8],
) -> ManagementResponse {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, request).await.unwrap();
    // The server may refuse before reading everything; that is fine.
    let _ = send.write_all(body).await;
    let _ = send.finish();
    read_frame::<_, ManagementResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn register(size: u64, sha: String) -> ManagementRequest {
    ManagementRequest::RegisterImage {
        tenant_id: "t".into(),
        name: "w".into(),
        description: None,
        size_bytes: size,
        sha256: sha,
    }
}

#[track_caller]
fn assert_error(response: &ManagementResponse, code: ErrorCode, needle: &str) {
    match response {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, code, "{error:?}");
            assert!(error.message.contains(needle), "{error:?}");
        }
        other => panic!("expected a {code} error, got {other:?}"),
    }
}

async fn images(connection: &quinn::Connection) -> usize {
    match call(
        connection,
        &ManagementRequest::ListImages {
            tenant_id: "t".into(),
        },
        &[],
    )
    .await
    {
        ManagementResponse::Images(images) => images.len(),
        other => panic!("{other:?}"),
    }
}

/// Files in the image store (uploads in progress included).
fn stored_files(fixture: &Fixture) -> usize {
    std::fs::read_dir(fixture.dir.path().join("images"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_cut_short_and_oversized_uploads_store_nothing() {
    let f = fixture().await;
    // A script (images must be executable here), padded to several upload chunks.
    let mut bytes = b"#!/bin/sh\nexit 0\n#".to_vec();
    bytes.resize(300_000, b'7');

    let corrupt = call(&f.connection, &register(300_000, sha256(b"other")), &bytes).await;
    assert_error(&corrupt, ErrorCode::InvalidInput, "corrupted");
    let short = call(
        &f.connection,
        &register(300_000, sha256(&bytes)),
        &bytes[..1000],
    )
    .await;
    assert_error(&short, ErrorCode::InvalidInput, "cut short");
    let long = call(&f.connection, &register(1000, sha256(&bytes)), &bytes).await;
    assert_error(&long, ErrorCode::InvalidInput, "longer than");
    let huge = call(&f.connection, &register(1 << 40, sha256(&bytes)), &[]).await;
    assert_error(&huge, ErrorCode::InvalidInput, "at most");
    let not_a_digest = call(&f.connection, &register(300_000, "xyz".into()), &bytes).await;
    assert_error(&not_a_digest, ErrorCode::InvalidInput, "not a SHA-256");
    assert_eq!(images(&f.connection).await, 0);
    assert_eq!(stored_files(&f), 0, "no partial upload left behind");

    // The same connection still works: a good upload goes through.
    let good = call(&f.connection, &register(300_000, sha256(&bytes)), &bytes).await;
    assert!(
        matches!(good, ManagementResponse::Image(ref i) if i.version == 1),
        "{good:?}"
    );
    assert_eq!(images(&f.connection).await, 1);
    assert_eq!(stored_files(&f), 1);
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_input_and_garbage_frames_are_refused() {
    let f = fixture().await;
    let bytes = b"#!/bin/sh\nexit 0\n".to_vec();
    let image_id = match call(
        &f.connection,
        &register(bytes.len() as u64, sha256(&bytes)),
        &bytes,
    )
    .await
    {
        ManagementResponse::Image(image) => image.image_id,
        other => panic!("{other:?}"),
    };
    let start = ManagementRequest::StartInstance {
        image_id,
        tenant_id: "t".into(),
        instance_id: Some("i-1".into()),
        input: Some(ByteBuf::from(b"{\"order\": ".to_vec())),
        timeout_ms: None,
    };
    let response = call(&f.connection, &start, &[]).await;
    assert_error(&response, ErrorCode::InvalidInput, "not valid JSON");
    assert!(f
        .server
        .persistence
        .get_instance("i-1")
        .await
        .unwrap()
        .is_none());

    // A frame that does not decode as a request.
    let (mut send, mut recv) = f.connection.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    send.finish().unwrap();
    let response = read_frame::<_, ManagementResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(response, ManagementResponse::Error(ref e) if e.code == ErrorCode::Malformed),
        "{response:?}"
    );

    // An instance's hello on the management endpoint is refused.
    let refused = connect(
        &f.server,
        Role::Instance {
            instance_id: "i".into(),
            tenant_id: "t".into(),
            credential: None,
        },
    )
    .await
    .unwrap_err();
    assert!(refused.contains("management endpoint"), "{refused}");

    // The server is still up for everyone else.
    let pong = call(&f.connection, &ManagementRequest::Ping, &[]).await;
    assert!(matches!(pong, ManagementResponse::Pong { .. }));
    f.server.shutdown().await;
}

/// A file this machine cannot run is refused at registration with a clear error, and
/// nothing is stored: a README, an ELF binary for another architecture.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_file_or_a_binary_for_another_machine_is_refused_at_registration() {
    let f = fixture().await;
    let readme = b"# Runtara\n\nDurable functions for Rust.\n".to_vec();
    let mut foreign = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    foreign.extend_from_slice(&[0; 8]);
    foreign.extend_from_slice(&2u16.to_le_bytes());
    // aarch64 on an x86_64 host, x86_64 anywhere else.
    let machine: u16 = if std::env::consts::ARCH == "aarch64" {
        62
    } else {
        183
    };
    foreign.extend_from_slice(&machine.to_le_bytes());
    foreign.resize(4096, 0);
    for (bytes, needle) in [
        (&readme, "it is text"),
        (&foreign, "it is an ELF binary for"),
    ] {
        let response = call(
            &f.connection,
            &register(bytes.len() as u64, sha256(bytes)),
            bytes,
        )
        .await;
        assert_error(&response, ErrorCode::InvalidInput, needle);
        assert_error(
            &response,
            ErrorCode::InvalidInput,
            "not an executable for this server",
        );
    }
    assert_eq!(images(&f.connection).await, 0);
    assert_eq!(stored_files(&f), 0, "nothing stored");
    // The head of the server's own binary passes as a native executable.
    let mut native = std::fs::read(env!("CARGO_BIN_EXE_runtara-server")).unwrap();
    native.truncate(4096);
    let good = call(
        &f.connection,
        &register(native.len() as u64, sha256(&native)),
        &native,
    )
    .await;
    assert!(matches!(good, ManagementResponse::Image(_)), "{good:?}");
    f.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_pages_keep_to_their_limit_and_name_no_unknown_instance() {
    let fixture = fixture().await;
    let store = &fixture.server.persistence;
    store.register_instance("paged", "t", None).await.unwrap();
    for n in 0..5u8 {
        store
            .record_custom_event(
                "paged",
                "step",
                &[n; 10],
                &runtara_core::EventQuota::default(),
            )
            .await
            .unwrap();
    }
    let page = |after_event_id: i64, limit: Option<u32>| ManagementRequest::ListEventsPage {
        instance_id: "paged".into(),
        after_event_id,
        limit,
    };
    let read = |response: ManagementResponse| match response {
        ManagementResponse::EventPage { events, more_after } => (events, more_after),
        other => panic!("expected a page, got {other:?}"),
    };
    // `registered`, then five custom events: two, then one (a limit of 0 is 1), then the
    // rest with nothing more to follow.
    let (first, more) = read(call(&fixture.connection, &page(0, Some(2)), b"").await);
    assert_eq!(first.len(), 2);
    assert_eq!(more, Some(first[1].event_id));
    let (second, more) =
        read(call(&fixture.connection, &page(first[1].event_id, Some(0)), b"").await);
    assert_eq!((second.len(), more), (1, Some(second[0].event_id)));
    let (rest, more) = read(call(&fixture.connection, &page(second[0].event_id, None), b"").await);
    assert_eq!((rest.len(), more), (3, None));
    let payloads: Vec<_> = first
        .iter()
        .chain(&second)
        .chain(&rest)
        .filter(|e| e.kind == "custom")
        .map(|e| e.payload.as_ref().unwrap()[0])
        .collect();
    assert_eq!(payloads, [0, 1, 2, 3, 4]);
    // The whole list in one reply (old clients) while it fits.
    match call(
        &fixture.connection,
        &ManagementRequest::ListEvents {
            instance_id: "paged".into(),
        },
        b"",
    )
    .await
    {
        ManagementResponse::Events(events) => assert_eq!(events.len(), 6),
        other => panic!("{other:?}"),
    }
    let unknown = ManagementRequest::ListEventsPage {
        instance_id: "no-such-instance".into(),
        after_event_id: 0,
        limit: None,
    };
    assert_error(
        &call(&fixture.connection, &unknown, b"").await,
        ErrorCode::NotFound,
        "no-such-instance",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_instances_is_bounded_whatever_the_limit() {
    let fixture = fixture().await;
    let store = fixture.server.persistence.clone();
    let creates: Vec<_> = (0..1005)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_instance(runtara_core::NewInstance {
                        instance_id: format!("many-{n}"),
                        tenant_id: "many".into(),
                        ..runtara_core::NewInstance::default()
                    })
                    .await
                    .unwrap();
            })
        })
        .collect();
    for create in creates {
        create.await.unwrap();
    }
    let list = |limit: Option<u32>, offset: u32| ManagementRequest::ListInstances {
        tenant_id: "many".into(),
        status: None,
        limit,
        offset,
    };
    for limit in [None, Some(5000)] {
        match call(&fixture.connection, &list(limit, 0), b"").await {
            ManagementResponse::Instances { instances, total } => {
                assert_eq!((instances.len(), total), (1000, 1005), "{limit:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    match call(&fixture.connection, &list(None, 1000), b"").await {
        ManagementResponse::Instances { instances, total } => {
            assert_eq!((instances.len(), total), (5, 1005));
        }
        other => panic!("{other:?}"),
    }
}
