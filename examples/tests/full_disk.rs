//! The server's data disk fills up while instances run: a small tmpfs the test mounts as
//! the data dir, filled to the last byte and freed again. Storage errors are the server's
//! problem: instances wait (their requests are retried until their deadline), no live
//! process is killed because its heartbeats could not be stored, nothing is counted
//! against an instance, the condition is logged once with a count, and when space
//! returns every instance carries on and completes.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runtara_management_sdk::{RegisterImageOptions, StartInstanceOptions};
use serde_json::json;
use support::*;

const TENANT: &str = "acme";
const INSTANCES: usize = 5;
const STEPS: u32 = 80;
/// How long no heartbeat may be stored while the disk is full: several heartbeat
/// timeouts (the test sets 2.5 s: above the 1 s the SDK waits at most between two tries
/// of a heartbeat the server could not store, which is when the server hears it).
const FULL_FOR: Duration = Duration::from_secs(8);

/// A tmpfs of `size` mounted at a folder; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t tmpfs failed (this test needs root)"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Appends to `path` until the filesystem refuses another byte.
fn fill(path: &Path) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0u8; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    for size in [4096, 512, 1] {
        while file.write_all(&chunk[..size]).is_ok() {}
    }
    let _ = file.sync_all();
}

fn log_lines(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(runtara_test_mount),
    ignore = "needs root: mounts a small tmpfs as the server's data disk"
)]
async fn a_full_data_disk_makes_instances_wait_and_they_carry_on_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let disk = Tmpfs::mount(&dir.path().join("disk"), "160m");
    let data = disk.0.join("data");
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(
        &data,
        0,
        0,
        &[
            "--heartbeat-interval-ms",
            "200",
            "--heartbeat-timeout-ms",
            "2500",
        ],
        &log,
    );
    let sdk = server.client().await;
    let binary = std::fs::read(WORKFLOW).unwrap();
    let image_id = sdk
        .register_image(RegisterImageOptions::new(TENANT, "order-workflow", binary))
        .await
        .unwrap()
        .image_id;
    let mut ids = Vec::new();
    for n in 0..INSTANCES {
        let id = format!("disk-{n}");
        let trace = traces.join(format!("{id}.log"));
        let input = json!({
            "order_id": id,
            "steps": STEPS,
            "step_delay_ms": 150,
            "pad_bytes": 65536,
            "log_file": trace,
            "trace_file": trace,
            "quiet": true,
        });
        let options = StartInstanceOptions::new(image_id.as_str(), TENANT)
            .with_instance_id(id.as_str())
            .with_input(input);
        sdk.start_instance(options).await.unwrap();
        ids.push(id);
    }
    for id in &ids {
        wait_for(&sdk, id, Duration::from_secs(60), |s| {
            s.checkpoint_count >= 2
        })
        .await;
    }

    let filler = disk.0.join("filler");
    fill(&filler);
    // The disk is full once the server has met it.
    let failing = "storage is failing";
    let start = Instant::now();
    while log_lines(&log, failing) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the server never reported the full disk; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        fill(&filler);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Full (topped up as the server frees a little) until no instance's heartbeat has
    // been stored for several heartbeat timeouts: their processes live and heartbeat,
    // but the server cannot write it down.
    let full_since = Instant::now();
    let mut unchanged: Vec<(Option<String>, Instant)> = vec![(None, Instant::now()); ids.len()];
    loop {
        fill(&filler);
        let mut all_silent = true;
        for (id, (last, since)) in ids.iter().zip(unchanged.iter_mut()) {
            let status = sdk.get_instance_status(id).await.unwrap();
            if status.heartbeat_at != *last {
                *last = status.heartbeat_at;
                *since = Instant::now();
            }
            all_silent &= since.elapsed() >= FULL_FOR;
        }
        if all_silent {
            break;
        }
        assert!(
            full_since.elapsed() < Duration::from_secs(60),
            "heartbeats kept being stored on the full disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        let status = sdk.get_instance_status(id).await.unwrap();
        assert_eq!(
            status.status,
            "running",
            "{id} while the disk is full: {status:#?}\nserver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    std::fs::remove_file(&filler).unwrap();

    for id in &ids {
        let status = wait_for(&sdk, id, Duration::from_secs(90), |s| {
            s.status == "completed" || s.status == "failed"
        })
        .await;
        assert_eq!(status.status, "completed", "{status:#?}");
        assert_eq!(
            status.launches, 1,
            "{id}: its process was killed or crashed while the disk was full: {status:#?}\nserver log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        check_step_trace(&traces.join(format!("{id}.log")), id, STEPS);
    }
    // The recovery is logged at the first write that succeeds after a quiet spell:
    // writes (starts of a one-step instance) until it shows.
    let start = Instant::now();
    let mut probe = 0;
    while log_lines(&log, failing) > log_lines(&log, "storage works again") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the end of the full disk was never logged:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        probe += 1;
        let options = StartInstanceOptions::new(image_id.as_str(), TENANT)
            .with_instance_id(format!("probe-{probe}"))
            .with_input(json!({"steps": 1, "quiet": true}));
        sdk.start_instance(options).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // While full, a write now and then still fits (SQLite reuses its WAL; only a
    // checkpoint that grows the database fails), so an episode may end and start again
    // once. What must not happen is a line per failure (over a hundred before).
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    let episodes = log_lines(&log, failing);
    assert!(
        (1..=2).contains(&episodes),
        "the full disk is logged once, not per attempt:\n{server_log}"
    );
    let counted: u64 = server_log
        .lines()
        .filter(|line| line.contains("storage works again"))
        .filter_map(|line| line.split("failures=").nth(1)?.trim().parse::<u64>().ok())
        .sum();
    assert!(
        counted > episodes as u64,
        "each episode is logged once with its count of failed operations:\n{server_log}"
    );
    drop(server);
}
