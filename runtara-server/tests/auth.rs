//! Authentication and tenancy over real QUIC: management tokens scope every call to
//! their tenants, and an instance the server launched must prove its id with the
//! credential the server issued it.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use runtara_core::{NewImage, NewInstance};
use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest, InstanceResponse,
    ManagementRequest, ManagementResponse, Role, WireError, WireSignalType, DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::credentials::{credential_key_path, instance_credential};
use runtara_server::{RunningServer, ServerConfig};

const ADMIN: &str = "admin-token-0123456789";
const TOKEN_A: &str = "tenant-a-token-0123456789";
const TOKEN_B: &str = "tenant-b-token-0123456789";

fn config(dir: &std::path::Path) -> ServerConfig {
    let mut config = ServerConfig::new(dir);
    config.instance_addr = "127.0.0.1:0".parse().unwrap();
    config.management_addr = "127.0.0.1:0".parse().unwrap();
    config.max_restarts = 0;
    config
}

async fn server_with_tokens(dir: &std::path::Path) -> RunningServer {
    let mut config = config(dir);
    config.management_tokens = Some(format!(
        "# test tokens\n{ADMIN} *\n\n{TOKEN_A} a   # tenant a only\n{TOKEN_B} b\n"
    ));
    runtara_server::start(config).await.unwrap()
}

/// Connects to `addr` and says hello as `role`.
async fn connect(
    server: &RunningServer,
    addr: SocketAddr,
    role: Role,
) -> Result<quinn::Connection, WireError> {
    let ca_pem = std::fs::read(server.ca_path.as_ref().unwrap()).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &Hello::new("auth-test", role))
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

async fn management(server: &RunningServer, token: &str) -> quinn::Connection {
    let role = Role::Management {
        token: Some(token.into()),
    };
    connect(server, server.management_addr, role).await.unwrap()
}

fn instance_role(instance_id: &str, tenant_id: &str, credential: Option<String>) -> Role {
    Role::Instance {
        instance_id: instance_id.into(),
        tenant_id: tenant_id.into(),
        credential,
    }
}

async fn instance(
    server: &RunningServer,
    instance_id: &str,
    tenant_id: &str,
    credential: Option<String>,
) -> Result<quinn::Connection, WireError> {
    let role = instance_role(instance_id, tenant_id, credential);
    connect(server, server.instance_addr, role).await
}

async fn request<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    connection: &quinn::Connection,
    request: &Req,
    body: &[u8],
) -> Resp {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, request).await.unwrap();
    // The server may refuse before reading everything; that is fine.
    let _ = send.write_all(body).await;
    let _ = send.finish();
    read_frame::<_, Resp>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap()
        .unwrap()
}

async fn call(connection: &quinn::Connection, req: ManagementRequest) -> ManagementResponse {
    request(connection, &req, &[]).await
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: Result<T, WireError>, code: ErrorCode, needle: &str) {
    let error = result.unwrap_err();
    assert_eq!(error.code, code, "{error:?}");
    assert!(error.message.contains(needle), "{error:?}");
}

#[track_caller]
fn assert_error(response: &ManagementResponse, code: ErrorCode) {
    match response {
        ManagementResponse::Error(error) => assert_eq!(error.code, code, "{error:?}"),
        other => panic!("expected a {code} error, got {other:?}"),
    }
}

