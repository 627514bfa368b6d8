//! The README's web service: orders placed over HTTP run as durable workflows of the
//! in-process runtime; a repeated order is the same instance; the service killed with
//! SIGKILL and started again still knows every order.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_order-service");

/// Starts the service on a free port; returns it and its address.
fn start(db: &str) -> (Child, String) {
    let mut child = Command::new(BINARY)
        .args(["--db", db, "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    (child, addr)
}

/// One HTTP/1.1 request; the status code and the body.
fn request(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn orders_run_once_each_and_outlive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("orders.db").display());
    let (mut service, addr) = start(&db);

    let order = r#"{"item": "book", "cents": 1999}"#;
    let (status, receipt) = request(&addr, "POST", "/orders/ORD-1", order);
    assert_eq!(status, 200, "{receipt}");
    let receipt: serde_json::Value = serde_json::from_str(&receipt).unwrap();
    assert_eq!(receipt["payment"], "pay-ORD-1-1999");
    assert_eq!(receipt["shipment"], "ship-ORD-1-book");
    // The same order again is the same instance: the same receipt, nothing re-run.
    let (status, again) = request(&addr, "POST", "/orders/ORD-1", order);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).unwrap(),
        receipt
    );

    let (status, body) = request(&addr, "GET", "/orders/ORD-1", "");
    assert_eq!(
        (status, body.contains(r#""status":"completed""#)),
        (200, true),
        "{body}"
    );
    let (status, _) = request(&addr, "GET", "/orders/ORD-404", "");
    assert_eq!(status, 404);
    // An order that is not one is refused before anything starts.
    let (status, _) = request(&addr, "POST", "/orders/ORD-2", r#"{"cents": "many"}"#);
    assert!((400..500).contains(&status), "{status}");
    let (status, _) = request(&addr, "GET", "/orders/ORD-2", "");
    assert_eq!(status, 404);

    service.kill().unwrap(); // SIGKILL
    service.wait().unwrap();
    let (mut service, addr) = start(&db);
    let (status, body) = request(&addr, "GET", "/orders/ORD-1", "");
    assert_eq!(
        (status, body.contains(r#""status":"completed""#)),
        (200, true),
        "{body}"
    );
    service.kill().unwrap();
    service.wait().unwrap();
}
