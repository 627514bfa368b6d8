//! Hostile clients against a real server process, its memory measured from outside
//! (VmRSS of the server): unauthenticated connections that announce a hello and then
//! flood streams, and an admitted connection that opens many streams announcing 16 MB
//! frames and never finishes them. Before the limits, 6 unauthenticated connections took
//! the server from 647 MB to 1.6 GB and 60 half-written streams to 1.08 GB; now each
//! phase holds only what its windows and budgets allow, half-written requests are cut
//! off at their deadline, and an honest client is still served.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{
    read_frame, write_frame, Hello, HelloReply, InstanceRequest, InstanceResponse,
    ManagementRequest, ManagementResponse, Role, DEFAULT_MAX_FRAME_LEN,
};
use runtara_server::process::ServerProcess;

const SERVER: &str = env!("CARGO_BIN_EXE_runtara-server");
/// RSS growth allowed under each attack.
const BOUND_MB: u64 = 200;

fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb / 1024
}

struct Target {
    server: ServerProcess,
    endpoint: quinn::Endpoint,
}

fn start(extra: &[&str]) -> (tempfile::TempDir, Target) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(SERVER);
    command
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--instance-addr",
            "127.0.0.1:0",
            "--management-addr",
            "127.0.0.1:0",
        ])
        .args(["--instance-threads", "0"])
        .args(extra)
        .env("RUST_LOG", "error")
        .stderr(Stdio::inherit());
    let server = ServerProcess::spawn(command).unwrap();
    let ca_pem = std::fs::read(server.ready.ca_path.as_ref().unwrap()).unwrap();
    let endpoint =
        client_endpoint(&ClientTls::Verify { ca_pem }, server.ready.instance_addr).unwrap();
    (dir, Target { server, endpoint })
}

impl Target {
    async fn connect(&self) -> quinn::Connection {
        let addr = self.server.ready.instance_addr;
        self.endpoint
            .connect(addr, "localhost")
            .unwrap()
            .await
            .unwrap()
    }

    /// An honest instance hello (dev mode: an id the server did not launch), answered.
    async fn honest_hello(&self, instance_id: &str) -> quinn::Connection {
        let connection = self.connect().await;
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        let role = Role::Instance {
            instance_id: instance_id.into(),
            tenant_id: "t".into(),
            credential: None,
        };
        write_frame(&mut send, &Hello::new("honest", role))
            .await
            .unwrap();
        send.finish().unwrap();
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN),
        )
        .await
        .expect("the server answers an honest hello")
        .unwrap();
        assert!(
            matches!(reply, Some(HelloReply::Welcome { .. })),
            "{reply:?}"
        );
        connection
    }
}

/// Writes `bytes` on a new stream of `connection` for at most `for_at_most`, leaving
/// the stream open; false when the stream could not even be opened in that time.
async fn flood_stream(
    connection: quinn::Connection,
    bytes: Vec<u8>,
    for_at_most: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + for_at_most;
    let Ok(Ok((mut send, _recv))) = tokio::time::timeout_at(deadline, connection.open_bi()).await
    else {
        return false;
    };
    let _ = tokio::time::timeout_at(deadline, send.write_all(&bytes)).await;
    // Kept open (never finished) for the rest of the time.
    tokio::time::sleep_until(deadline).await;
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_hold_a_few_kib_each() {
    let (_dir, target) = start(&[]);
    let pid = target.server.pid();
    let before = rss_mb(pid);
    let mut attacks = Vec::new();
    let mut opened = 0usize;
    for _ in 0..6 {
        let connection = target.connect().await;
        // 5 bytes of a hello that announces 100, then a stream flood.
        let (mut send, _recv) = connection.open_bi().await.unwrap();
        send.write_all(&[0, 0, 0, 100, 1]).await.unwrap();
        for _ in 0..127 {
            attacks.push(tokio::spawn(flood_stream(
                connection.clone(),
                vec![7u8; 1_200_000],
                Duration::from_secs(3),
            )));
        }
        // The hello stays incomplete: the connection (and its stream) stay open.
        attacks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop((send, connection));
            false
        }));
    }
    let mut peak = before;
    let started = Instant::now();
    for attack in attacks {
        if attack.await.unwrap() {
            opened += 1;
        }
        peak = peak.max(rss_mb(pid));
    }
    let after = rss_mb(pid);
    peak = peak.max(after);
    eprintln!(
        "unauthenticated flood: RSS {before} MB before, peak {peak} MB, {after} MB after {:?}",
        started.elapsed()
    );
    assert!(
        peak < before + BOUND_MB,
        "6 unauthenticated connections took the server from {before} MB to {peak} MB"
    );
    // Only the hello stream of each connection could be opened.
    assert!(opened <= 6 + 6, "{opened} streams opened before a hello");
    target.honest_hello("honest-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_written_requests_are_bounded_and_cut_off_at_their_deadline() {
    let (_dir, target) = start(&["--request-read-timeout-ms", "2000"]);
    let pid = target.server.pid();
    let before = rss_mb(pid);
    let mut peak = before;
    let mut streams = Vec::new();
    for n in 0..2 {
        let connection = target.honest_hello(&format!("hoarder-{n}")).await;
        for _ in 0..30 {
            let connection = connection.clone();
            streams.push(tokio::spawn(async move {
                let (mut send, mut recv) = connection.open_bi().await.ok()?;
                // Announce 16,000,000 bytes, send 15,000,000, never finish.
                let mut bytes = 16_000_000u32.to_be_bytes().to_vec();
                bytes.extend(std::iter::repeat_n(3u8, 15_000_000));
                let _ = tokio::time::timeout(Duration::from_secs(1), send.write_all(&bytes)).await;
                // The server cuts the request off at its deadline and says why.
                let reply = tokio::time::timeout(
                    Duration::from_secs(10),
                    read_frame::<_, InstanceResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN),
                )
                .await;
                drop(send);
                Some(reply)
            }));
        }
    }
    let mut cut_off = 0;
    for stream in streams {
        peak = peak.max(rss_mb(pid));
        if let Some(Ok(Ok(Some(InstanceResponse::Error(error))))) = stream.await.unwrap() {
            assert!(error.message.contains("did not arrive whole"), "{error:?}");
            cut_off += 1;
        }
    }
    let after = rss_mb(pid);
    eprintln!("half-written requests: RSS {before} MB before, peak {peak} MB, {after} MB after; {cut_off} of 60 cut off with a reason");
    assert!(
        peak < before + BOUND_MB,
        "60 half-written 16 MB requests took the server from {before} MB to {peak} MB"
    );
    assert!(
        cut_off > 0,
        "no half-written request was cut off at its deadline"
    );
    // An honest client is still served.
    let connection = target.honest_hello("honest-2").await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &InstanceRequest::GetStatus { instance_id: None })
        .await
        .unwrap();
    send.finish().unwrap();
    let reply = read_frame::<_, InstanceResponse>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap();
    assert!(reply.is_some());
}

