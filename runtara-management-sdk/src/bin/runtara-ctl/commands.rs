//! Runs a parsed command against the server.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use runtara_management_sdk::{
    CreateScheduleOptions, InstanceStatus, ListInstancesOptions, ManagementSdk, MissedFires,
    RegisterImageOptions, SdkConfig, SdkError, StartInstanceOptions, WorkerPool,
};
use runtara_protocol::WireSignalType;
use serde_json::Value;

use crate::cli::{Cli, Command, ScheduleCommand};
use crate::output;

/// Where a server started in the current directory keeps its CA certificate.
pub use runtara_management_sdk::config::DEFAULT_LOCAL_CA;

/// Why a command failed, and so the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The SDK failed: the server refused (1), a local problem (2) or the way to the
    /// server (3).
    #[error(transparent)]
    Sdk(#[from] SdkError),
    /// Bad local input (2).
    #[error("{0}")]
    Usage(String),
    /// The waited-for instance ended `failed` or `cancelled` (1).
    #[error("instance {instance_id} ended {status}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    InstanceEnded {
        /// The instance.
        instance_id: String,
        /// `failed` or `cancelled`.
        status: InstanceStatus,
        /// Its error.
        error: Option<String>,
    },
    /// `value` found none (1; 4 when it waited for one).
    #[error("instance {instance_id} has published no value `{key}`{}", if *waited { " in the time given" } else { "" })]
    NoValue {
        /// The instance.
        instance_id: String,
        /// The value's key.
        key: String,
        /// Whether it waited for one.
        waited: bool,
    },
    /// `wait` gave up (4).
    #[error("gave up waiting for instance {instance_id} after {after:?} (status: {})", status.map_or("unknown", InstanceStatus::as_str))]
    WaitTimedOut {
        /// The instance.
        instance_id: String,
        /// How long it waited.
        after: Duration,
        /// The last status seen, if any.
        status: Option<InstanceStatus>,
    },
}

impl CtlError {
    /// The process exit code (see `--help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Sdk(SdkError::Server { .. }) | CtlError::InstanceEnded { .. } => 1,
            CtlError::Sdk(
                SdkError::Config(_)
                | SdkError::Env { .. }
                | SdkError::Io { .. }
                | SdkError::InvalidInput(_),
            )
            | CtlError::Usage(_) => 2,
            CtlError::Sdk(_) => 3,
            CtlError::WaitTimedOut { .. } | CtlError::NoValue { waited: true, .. } => 4,
            CtlError::NoValue { waited: false, .. } => 1,
        }
    }
}

/// The SDK configuration the flags ask for; without a certificate to trust (and without
/// `--insecure`) a usage error saying what to pass.
pub fn sdk_config(cli: &Cli) -> Result<SdkConfig, CtlError> {
    let mut config = SdkConfig::new(cli.addr.clone())
        .with_server_name(cli.server_name.clone())
        .with_skip_cert_verification(cli.insecure);
    match &cli.ca_cert {
        Some(path) => config = config.with_ca_cert(path),
        None if !cli.insecure
            && is_loopback(&cli.addr)
            && runtara_management_sdk::config::local_ca_is_trustworthy(Path::new(
                DEFAULT_LOCAL_CA,
            )) =>
        {
            tracing::debug!("trusting {DEFAULT_LOCAL_CA}");
            config = config.with_ca_cert(DEFAULT_LOCAL_CA);
        }
        None if !cli.insecure
            && is_loopback(&cli.addr)
            && Path::new(DEFAULT_LOCAL_CA).is_file() =>
        {
            return Err(CtlError::Usage(format!(
                "`{DEFAULT_LOCAL_CA}` is not trusted without --ca-cert: it must be owned by \
                 you and not writable by group or others (or pass --ca-cert, or --insecure)"
            )))
        }
        None if !cli.insecure => {
            return Err(CtlError::Usage(format!(
                "no certificate to trust: pass --ca-cert with the server's \
                 `<data-dir>/tls/ca.pem` (or set RUNTARA_CA_CERT); for a local development \
                 server, run from the directory holding `{DEFAULT_LOCAL_CA}` or pass --insecure"
            )))
        }
        None => {}
    }
    if let Some(token) = &cli.token {
        config = config.with_token(token.clone());
    }
    if let Some(ms) = cli.request_timeout_ms {
        config = config.with_request_timeout(Duration::from_millis(ms));
    }
    if let Some(ms) = cli.connect_timeout_ms {
        config = config.with_connect_timeout(Duration::from_millis(ms));
    }
    Ok(config)
}

