//! A real `runtara-server` process for end-to-end tests, and polling helpers.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runtara_management_sdk::{InstanceInfo, ManagementSdk, SdkConfig};
use runtara_server::process::ServerProcess;

/// The workflow binary the tests register as an image.
pub const WORKFLOW: &str = env!("CARGO_BIN_EXE_order-workflow");

/// A `runtara-server` process, killed (SIGKILL) when dropped.
pub struct Server {
    process: ServerProcess,
    /// Instance endpoint.
    pub instance_addr: SocketAddr,
    /// Management endpoint.
    pub management_addr: SocketAddr,
    /// The CA certificate to trust.
    pub ca_path: PathBuf,
    /// Where its log goes, when not to the test's output.
    pub log: Option<PathBuf>,
}

/// Test-sized timings, except those `extra` sets itself.
fn test_defaults(extra: &[&str]) -> Vec<&'static str> {
    [
        ("--heartbeat-interval-ms", "200"),
        ("--heartbeat-timeout-ms", "5000"),
        ("--restart-backoff-ms", "100"),
        ("--cancel-grace-ms", "2000"),
    ]
    .into_iter()
    .filter(|(flag, _)| !extra.contains(flag))
    .flat_map(|(flag, value)| [flag, value])
    .collect()
}

impl Server {
    /// Starts a server over `data_dir` with test-sized timings, on the given ports
    /// (0: any), and waits for its ready line.
    pub fn start(
        data_dir: &Path,
        instance_port: u16,
        management_port: u16,
        extra: &[&str],
    ) -> Server {
        let mut command = Command::new(runtara_server::process::workspace_binary("runtara-server"));
        command.arg("--data-dir").arg(data_dir);
        Server::spawn(command, instance_port, management_port, extra)
    }

    /// [`Server::start`] with the server's log (stderr, `RUST_LOG=info`) written to the
    /// file `log` instead of the test's output.
    pub fn start_logging_to(
        data_dir: &Path,
        instance_port: u16,
        management_port: u16,
        extra: &[&str],
        log: &Path,
    ) -> Server {
        let mut command = Command::new(runtara_server::process::workspace_binary("runtara-server"));
        command.arg("--data-dir").arg(data_dir);
        let mut server = Server::spawn_with(command, instance_port, management_port, extra, |c| {
            c.env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stderr(std::fs::File::create(log).unwrap());
        });
        server.log = Some(log.to_path_buf());
        server
    }

    /// Starts the server `command` (a full command line up to its flags: data dir and
    /// ports are added) with test-sized timings, and waits for its ready line.
    pub fn start_command(command: Command) -> Server {
        Server::spawn(command, 0, 0, &[])
    }

    /// Starts a server in `dir` as a user would: no `--data-dir`, so the data dir is the
    /// default, relative `./runtara-data`. Any ports.
    pub fn start_in(dir: &Path) -> Server {
        let mut command = Command::new(runtara_server::process::workspace_binary("runtara-server"));
        command.current_dir(dir).env_remove("RUNTARA_DATA_DIR");
        Server::spawn(command, 0, 0, &[])
    }

    fn spawn(command: Command, instance_port: u16, management_port: u16, extra: &[&str]) -> Server {
        Server::spawn_with(command, instance_port, management_port, extra, |_| {})
    }

    fn spawn_with(
        mut command: Command,
        instance_port: u16,
        management_port: u16,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        command
            .args(["--instance-addr", &format!("127.0.0.1:{instance_port}")])
            .args(["--management-addr", &format!("127.0.0.1:{management_port}")])
            .args(test_defaults(extra))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::inherit());
        adjust(&mut command);
        let process = ServerProcess::spawn(command).unwrap();
        Server {
            instance_addr: process.ready.instance_addr,
            management_addr: process.ready.management_addr,
            ca_path: process.ready.ca_path.clone().unwrap(),
            process,
            log: None,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A kilobyte field of the server's `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …), in MB.
    pub fn memory_mb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        kb / 1024
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// A connected management client that pins the server's certificate.
    pub async fn client(&self) -> ManagementSdk {
        let config = SdkConfig::new(self.management_addr.to_string()).with_ca_cert(&self.ca_path);
        let sdk = ManagementSdk::new(config).unwrap();
        sdk.connect().await.unwrap();
        sdk
    }
}

/// A free UDP port on loopback (for a server that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls the instance until `done` holds (or panics after `limit`, showing the status).
pub async fn wait_for(
    sdk: &ManagementSdk,
    instance_id: &str,
    limit: Duration,
    done: impl Fn(&InstanceInfo) -> bool,
) -> InstanceInfo {
    let start = Instant::now();
    loop {
        let status = sdk.get_instance_status(instance_id).await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "instance {instance_id} did not reach the expected state in {limit:?}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the status is `status`.
pub async fn wait_status(sdk: &ManagementSdk, instance_id: &str, status: &str) -> InstanceInfo {
    wait_for(sdk, instance_id, Duration::from_secs(60), |s| {
        s.status == status
    })
    .await
}

/// Lines of the side-effect log, counted per step.
pub fn step_runs(log: &Path) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs = std::collections::BTreeMap::new();
    for line in text.lines() {
        *runs.entry(line.to_owned()).or_insert(0) += 1;
    }
    runs
}

/// Whether a process with this pid exists (Linux).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (state Z) has exited.
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

/// Checks an `order-workflow` trace (`log_file` and `trace_file` the same path) of the
/// instance `id` with `steps` steps: no two processes at once (`OVERLAP`), no step body
/// after its result was recorded (a `step n` line after an `acked n` line), and every
/// step acknowledged.
pub fn check_step_trace(trace: &Path, id: &str, steps: u32) {
    let text = std::fs::read_to_string(trace).unwrap();
    assert!(
        !text.contains("OVERLAP"),
        "{id} ran in two processes at once:\n{text}"
    );
    let mut acked = std::collections::HashSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace().skip(1);
        match (words.next(), words.next()) {
            (Some("acked"), Some(n)) => {
                acked.insert(n.to_owned());
            }
            (Some("step"), Some(n)) => assert!(
                !acked.contains(n),
                "{id}: step {n}'s body ran after its result was recorded:\n{text}"
            ),
            _ => {}
        }
    }
    for n in 1..=steps {
        assert!(
            acked.contains(&n.to_string()),
            "{id}: step {n} never acknowledged:\n{text}"
        );
    }
}

/// Runs the `runtara-ctl` binary against `server`.
pub fn ctl(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(runtara_server::process::workspace_binary("runtara-ctl"))
        .args(["--addr", &server.management_addr.to_string()])
        .arg("--ca-cert")
        .arg(&server.ca_path)
        .args(args)
        .output()
        .unwrap()
}

/// The stdout of a `runtara-ctl` run that must have succeeded.
#[track_caller]
pub fn ctl_ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "runtara-ctl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Waits until `path` holds something (a test hook of an example wrote it) and reads it.
pub async fn appears(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.is_empty() {
                return text;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `kill -9 <pid>`.
pub fn kill_9(pid: &str) {
    let status = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// The pids of the live processes whose binary is `binary` (Linux).
pub fn processes_of(binary: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .collect()
}