async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    connection: &quinn::Connection,
    request: &Req,
) -> Option<Resp> {
    let (mut send, mut recv) = connection.open_bi().await.ok()?;
    write_frame(&mut send, request).await.ok()?;
    send.finish().ok()?;
    read_frame(&mut recv, DEFAULT_MAX_FRAME_LEN).await.ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_floods_and_their_listings_stay_bounded() {
    // 8 MiB of custom events per instance, so that the whole list fits one reply.
    let (_dir, target) = start(&["--max-event-bytes-per-instance", "8388608"]);
    let pid = target.server.pid();
    let before = rss_mb(pid);
    // An instance sends 20 events of 15 MB: each is refused (64 KiB at most), and
    // events of 64 KiB stop at the instance's quota.
    let instance = target.honest_hello("flood-events").await;
    let _: Option<InstanceResponse> = call(
        &instance,
        &InstanceRequest::Register {
            checkpoint_id: None,
        },
    )
    .await;
    let mut refused = 0;
    for _ in 0..20 {
        let big = InstanceRequest::CustomEvent {
            subtype: "x".into(),
            payload: vec![1u8; 15_000_000].into(),
        };
        if let Some(InstanceResponse::Error(_)) = call(&instance, &big).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 20, "15 MB events are refused");
    let mut stored = 0;
    for _ in 0..200 {
        let event = InstanceRequest::CustomEvent {
            subtype: "x".into(),
            payload: vec![2u8; 64 * 1024].into(),
        };
        if let Some(InstanceResponse::Done) = call(&instance, &event).await {
            stored += 1;
        }
    }
    assert_eq!(stored, 128, "8 MiB of 64 KiB events, then the quota");
    // Listing them, four times over, whole and in pages.
    let ca_pem = std::fs::read(target.server.ready.ca_path.as_ref().unwrap()).unwrap();
    let addr = target.server.ready.management_addr;
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, addr).unwrap();
    let management = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = management.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &Hello::new("lister", Role::Management { token: None }),
    )
    .await
    .unwrap();
    send.finish().unwrap();
    let _ = read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN).await;
    let mut peak = rss_mb(pid);
    for _ in 0..4 {
        let whole: Option<ManagementResponse> = call(
            &management,
            &ManagementRequest::ListEvents {
                instance_id: "flood-events".into(),
            },
        )
        .await;
        assert!(
            matches!(whole, Some(ManagementResponse::Events(_))),
            "the list fits one reply"
        );
        let page: Option<ManagementResponse> = call(
            &management,
            &ManagementRequest::ListEventsPage {
                instance_id: "flood-events".into(),
                after_event_id: 0,
                limit: None,
            },
        )
        .await;
        assert!(matches!(page, Some(ManagementResponse::EventPage { .. })));
        peak = peak.max(rss_mb(pid));
    }
    eprintln!("event flood and listings: RSS {before} MB before, peak {peak} MB");
    assert!(
        peak < before + BOUND_MB,
        "events and their listings took the server from {before} MB to {peak} MB"
    );
}
