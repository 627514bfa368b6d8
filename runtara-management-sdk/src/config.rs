//! How the SDK reaches the server's management endpoint, from code or from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `RUNTARA_ENVIRONMENT_ADDR` | the server's management endpoint, `host:port` | `127.0.0.1:8002` |
//! | `RUNTARA_CA_CERT` | PEM file of the certificate to trust (the server's `<data-dir>/tls/ca.pem`) | none |
//! | `RUNTARA_SKIP_CERT_VERIFICATION` | `true` to accept any certificate (development only) | `false` |
//! | `RUNTARA_MANAGEMENT_TOKEN` | access token, when the server requires one | none |
//! | `RUNTARA_SERVER_NAME` | the name the server certificate must carry | `localhost` |
//! | `RUNTARA_REQUEST_TIMEOUT_MS` | deadline for one request, reconnecting included | `30000` |
//! | `RUNTARA_CONNECT_TIMEOUT_MS` | deadline for connecting | `10000` |
//!
//! Certificate verification is on unless asked otherwise: give the CA to trust
//! (`RUNTARA_CA_CERT`, [`SdkConfig::with_ca_cert`]) or, for local development only, skip
//! verification ([`SdkConfig::localhost`], `RUNTARA_SKIP_CERT_VERIFICATION=true`). A
//! configuration with neither (such as `SdkConfig::new("127.0.0.1:8002")`) trusts the file
//! `RUNTARA_CA_CERT` names; failing that, for a loopback address (`localhost` counts: it
//! is always tried as `127.0.0.1` and `::1`, the first to answer wins), the certificate a
//! development server keeps in its default data dir, `./runtara-data/tls/ca.pem`, when
//! that file exists.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::SdkError;

/// The default management endpoint, `127.0.0.1:8002`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8002";
/// The default name the server certificate must carry, `localhost`.
pub const DEFAULT_SERVER_NAME: &str = "localhost";
/// The default deadline for one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default deadline for connecting.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where a server on its default data dir keeps the certificate to trust, relative to
/// the directory it runs in.
pub const DEFAULT_LOCAL_CA: &str = "runtara-data/tls/ca.pem";