/// Registers a tiny image that exits at once (the server marks its instances failed).
async fn register_image(connection: &quinn::Connection, tenant_id: &str) -> String {
    let body = b"#!/bin/sh\nexit 1\n";
    let sha256 = ring::digest::digest(&ring::digest::SHA256, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let req = ManagementRequest::RegisterImage {
        tenant_id: tenant_id.into(),
        name: "w".into(),
        description: None,
        size_bytes: body.len() as u64,
        sha256,
    };
    match request(connection, &req, body).await {
        ManagementResponse::Image(image) => image.image_id,
        other => panic!("{other:?}"),
    }
}

fn start(image_id: &str, tenant_id: &str, instance_id: &str) -> ManagementRequest {
    ManagementRequest::StartInstance {
        image_id: image_id.into(),
        tenant_id: tenant_id.into(),
        instance_id: Some(instance_id.into()),
        input: None,
        timeout_ms: None,
    }
}

fn list_images(tenant_id: &str) -> ManagementRequest {
    ManagementRequest::ListImages {
        tenant_id: tenant_id.into(),
    }
}

fn list_instances(tenant_id: &str) -> ManagementRequest {
    ManagementRequest::ListInstances {
        tenant_id: tenant_id.into(),
        status: None,
        limit: None,
        offset: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_management_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(dir.path()).await;
    let addr = server.management_addr;

    let none = connect(&server, addr, Role::Management { token: None }).await;
    assert_refused(
        none,
        ErrorCode::Unauthorized,
        "requires a management token (set RUNTARA_MANAGEMENT_TOKEN or --token)",
    );
    let empty = Role::Management {
        token: Some(String::new()),
    };
    assert_refused(
        connect(&server, addr, empty).await,
        ErrorCode::Unauthorized,
        "requires a management token",
    );
    for wrong in [
        "tenant-a-token-012345678",
        "x",
        "tenant-a-token-0123456789 ",
    ] {
        let role = Role::Management {
            token: Some(wrong.into()),
        };
        assert_refused(
            connect(&server, addr, role).await,
            ErrorCode::Unauthorized,
            "the management token is not valid",
        );
    }
    // An instance hello on the management endpoint is still the wrong endpoint.
    let role = instance_role("i", "a", None);
    assert_refused(
        connect(&server, addr, role).await,
        ErrorCode::Unsupported,
        "management endpoint",
    );
    management(&server, TOKEN_A).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_token_acts_only_for_its_tenants_and_star_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(dir.path()).await;
    let a = management(&server, TOKEN_A).await;
    let b = management(&server, TOKEN_B).await;
    let admin = management(&server, ADMIN).await;

    let image_a = register_image(&a, "a").await;
    let image_b = register_image(&b, "b").await;
    let upload = ManagementRequest::RegisterImage {
        tenant_id: "b".into(),
        name: "w".into(),
        description: None,
        size_bytes: 1,
        sha256: "00".repeat(32),
    };
    assert_error(&request(&a, &upload, b"x").await, ErrorCode::Unauthorized);
    let started = call(&b, start(&image_b, "b", "inst-b")).await;
    assert!(
        matches!(started, ManagementResponse::Started { created: true, .. }),
        "{started:?}"
    );
    let started = call(&a, start(&image_a, "a", "inst-a")).await;
    assert!(
        matches!(started, ManagementResponse::Started { created: true, .. }),
        "{started:?}"
    );

    // Tenant a sees its own things.
    match call(&a, list_images("a")).await {
        ManagementResponse::Images(images) => assert_eq!(images.len(), 1),
        other => panic!("{other:?}"),
    }
    match call(&a, list_instances("a")).await {
        ManagementResponse::Instances { total, .. } => assert_eq!(total, 1),
        other => panic!("{other:?}"),
    }
    let status = ManagementRequest::GetInstanceStatus {
        instance_id: "inst-a".into(),
    };
    assert!(matches!(
        call(&a, status).await,
        ManagementResponse::Instance(_)
    ));

    // Listing b is unauthorized; b's ids look like missing ones.
    assert_error(&call(&a, list_images("b")).await, ErrorCode::Unauthorized);
    assert_error(
        &call(&a, list_instances("b")).await,
        ErrorCode::Unauthorized,
    );
    assert_error(
        &call(&a, start(&image_b, "b", "x1")).await,
        ErrorCode::Unauthorized,
    );
    assert_error(
        &call(&a, start(&image_b, "a", "x2")).await,
        ErrorCode::NotFound,
    );
    let image_b_id = || image_b.clone();
    let instance_b = || "inst-b".to_owned();
    let hidden = [
        ManagementRequest::GetImage {
            image_id: image_b_id(),
        },
        ManagementRequest::DeleteImage {
            image_id: image_b_id(),
        },
        ManagementRequest::GetInstanceStatus {
            instance_id: instance_b(),
        },
        ManagementRequest::ListEvents {
            instance_id: instance_b(),
        },
        ManagementRequest::ListCheckpoints {
            instance_id: instance_b(),
        },
        ManagementRequest::SendSignal {
            instance_id: instance_b(),
            signal: WireSignalType::Cancel,
        },
    ];
    for req in hidden {
        let response = call(&a, req.clone()).await;
        match &response {
            ManagementResponse::Error(error) => {
                assert_eq!(error.code, ErrorCode::NotFound, "{req:?}: {error:?}");
                assert!(!error.message.contains("tenant"), "{req:?}: {error:?}");
            }
            other => panic!("{req:?}: expected not_found, got {other:?}"),
        }
    }
    // Nothing of b's changed.
    match call(&b, list_images("b")).await {
        ManagementResponse::Images(images) => assert_eq!(images.len(), 1),
        other => panic!("{other:?}"),
    }
    match call(
        &b,
        ManagementRequest::ListEvents {
            instance_id: instance_b(),
        },
    )
    .await
    {
        ManagementResponse::Events(events) => {
            assert!(events.iter().all(|e| e.kind != "signal"), "{events:?}")
        }
        other => panic!("{other:?}"),
    }

    // `*` sees every tenant.
    for (tenant, instance) in [("a", "inst-a"), ("b", "inst-b")] {
        match call(&admin, list_instances(tenant)).await {
            ManagementResponse::Instances { total, .. } => assert_eq!(total, 1),
            other => panic!("{other:?}"),
        }
        let status = ManagementRequest::GetInstanceStatus {
            instance_id: instance.into(),
        };
        assert!(matches!(
            call(&admin, status).await,
            ManagementResponse::Instance(_)
        ));
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_is_read_and_a_malformed_one_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.txt");
    std::fs::write(&file, format!("{TOKEN_A} a\n")).unwrap();
    let mut with_file = config(&dir.path().join("one"));
    with_file.tokens_file = Some(file.clone());
    let server = runtara_server::start(with_file).await.unwrap();
    management(&server, TOKEN_A).await;
    let role = Role::Management {
        token: Some(TOKEN_B.into()),
    };
    assert_refused(
        connect(&server, server.management_addr, role).await,
        ErrorCode::Unauthorized,
        "not valid",
    );
    server.shutdown().await;

    std::fs::write(&file, format!("# ok\n{TOKEN_A} a\nshort-token *\n")).unwrap();
    let mut bad = config(&dir.path().join("two"));
    bad.tokens_file = Some(file.clone());
    let error = runtara_server::start(bad).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("tokens.txt line 3"), "{message}");
    assert!(message.contains("shorter than 16"), "{message}");
}

/// Stores an instance as if the server had launched it (it has an image), without a process.
async fn launched_instance(server: &RunningServer, instance_id: &str, tenant_id: &str) {
    let image = server
        .persistence
        .insert_image(NewImage {
            image_id: format!("img-{instance_id}"),
            tenant_id: tenant_id.into(),
            name: "w".into(),
            description: None,
            sha256: "00".repeat(32),
            size_bytes: 1,
        })
        .await
        .unwrap();
    server
        .persistence
        .create_instance(NewInstance {
            instance_id: instance_id.into(),
            tenant_id: tenant_id.into(),
            image_id: Some(image.image_id),
            input: None,
            run_now: false,
            parent_id: None,
            detached: false,
        })
        .await
        .unwrap();
}

/// The credential of the first launch of `instance_id` (which registers epoch 1).
fn credential(dir: &std::path::Path, instance_id: &str) -> String {
    launch_credential(dir, instance_id, 1)
}

/// The credential of the launch of `instance_id` that registers `epoch`.
fn launch_credential(dir: &std::path::Path, instance_id: &str, epoch: i64) -> String {
    let secret = std::fs::read(credential_key_path(dir)).unwrap();
    instance_credential(&secret, instance_id, epoch)
}

async fn register(connection: &quinn::Connection) -> InstanceResponse {
    let req = InstanceRequest::Register {
        checkpoint_id: None,
    };
    request(connection, &req, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_is_bound_to_one_launch_and_dies_with_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let server = runtara_server::start(config(dir.path())).await.unwrap();
    launched_instance(&server, "inst-l", "a").await;
    let first = credential(dir.path(), "inst-l");

    // The launched process registers its launch's epoch.
    let process = instance(&server, "inst-l", "a", Some(first.clone()))
        .await
        .unwrap();
    match register(&process).await {
        InstanceResponse::Registered { epoch, .. } => assert_eq!(epoch, 1),
        other => panic!("{other:?}"),
    }
    // A second process holding the same credential cannot register, so it cannot take
    // the instance from the launched process (before: it took epoch 2 and fenced it out).
    let thief = instance(&server, "inst-l", "a", Some(first.clone()))
        .await
        .unwrap();
    match register(&thief).await {
        InstanceResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::Unauthorized, "{error:?}");
            assert!(error.message.contains("registers once"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server
            .persistence
            .get_instance("inst-l")
            .await
            .unwrap()
            .unwrap()
            .epoch,
        1,
        "the launched process keeps the instance"
    );

    // A relaunch registers epoch 2 under its own credential; the first one is dead.
    let relaunched = instance(
        &server,
        "inst-l",
        "a",
        Some(launch_credential(dir.path(), "inst-l", 2)),
    )
    .await
    .unwrap();
    match register(&relaunched).await {
        InstanceResponse::Registered { epoch, .. } => assert_eq!(epoch, 2),
        other => panic!("{other:?}"),
    }
    assert_refused(
        instance(&server, "inst-l", "a", Some(first)).await,
        ErrorCode::Unauthorized,
        "a newer run (epoch 2) has taken over",
    );
    // A credential minted for a later epoch than this launch's is no credential at all
    // without the key; one for the current launch works until the instance finishes.
    let done = InstanceRequest::Completed {
        epoch: 2,
        output: b"{}".to_vec().into(),
    };
    assert!(matches!(
        request::<_, InstanceResponse>(&relaunched, &done, &[]).await,
        InstanceResponse::Done
    ));
    assert_refused(
        instance(
            &server,
            "inst-l",
            "a",
            Some(launch_credential(dir.path(), "inst-l", 2)),
        )
        .await,
        ErrorCode::Unauthorized,
        "the credential of a finished instance admits nothing",
    );
    server.shutdown().await;
}

async fn get_status(connection: &quinn::Connection, of: Option<&str>) -> InstanceResponse {
    let req = InstanceRequest::GetStatus {
        instance_id: of.map(str::to_owned),
    };
    request(connection, &req, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_instance_must_present_its_own_credential() {
    let dir = tempfile::tempdir().unwrap();
    let server = runtara_server::start(config(dir.path())).await.unwrap();
    launched_instance(&server, "inst-1", "a").await;
    launched_instance(&server, "inst-2", "a").await;
    launched_instance(&server, "inst-9", "b").await;
    let right = credential(dir.path(), "inst-1");

    assert_refused(
        instance(&server, "inst-1", "a", None).await,
        ErrorCode::Unauthorized,
        "must present its credential",
    );
    assert_refused(
        instance(
            &server,
            "inst-1",
            "a",
            Some(credential(dir.path(), "inst-2")),
        )
        .await,
        ErrorCode::Unauthorized,
        "not valid for instance `inst-1`",
    );
    assert_refused(
        instance(&server, "inst-1", "a", Some("zz".into())).await,
        ErrorCode::Unauthorized,
        "not valid",
    );
    assert_refused(
        instance(&server, "inst-1", "b", Some(right.clone())).await,
        ErrorCode::TenantMismatch,
        "not registered for tenant `b`",
    );

    let connection = instance(&server, "inst-1", "a", Some(right)).await.unwrap();
    assert!(matches!(
        get_status(&connection, None).await,
        InstanceResponse::Status(_)
    ));
    // Another instance of the same tenant is visible; another tenant's is not found.
    assert!(matches!(
        get_status(&connection, Some("inst-2")).await,
        InstanceResponse::Status(_)
    ));
    match get_status(&connection, Some("inst-9")).await {
        InstanceResponse::Error(error) => assert_eq!(error.code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    server.shutdown().await;

    // The key persists: a restarted server accepts credentials minted with it (for an
    // id it does not hold: the stored ones were launched at the restart, and their
    // 1-byte images failed, which ends their credentials).
    let server = runtara_server::start(config(dir.path())).await.unwrap();
    instance(
        &server,
        "inst-new",
        "a",
        Some(credential(dir.path(), "inst-new")),
    )
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlaunched_instances_need_a_credential_only_when_required() {
    let dir = tempfile::tempdir().unwrap();
    let server = runtara_server::start(config(dir.path())).await.unwrap();
    // Dev mode: an instance the server did not launch connects without a credential...
    let connection = instance(&server, "by-hand", "a", None).await.unwrap();
    match get_status(&connection, None).await {
        InstanceResponse::Error(error) => assert_eq!(error.code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
    // ...but loses the id as soon as the server launches an instance of it.
    launched_instance(&server, "by-hand", "a").await;
    match get_status(&connection, None).await {
        InstanceResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::Unauthorized, "{error:?}");
            assert!(error.message.contains("no credential"), "{error:?}");
        }
        other => panic!("{other:?}"),
    }
    server.shutdown().await;

    let mut strict = config(dir.path());
    strict.require_instance_credentials = true;
    let server = runtara_server::start(strict).await.unwrap();
    assert_refused(
        instance(&server, "unknown", "a", None).await,
        ErrorCode::Unauthorized,
        "requires instance credentials",
    );
    // An id that exists (launched above) is refused in the same words as one that does
    // not: the instance port does not tell which ids exist.
    let unknown = instance(&server, "unknown", "a", None).await.unwrap_err();
    let existing = instance(&server, "by-hand", "a", None).await.unwrap_err();
    let other_tenant = instance(&server, "by-hand", "b", None).await.unwrap_err();
    for refusal in [&existing, &other_tenant] {
        assert_eq!(refusal.code, unknown.code, "{refusal:?}");
        assert_eq!(
            refusal.message.replace("by-hand", "unknown"),
            unknown.message,
            "{refusal:?}"
        );
    }
    instance(
        &server,
        "unknown",
        "a",
        Some(credential(dir.path(), "unknown")),
    )
    .await
    .unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_step_clears_a_failure_only_for_the_instances_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_tokens(dir.path()).await;
    let a = management(&server, TOKEN_A).await;
    let b = management(&server, TOKEN_B).await;
    // A running instance of tenant b whose step `charge::o-1` failed for good.
    let store = &server.persistence;
    let epoch = store
        .register_instance("steps-b", "b", None)
        .await
        .unwrap()
        .epoch;
    store
        .record_step_failure("steps-b", epoch, "charge::o-1", "card declined")
        .await
        .unwrap();
    let retry = ManagementRequest::RetryStep {
        instance_id: "steps-b".into(),
        checkpoint_id: "charge::o-1".into(),
    };

    // Tenant a's token finds nothing to clear, says nothing of the tenant, changes nothing.
    match call(&a, retry.clone()).await {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::NotFound, "{error:?}");
            assert!(!error.message.contains("tenant"), "{error:?}");
        }
        other => panic!("expected not_found, got {other:?}"),
    }
    let failures = store.load_replay("steps-b").await.unwrap().failures;
    assert_eq!(
        failures,
        [("charge::o-1".to_owned(), "card declined".to_owned())]
    );

    // Tenant b's token clears it.
    assert_eq!(call(&b, retry).await, ManagementResponse::Done);
    assert!(store
        .load_replay("steps-b")
        .await
        .unwrap()
        .failures
        .is_empty());
    server.shutdown().await;
}
