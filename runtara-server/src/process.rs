//! The server's ready line, and a handle on a server running as a child process.
//!
//! Once it listens, `runtara-server` prints one line on stdout for scripts and tests:
//!
//! ```text
//! runtara-server ready: instance=127.0.0.1:8001 management=127.0.0.1:8002 ca=./runtara-data/tls/ca.pem
//! ```
//!
//! [`ServerProcess::spawn`] starts a server command, waits for that line and kills the
//! process (SIGKILL) when dropped, so a failing test leaves no server behind.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::RunningServer;

/// What the ready line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyLine {
    /// The instance endpoint.
    pub instance_addr: SocketAddr,
    /// The management endpoint.
    pub management_addr: SocketAddr,
    /// The certificate clients should trust (the dev certificate), if any.
    pub ca_path: Option<PathBuf>,
}

const PREFIX: &str = "runtara-server ready:";

impl ReadyLine {
    /// The ready line of a started server.
    pub fn of(server: &RunningServer) -> ReadyLine {
        ReadyLine {
            instance_addr: server.instance_addr,
            management_addr: server.management_addr,
            ca_path: server.ca_path.clone(),
        }
    }

    /// Parses a ready line.
    pub fn parse(line: &str) -> Result<ReadyLine, String> {
        let rest = line
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("not a ready line: `{line}`"))?;
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .ok_or_else(|| format!("no `{name}` in `{line}`"))
        };
        let addr = |name: &str| -> Result<SocketAddr, String> {
            field(name)?
                .parse()
                .map_err(|e| format!("bad `{name}` in `{line}`: {e}"))
        };
        let ca = field("ca=")?;
        Ok(ReadyLine {
            instance_addr: addr("instance=")?,
            management_addr: addr("management=")?,
            ca_path: (!ca.is_empty()).then(|| PathBuf::from(ca)),
        })
    }
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} instance={} management={} ca={}",
            self.instance_addr,
            self.management_addr,
            self.ca_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )
    }
}

/// A server running as a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// What its ready line said.
    pub ready: ReadyLine,
}

impl ServerProcess {
    /// Runs `command` (a `runtara-server` command line) with stdout piped and waits for
    /// its ready line.
    pub fn spawn(mut command: Command) -> std::io::Result<ServerProcess> {
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let failed = |message: String| std::io::Error::other(message);
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(failed("the server's stdout is not piped".into()));
        };
        let line = BufReader::new(stdout).lines().next();
        let ready = match line {
            Some(Ok(line)) => ReadyLine::parse(&line).map_err(failed),
            Some(Err(error)) => Err(error),
            None => Err(failed("the server exited before it was ready".into())),
        };
        match ready {
            Ok(ready) => Ok(ServerProcess { child, ready }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The binary `name` of this workspace, beside the running test binary
/// (`target/<profile>/<name>`): how integration tests of other packages find
/// `runtara-server` or `runtara-ctl`. Panics with what to run when it was not built.
pub fn workspace_binary(name: &str) -> PathBuf {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .map(|dir| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)));
    match binary {
        Some(binary) if binary.exists() => binary,
        _ => panic!(
            "the `{name}` binary is missing beside the test binary: run the tests with \
             `cargo test --workspace` (or `cargo build` the package that has it first)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_round_trips() {
        let ready = ReadyLine {
            instance_addr: "127.0.0.1:8001".parse().unwrap_or_else(|_| unreachable!()),
            management_addr: "127.0.0.1:8002".parse().unwrap_or_else(|_| unreachable!()),
            ca_path: Some("./runtara-data/tls/ca.pem".into()),
        };
        assert_eq!(ReadyLine::parse(&ready.to_string()), Ok(ready.clone()));
        let without_ca = ReadyLine {
            ca_path: None,
            ..ready
        };
        assert_eq!(ReadyLine::parse(&without_ca.to_string()), Ok(without_ca));
        assert!(ReadyLine::parse("hello").is_err());
    }
}