/// How the SDK reaches the management endpoint.
///
/// ```
/// use runtara_management_sdk::SdkConfig;
/// use std::time::Duration;
///
/// let config = SdkConfig::new("10.0.0.5:8002")
///     .with_ca_cert("/var/lib/runtara/tls/ca.pem")
///     .with_token("s3cret")
///     .with_request_timeout(Duration::from_secs(10));
/// assert_eq!(config.addr, "10.0.0.5:8002");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SdkConfig {
    /// The management endpoint, `host:port` (parsed by [`ManagementSdk::new`](crate::ManagementSdk::new)).
    pub addr: String,
    /// The name the server certificate must carry.
    pub server_name: String,
    /// PEM file of the certificate(s) to trust, e.g. the server's `<data-dir>/tls/ca.pem`.
    /// `None`: see [`new`](Self::new) for where the certificate is looked for.
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate. Development only: anyone on the network path can
    /// impersonate the server.
    pub skip_cert_verification: bool,
    /// Access token sent in the handshake, when the server requires one.
    pub token: Option<String>,
    /// Deadline for one request, reconnecting included.
    pub request_timeout: Duration,
    /// Deadline for connecting.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for SdkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkConfig")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("ca_cert", &self.ca_cert)
            .field("skip_cert_verification", &self.skip_cert_verification)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl SdkConfig {
    /// A config for the management endpoint at `addr` (`host:port`), with certificate
    /// verification on: trust the server with [`with_ca_cert`](Self::with_ca_cert). Without
    /// it, the certificate `RUNTARA_CA_CERT` names is trusted; failing that, for a loopback
    /// address, `./runtara-data/tls/ca.pem` (a server on its default data dir) if that file
    /// exists and only this user can have written it.
    pub fn new(addr: impl Into<String>) -> Self {
        SdkConfig {
            addr: addr.into(),
            server_name: DEFAULT_SERVER_NAME.into(),
            ca_cert: None,
            skip_cert_verification: false,
            token: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Local development: `127.0.0.1:8002` with certificate verification **off**.
    pub fn localhost() -> Self {
        SdkConfig::new(DEFAULT_ADDR).with_skip_cert_verification(true)
    }

    /// Reads the configuration from the environment (see the [module docs](self) for the
    /// variables). A bad value is an [`SdkError::Env`] naming the variable.
    pub fn from_env() -> Result<Self, SdkError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SdkError> {
        let lookup = |var: &str| lookup(var).filter(|value| !value.trim().is_empty());
        let invalid = |var: &'static str, value: &str, reason: &str| SdkError::Env {
            var,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let mut config = SdkConfig::new(DEFAULT_ADDR);
        if let Some(value) = lookup("RUNTARA_ENVIRONMENT_ADDR") {
            check_addr_syntax(&value)
                .map_err(|reason| invalid("RUNTARA_ENVIRONMENT_ADDR", &value, &reason))?;
            config.addr = value;
        }
        if let Some(value) = lookup("RUNTARA_CA_CERT") {
            config.ca_cert = Some(value.into());
        }
        if let Some(value) = lookup("RUNTARA_SKIP_CERT_VERIFICATION") {
            config.skip_cert_verification = parse_bool(&value).ok_or_else(|| {
                invalid(
                    "RUNTARA_SKIP_CERT_VERIFICATION",
                    &value,
                    "expected `true` or `false` (or 1/0, yes/no)",
                )
            })?;
        }
        config.token = lookup("RUNTARA_MANAGEMENT_TOKEN");
        if let Some(value) = lookup("RUNTARA_SERVER_NAME") {
            config.server_name = value;
        }
        let millis = |var: &'static str| -> Result<Option<Duration>, SdkError> {
            lookup(var)
                .map(|value| match value.trim().parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                    _ => Err(invalid(
                        var,
                        &value,
                        "expected a positive whole number of milliseconds",
                    )),
                })
                .transpose()
        };
        if let Some(timeout) = millis("RUNTARA_REQUEST_TIMEOUT_MS")? {
            config.request_timeout = timeout;
        }
        if let Some(timeout) = millis("RUNTARA_CONNECT_TIMEOUT_MS")? {
            config.connect_timeout = timeout;
        }
        Ok(config)
    }

    /// Trusts the certificate(s) in this PEM file, e.g. the server's `<data-dir>/tls/ca.pem`.
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Turns certificate verification off (`true`) or on. Development only.
    pub fn with_skip_cert_verification(mut self, skip: bool) -> Self {
        self.skip_cert_verification = skip;
        self
    }

    /// Sends this access token in the handshake.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets the name the server certificate must carry (default `localhost`).
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// Sets the deadline for one request, reconnecting included (default 30 s). An image
    /// upload must fit in it too.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the deadline for connecting (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Resolves [`addr`](Self::addr) to the socket addresses to try, in order: the
    /// address itself when it is one; for `localhost` (any case, RFC 6761) both loopback
    /// addresses, `127.0.0.1` then `::1`, without asking the resolver (which may list
    /// only one of them, or `::1` first while the server listens on `127.0.0.1`); for any
    /// other name, every address the resolver gives.
    pub(crate) fn resolve_addrs(&self) -> Result<Vec<SocketAddr>, SdkError> {
        let bad = |reason: String| {
            SdkError::Config(format!("bad server address `{}`: {reason}", self.addr))
        };
        let addr = self.addr.trim();
        if let Ok(addr) = addr.parse::<SocketAddr>() {
            return Ok(vec![addr]);
        }
        check_addr_syntax(addr).map_err(bad)?;
        if let Some((host, port)) = addr.rsplit_once(':') {
            if is_localhost_name(host) {
                let port = port
                    .parse::<u16>()
                    .map_err(|e| bad(format!("bad port: {e}")))?;
                return Ok(vec![
                    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
                    SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
                ]);
            }
        }
        let mut addrs = Vec::new();
        for resolved in addr
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve it: {e}")))?
        {
            if !addrs.contains(&resolved) {
                addrs.push(resolved);
            }
        }
        if addrs.is_empty() {
            return Err(bad("it resolves to no address".into()));
        }
        Ok(addrs)
    }
}

/// Whether `host` is the name `localhost` (any case, with or without the final dot),
/// which always means this machine's loopback addresses (RFC 6761).
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
}

/// Checks that `addr` looks like `host:port`, without resolving it.
pub(crate) fn check_addr_syntax(addr: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected host:port such as 127.0.0.1:8002";
    let addr = addr.trim();
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
                Err(format!("{EXPECTED} (write IPv6 addresses as [::1]:8002)"))
            } else {
                Ok(())
            }
        }
        _ => Err(EXPECTED.into()),
    }
}

/// `true`/`false` (and `1`/`0`, `yes`/`no`), case-insensitive.
impl SdkConfig {
    /// The certificate file to trust when verification is on: [`ca_cert`](Self::ca_cert);
    /// else `RUNTARA_CA_CERT`; else, when every address in `addrs` is loopback,
    /// [`DEFAULT_LOCAL_CA`] if it is a
    /// file that only this user can have written ([`local_ca_is_trustworthy`]). `None` when
    /// there is none of these.
    pub(crate) fn trusted_ca(&self, addrs: &[SocketAddr]) -> Option<PathBuf> {
        let path = self.trusted_ca_with(
            addrs,
            |var| std::env::var(var).ok(),
            local_ca_is_trustworthy,
        )?;
        if self.ca_cert.is_none() {
            let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            tracing::info!(ca = %shown.display(), "no CA certificate configured; trusting this one");
        }
        Some(path)
    }

