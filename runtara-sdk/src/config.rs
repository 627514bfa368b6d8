//! Configuration of the QUIC backend, from code or from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `RUNTARA_INSTANCE_ID` | this instance's id | required |
//! | `RUNTARA_TENANT_ID` | its tenant | required |
//! | `RUNTARA_SERVER_ADDR` | server instance endpoint | `127.0.0.1:8001` |
//! | `RUNTARA_SERVER_NAME` | name the certificate must match | `localhost` |
//! | `RUNTARA_CA_CERT` | PEM file of the certificate to trust (e.g. `<data-dir>/tls/ca.pem`) | none |
//! | `RUNTARA_SKIP_CERT_VERIFICATION` | `true` to accept any certificate (development only) | `false` |
//! | `RUNTARA_CONNECT_TIMEOUT_MS` | deadline for (re)connecting | `10000` |
//! | `RUNTARA_REQUEST_TIMEOUT_MS` | deadline for one request, reconnects included | `30000` |
//! | `RUNTARA_SIGNAL_POLL_INTERVAL_MS` | minimum time between `poll_signal` round trips | `1000` |
//! | `RUNTARA_HEARTBEAT_INTERVAL_MS` | automatic heartbeat interval; `0` disables | `10000` |
//! | `RUNTARA_CHECKPOINT_ID` | checkpoint the run resumes from (set by the server) | none |
//! | `RUNTARA_INSTANCE_CREDENTIAL` | credential the server issued at launch | none |
//! | `RUNTARA_SLEEP_EXIT_THRESHOLD_MS` | a durable sleep longer than this ends the process (status `sleeping`; the server relaunches it at the wake time) | none: sleep in process |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::SdkError;

/// How an instance reaches the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SdkConfig {
    /// This instance's id.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The server's instance endpoint.
    pub server_addr: SocketAddr,
    /// The name the server certificate must carry.
    pub server_name: String,
    /// PEM file of the certificate to trust.
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate. Development only: anyone on the path can impersonate the server.
    pub skip_cert_verification: bool,
    /// Deadline for (re)connecting.
    pub connect_timeout: Duration,
    /// Deadline for one request, reconnects included.
    pub request_timeout: Duration,
    /// Minimum time between two `poll_signal` round trips.
    pub signal_poll_interval: Duration,
    /// Automatic heartbeat interval; zero disables.
    pub heartbeat_interval: Duration,
    /// Checkpoint the run resumes from.
    pub checkpoint_id: Option<String>,
    /// Credential the server issued at launch.
    pub credential: Option<String>,
    /// A durable sleep with more than this left ends the process: the instance is
    /// marked `sleeping` and the server relaunches it at the wake time. `None` (the
    /// default) sleeps in process. The server sets it for the processes it launches.
    pub sleep_exit_threshold: Option<Duration>,
}

/// The default server address, `127.0.0.1:8001`.
pub const DEFAULT_SERVER_ADDR: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8001,
));

impl SdkConfig {
    /// A config for `instance_id` of `tenant_id` with the defaults: server 127.0.0.1:8001,
    /// certificate verification on (pin a CA with [`with_ca_cert`](Self::with_ca_cert)).
    pub fn new(instance_id: impl Into<String>, tenant_id: impl Into<String>) -> Self {
        SdkConfig {
            instance_id: instance_id.into(),
            tenant_id: tenant_id.into(),
            server_addr: DEFAULT_SERVER_ADDR,
            server_name: "localhost".into(),
            ca_cert: None,
            skip_cert_verification: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            signal_poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(10),
            checkpoint_id: None,
            credential: None,
            sleep_exit_threshold: None,
        }
    }

    /// Local development: 127.0.0.1:8001 with certificate verification off.
    pub fn localhost(instance_id: impl Into<String>, tenant_id: impl Into<String>) -> Self {
        SdkConfig {
            skip_cert_verification: true,
            ..SdkConfig::new(instance_id, tenant_id)
        }
    }

