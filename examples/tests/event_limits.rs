//! Custom events against a real server process (issue 17.3). Before: 20 events of 15 MB
//! from a failed instance's credential were stored in 2.2 s, `runtara-ctl events` then
//! failed (`frame of 300000716 bytes`) and four listings took the server to 1.7 GB.
//! Now a client holding a launched instance's credential, talking the raw protocol,
//! is refused past each quota and stores nothing more, is refused once the instance has
//! completed (while the server's own `exited` event is still recorded), and 50 MiB of
//! its events are listed in pages, four listings at once, with the server's memory
//! bounded; an old client's whole-list request gets a clear error.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtara_management_sdk::{RegisterImageOptions, StartInstanceOptions};
use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, ByteBuf, ErrorCode, Hello, HelloReply, InstanceRequest,
    InstanceResponse, ManagementRequest, ManagementResponse, Role, DEFAULT_MAX_FRAME_LEN,
    REPLAY_PAGE_BYTES,
};
use support::*;

const MIB: usize = 1 << 20;
/// The server's peak RSS allowed while the events are written.
const RSS_BOUND_MB: u64 = 300;
/// The server's peak RSS allowed while four listings of 50 MiB of events run at once:
/// measured at about 95 MB when pages are read from storage page by page, about 215 MB
/// when each page is cut from the whole list read into memory.
const LISTING_BOUND_MB: u64 = 150;

/// An image that hands its launch credential to the test (a file in `handoff`) and
/// stays alive until the test creates `handoff/stop` (or a minute has passed).
fn credential_image(handoff: &Path) -> Vec<u8> {
    let d = handoff.display();
    format!(
        "#!/bin/sh\n\
         printf %s \"$RUNTARA_INSTANCE_CREDENTIAL\" > '{d}/credential.tmp'\n\
         mv '{d}/credential.tmp' '{d}/credential'\n\
         i=0\n\
         while [ ! -e '{d}/stop' ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n"
    )
    .into_bytes()
}

/// Creates the stop file when dropped, so the image's process ends with the test.
struct Stop(PathBuf);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"");
    }
}

async fn connect(server: &Server, addr: std::net::SocketAddr) -> quinn::Connection {
    let ca_pem = std::fs::read(&server.ca_path).unwrap();
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    endpoint.connect(addr, "localhost").unwrap().await.unwrap()
}

async fn hello(connection: &quinn::Connection, role: Role) {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &Hello::new("event-limits-test", role))
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
}

async fn call<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
    connection: &quinn::Connection,
    request: &Q,
) -> A {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, request).await.unwrap();
    send.finish().unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN),
    )
    .await
    .expect("the server answers")
    .unwrap()
    .unwrap()
}

