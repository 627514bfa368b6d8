//! Hostile input on the instance endpoint: garbage, oversized and truncated frames, a
//! wrong protocol version, and a flood of streams. Each gets a clear error or is cut
//! off; the server stays up and an honest instance running alongside is unaffected.
//! Ids built to reach files (`./victim1`, `../victim1`, absolute paths, NUL, over-long)
//! are refused on both endpoints and never read another tenant's log or a host file.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest, InstanceResponse,
    ManagementRequest, ManagementResponse, Role, WireError, WireInstance, WireSignalType,
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

const TOKEN_A: &str = "tenant-a-token-0123456789";
const TOKEN_B: &str = "tenant-b-token-0123456789";
/// What tenant A's instance prints: must never reach tenant B.
const A_SECRET: &str = "secret-of-tenant-a-7d1f";
/// What a file named `output.log` outside the data dir holds: must never come back.
const HOST_SECRET: &str = "host-file-secret-93c2";

/// Says hello as `role` on `addr`; the connection, or the refusal.
async fn hello_as(
    server: &RunningServer,
    addr: std::net::SocketAddr,
    role: Role,
) -> Result<quinn::Connection, WireError> {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &Hello::new("hostile", role))
        .await
        .unwrap();
    send.finish().unwrap();
    match read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
    {
        HelloReply::Welcome { .. } => Ok(connection),
        HelloReply::Refused(error) => Err(error),
    }
}

async fn manage(
    connection: &quinn::Connection,
    request: &ManagementRequest,
    body: &[u8],
) -> ManagementResponse {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, request).await.unwrap();
    let _ = send.write_all(body).await;
    let _ = send.finish();
    read_frame::<_, ManagementResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
}

/// Fails if `text` holds either secret.
#[track_caller]
fn leaks_nothing(text: &str) {
    assert!(!text.contains(A_SECRET), "tenant A's log leaked: {text}");
    assert!(!text.contains(HOST_SECRET), "a host file leaked: {text}");
}

#[track_caller]
fn invalid_id(response: &ManagementResponse) {
    leaks_nothing(&format!("{response:?}"));
    match response {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidInput, "{error:?}");
            assert!(error.message.contains("invalid"), "{error:?}");
        }
        other => panic!("expected an invalid_input error, got {other:?}"),
    }
}

async fn status(connection: &quinn::Connection, instance_id: &str) -> ManagementResponse {
    let request = ManagementRequest::GetInstanceStatus {
        instance_id: instance_id.into(),
    };
    manage(connection, &request, &[]).await
}

async fn instances_of(connection: &quinn::Connection, tenant_id: &str) -> Vec<WireInstance> {
    let request = ManagementRequest::ListInstances {
        tenant_id: tenant_id.into(),
        status: None,
        limit: None,
        offset: 0,
    };
    match manage(connection, &request, &[]).await {
        ManagementResponse::Instances { instances, .. } => instances,
        other => panic!("{other:?}"),
    }
}

