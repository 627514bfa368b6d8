//! An instance's lifecycle status, typed everywhere and named on the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Lifecycle state of an instance (see `docs/architecture.md`).
///
/// `pending → running → {completed | failed | cancelled}`, `running ⇄ suspended`,
/// `running ⇄ sleeping`, `running ⇄ waiting`. The three terminal states are final.
///
/// On the wire and in JSON a status is its name ([`as_str`](InstanceStatus::as_str)), as
/// it was when statuses travelled as strings: peers of either kind read each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    /// Created, not yet registered by a process.
    Pending,
    /// A process has registered and is running it.
    Running,
    /// Paused: no process; resumes from its last checkpoint.
    Suspended,
    /// Waiting for a durable sleep to end; no process.
    Sleeping,
    /// Waiting for an external event (`wait_for_event`): its run holds its slot for a
    /// while, then lets go of it; the event's arrival (or the wait's timeout) runs it
    /// again.
    Waiting,
    /// Finished with an output. Terminal.
    Completed,
    /// Finished with an error. Terminal.
    Failed,
    /// Cancelled. Terminal.
    Cancelled,
}

impl InstanceStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [InstanceStatus; 8] = [
        InstanceStatus::Pending,
        InstanceStatus::Running,
        InstanceStatus::Suspended,
        InstanceStatus::Sleeping,
        InstanceStatus::Waiting,
        InstanceStatus::Completed,
        InstanceStatus::Failed,
        InstanceStatus::Cancelled,
    ];

    /// The lowercase name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Pending => "pending",
            InstanceStatus::Running => "running",
            InstanceStatus::Suspended => "suspended",
            InstanceStatus::Sleeping => "sleeping",
            InstanceStatus::Waiting => "waiting",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Cancelled => "cancelled",
        }
    }

    /// Whether this status is final (`completed`, `failed`, `cancelled`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            InstanceStatus::Completed | InstanceStatus::Failed | InstanceStatus::Cancelled
        )
    }
}

impl fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown instance status `{0}`; expected one of: `pending`, `running`, `suspended`, \
     `sleeping`, `waiting`, `completed`, `failed`, `cancelled`"
)]
pub struct ParseStatusError(pub String);

impl FromStr for InstanceStatus {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError(s.to_owned()))
    }
}

impl Serialize for InstanceStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for InstanceStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for InstanceStatus {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for InstanceStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for InstanceStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<InstanceStatus> for &str {
    fn eq(&self, other: &InstanceStatus) -> bool {
        *self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_travels_as_its_name_and_comes_back() {
        for status in InstanceStatus::ALL {
            let typed = crate::encode_payload(&status).expect("encodes");
            let named = crate::encode_payload(&status.as_str()).expect("encodes");
            assert_eq!(typed, named, "{status} is not sent as its name");
            let back: InstanceStatus = crate::decode_payload(&named).expect("decodes");
            assert_eq!(back, status);
        }
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let named = crate::encode_payload(&"runing").expect("encodes");
        assert!(crate::decode_payload::<InstanceStatus>(&named).is_err());
        let parsed = "runing".parse::<InstanceStatus>().unwrap_err();
        assert!(parsed.to_string().contains("`runing`"), "{parsed}");
    }

    #[test]
    fn a_status_compares_with_its_name() {
        assert!(InstanceStatus::Completed == "completed");
        assert!("failed" == InstanceStatus::Failed);
        assert_eq!(InstanceStatus::Running.to_string(), "running");
        assert_eq!(InstanceStatus::Sleeping.as_ref(), "sleeping");
    }
}
