//! Bounds on the custom events an instance records: the settings.
//!
//! Custom events once had no bound: a failed instance's credential stored 20 events of
//! 15 MB in 2.2 s, after which listing them failed (`frame of 300000716 bytes`) and four
//! listings took the server to 1.7 GB. Now one event's payload is at most
//! [`EventLimits::max_event_bytes`], an instance records at most
//! [`EventLimits::max_events_per_instance`] custom events and
//! [`EventLimits::max_event_bytes_per_instance`] bytes of them, and a finished instance
//! records none. A refused event stores nothing. The server's own events (`launched`,
//! `exited`, …) are not custom events and are neither bounded nor counted.
//!
//! The storage does the counting ([`runtara_core::Persistence::record_custom_event`]):
//! each instance's count and bytes are kept on its row and checked and raised with the
//! insert, so the bounds hold across server threads, restarts and servers sharing one
//! PostgreSQL, and nothing is held in memory per instance. Listings are read in pages
//! (`ListEventsPage`), so the bounds are about disk, not about memory.
//!
//! The defaults: 64 KiB is ample for progress and status events (a larger document
//! belongs in a checkpoint, which is replayed, or outside Runtara); 10,000 events is one
//! per item of a 10,000-item batch; 64 MiB per instance bounds what one instance's
//! credential can make the server store to about the size of four of its checkpoints.

use runtara_core::EventQuota;

/// The settings (see the module docs).
#[derive(Debug, Clone, clap::Args)]
pub struct EventLimits {
    /// Largest payload of one custom event, in bytes.
    #[arg(long, env = "RUNTARA_MAX_EVENT_BYTES", default_value_t = 64 * 1024)]
    pub max_event_bytes: u64,
    /// Custom events one instance may record.
    #[arg(
        long,
        env = "RUNTARA_MAX_EVENTS_PER_INSTANCE",
        default_value_t = 10_000
    )]
    pub max_events_per_instance: u64,
    /// Bytes of custom event payloads one instance may record.
    #[arg(
        long,
        env = "RUNTARA_MAX_EVENT_BYTES_PER_INSTANCE",
        default_value_t = 64 << 20
    )]
    pub max_event_bytes_per_instance: u64,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits::from(EventQuota::default())
    }
}

impl From<EventQuota> for EventLimits {
    fn from(quota: EventQuota) -> Self {
        EventLimits {
            max_event_bytes: quota.max_event_bytes,
            max_events_per_instance: quota.max_events_per_instance,
            max_event_bytes_per_instance: quota.max_event_bytes_per_instance,
        }
    }
}

impl EventLimits {
    /// The quota the storage applies.
    pub fn quota(&self) -> EventQuota {
        EventQuota {
            max_event_bytes: self.max_event_bytes,
            max_events_per_instance: self.max_events_per_instance,
            max_event_bytes_per_instance: self.max_event_bytes_per_instance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: EventLimits,
    }

    #[test]
    fn the_flags_default_to_the_storage_quota_and_set_it() {
        let defaults = Flags::parse_from(["x"]).limits;
        assert_eq!(defaults.quota(), EventQuota::default());
        let set = Flags::parse_from([
            "x",
            "--max-event-bytes",
            "1",
            "--max-events-per-instance",
            "2",
            "--max-event-bytes-per-instance",
            "3",
        ])
        .limits;
        assert_eq!(
            set.quota(),
            EventQuota {
                max_event_bytes: 1,
                max_events_per_instance: 2,
                max_event_bytes_per_instance: 3,
            }
        );
    }
}