/// Whether `addr` names this machine (`127.0.0.1:…`, `[::1]:…`, `localhost:…`).
pub fn is_loopback(addr: &str) -> bool {
    if let Ok(addr) = addr.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    match addr.rsplit_once(':') {
        Some((host, _)) => {
            runtara_management_sdk::config::is_localhost_name(host)
                || host
                    .trim_matches(['[', ']'])
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Parses `--input`: JSON text, `@file`, or `@-` for stdin.
pub fn parse_input(input: &str) -> Result<Value, CtlError> {
    parse_json(input, "--input")
}

/// Parses the JSON of option `flag`: JSON text, `@file`, or `@-` for stdin.
pub fn parse_json(input: &str, flag: &str) -> Result<Value, CtlError> {
    let (text, source) = match input.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CtlError::Usage(format!("cannot read {flag} from stdin: {e}")))?;
            (text, "stdin".to_owned())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CtlError::Usage(format!("cannot read {flag} file {path}: {e}")))?;
            (text, path.to_owned())
        }
        None => (input.to_owned(), flag.to_owned()),
    };
    serde_json::from_str(&text)
        .map_err(|e| CtlError::Usage(format!("invalid json in {source}: {e}")))
}

/// Writes `text` (or `value`, with `--json`) to stdout; a closed pipe is not an error.
fn emit(json: bool, (text, value): (String, Value)) -> Result<(), CtlError> {
    let rendered = if json {
        let mut doc = serde_json::to_string_pretty(&value)
            .map_err(|e| CtlError::Usage(format!("cannot encode the result as json: {e}")))?;
        doc.push('\n');
        doc
    } else {
        text
    };
    write_out(&rendered)
}