    fn trusted_ca_with(
        &self,
        addrs: &[SocketAddr],
        lookup: impl Fn(&str) -> Option<String>,
        trustworthy: impl Fn(&Path) -> bool,
    ) -> Option<PathBuf> {
        if let Some(path) = &self.ca_cert {
            return Some(path.clone());
        }
        if let Some(value) = lookup("RUNTARA_CA_CERT").filter(|v| !v.trim().is_empty()) {
            return Some(value.into());
        }
        let local = Path::new(DEFAULT_LOCAL_CA);
        // Loopback only: every address the SDK may connect to is this machine's.
        let loopback = !addrs.is_empty() && addrs.iter().all(|addr| addr.ip().is_loopback());
        (loopback && trustworthy(local)).then(|| local.to_path_buf())
    }
}

/// Whether the local development CA file may be trusted without being named: a regular
/// file, not writable by group or others, owned by the user this process runs as (on
/// Linux, the owner of `/proc/self`). Another local user who could write it could
/// otherwise impersonate the server on a loopback port.
#[cfg(unix)]
pub fn local_ca_is_trustworthy(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(file) = std::fs::metadata(path) else {
        return false;
    };
    if !file.is_file() || file.mode() & 0o022 != 0 {
        return false;
    }
    std::fs::metadata("/proc/self").map_or(true, |me| me.uid() == file.uid())
}

/// Whether the local development CA file may be trusted without being named.
#[cfg(not(unix))]
pub fn local_ca_is_trustworthy(path: &Path) -> bool {
    path.is_file()
}