fn event(subtype: &str, payload: Vec<u8>) -> InstanceRequest {
    InstanceRequest::CustomEvent {
        subtype: subtype.into(),
        payload: ByteBuf::from(payload),
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

/// Waits (with a deadline) for a file to appear and returns its contents.
async fn wait_for_file(path: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_events_are_bounded_refused_after_the_end_and_listed_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let handoff = tempfile::tempdir().unwrap();
    let _stop = Stop(handoff.path().join("stop"));
    let server = Server::start(
        dir.path(),
        0,
        0,
        &[
            // The test's client is the instance's run: no relaunch while it works.
            "--heartbeat-timeout-ms",
            "600000",
            "--require-instance-credentials",
            "--max-event-bytes",
            "1048576",
            "--max-events-per-instance",
            "60",
            "--max-event-bytes-per-instance",
            "52428800",
        ],
    );
    let sdk = Arc::new(server.client().await);
    let image = sdk
        .register_image(RegisterImageOptions::new(
            "acme",
            "chatty",
            credential_image(handoff.path()),
        ))
        .await
        .unwrap();
    let id = sdk
        .start_instance(StartInstanceOptions::new(&image.image_id, "acme"))
        .await
        .unwrap()
        .instance_id;
    let credential = wait_for_file(&handoff.path().join("credential")).await;

    // The launched instance's credential, on a client of its own.
    let instance = connect(&server, server.instance_addr).await;
    let role = Role::Instance {
        instance_id: id.clone(),
        tenant_id: "acme".into(),
        credential: Some(credential),
    };
    hello(&instance, role).await;
    let register = InstanceRequest::RegisterPaged {
        checkpoint_id: None,
    };
    let epoch = match call(&instance, &register).await {
        InstanceResponse::RegisteredPage { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };

    // 50 events of 1 MiB fill the bytes quota (50 MiB); one byte more is refused.
    let writes = Instant::now();
    for n in 0..50u8 {
        let response: InstanceResponse =
            call(&instance, &event(&format!("chunk-{n}"), vec![n; MIB])).await;
        assert!(matches!(response, InstanceResponse::Done), "{response:?}");
    }
    let writes = writes.elapsed();
    refused(
        call(&instance, &event("more", vec![1])).await,
        ErrorCode::InvalidInput,
        "has recorded 52428800 bytes of custom events; 1 more would pass its quota",
    );
    refused(
        call(&instance, &event("huge", vec![0; MIB + 1])).await,
        ErrorCode::InvalidInput,
        "at most 1048576 are allowed per event (`max_event_bytes`)",
    );
    // Ten empty events reach the count quota of 60; the next is refused.
    for _ in 0..10 {
        let response: InstanceResponse = call(&instance, &event("tick", Vec::new())).await;
        assert!(matches!(response, InstanceResponse::Done), "{response:?}");
    }
    refused(
        call(&instance, &event("tick", Vec::new())).await,
        ErrorCode::InvalidInput,
        &format!("instance `{id}` has reached its quota of 60 custom events"),
    );

    // Four listings at once, each read in pages. The server's high-water mark is reset
    // first (`clear_refs`), so it then tells the listings' peak.
    let writes_peak = server.memory_mb("VmHWM");
    let rss_before = server.memory_mb("VmRSS");
    std::fs::write(format!("/proc/{}/clear_refs", server.pid()), b"5").unwrap();
    let listings: Vec<_> = (0..4)
        .map(|_| {
            let (sdk, id) = (sdk.clone(), id.clone());
            tokio::spawn(async move { sdk.list_events(&id).await.unwrap() })
        })
        .collect();
    for listing in listings {
        let events = listing.await.unwrap();
        let custom: Vec<_> = events.iter().filter(|e| e.kind == "custom").collect();
        assert_eq!(custom.len(), 60, "refused events stored nothing");
        for (n, e) in custom.iter().take(50).enumerate() {
            let payload = e.payload.as_deref().unwrap();
            assert_eq!((payload.len(), payload[0]), (MIB, n as u8));
        }
        assert!(events.windows(2).all(|w| w[0].event_id < w[1].event_id));
    }
    // Page by page: each reply bounded (or one event), the same events.
    let (mut after, mut pages, mut seen) = (0, 0, 0);
    loop {
        let page = sdk.list_events_page(&id, after, None).await.unwrap();
        let bytes: usize = page
            .events
            .iter()
            .map(|e| e.payload.as_ref().map_or(0, Vec::len))
            .sum();
        assert!(
            page.events.len() == 1 || bytes <= REPLAY_PAGE_BYTES,
            "{bytes}"
        );
        seen += page.events.len();
        pages += 1;
        match page.more_after {
            Some(next) => after = next,
            None => break,
        }
    }
    assert!(
        pages >= 13,
        "50 MiB in pages of at most 4 MiB: {pages} pages"
    );
    // runtara-ctl reads them in pages as well.
    let ctl = std::process::Command::new(runtara_server::process::workspace_binary("runtara-ctl"))
        .args(["--addr", &server.management_addr.to_string()])
        .arg("--ca-cert")
        .arg(&server.ca_path)
        .args(["events", &id])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&ctl.stdout);
    assert!(
        ctl.status.success(),
        "runtara-ctl events failed: {}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    assert_eq!(
        table.lines().count(),
        1 + seen,
        "a header and a row per event"
    );
    assert!(table.contains("chunk-49"), "{table}");
    // An old client's whole-list request: refused in clear words, nothing held.
    let management = connect(&server, server.management_addr).await;
    hello(&management, Role::Management { token: None }).await;
    let whole = ManagementRequest::ListEvents {
        instance_id: id.clone(),
    };
    match call(&management, &whole).await {
        ManagementResponse::Error(error) => {
            assert_eq!(error.code, ErrorCode::InvalidInput, "{error:?}");
            assert!(
                error.message.contains("do not fit in one reply"),
                "{error:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let peak = server.memory_mb("VmHWM");
    eprintln!(
        "event limits: 50 MiB written in {writes:?}, server peak RSS {writes_peak} MB so far; \
         listed {seen} events in {pages} pages; RSS {rss_before} MB before the listings, \
         peak {peak} MB during four listings at once and an old client's whole-list request"
    );
    assert!(
        writes_peak < RSS_BOUND_MB,
        "the server's RSS reached {writes_peak} MB while events were written (bound {RSS_BOUND_MB} MB)"
    );
    assert!(
        peak < LISTING_BOUND_MB,
        "the server's RSS reached {peak} MB while listing (bound {LISTING_BOUND_MB} MB)"
    );

    // Completed: the instance records no custom event any more, and stores none.
    let done = InstanceRequest::Completed {
        epoch,
        output: ByteBuf::from(b"{}".to_vec()),
    };
    let response: InstanceResponse = call(&instance, &done).await;
    assert!(matches!(response, InstanceResponse::Done), "{response:?}");
    refused(
        call(&instance, &event("late", vec![1])).await,
        ErrorCode::Terminal,
        "is completed",
    );
    // The server's own events are not custom events: its process's exit is recorded.
    drop(_stop);
    let started = Instant::now();
    let events = loop {
        let events = sdk.list_events(&id).await.unwrap();
        if events.iter().any(|e| e.kind == "exited") {
            break events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the process's exit was never recorded: {:?}",
            events.iter().map(|e| &e.kind).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let custom = events.iter().filter(|e| e.kind == "custom").count();
    assert_eq!(custom, 60, "nothing was stored after the end");
    assert_eq!(
        sdk.get_instance_status(&id).await.unwrap().status,
        "completed"
    );
}
