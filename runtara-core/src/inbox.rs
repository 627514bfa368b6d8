//! External events and published values: what both backends share about them.
//!
//! An event sent to an instance ([`Persistence::send_event`](crate::Persistence::send_event))
//! is kept in its inbox until a wait takes it
//! ([`Persistence::take_event`](crate::Persistence::take_event)): the oldest unconsumed
//! event of the wait's name, consumed and recorded under the wait's checkpoint id in one
//! transaction, so that each event is taken once and a rerun of the wait finds the same
//! payload. The recorded outcome is a checkpoint state in the form [`encode_outcome`]
//! writes.

use crate::guard::validate_id;
use crate::{Error, PendingSignal, Result};

pub use runtara_protocol::MAX_EVENT_PAYLOAD_LEN;

/// What [`Persistence::send_event`](crate::Persistence::send_event) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSent {
    /// The event's id in the inbox (increasing per backend); for a send repeated with
    /// its idempotency key, the first send's.
    pub seq: i64,
    /// The idempotency key was used before: nothing was stored.
    pub duplicate: bool,
    /// The instance is `waiting` for an event of this name: whoever runs it should run
    /// it now (its wait takes this event).
    pub wakes: bool,
}

/// What [`Persistence::take_event`](crate::Persistence::take_event) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTake {
    /// The wait is over, and recorded: the event's payload, or `None` for a timeout.
    Taken(Option<Vec<u8>>),
    /// Nothing to take yet. The instance is now `waiting` for the event, unless a cancel
    /// or pause is queued: then it stays `running`, and this is the signal to act on.
    Pending(Option<PendingSignal>),
}

/// The checkpoint state recording a wait's outcome: `1` and the payload for an event
/// taken, `0` for a timeout.
pub fn encode_outcome(payload: Option<&[u8]>) -> Vec<u8> {
    match payload {
        Some(payload) => {
            let mut state = Vec::with_capacity(payload.len() + 1);
            state.push(1);
            state.extend_from_slice(payload);
            state
        }
        None => vec![0],
    }
}

/// Reads a state written by [`encode_outcome`]; anything else recorded under the wait's
/// checkpoint id (another operation used the id) is [`Error::InvalidInput`].
pub fn decode_outcome(checkpoint_id: &str, state: &[u8]) -> Result<Option<Vec<u8>>> {
    match state.split_first() {
        Some((1, payload)) => Ok(Some(payload.to_vec())),
        Some((0, [])) => Ok(None),
        _ => Err(Error::InvalidInput {
            what: "event wait",
            reason: format!(
                "checkpoint `{checkpoint_id}` holds something other than an event wait's \
                 outcome; a wait needs a checkpoint id of its own"
            ),
        }),
    }
}

/// The id of the child that `parent_id` starts under `key`: `"{parent}:{key}"`. A key is
/// not empty and holds no `:` (so that a child's id names its parent), and the id fits
/// [`MAX_ID_LEN`](crate::MAX_ID_LEN).
pub fn child_instance_id(parent_id: &str, key: &str) -> Result<String> {
    let invalid = |reason: String| Error::InvalidInput {
        what: "child key",
        reason,
    };
    if key.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if key.contains(':') {
        return Err(invalid(format!(
            "`{key}` holds a `:`, which separates a child's id from its parent's"
        )));
    }
    let id = format!("{parent_id}:{key}");
    validate_id("child instance id", &id)?;
    Ok(id)
}

/// The event a parent's inbox gets when its child `child_id` ends (its payload: the
/// child's final status).
pub fn child_event_name(child_id: &str) -> String {
    format!("child:{child_id}")
}

/// The parent named by a child's id (see [`child_instance_id`]), if it is one.
pub fn parent_of(child_id: &str) -> Option<&str> {
    child_id.rsplit_once(':').map(|(parent, _)| parent)
}

/// The most events an instance's inbox holds that no wait has taken yet: a send beyond
/// it is refused ([`Error::QuotaExceeded`]) until the instance takes some.
pub const MAX_WAITING_EVENTS: i64 = 2_000;

/// The most payload bytes an instance's inbox holds that no wait has taken yet (64 MiB).
pub const MAX_WAITING_EVENT_BYTES: i64 = 64 * 1024 * 1024;

