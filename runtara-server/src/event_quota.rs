//! Bounds on the custom events an instance records.
//!
//! Custom events once had no bound: a failed instance's credential stored 20 events of
//! 15 MB in 2.2 s, after which listing them failed (`frame of 300000716 bytes`) and four
//! listings took the server to 1.7 GB. Now one event's payload is at most
//! [`EventLimits::max_event_bytes`], an instance records at most
//! [`EventLimits::max_events_per_instance`] custom events and
//! [`EventLimits::max_event_bytes_per_instance`] bytes of them (defaults chosen so that
//! an instance's whole event list fits one reply frame), and a finished instance records
//! none. A refused event stores nothing. The server's own events (`launched`, `exited`,
//! …) are not custom events and are not counted.
//!
//! Each instance's usage is read from its stored events the first time it records one
//! on this server, then kept in memory and reserved before each write (so concurrent
//! events cannot pass the bound together).

use std::collections::HashMap;
use std::sync::Mutex;

use runtara_core::{InstanceRecord, Persistence};
use runtara_protocol::{ErrorCode, WireError};

/// The settings (see the module docs).
#[derive(Debug, Clone, clap::Args)]
pub struct EventLimits {
    /// Largest payload of one custom event, in bytes.
    #[arg(long, env = "RUNTARA_MAX_EVENT_BYTES", default_value_t = 64 * 1024)]
    pub max_event_bytes: usize,
    /// Custom events one instance may record.
    #[arg(long, env = "RUNTARA_MAX_EVENTS_PER_INSTANCE", default_value_t = 1000)]
    pub max_events_per_instance: u64,
    /// Bytes of custom event payloads one instance may record.
    #[arg(
        long,
        env = "RUNTARA_MAX_EVENT_BYTES_PER_INSTANCE",
        default_value_t = 8 << 20
    )]
    pub max_event_bytes_per_instance: u64,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_event_bytes: 64 * 1024,
            max_events_per_instance: 1000,
            max_event_bytes_per_instance: 8 << 20,
        }
    }
}

/// Longest custom event subtype, in bytes.
pub const MAX_SUBTYPE_LEN: usize = 256;

/// Custom-event usage per instance.
#[derive(Debug, Default)]
pub struct EventQuota {
    limits: EventLimits,
    /// Instance id → (events, payload bytes), once known.
    used: Mutex<HashMap<String, (u64, u64)>>,
}

/// The kind the SDK's custom events are stored under.
const CUSTOM: &str = "custom";

impl EventQuota {
    /// A quota under `limits`.
    pub fn new(limits: EventLimits) -> EventQuota {
        EventQuota {
            limits,
            used: Mutex::new(HashMap::new()),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, u64)>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves room for one custom event of `instance` (its stored record, if any), or
    /// says why it is refused. Give the room back with [`release`](Self::release) if the
    /// write then fails.
    pub async fn reserve(
        &self,
        store: &dyn Persistence,
        instance_id: &str,
        record: Option<&InstanceRecord>,
        subtype: &str,
        payload_len: usize,
    ) -> Result<(), WireError> {
        let invalid = |message: String| Err(WireError::new(ErrorCode::InvalidInput, message));
        if let Some(record) = record.filter(|r| r.status.is_terminal()) {
            self.used().remove(instance_id);
            let mut error = WireError::new(
                ErrorCode::Terminal,
                format!(
                    "instance `{instance_id}` is {}: a finished instance records no events",
                    record.status
                ),
            );
            error.status = Some(record.status.as_str().to_owned());
            return Err(error);
        }
        if subtype.len() > MAX_SUBTYPE_LEN {
            return invalid(format!(
                "the event subtype is {} bytes; at most {MAX_SUBTYPE_LEN} are allowed",
                subtype.len()
            ));
        }
        if payload_len > self.limits.max_event_bytes {
            return invalid(format!(
                "the event payload is {payload_len} bytes; at most {} are allowed (--max-event-bytes); nothing was stored",
                self.limits.max_event_bytes
            ));
        }
        let known = self.used().get(instance_id).copied();
        let (count, bytes) = match known {
            Some(used) => used,
            None => {
                let events = store
                    .list_events(instance_id)
                    .await
                    .map_err(|e| runtara_core::wire::to_wire(&e))?;
                let custom = events.iter().filter(|e| e.kind == CUSTOM);
                let count = custom.clone().count() as u64;
                let bytes = custom
                    .map(|e| e.payload.as_ref().map_or(0, |p| p.len() as u64))
                    .sum();
                (count, bytes)
            }
        };
        let mut used = self.used();
        // Another write may have counted it meanwhile: take the larger view.
        let entry = used.entry(instance_id.to_owned()).or_insert((count, bytes));
        let payload = payload_len as u64;
        if entry.0 >= self.limits.max_events_per_instance {
            return invalid(format!(
                "instance `{instance_id}` has recorded {} custom events, its quota (--max-events-per-instance); nothing was stored",
                entry.0
            ));
        }
        if entry.1 + payload > self.limits.max_event_bytes_per_instance {
            return invalid(format!(
                "instance `{instance_id}` has recorded {} bytes of custom events; {payload} more would pass its quota of {} (--max-event-bytes-per-instance); nothing was stored",
                entry.1, self.limits.max_event_bytes_per_instance
            ));
        }
        entry.0 += 1;
        entry.1 += payload;
        Ok(())
    }

    /// Gives back a reservation whose write failed.
    pub fn release(&self, instance_id: &str, payload_len: usize) {
        if let Some(entry) = self.used().get_mut(instance_id) {
            entry.0 = entry.0.saturating_sub(1);
            entry.1 = entry.1.saturating_sub(payload_len as u64);
        }
    }
}