    /// Reads the configuration from the environment (see the module docs for the table).
    /// A missing required variable or a bad value is an error naming the variable.
    pub fn from_env() -> Result<Self, SdkError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SdkError> {
        let required = |var: &'static str| {
            lookup(var)
                .filter(|v| !v.is_empty())
                .ok_or(SdkError::MissingEnv { var })
        };
        let mut config = SdkConfig::new(
            required("RUNTARA_INSTANCE_ID")?,
            required("RUNTARA_TENANT_ID")?,
        );
        let invalid = |var: &'static str, value: &str, reason: &str| SdkError::InvalidEnv {
            var,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(value) = lookup("RUNTARA_SERVER_ADDR") {
            config.server_addr = value.parse().map_err(|_| {
                invalid(
                    "RUNTARA_SERVER_ADDR",
                    &value,
                    "expected host:port such as 127.0.0.1:8001",
                )
            })?;
        }
        if let Some(value) = lookup("RUNTARA_SERVER_NAME") {
            config.server_name = value;
        }
        if let Some(value) = lookup("RUNTARA_CA_CERT") {
            config.ca_cert = Some(value.into());
        }
        if let Some(value) = lookup("RUNTARA_SKIP_CERT_VERIFICATION") {
            config.skip_cert_verification = match value.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => {
                    return Err(invalid(
                        "RUNTARA_SKIP_CERT_VERIFICATION",
                        &value,
                        "expected `true` or `false`",
                    ))
                }
            };
        }
        let millis = |var: &'static str| -> Result<Option<Duration>, SdkError> {
            lookup(var)
                .map(|value| {
                    value
                        .parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| {
                            invalid(var, &value, "expected a whole number of milliseconds")
                        })
                })
                .transpose()
        };
        if let Some(d) = millis("RUNTARA_CONNECT_TIMEOUT_MS")? {
            config.connect_timeout = d;
        }
        if let Some(d) = millis("RUNTARA_REQUEST_TIMEOUT_MS")? {
            config.request_timeout = d;
        }
        if let Some(d) = millis("RUNTARA_SIGNAL_POLL_INTERVAL_MS")? {
            config.signal_poll_interval = d;
        }
        if let Some(d) = millis("RUNTARA_HEARTBEAT_INTERVAL_MS")? {
            config.heartbeat_interval = d;
        }
        config.checkpoint_id = lookup("RUNTARA_CHECKPOINT_ID").filter(|v| !v.is_empty());
        config.credential = lookup("RUNTARA_INSTANCE_CREDENTIAL").filter(|v| !v.is_empty());
        config.sleep_exit_threshold = millis("RUNTARA_SLEEP_EXIT_THRESHOLD_MS")?;
        Ok(config)
    }

    /// A durable sleep with more than `threshold` left ends the process (status
    /// `sleeping`); the server relaunches it at the wake time.
    pub fn with_sleep_exit_threshold(mut self, threshold: Duration) -> Self {
        self.sleep_exit_threshold = Some(threshold);
        self
    }

    /// Sets the server address.
    pub fn with_server_addr(mut self, addr: SocketAddr) -> Self {
        self.server_addr = addr;
        self
    }

    /// Sets the name the server certificate must carry.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// Trusts the certificate(s) in this PEM file (e.g. `<data-dir>/tls/ca.pem`).
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Turns certificate verification off (development only).
    pub fn with_skip_cert_verification(mut self, skip: bool) -> Self {
        self.skip_cert_verification = skip;
        self
    }

    /// Sets the deadline for one request, reconnects included.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the deadline for (re)connecting.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the automatic heartbeat interval (zero disables).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the minimum time between two `poll_signal` round trips.
    pub fn with_signal_poll_interval(mut self, interval: Duration) -> Self {
        self.signal_poll_interval = interval;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<SdkConfig, SdkError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SdkConfig::from_lookup(|var| map.get(var).cloned())
    }

    #[test]
    fn required_variables_are_named_when_missing() {
        let error = from(&[("RUNTARA_TENANT_ID", "t")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable `RUNTARA_INSTANCE_ID` is required but not set"
        );
        let error = from(&[("RUNTARA_INSTANCE_ID", "i")]).unwrap_err();
        assert!(matches!(
            error,
            SdkError::MissingEnv {
                var: "RUNTARA_TENANT_ID"
            }
        ));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_value() {
        let base = [("RUNTARA_INSTANCE_ID", "i"), ("RUNTARA_TENANT_ID", "t")];
        let with = |extra: (&'static str, &'static str)| {
            let mut vars = base.to_vec();
            vars.push(extra);
            from(&vars).unwrap_err().to_string()
        };
        assert_eq!(
            with(("RUNTARA_SERVER_ADDR", "nowhere")),
            "environment variable `RUNTARA_SERVER_ADDR` has an invalid value `nowhere`: expected host:port such as 127.0.0.1:8001"
        );
        assert!(
            with(("RUNTARA_REQUEST_TIMEOUT_MS", "soon")).contains("`RUNTARA_REQUEST_TIMEOUT_MS`")
        );
        assert!(with(("RUNTARA_SKIP_CERT_VERIFICATION", "maybe"))
            .contains("expected `true` or `false`"));
    }

    #[test]
    fn defaults_and_overrides() {
        let config = from(&[
            ("RUNTARA_INSTANCE_ID", "i"),
            ("RUNTARA_TENANT_ID", "t"),
            ("RUNTARA_HEARTBEAT_INTERVAL_MS", "0"),
            ("RUNTARA_CA_CERT", "/data/tls/ca.pem"),
        ])
        .unwrap();
        assert_eq!(config.server_addr, DEFAULT_SERVER_ADDR);
        assert!(
            !config.skip_cert_verification,
            "verification is on by default"
        );
        assert_eq!(config.heartbeat_interval, Duration::ZERO);
        assert_eq!(config.ca_cert, Some(PathBuf::from("/data/tls/ca.pem")));
        assert!(SdkConfig::localhost("i", "t").skip_cert_verification);
    }
}