/// Tenant A runs an instance that prints a secret; a file named `output.log` lies outside
/// the data dir. Tenant B, by hand-started instance processes and its management token,
/// tries every id that would once have led to either: each is refused as invalid, and
/// neither secret ever comes back; nor does an invalid id stored in the database (by an
/// older server) make the server read a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_ids_never_read_another_tenants_log_or_a_host_file() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("output.log"), format!("{HOST_SECRET}\n")).unwrap();
    let mut config = ServerConfig::new(&data);
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.max_restarts = 0;
    config.management_tokens = Some(format!("{TOKEN_A} a\n{TOKEN_B} b\n"));
    let server = runtara_server::start(config).await.unwrap();
    let management_role = |token: &str| Role::Management {
        token: Some(token.into()),
    };
    let a = hello_as(&server, server.management_addr, management_role(TOKEN_A))
        .await
        .unwrap();
    let b = hello_as(&server, server.management_addr, management_role(TOKEN_B))
        .await
        .unwrap();

    // Tenant A's instance prints its secret and exits; its log stays on the server.
    let script = format!("#!/bin/sh\necho {A_SECRET}\nexit 1\n");
    let sha256: String = ring::digest::digest(&ring::digest::SHA256, script.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let upload = ManagementRequest::RegisterImage {
        tenant_id: "a".into(),
        name: "printer".into(),
        description: None,
        size_bytes: script.len() as u64,
        sha256,
    };
    let image_id = match manage(&a, &upload, script.as_bytes()).await {
        ManagementResponse::Image(image) => image.image_id,
        other => panic!("{other:?}"),
    };
    let start = |tenant_id: &str, instance_id: &str| ManagementRequest::StartInstance {
        image_id: image_id.clone(),
        tenant_id: tenant_id.into(),
        instance_id: Some(instance_id.into()),
        input: None,
        timeout_ms: None,
    };
    assert!(matches!(
        manage(&a, &start("a", "victim1"), &[]).await,
        ManagementResponse::Started { .. }
    ));
    // Wait until its log shows the secret (it ends `failed`, max_restarts = 0).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match status(&a, "victim1").await {
            ManagementResponse::Instance(i)
                if i.status == "failed"
                    && i.log_tail.as_deref().is_some_and(|t| t.contains(A_SECRET)) =>
            {
                break
            }
            other => assert!(std::time::Instant::now() < deadline, "{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim_folder = runtara_server::valid_ids::instance_folder("victim1");

    let outside_text = outside.display().to_string();
    let hostile: Vec<String> = vec![
        "./victim1".into(),
        "../victim1".into(),
        "../instances/victim1".into(),
        format!("../instance-files/{victim_folder}"),
        format!("./../instance-files/{victim_folder}"),
        "../../outside".into(),
        "../../../outside".into(),
        outside_text.clone(),
        format!("{outside_text}/"),
        "/etc/passwd".into(),
        "a/b".into(),
        "a\\b".into(),
        "..".into(),
        ".".into(),
        "victim1\0".into(),
        "x".repeat(129),
        "y".repeat(10_000),
        String::new(),
    ];

    for id in &hostile {
        // A process started by hand may not register under it, for any tenant.
        let role = Role::Instance {
            instance_id: id.clone(),
            tenant_id: "b".into(),
            credential: None,
        };
        match hello_as(&server, server.instance_addr, role).await {
            Err(error) => {
                assert_eq!(error.code, ErrorCode::InvalidInput, "{id:?}: {error:?}");
                leaks_nothing(&error.message);
            }
            Ok(_) => panic!("the instance endpoint let {id:?} in"),
        }
        // Tenant B's token reads nothing with it, by any management call.
        invalid_id(&status(&b, id).await);
        for request in [
            ManagementRequest::ListEvents {
                instance_id: id.clone(),
            },
            ManagementRequest::ListCheckpoints {
                instance_id: id.clone(),
            },
            ManagementRequest::ListCheckpointsPage {
                instance_id: id.clone(),
                after_seq: 0,
            },
            ManagementRequest::SendSignal {
                instance_id: id.clone(),
                signal: WireSignalType::Cancel,
            },
            ManagementRequest::RetryStep {
                instance_id: id.clone(),
                checkpoint_id: "charge::o-1".into(),
            },
            ManagementRequest::ListInstances {
                tenant_id: id.clone(),
                status: None,
                limit: None,
                offset: 0,
            },
            ManagementRequest::ListImages {
                tenant_id: id.clone(),
            },
            ManagementRequest::GetImage {
                image_id: id.clone(),
            },
        ] {
            invalid_id(&manage(&b, &request, &[]).await);
        }
        // Nor may tenant A start an instance under it: nothing is stored.
        invalid_id(&manage(&a, &start("a", id), &[]).await);
        if !id.is_empty() && id.len() <= 1024 {
            assert!(
                server.persistence.get_instance(id).await.unwrap().is_none(),
                "{id:?}"
            );
        }
    }
    // A valid instance id under an invalid tenant id is refused as well.
    for tenant in ["../a", "a/b", "a\0", ""] {
        let role = Role::Instance {
            instance_id: "fine-1".into(),
            tenant_id: tenant.into(),
            credential: None,
        };
        let error = hello_as(&server, server.instance_addr, role)
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidInput, "{tenant:?}: {error:?}");
    }
    // An instance of B's connection asking for another instance's status by a path id.
    let honest_b = hello_as(
        &server,
        server.instance_addr,
        Role::Instance {
            instance_id: "b-own".into(),
            tenant_id: "b".into(),
            credential: None,
        },
    )
    .await
    .unwrap();
    let get = runtara_protocol::encode_frame(&InstanceRequest::GetStatus {
        instance_id: Some("../victim1".into()),
    })
    .unwrap();
    match raw_request(&honest_b, &get).await {
        Some(InstanceResponse::Error(error)) => {
            assert_eq!(error.code, ErrorCode::InvalidInput, "{error:?}")
        }
        other => panic!("{other:?}"),
    }

    // Ids stored by an older server that accepted anything: listed, but no file is read.
    for id in ["../../outside", outside_text.as_str(), "./victim1"] {
        server
            .persistence
            .create_instance(runtara_core::NewInstance {
                instance_id: id.into(),
                tenant_id: "b".into(),
                image_id: Some(image_id.clone()),
                input: None,
                run_now: false,
                parent_id: None,
                detached: false,
            })
            .await
            .unwrap();
    }
    let listed = instances_of(&b, "b").await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for instance in &listed {
        leaks_nothing(&format!("{instance:?}"));
        assert_eq!(instance.log_tail, None, "{instance:?}");
    }

    // B cannot see A's instance by its real id either, and A still sees its log.
    assert!(matches!(
        status(&b, "victim1").await,
        ManagementResponse::Error(ref e) if e.code == ErrorCode::NotFound
    ));
    match status(&a, "victim1").await {
        ManagementResponse::Instance(i) => {
            assert!(i.log_tail.unwrap().contains(A_SECRET));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("output.log")).unwrap(),
        format!("{HOST_SECRET}\n"),
        "the host file is untouched"
    );
    server.shutdown().await;
}