/// Writes `text` to stdout (a closed pipe is not an error: the reader has had enough).
fn write_out(text: &str) -> Result<(), CtlError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CtlError::Usage(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// An instance's events, read page by page: the JSON array is written as its pages
/// arrive, and the table keeps only each event's shortened row, so runtara-ctl holds one
/// page of events at a time however many the instance has.
async fn events(sdk: &ManagementSdk, instance_id: &str, json: bool) -> Result<(), CtlError> {
    let mut table = output::event_table();
    let (mut after, mut count) = (0, 0usize);
    loop {
        let page = match sdk.list_events_page(instance_id, after, None).await {
            Ok(page) => page,
            // A server older than paged listings: the whole list in one reply.
            Err(SdkError::Server { code, .. }) if code == "malformed" && after == 0 => {
                let events = sdk.list_events(instance_id).await?;
                return emit(json, output::events(&events));
            }
            Err(error) => return Err(error.into()),
        };
        for event in &page.events {
            if json {
                let item = output::event_json_item(count, event)
                    .map_err(|e| CtlError::Usage(format!("cannot encode an event as json: {e}")))?;
                write_out(&item)?;
            } else {
                table.row(output::event_row(event));
            }
            count += 1;
        }
        match page.more_after {
            Some(next) if next > after && !page.events.is_empty() => after = next,
            Some(_) => {
                return Err(SdkError::UnexpectedResponse {
                    operation: "list_events_page",
                    response: "a page that says more follow but moves no further".into(),
                }
                .into())
            }
            None => break,
        }
    }
    match (json, count) {
        (true, 0) => write_out("[]\n"),
        (true, _) => write_out("\n]\n"),
        (false, 0) => write_out("no events\n"),
        (false, _) => write_out(&table.render()),
    }
}

/// Runs the command.
pub async fn run(cli: &Cli) -> Result<(), CtlError> {
    // Check local input before connecting.
    let input = match &cli.command {
        Command::Start {
            input: Some(input), ..
        }
        | Command::Schedule {
            command: ScheduleCommand::Add {
                input: Some(input), ..
            },
        } => Some(parse_input(input)?),
        Command::Send { data, .. } => Some(match data {
            Some(data) => parse_json(data, "--data")?,
            None => Value::Null,
        }),
        _ => None,
    };
    let binary = match &cli.command {
        Command::Register { binary, .. } => Some(read_binary(binary)?),
        _ => None,
    };
    let sdk = ManagementSdk::new(sdk_config(cli)?)?;
    let result = execute(cli, &sdk, input, binary).await;
    sdk.close().await;
    result
}

fn read_binary(path: &PathBuf) -> Result<Vec<u8>, CtlError> {
    std::fs::read(path).map_err(|source| {
        CtlError::Sdk(SdkError::Io {
            path: path.clone(),
            source,
        })
    })
}

async fn execute(
    cli: &Cli,
    sdk: &ManagementSdk,
    input: Option<Value>,
    binary: Option<Vec<u8>>,
) -> Result<(), CtlError> {
    let json = cli.json;
    match &cli.command {
        Command::List {
            tenant,
            status,
            limit,
            offset,
        } => {
            let mut options = ListInstancesOptions::new(tenant).with_offset(*offset);
            if let Some(status) = status {
                options = options.with_status(status);
            }
            if let Some(limit) = limit {
                options = options.with_limit(*limit);
            }
            let page = sdk.list_instances_page(options).await?;
            emit(json, output::instances(&page, *offset))
        }
        Command::Status { instance_id } => {
            let info = sdk.get_instance_status(instance_id).await?;
            emit(json, output::instance(&info))
        }
        Command::Cancel { instance_id } => {
            let outcome = sdk.cancel_instance(instance_id).await?;
            emit(
                json,
                output::signalled(instance_id, WireSignalType::Cancel, &outcome),
            )
        }
        Command::Pause { instance_id } => {
            let outcome = sdk.pause_instance(instance_id).await?;
            emit(
                json,
                output::signalled(instance_id, WireSignalType::Pause, &outcome),
            )
        }
        Command::Resume { instance_id } => {
            let outcome = sdk.resume_instance(instance_id).await?;
            emit(
                json,
                output::signalled(instance_id, WireSignalType::Resume, &outcome),
            )
        }
        Command::Register {
            tenant,
            name,
            description,
            ..
        } => {
            let mut options = RegisterImageOptions::new(tenant, name, binary.unwrap_or_default());
            if let Some(description) = description {
                options = options.with_description(description);
            }
            let image = sdk.register_image(options).await?;
            tracing::info!(image_id = %image.image_id, version = image.version, "registered");
            emit(json, output::registered(&image))
        }
        Command::Start {
            image_id,
            tenant,
            instance_id,
            timeout_secs,
            ..
        } => {
            let mut options = StartInstanceOptions::new(image_id, tenant);
            if let Some(input) = input {
                options = options.with_input(input);
            }
            if let Some(instance_id) = instance_id {
                options = options.with_instance_id(instance_id);
            }
            if let Some(secs) = timeout_secs {
                options = options.with_timeout(Duration::from_secs(*secs));
            }
            let started = sdk.start_instance(options).await?;
            if !started.created && !json {
                eprintln!(
                    "runtara-ctl: instance {} existed already; nothing was started",
                    started.instance_id
                );
            }
            emit(json, output::started(&started))
        }
        Command::Images { tenant } => {
            let images = sdk.list_images(tenant).await?;
            emit(json, output::images(&images))
        }
        Command::DeleteImage { image_id } => {
            sdk.delete_image(image_id).await?;
            emit(
                json,
                (
                    format!("deleted image {image_id}\n"),
                    serde_json::json!({ "image_id": image_id, "deleted": true }),
                ),
            )
        }
        Command::Workers {
            image_id,
            max,
            instances,
            min,
            off,
        } => {
            let pool = match (off, max) {
                (false, Some(max)) => Some(WorkerPool::new(*min, *max, *instances)),
                _ => None,
            };
            sdk.set_image_workers(image_id, pool).await?;
            let text = match pool {
                Some(pool) => format!(
                    "image {image_id} runs its instances in up to {} workers, {} instances each\n",
                    pool.max, pool.instances
                ),
                None => format!("image {image_id} runs one process per instance\n"),
            };
            let value = serde_json::json!({
                "image_id": image_id,
                "workers": pool.map(|p| serde_json::json!({
                    "min": p.min, "max": p.max, "instances": p.instances
                })),
            });
            emit(json, (text, value))
        }
        Command::Events { instance_id } => events(sdk, instance_id, json).await,
        Command::Checkpoints { instance_id } => {
            let checkpoints = sdk.list_checkpoints(instance_id).await?;
            emit(json, output::checkpoints(&checkpoints))
        }
        Command::RetryStep {
            instance_id,
            checkpoint_id,
        } => {
            sdk.retry_step(instance_id, checkpoint_id).await?;
            emit(json, output::step_cleared(instance_id, checkpoint_id))
        }
        Command::Wait {
            instance_id,
            timeout_secs,
            ..
        } => {
            let timeout = timeout_secs.map(Duration::from_secs);
            wait(sdk, json, instance_id, timeout).await
        }
        Command::Send {
            instance_id,
            name,
            key,
            ..
        } => {
            let mut options = runtara_management_sdk::SendEventOptions::new(instance_id, name)
                .with_payload(input.unwrap_or(Value::Null));
            if let Some(key) = key {
                options = options.with_idempotency_key(key);
            }
            let sent = sdk.send_event_with(options).await?;
            emit(json, output::event_sent(instance_id, name, &sent))
        }
        Command::Value {
            instance_id,
            key,
            wait_secs,
        } => {
            let value = match wait_secs {
                Some(secs) => {
                    let wait = Duration::from_secs(*secs);
                    sdk.wait_for_value(instance_id, key, wait).await?
                }
                None => sdk.get_value(instance_id, key).await?,
            };
            let value = value.ok_or_else(|| CtlError::NoValue {
                instance_id: instance_id.clone(),
                key: key.clone(),
                waited: wait_secs.is_some(),
            })?;
            let mut text = serde_json::to_string_pretty(&value)
                .map_err(|e| CtlError::Usage(format!("cannot encode the value as json: {e}")))?;
            text.push('\n');
            write_out(&text)
        }
        Command::Schedule { command } => schedule(sdk, json, command, input).await,
        Command::Health => {
            let health = sdk.health().await?;
            emit(
                json,
                output::health(&health, &sdk.server_addr().to_string()),
            )
        }
    }
}

/// `runtara-ctl schedule …`.
async fn schedule(
    sdk: &ManagementSdk,
    json: bool,
    command: &ScheduleCommand,
    input: Option<Value>,
) -> Result<(), CtlError> {
    match command {
        ScheduleCommand::Add {
            image_id,
            tenant,
            cron,
            tz,
            missed,
            id,
            ..
        } => {
            // Checked by the argument parser: one of the policy's names.
            let missed: MissedFires = missed.parse().unwrap_or_default();
            let mut options = CreateScheduleOptions::new(image_id, tenant, cron)
                .with_timezone(tz)
                .with_missed(missed);
            if let Some(input) = input {
                options = options.with_input(input);
            }
            if let Some(id) = id {
                options = options.with_schedule_id(id);
            }
            let schedule = sdk.create_schedule(options).await?;
            emit(json, output::schedule_created(&schedule))
        }
        ScheduleCommand::List { tenant } => {
            let schedules = sdk.list_schedules(tenant).await?;
            emit(json, output::schedules(&schedules))
        }
        ScheduleCommand::Rm { schedule_id } => {
            sdk.delete_schedule(schedule_id).await?;
            let value = serde_json::json!({"schedule_id": schedule_id, "deleted": true});
            emit(json, (format!("deleted schedule {schedule_id}\n"), value))
        }
        ScheduleCommand::Pause { schedule_id } => {
            let schedule = sdk.pause_schedule(schedule_id).await?;
            emit(json, output::schedules(std::slice::from_ref(&schedule)))
        }
        ScheduleCommand::Resume { schedule_id } => {
            let schedule = sdk.resume_schedule(schedule_id).await?;
            emit(json, output::schedules(std::slice::from_ref(&schedule)))
        }
    }
}

/// Waits on the server until the instance is finished or suspended, or `timeout`
/// passes (`ManagementSdk::wait_until_settled`), and prints it.
async fn wait(
    sdk: &ManagementSdk,
    json: bool,
    instance_id: &str,
    timeout: Option<Duration>,
) -> Result<(), CtlError> {
    let info = match sdk.wait_until_settled(instance_id, timeout).await {
        Ok(info) => info,
        Err(SdkError::WaitTimedOut { after, status, .. }) => {
            return Err(CtlError::WaitTimedOut {
                instance_id: instance_id.to_owned(),
                after,
                status: Some(status),
            })
        }
        Err(error) => return Err(error.into()),
    };
    emit(json, output::instance(&info))?;
    match info.status {
        InstanceStatus::Failed | InstanceStatus::Cancelled => Err(CtlError::InstanceEnded {
            instance_id: info.instance_id,
            status: info.status,
            error: info.error,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    #[test]
    fn loopback_addresses() {
        assert!(is_loopback("127.0.0.1:8002"));
        assert!(is_loopback("[::1]:8002"));
        assert!(is_loopback("localhost:8002"));
        assert!(is_loopback("LOCALHOST.:8002"));
        assert!(!is_loopback("10.1.2.3:8002"));
        assert!(!is_loopback("runtara.example.com:8002"));
        assert!(!is_loopback("nonsense"));
    }

    #[test]
    fn input_must_be_json() {
        assert_eq!(
            parse_input("{\"a\": [1, 2]}").unwrap(),
            serde_json::json!({"a": [1, 2]})
        );
        let error = parse_input("{not json").unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().starts_with("invalid json in --input"),
            "{error}"
        );
        let error = parse_input("@/nonexistent/input.json").unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/input.json"),
            "{error}"
        );
    }

    #[test]
    fn input_from_a_file() {
        let path =
            std::env::temp_dir().join(format!("runtara-ctl-input-{}.json", std::process::id()));
        std::fs::write(&path, "{\"k\": true}").unwrap();
        let value = parse_input(&format!("@{}", path.display())).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(value, serde_json::json!({"k": true}));
    }

    #[test]
    fn exit_codes() {
        let server = CtlError::Sdk(SdkError::Server {
            operation: "get_instance_status",
            code: runtara_protocol::ErrorCode::NotFound,
            message: "no such instance".into(),
        });
        assert_eq!(server.exit_code(), 1);
        assert_eq!(CtlError::Sdk(SdkError::Config("x".into())).exit_code(), 2);
        let connect = CtlError::Sdk(SdkError::Connect {
            addr: "127.0.0.1:8002".into(),
            message: "refused".into(),
        });
        assert_eq!(connect.exit_code(), 3);
        assert_eq!(CtlError::Sdk(SdkError::Tls("bad".into())).exit_code(), 3);
        let timeout = CtlError::Sdk(SdkError::Timeout {
            operation: "health",
            after: Duration::from_secs(1),
        });
        assert_eq!(timeout.exit_code(), 3);
        let ended = CtlError::InstanceEnded {
            instance_id: "i".into(),
            status: InstanceStatus::Failed,
            error: Some("boom".into()),
        };
        assert_eq!(ended.exit_code(), 1);
        assert_eq!(ended.to_string(), "instance i ended failed: boom");
        let waited = CtlError::WaitTimedOut {
            instance_id: "i".into(),
            after: Duration::from_secs(5),
            status: Some(InstanceStatus::Running),
        };
        assert_eq!(waited.exit_code(), 4);
        assert!(
            waited.to_string().ends_with("(status: running)"),
            "{waited}"
        );
    }

    #[test]
    fn flags_become_the_sdk_config() {
        let cli = Cli::try_parse_from([
            "runtara-ctl",
            "--addr",
            "10.0.0.1:9000",
            "--ca-cert",
            "/tmp/ca.pem",
            "--token",
            "tok",
            "--request-timeout-ms",
            "1500",
            "health",
        ])
        .unwrap();
        let config = sdk_config(&cli).unwrap();
        assert_eq!(config.addr, "10.0.0.1:9000");
        assert_eq!(config.ca_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(config.token.as_deref(), Some("tok"));
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert!(!config.skip_cert_verification);
    }

    #[tokio::test]
    async fn no_trust_settings_is_a_usage_error_naming_the_variable() {
        let cli =
            Cli::try_parse_from(["runtara-ctl", "--addr", "10.0.0.1:9000", "health"]).unwrap();
        if cli.ca_cert.is_some() || cli.insecure {
            return; // the environment configures trust
        }
        let error = run(&cli).await.unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().contains("--ca-cert"), "{error}");
        assert!(error.to_string().contains("RUNTARA_CA_CERT"), "{error}");
    }
}