/// `true`/`false`, `1`/`0` or `yes`/`no`, in any case.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_to_trust_falls_back_to_the_environment_then_the_local_data_dir() {
        let loopback: &[SocketAddr] = &["127.0.0.1:8002".parse().unwrap()];
        let remote: &[SocketAddr] = &["10.0.0.5:8002".parse().unwrap()];
        let env = |var: &str| (var == "RUNTARA_CA_CERT").then(|| "/etc/ca.pem".to_owned());
        let no_env = |_: &str| None;
        let exists = |_: &Path| true;
        let missing = |_: &Path| false;
        let plain = SdkConfig::new("127.0.0.1:8002");

        let given = plain.clone().with_ca_cert("mine.pem");
        assert_eq!(
            given.trusted_ca_with(loopback, env, exists),
            Some(PathBuf::from("mine.pem"))
        );
        assert_eq!(
            plain.trusted_ca_with(remote, env, exists),
            Some(PathBuf::from("/etc/ca.pem"))
        );
        assert_eq!(
            plain.trusted_ca_with(loopback, no_env, exists),
            Some(PathBuf::from(DEFAULT_LOCAL_CA))
        );
        assert_eq!(plain.trusted_ca_with(loopback, no_env, missing), None);
        let both: &[SocketAddr] = &[
            "127.0.0.1:8002".parse().unwrap(),
            "[::1]:8002".parse().unwrap(),
        ];
        assert_eq!(
            plain.trusted_ca_with(both, no_env, exists),
            Some(PathBuf::from(DEFAULT_LOCAL_CA)),
            "localhost: both loopback addresses"
        );
        let mixed: &[SocketAddr] = &[
            "127.0.0.1:8002".parse().unwrap(),
            "10.0.0.5:8002".parse().unwrap(),
        ];
        assert_eq!(
            plain.trusted_ca_with(mixed, no_env, exists),
            None,
            "all must be loopback"
        );
        assert_eq!(
            plain.trusted_ca_with(remote, no_env, exists),
            None,
            "loopback only"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_local_ca_writable_by_others_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "pem").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(local_ca_is_trustworthy(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!local_ca_is_trustworthy(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        assert!(!local_ca_is_trustworthy(&path));
        assert!(!local_ca_is_trustworthy(dir.path()), "not a file");
        assert!(!local_ca_is_trustworthy(&dir.path().join("missing.pem")));
    }
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |var| map.get(var).cloned()
    }

    #[test]
    fn defaults_without_variables() {
        let config = SdkConfig::from_lookup(env(&[])).unwrap();
        assert_eq!(config, SdkConfig::new("127.0.0.1:8002"));
        assert!(!config.skip_cert_verification);
        assert_eq!(config.server_name, "localhost");
        assert_eq!(config.token, None);
        assert_eq!(config.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn every_variable_is_read() {
        let config = SdkConfig::from_lookup(env(&[
            ("RUNTARA_ENVIRONMENT_ADDR", "runtara.internal:9002"),
            ("RUNTARA_CA_CERT", "/data/tls/ca.pem"),
            ("RUNTARA_SKIP_CERT_VERIFICATION", "TRUE"),
            ("RUNTARA_MANAGEMENT_TOKEN", "tok"),
            ("RUNTARA_SERVER_NAME", "runtara.internal"),
            ("RUNTARA_REQUEST_TIMEOUT_MS", "1500"),
            ("RUNTARA_CONNECT_TIMEOUT_MS", "700"),
        ]))
        .unwrap();
        assert_eq!(config.addr, "runtara.internal:9002");
        assert_eq!(config.ca_cert, Some(PathBuf::from("/data/tls/ca.pem")));
        assert!(config.skip_cert_verification);
        assert_eq!(config.token.as_deref(), Some("tok"));
        assert_eq!(config.server_name, "runtara.internal");
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(config.connect_timeout, Duration::from_millis(700));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("RUNTARA_ENVIRONMENT_ADDR", "nonsense"),
            ("RUNTARA_ENVIRONMENT_ADDR", "host:99999"),
            ("RUNTARA_SKIP_CERT_VERIFICATION", "maybe"),
            ("RUNTARA_REQUEST_TIMEOUT_MS", "soon"),
            ("RUNTARA_REQUEST_TIMEOUT_MS", "0"),
            ("RUNTARA_CONNECT_TIMEOUT_MS", "-1"),
        ];
        for (var, value) in cases {
            let error = SdkConfig::from_lookup(env(&[(var, value)])).unwrap_err();
            match &error {
                SdkError::Env {
                    var: named,
                    value: got,
                    ..
                } => {
                    assert_eq!(*named, var);
                    assert_eq!(got, value);
                }
                other => panic!("{var}={value}: {other:?}"),
            }
            assert!(error.to_string().contains(var), "{error}");
        }
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let config = SdkConfig::from_lookup(env(&[
            ("RUNTARA_MANAGEMENT_TOKEN", ""),
            ("RUNTARA_SKIP_CERT_VERIFICATION", ""),
        ]))
        .unwrap();
        assert_eq!(config.token, None);
        assert!(!config.skip_cert_verification);
    }

    #[test]
    fn localhost_skips_verification() {
        let config = SdkConfig::localhost();
        assert_eq!(config.addr, "127.0.0.1:8002");
        assert!(config.skip_cert_verification);
    }

    #[test]
    fn builders_set_their_field() {
        let config = SdkConfig::new(String::from("127.0.0.1:9"))
            .with_ca_cert("ca.pem")
            .with_skip_cert_verification(true)
            .with_token("t")
            .with_server_name("example")
            .with_request_timeout(Duration::from_secs(2))
            .with_connect_timeout(Duration::from_secs(1));
        assert_eq!(config.ca_cert, Some(PathBuf::from("ca.pem")));
        assert!(config.skip_cert_verification);
        assert_eq!(config.token.as_deref(), Some("t"));
        assert_eq!(config.server_name, "example");
        assert_eq!(config.request_timeout, Duration::from_secs(2));
        assert_eq!(config.connect_timeout, Duration::from_secs(1));
        assert!(
            !format!("{config:?}").contains("\"t\""),
            "token is redacted"
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_addr_syntax("127.0.0.1:8002").is_ok());
        assert!(check_addr_syntax("[::1]:8002").is_ok());
        assert!(check_addr_syntax("localhost:8002").is_ok());
        assert!(check_addr_syntax("::1:8002").is_err());
        assert!(check_addr_syntax("localhost").is_err());
        assert!(check_addr_syntax(":8002").is_err());
        let resolved = SdkConfig::new("127.0.0.1:8002").resolve_addrs().unwrap();
        assert_eq!(
            resolved,
            vec!["127.0.0.1:8002".parse::<SocketAddr>().unwrap()]
        );
        let error = SdkConfig::new("nope").resolve_addrs().unwrap_err();
        assert!(error.to_string().contains("`nope`"), "{error}");
        let both: Vec<SocketAddr> = vec![
            "127.0.0.1:8002".parse().unwrap(),
            "[::1]:8002".parse().unwrap(),
        ];
        for name in ["localhost:8002", "LOCALHOST:8002", "localhost.:8002"] {
            assert_eq!(
                SdkConfig::new(name).resolve_addrs().unwrap(),
                both,
                "{name}"
            );
        }
        let v6 = SdkConfig::new("[::1]:8002").resolve_addrs().unwrap();
        assert_eq!(v6, vec!["[::1]:8002".parse::<SocketAddr>().unwrap()]);
    }
}
