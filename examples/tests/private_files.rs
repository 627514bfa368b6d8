//! The data dir is private to the server's user whatever the umask it was started with:
//! the dir is 0700 and everything the server, SQLite and a launched instance create in it
//! gives group and others nothing. A tokens file others could write is refused.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use runtara_management_sdk::{RegisterImageOptions, StartInstanceOptions};
use serde_json::json;
use support::*;

/// The server binary run from a shell with the usual umask (022).
fn server_with_umask_022(data: &Path) -> Command {
    let binary = runtara_server::process::workspace_binary("runtara-server");
    let mut command = Command::new("sh");
    command
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(binary)
        .arg("--data-dir")
        .arg(data);
    command
}

/// Every path under `dir` whose mode lets group or others in, with its mode.
fn open_to_others(dir: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_symlink() && mode & 0o077 != 0 {
            found.push((path.display().to_string(), mode));
        }
        if meta.is_dir() {
            found.extend(open_to_others(&path));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_and_everything_in_it_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_command(server_with_umask_022(&data));
    let sdk = server.client().await;
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new("acme", "order-workflow", binary))
        .await
        .unwrap()
        .image_id;
    let trace = data.join("trace.log");
    let started = sdk
        .start_instance(
            StartInstanceOptions::new(image_id.as_str(), "acme")
                .with_input(json!({"steps": 2, "log_file": trace})),
        )
        .await
        .unwrap();
    wait_status(&sdk, &started.instance_id, "completed").await;

    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data dir is {mode:o}");
    assert!(trace.exists(), "the instance wrote its file");
    let open = open_to_others(&data);
    assert!(open.is_empty(), "open to group or others: {open:#?}");
}

#[test]
fn a_tokens_file_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "secret-token-0123456789 *\n").unwrap();
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = Command::new(runtara_server::process::workspace_binary("runtara-server"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--instance-addr",
            "127.0.0.1:0",
            "--management-addr",
            "127.0.0.1:0",
        ])
        .arg("--tokens-file")
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("writable by group or others") && stderr.contains("chmod 600"),
        "{stderr}"
    );
}
