//! What an instance's event records, typed everywhere and named on the wire.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::InstanceStatus;

/// The kind of an instance's event (see `ManagementSdk::list_events`).
///
/// On the wire, in storage and in JSON a kind is its name ([`as_str`](EventKind::as_str)):
/// `created`, `registered`, a status the instance took (`completed`, `suspended`, …),
/// `signal`, `custom`, `launched`, `exited`. A name this version does not know (written
/// by a newer server) is kept as [`EventKind::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// The instance was created (`created`).
    Created,
    /// A process registered a run of it (`registered`; the subtype is the checkpoint it
    /// said it resumes from).
    Registered,
    /// It took this status (`completed`, `failed`, `cancelled`, `suspended`, `sleeping`,
    /// …; the subtype `server` when the server set it rather than the process).
    Status(InstanceStatus),
    /// A signal was queued for it (`signal`; the subtype is `cancel`, `pause` or `resume`).
    Signal,
    /// The instance recorded a custom event itself (`custom`; the subtype is its own).
    Custom,
    /// A server launched a process for it (`launched`).
    Launched,
    /// Its process exited (`exited`; the subtype says how).
    Exited,
    /// An external event was sent to it (`received`; the subtype is the event's name,
    /// the payload its payload).
    Received,
    /// A kind this version does not know.
    Other(String),
}

impl EventKind {
    /// Its name, as stored and sent.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Created => "created",
            EventKind::Registered => "registered",
            EventKind::Status(status) => status.as_str(),
            EventKind::Signal => "signal",
            EventKind::Custom => "custom",
            EventKind::Launched => "launched",
            EventKind::Exited => "exited",
            EventKind::Received => "received",
            EventKind::Other(name) => name,
        }
    }

    /// The kind named `name`; an unknown name is [`EventKind::Other`].
    pub fn from_name(name: &str) -> EventKind {
        match name {
            "created" => EventKind::Created,
            "registered" => EventKind::Registered,
            "signal" => EventKind::Signal,
            "custom" => EventKind::Custom,
            "launched" => EventKind::Launched,
            "exited" => EventKind::Exited,
            "received" => EventKind::Received,
            other => match other.parse::<InstanceStatus>() {
                Ok(status) => EventKind::Status(status),
                Err(_) => EventKind::Other(other.to_owned()),
            },
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for EventKind {
    fn from(name: &str) -> EventKind {
        EventKind::from_name(name)
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(EventKind::from_name(&name))
    }
}

impl AsRef<str> for EventKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for EventKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_travels_as_its_name_and_comes_back() {
        let mut kinds = vec![
            EventKind::Created,
            EventKind::Registered,
            EventKind::Signal,
            EventKind::Custom,
            EventKind::Launched,
            EventKind::Exited,
            EventKind::Received,
            EventKind::Other("audited".into()),
        ];
        kinds.extend(InstanceStatus::ALL.map(EventKind::Status));
        for kind in kinds {
            let typed = crate::encode_payload(&kind).expect("encodes");
            let named = crate::encode_payload(kind.as_str()).expect("encodes");
            assert_eq!(typed, named, "{kind} is not sent as its name");
            let back: EventKind = crate::decode_payload(&named).expect("decodes");
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn a_kind_compares_with_its_name() {
        assert!(EventKind::Launched == "launched");
        assert!(EventKind::Status(InstanceStatus::Completed) == "completed");
        assert_eq!(EventKind::from("exited"), EventKind::Exited);
        assert_eq!(EventKind::Custom.to_string(), "custom");
    }
}
