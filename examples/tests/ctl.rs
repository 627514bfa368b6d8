//! `runtara-ctl` against a real server: the README walk-through as a test.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use support::{ctl, Server, WORKFLOW};

fn ctl_binary() -> PathBuf {
    runtara_server::process::workspace_binary("runtara-ctl")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "runtara-ctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn register_start_wait_status_with_runtara_ctl() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 0, 0, &[]);

    let image_id = stdout(&ctl(
        &server,
        &["register", WORKFLOW, "--tenant", "acme", "--name", "orders"],
    ));
    assert!(image_id.starts_with("img-"), "{image_id}");
    let instance_id = stdout(&ctl(
        &server,
        &[
            "start",
            &image_id,
            "--tenant",
            "acme",
            "--input",
            r#"{"order_id": "ORD-7", "steps": 3}"#,
        ],
    ));
    let waited = stdout(&ctl(&server, &["wait", &instance_id]));
    assert!(waited.contains("completed"), "{waited}");
    let status: serde_json::Value =
        serde_json::from_str(&stdout(&ctl(&server, &["--json", "status", &instance_id]))).unwrap();
    assert_eq!(status["status"], "completed", "{status}");
    let listed = stdout(&ctl(&server, &["list", "--tenant", "acme"]));
    assert!(listed.contains(&instance_id), "{listed}");
    let images = stdout(&ctl(&server, &["images", "--tenant", "acme"]));
    assert!(images.contains("orders"), "{images}");
    let events = stdout(&ctl(&server, &["events", &instance_id]));
    assert!(events.contains("completed"), "{events}");

    // Meaningful exit codes: refused (1), usage (2), cannot connect (3).
    let missing = ctl(&server, &["status", "no-such-instance"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad_json = ctl(
        &server,
        &["start", &image_id, "--tenant", "acme", "--input", "{oops"],
    );
    assert_eq!(bad_json.status.code(), Some(2));
    let nowhere = Command::new(ctl_binary())
        .args([
            "--addr",
            "127.0.0.1:9",
            "--insecure",
            "--connect-timeout-ms",
            "300",
            "health",
        ])
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(3));
    // Skipping verification is never silent: one warning, on stderr.
    let stderr = String::from_utf8_lossy(&nowhere.stderr);
    assert_eq!(
        stderr
            .matches("TLS certificate verification is OFF")
            .count(),
        1,
        "{stderr}"
    );
    // Verifying clients say nothing of it.
    let verified = ctl(&server, &["status", &instance_id]);
    let stderr = String::from_utf8_lossy(&verified.stderr);
    assert!(!stderr.contains("verification is OFF"), "{stderr}");
}

/// A `--ca-cert` that is missing or not PEM is a usage error (2), not "cannot connect" (3).
#[test]
fn a_ca_cert_that_is_missing_or_not_pem_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# Runtara\nnot a certificate\n").unwrap();
    let elf = dir.path().join("binary");
    std::fs::write(&elf, b"\x7fELF\x02\x01\x01\0garbage").unwrap();
    let missing = dir.path().join("missing.pem");
    for (ca, needle) in [
        (&readme, "not a PEM certificate"),
        (&elf, "not a PEM certificate"),
        (&missing, "cannot read"),
    ] {
        let output = Command::new(ctl_binary())
            .args(["--addr", "127.0.0.1:9", "--connect-timeout-ms", "300"])
            .arg("--ca-cert")
            .arg(ca)
            .arg("health")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}: {stderr}", ca.display());
        assert!(stderr.contains(needle), "{stderr}");
    }
}

/// Without `--ca-cert`, a loopback `--addr` trusts `./runtara-data/tls/ca.pem` whichever
/// way it names this machine: `127.0.0.1`, `[::1]` or `localhost`. `localhost` reaches a
/// server listening on `::1` only as well as one on `127.0.0.1` (both loopback addresses
/// are tried, whatever the resolver lists first).
#[test]
fn localhost_and_ipv6_loopback_trust_the_local_dev_certificate() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("runtara-data");
    let health = |addr: &str| {
        Command::new(ctl_binary())
            .current_dir(cwd.path())
            .env_remove("RUNTARA_CA_CERT")
            .args(["--addr", addr, "--connect-timeout-ms", "5000", "health"])
            .output()
            .unwrap()
    };
    for bind in ["127.0.0.1", "[::1]"] {
        let mut command = Command::new(runtara_server::process::workspace_binary("runtara-server"));
        command
            .arg("--data-dir")
            .arg(&data)
            .args(["--instance-addr", &format!("{bind}:0")])
            .args(["--management-addr", &format!("{bind}:0")])
            .env("RUST_LOG", "warn");
        let server = runtara_server::process::ServerProcess::spawn(command).unwrap();
        let port = server.ready.management_addr.port();
        for addr in [
            format!("{bind}:{port}"),
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
        ] {
            let output = health(&addr);
            assert_eq!(
                output.status.code(),
                Some(0),
                "server on {bind}, --addr {addr}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(String::from_utf8_lossy(&output.stdout).contains("runtara-server"));
        }
        drop(server);
    }
}
