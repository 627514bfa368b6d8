//! Before authentication a client must not be able to write into the server's log: a
//! hello's client name is escaped and cut before it is logged (a newline once forged a
//! whole log line), and refused hellos are logged as a count, not a line each (a
//! thousand refused hellos with 60 KiB names once added 58 MiB in 1.65 s).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

use runtara_protocol::endpoint::client_endpoint;
use runtara_protocol::tls::ClientTls;
use runtara_protocol::{read_frame, write_frame, Hello, HelloReply, Role, DEFAULT_MAX_FRAME_LEN};
use runtara_server::process::ServerProcess;

const SERVER: &str = env!("CARGO_BIN_EXE_runtara-server");
const HELLOS: usize = 300;
const FORGED: &str =
    "2026-12-05T00:00:00.000000Z  WARN runtara_server: FAKE admin token rotated by operator";

async fn hello(endpoint: &quinn::Endpoint, addr: std::net::SocketAddr, role: Role, name: &str) {
    let connection = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_frame(&mut send, &Hello::new(name, role))
        .await
        .unwrap();
    send.finish().unwrap();
    let reply = read_frame::<_, HelloReply>(&mut recv, DEFAULT_MAX_FRAME_LEN)
        .await
        .unwrap();
    assert!(matches!(reply, Some(HelloReply::Refused(_))), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_hellos_cannot_forge_or_flood_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    std::fs::write(dir.path().join("tokens"), "secret-token-0123456789 *\n").unwrap();
    let mut command = Command::new(SERVER);
    command
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--instance-addr",
            "127.0.0.1:0",
            "--management-addr",
            "127.0.0.1:0",
        ])
        .arg("--require-instance-credentials")
        .arg("--tokens-file")
        .arg(dir.path().join("tokens"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let server = ServerProcess::spawn(command).unwrap();
    let ca_pem = std::fs::read(server.ready.ca_path.as_ref().unwrap()).unwrap();
    let before = std::fs::metadata(&log).unwrap().len();

    let name = format!("evil\n{FORGED}\n{}", "a".repeat(60 * 1024));
    let instance_addr = server.ready.instance_addr;
    let management_addr = server.ready.management_addr;
    let endpoint = client_endpoint(&ClientTls::Verify { ca_pem }, instance_addr).unwrap();
    for n in 0..HELLOS {
        let instance = Role::Instance {
            instance_id: format!("no-such-{n}"),
            tenant_id: "t".into(),
            credential: None,
        };
        hello(&endpoint, instance_addr, instance, &name).await;
        let management = Role::Management {
            token: Some("wrong-token".into()),
        };
        hello(&endpoint, management_addr, management, &name).await;
    }

    let text = std::fs::read_to_string(&log).unwrap();
    let grown = std::fs::metadata(&log).unwrap().len() - before;
    assert!(
        !text.lines().any(|line| line.starts_with(FORGED)),
        "a client forged a log line:\n{text}"
    );
    assert!(
        grown < 16 * 1024,
        "{} refused hellos with 60 KiB names added {grown} bytes to the log:\n{}",
        2 * HELLOS,
        &text[..text.len().min(4000)]
    );
    let refusals = text.lines().filter(|l| l.contains("hello refused")).count();
    assert!(
        (1..=4).contains(&refusals),
        "refusals are logged as a count, not a line each ({refusals} lines)"
    );
    drop(server);
}