/// The most values (keys) an instance publishes with `set_value`: a new key beyond it is
/// refused ([`Error::QuotaExceeded`]); the keys it has can still be set again.
pub const MAX_VALUES: i64 = 1_000;

/// Refuses a value under a new key when its instance has [`MAX_VALUES`] other keys.
pub(crate) fn check_value_room(instance_id: &str, other_keys: i64) -> Result<()> {
    if other_keys < MAX_VALUES {
        return Ok(());
    }
    Err(Error::QuotaExceeded {
        instance_id: instance_id.to_owned(),
        reason: format!(
            "has published {other_keys} values (at most {MAX_VALUES}); set one of its keys \
             again instead of a new one"
        ),
    })
}

/// Refuses an event that would take its instance's inbox past [`MAX_WAITING_EVENTS`] or
/// [`MAX_WAITING_EVENT_BYTES`], given what it holds untaken now.
pub(crate) fn check_inbox_room(
    instance_id: &str,
    waiting: i64,
    waiting_bytes: i64,
    payload_len: usize,
) -> Result<()> {
    let payload_len = i64::try_from(payload_len).unwrap_or(i64::MAX);
    let reason = if waiting >= MAX_WAITING_EVENTS {
        format!(
            "has {waiting} events in its inbox that no wait has taken (at most \
             {MAX_WAITING_EVENTS})"
        )
    } else if waiting_bytes.saturating_add(payload_len) > MAX_WAITING_EVENT_BYTES {
        format!(
            "has {waiting_bytes} bytes of events in its inbox that no wait has taken; this \
             one's {payload_len} would pass the {MAX_WAITING_EVENT_BYTES} allowed"
        )
    } else {
        return Ok(());
    };
    Err(Error::QuotaExceeded {
        instance_id: instance_id.to_owned(),
        reason,
    })
}

/// Refuses an event (or value) that could never be stored: a bad instance id, name or
/// key, or a payload over [`MAX_EVENT_PAYLOAD_LEN`].
pub(crate) fn check_event(
    what: &'static str,
    instance_id: &str,
    name: &str,
    payload_len: usize,
) -> Result<()> {
    validate_id("instance id", instance_id)?;
    validate_id(what, name)?;
    if payload_len > MAX_EVENT_PAYLOAD_LEN {
        return Err(Error::InvalidInput {
            what,
            reason: format!(
                "its payload is {payload_len} bytes; at most {MAX_EVENT_PAYLOAD_LEN} are \
                 allowed; nothing was stored"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_reads_back_as_written() {
        for payload in [Some(&b"{\"ok\":true}"[..]), Some(&b""[..]), None] {
            let state = encode_outcome(payload);
            assert_eq!(decode_outcome("w#1", &state).unwrap().as_deref(), payload);
        }
        assert!(decode_outcome("w#1", b"").is_err());
        assert!(decode_outcome("w#1", b"\x00junk").is_err());
        assert!(decode_outcome("w#1", b"{}").is_err());
    }

    #[test]
    fn a_child_id_names_its_parent() {
        let id = child_instance_id("order-1", "part-3").unwrap();
        assert_eq!(id, "order-1:part-3");
        assert_eq!(parent_of(&id), Some("order-1"));
        let grandchild = child_instance_id(&id, "x").unwrap();
        assert_eq!(parent_of(&grandchild), Some("order-1:part-3"));
        assert!(child_instance_id("p", "").is_err());
        assert!(child_instance_id("p", "a:b").is_err());
        assert!(child_instance_id("p", &"k".repeat(crate::MAX_ID_LEN)).is_err());
        assert_eq!(child_event_name(&id), "child:order-1:part-3");
    }

    #[test]
    fn oversized_payloads_and_bad_names_are_refused() {
        assert!(check_event("event name", "i", "approved", MAX_EVENT_PAYLOAD_LEN).is_ok());
        let err = check_event("event name", "i", "approved", MAX_EVENT_PAYLOAD_LEN + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing was stored"), "{err}");
        assert!(check_event("event name", "i", "", 1).is_err());
        assert!(check_event("event name", "", "a", 1).is_err());
    }
}
