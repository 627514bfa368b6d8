//! Command-line arguments of `runtara-ctl`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Help text listing the exit codes.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the server refused the request (not found, invalid input, ...), or the waited-for
     instance ended failed or cancelled
  2  usage error (bad arguments or configuration, invalid --input JSON, unreadable file,
     a --ca-cert that is missing or not PEM)
  3  cannot connect to the server, TLS failure, or timeout
  4  `wait` timed out

Without --ca-cert or --insecure, a loopback --addr trusts ./runtara-data/tls/ca.pem when
that file exists (the server's default data directory), is yours and is not writable by
group or others.";

/// Manage Runtara images and instances on a runtara-server.
#[derive(Debug, Parser)]
#[command(name = "runtara-ctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The server's management endpoint (host:port).
    #[arg(
        long,
        env = "RUNTARA_ENVIRONMENT_ADDR",
        default_value = "127.0.0.1:8002",
        global = true
    )]
    pub addr: String,

    /// PEM file of the certificate to trust: the server's `<data-dir>/tls/ca.pem`.
    #[arg(long, env = "RUNTARA_CA_CERT", value_name = "PEM", global = true)]
    pub ca_cert: Option<PathBuf>,

    /// Accept any server certificate (local development only).
    #[arg(long, env = "RUNTARA_SKIP_CERT_VERIFICATION", global = true)]
    pub insecure: bool,

    /// Access token, when the server requires one.
    #[arg(
        long,
        env = "RUNTARA_MANAGEMENT_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,

    /// The name the server certificate must carry.
    #[arg(
        long,
        env = "RUNTARA_SERVER_NAME",
        default_value = "localhost",
        global = true
    )]
    pub server_name: String,

    /// Deadline for one request, in milliseconds.
    #[arg(
        long,
        env = "RUNTARA_REQUEST_TIMEOUT_MS",
        value_name = "MS",
        global = true
    )]
    pub request_timeout_ms: Option<u64>,

    /// Deadline for connecting, in milliseconds.
    #[arg(
        long,
        env = "RUNTARA_CONNECT_TIMEOUT_MS",
        value_name = "MS",
        global = true
    )]
    pub connect_timeout_ms: Option<u64>,

    /// Print one JSON document per result on stdout (for scripts).
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    /// List a tenant's instances, newest first.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only instances in this status (pending, running, suspended, sleeping,
        /// completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u32>,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Show an instance's status, output or error.
    Status {
        /// The instance id.
        instance_id: String,
    },
    /// Cancel an instance.
    Cancel {
        /// The instance id.
        instance_id: String,
    },
    /// Pause a running instance (it stops at its next checkpoint).
    Pause {
        /// The instance id.
        instance_id: String,
    },
    /// Resume a paused instance from its last checkpoint.
    Resume {
        /// The instance id.
        instance_id: String,
    },
    /// Upload a compiled workflow binary as a new image version; prints the image id.
    Register {
        /// The binary.
        binary: PathBuf,
        /// The owner.
        #[arg(long)]
        tenant: String,
        /// The image name.
        #[arg(long)]
        name: String,
        /// Free text.
        #[arg(long)]
        description: Option<String>,
    },
    /// Start an instance of an image; prints the instance id.
    Start {
        /// The image id.
        image_id: String,
        /// The tenant owning the image.
        #[arg(long)]
        tenant: String,
        /// Start input: JSON text, `@file` to read it from a file, `@-` from stdin.
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// The instance id to use (the server picks one otherwise).
        #[arg(long)]
        instance_id: Option<String>,
        /// Fail the instance when it runs longer than this many seconds.
        #[arg(long, value_name = "N")]
        timeout_secs: Option<u64>,
    },
    /// List a tenant's images, newest first.
    Images {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Delete an image no unfinished instance uses.
    DeleteImage {
        /// The image id.
        image_id: String,
    },
    /// Run an image's instances in worker processes (long-lived processes of the image,
    /// each running many instances), or with `--off` one process per instance again.
    Workers {
        /// The image id.
        image_id: String,
        /// Workers at most.
        #[arg(long, required_unless_present = "off")]
        max: Option<u32>,
        /// Instances one worker runs at once.
        #[arg(long, default_value_t = 256)]
        instances: u32,
        /// Workers kept running with nothing to do (stored; not acted on yet).
        #[arg(long, default_value_t = 0)]
        min: u32,
        /// Back to one process per instance.
        #[arg(long, conflicts_with_all = ["max", "min"])]
        off: bool,
    },
    /// List an instance's events, oldest first.
    Events {
        /// The instance id.
        instance_id: String,
    },
    /// List an instance's checkpoints, in the order recorded.
    Checkpoints {
        /// The instance id.
        instance_id: String,
    },
    /// Let a durable call that failed for good run again: clear its recorded failure and
    /// retry count (the instance must not have finished).
    RetryStep {
        /// The instance id.
        instance_id: String,
        /// The durable call's checkpoint id, `"{fn_name}::{key}"`.
        checkpoint_id: String,
    },
    /// Wait until an instance is completed, failed, cancelled or suspended; print its
    /// final status and output. The server answers as soon as it is (no polling).
    Wait {
        /// The instance id.
        instance_id: String,
        /// Give up (exit code 4) after this many seconds; waits forever by default.
        #[arg(long, value_name = "N")]
        timeout_secs: Option<u64>,
        /// Ignored (the server tells when the instance settles); kept for scripts that
        /// pass it.
        #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
        interval_ms: u64,
    },
    /// Send an event to an instance: its first `wait_for_event` for NAME takes it (now,
    /// if it is waiting for it).
    Send {
        /// The instance id.
        instance_id: String,
        /// The event's name.
        name: String,
        /// The payload: JSON text, `@file` to read it from a file, `@-` from stdin
        /// (`null` when not given).
        #[arg(long, value_name = "JSON|@FILE")]
        data: Option<String>,
        /// An idempotency key: a send repeated with the same key changes nothing.
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Print the value an instance published under KEY (with `set_value`), as JSON.
    /// Exit code 1 when it has published none, 4 when `--wait-secs` passed without one.
    Value {
        /// The instance id.
        instance_id: String,
        /// The value's key.
        key: String,
        /// Wait up to this many seconds for a value not published yet.
        #[arg(long, value_name = "N")]
        wait_secs: Option<u64>,
    },
    /// Start an image's instances on a cron schedule: `schedule add|list|rm|pause|resume`.
    Schedule {
        /// What to do.
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// Show the server's health.
    Health,
}

/// `runtara-ctl schedule …`.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum ScheduleCommand {
    /// Create a schedule; prints its id. Each fire starts an instance with id
    /// `sched-{schedule}-{fire time in ms}`.
    Add {
        /// The image id.
        image_id: String,
        /// The tenant owning the image.
        #[arg(long)]
        tenant: String,
        /// The cron expression: 5 fields (`minute hour day month weekday`), or 6 with
        /// seconds first.
        #[arg(long)]
        cron: String,
        /// The time zone the expression is read in (an IANA name).
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Each instance's input: JSON text, `@file`, or `@-` from stdin.
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// What fires missed while the server was down do: `skip`, or `run-once` (one
        /// instance for all of them).
        #[arg(long, default_value = "run-once", value_parser = ["skip", "run-once", "run_once"])]
        missed: String,
        /// The schedule's id (the server picks one otherwise).
        #[arg(long)]
        id: Option<String>,
    },
    /// List a tenant's schedules.
    List {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Delete a schedule (the instances it started stay).
    Rm {
        /// The schedule id.
        schedule_id: String,
    },
    /// Pause a schedule: nothing fires until it is resumed.
    Pause {
        /// The schedule id.
        schedule_id: String,
    },
    /// Resume a paused schedule from now on.
    Resume {
        /// The schedule id.
        schedule_id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("runtara-ctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn workers_need_a_maximum_or_off() {
        let cli = parse(&["workers", "img-1", "--max", "4"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Workers {
                image_id: "img-1".into(),
                max: Some(4),
                instances: 256,
                min: 0,
                off: false
            }
        );
        assert!(parse(&["workers", "img-1"]).is_err());
        assert!(parse(&["workers", "img-1", "--off", "--max", "2"]).is_err());
        assert!(parse(&["workers", "img-1", "--off"]).is_ok());
    }

    #[test]
    fn list_with_every_option() {
        let cli = parse(&[
            "list", "--tenant", "t", "--status", "running", "--limit", "5", "--offset", "10",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Command::List {
                tenant: "t".into(),
                status: Some("running".into()),
                limit: Some(5),
                offset: 10
            }
        );
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let cli = parse(&[
            "--addr",
            "10.0.0.1:9000",
            "status",
            "i-1",
            "--json",
            "--insecure",
            "--token",
            "tok",
        ])
        .unwrap();
        assert_eq!(cli.addr, "10.0.0.1:9000");
        assert!(cli.json);
        assert!(cli.insecure);
        assert_eq!(cli.token.as_deref(), Some("tok"));
        assert_eq!(
            cli.command,
            Command::Status {
                instance_id: "i-1".into()
            }
        );
    }

    #[test]
    fn register_and_start() {
        let cli = parse(&[
            "register",
            "./wf",
            "--tenant",
            "t",
            "--name",
            "orders",
            "--description",
            "v1",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Command::Register {
                binary: "./wf".into(),
                tenant: "t".into(),
                name: "orders".into(),
                description: Some("v1".into())
            }
        );
        let cli = parse(&[
            "start",
            "img",
            "--tenant",
            "t",
            "--input",
            "{\"a\":1}",
            "--instance-id",
            "i",
            "--timeout-secs",
            "60",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Command::Start {
                image_id: "img".into(),
                tenant: "t".into(),
                input: Some("{\"a\":1}".into()),
                instance_id: Some("i".into()),
                timeout_secs: Some(60)
            }
        );
    }

    #[test]
    fn wait_has_defaults() {
        let cli = parse(&["wait", "i"]).unwrap();
        assert_eq!(
            cli.command,
            Command::Wait {
                instance_id: "i".into(),
                timeout_secs: None,
                interval_ms: 1000
            }
        );
    }

    #[test]
    fn simple_commands() {
        for (args, expected) in [
            (
                vec!["cancel", "x"],
                Command::Cancel {
                    instance_id: "x".into(),
                },
            ),
            (
                vec!["pause", "x"],
                Command::Pause {
                    instance_id: "x".into(),
                },
            ),
            (
                vec!["resume", "x"],
                Command::Resume {
                    instance_id: "x".into(),
                },
            ),
            (
                vec!["images", "--tenant", "t"],
                Command::Images { tenant: "t".into() },
            ),
            (
                vec!["delete-image", "x"],
                Command::DeleteImage {
                    image_id: "x".into(),
                },
            ),
            (
                vec!["events", "x"],
                Command::Events {
                    instance_id: "x".into(),
                },
            ),
            (
                vec!["checkpoints", "x"],
                Command::Checkpoints {
                    instance_id: "x".into(),
                },
            ),
            (
                vec!["retry-step", "x", "charge::o-1"],
                Command::RetryStep {
                    instance_id: "x".into(),
                    checkpoint_id: "charge::o-1".into(),
                },
            ),
            (vec!["health"], Command::Health),
        ] {
            assert_eq!(parse(&args).unwrap().command, expected, "{args:?}");
        }
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for args in [
            vec![],
            vec!["list"],
            vec!["status"],
            vec!["start", "img"],
            vec!["list", "--tenant", "t", "--limit", "many"],
            vec!["frobnicate"],
        ] {
            let error = parse(&args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_lists_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("4  `wait` timed out"), "{help}");
    }
}
