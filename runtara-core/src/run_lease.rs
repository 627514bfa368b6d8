//! The lease of a live embedded run: what [`Persistence::acquire_run_lease`] hands out.
//!
//! An embedded run (an application calling `RuntaraSdk::embedded(..).init`) holds a
//! lease on its instance for as long as it runs, so that a second process (or a second
//! SDK in the same process) registering the same instance is refused while the first
//! lives. The lease is one the operating system or the database drops with its holder:
//! an OS file lock beside the SQLite file, a session-level advisory lock in PostgreSQL.
//! A run whose process died is therefore taken over at once, with no timeout.
//!
//! The server does not take these leases: the processes it launches are fenced by epoch.
//!
//! [`Persistence::acquire_run_lease`]: crate::Persistence::acquire_run_lease

use std::fmt;

/// A held lease; dropping it releases the lease.
pub struct RunLease {
    /// What holds the lock (a locked file, a database session); released when dropped.
    _held: Box<dyn Send + Sync>,
    /// Where the lease lives, for logs.
    describe: String,
}

impl RunLease {
    /// Wraps `held`, whose drop releases the lease; `describe` says where it lives.
    pub(crate) fn new(held: impl Send + Sync + 'static, describe: String) -> RunLease {
        RunLease {
            _held: Box::new(held),
            describe,
        }
    }

    /// Releases the lease now (the same as dropping it).
    pub fn release(self) {}
}

impl fmt::Debug for RunLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunLease")
            .field("held", &self.describe)
            .finish()
    }
}

/// Who holds a lease, as far as it can be told: the holder's process id, its host and
/// since when it holds the lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaseHolder {
    pub(crate) pid: Option<u32>,
    pub(crate) host: Option<String>,
    /// When the holder took the lease (RFC 3339, UTC).
    pub(crate) since: Option<String>,
    /// Anything else known (a database session the holder is not recognised in).
    pub(crate) other: Option<String>,
}

impl LeaseHolder {
    /// This process, now.
    pub(crate) fn this_process() -> LeaseHolder {
        LeaseHolder {
            pid: Some(std::process::id()),
            host: host_name(),
            since: Some(rfc3339_from_millis(crate::model::now_ms())),
            other: None,
        }
    }

    /// `pid=… host=… since=…`, one `key=value` a field, spaces between (host names and
    /// RFC 3339 times hold no spaces).
    pub(crate) fn encode(&self) -> String {
        let mut parts = Vec::new();
        if let Some(pid) = self.pid {
            parts.push(format!("pid={pid}"));
        }
        if let Some(host) = &self.host {
            parts.push(format!("host={host}"));
        }
        if let Some(since) = &self.since {
            parts.push(format!("since={since}"));
        }
        parts.join(" ")
    }

    /// Reads what [`encode`](Self::encode) wrote; unknown or malformed fields are skipped.
    pub(crate) fn decode(text: &str) -> LeaseHolder {
        let mut holder = LeaseHolder::default();
        for field in text.split_whitespace() {
            match field.split_once('=') {
                Some(("pid", pid)) => holder.pid = pid.parse().ok(),
                Some(("host", host)) if !host.is_empty() => holder.host = Some(host.to_owned()),
                Some(("since", since)) if !since.is_empty() => {
                    holder.since = Some(since.to_owned())
                }
                _ => {}
            }
        }
        holder
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said = false;
        if let Some(pid) = self.pid {
            write!(f, "process {pid}")?;
            said = true;
        }
        if let Some(host) = &self.host {
            write!(f, "{}on host `{host}`", if said { " " } else { "" })?;
            said = true;
        }
        if let Some(since) = &self.since {
            write!(f, "{}since {since}", if said { ", " } else { "" })?;
            said = true;
        }
        if let Some(other) = &self.other {
            write!(f, "{}{other}", if said { "; " } else { "" })?;
            said = true;
        }
        if !said {
            f.write_str("a process that has not named itself yet")?;
        }
        Ok(())
    }
}

/// A digest of `(tenant, instance)`: names a lease without the raw id.
pub(crate) fn lease_digest(tenant_id: &str, instance_id: &str) -> [u8; 32] {
    use sha2::Digest as _;
    let mut context = sha2::Sha256::new();
    context.update(b"runtara-run-lease\0");
    context.update((tenant_id.len() as u64).to_be_bytes());
    context.update(tenant_id.as_bytes());
    context.update(instance_id.as_bytes());
    context.finalize().into()
}

/// This machine's host name, where it can be read.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())?;
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .take(40)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// `2026-01-02T03:04:05Z` for milliseconds since the Unix epoch (UTC).
pub(crate) fn rfc3339_from_millis(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_named_as_every_earlier_version_named_it() {
        // Lease files and advisory locks of running processes are found by this digest:
        // it must not change across versions (SHA-256 of the same bytes as ever).
        let hex: String = lease_digest("acme", "order-42")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "542a2a6dc7aaf7908add794df7514d64b7fddfac25af3ae531aaddcce4bb3cc3"
        );
    }

    #[test]
    fn a_holder_round_trips_and_reads_plainly() {
        let holder = LeaseHolder {
            pid: Some(42),
            host: Some("box".into()),
            since: Some("2026-01-02T03:04:05Z".into()),
            other: None,
        };
        assert_eq!(LeaseHolder::decode(&holder.encode()), holder);
        assert_eq!(
            holder.to_string(),
            "process 42 on host `box`, since 2026-01-02T03:04:05Z"
        );
        assert_eq!(
            LeaseHolder::default().to_string(),
            "a process that has not named itself yet"
        );
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339_from_millis(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_from_millis(1_767_323_045_000),
            "2026-01-02T03:04:05Z"
        );
    }

    #[test]
    fn digests_separate_tenant_from_instance() {
        assert_ne!(lease_digest("ab", "c"), lease_digest("a", "bc"));
        assert_eq!(lease_digest("a", "b"), lease_digest("a", "b"));
    }
}
