//! When each launched instance's process was last heard from, kept in memory.
//!
//! A heartbeat that arrives proves its process alive even when it cannot be stored (a
//! full disk, a database that refuses writes): the heartbeat monitor must not kill a
//! live process because the server itself could not write. The instance endpoint notes
//! every heartbeat of a connection that showed its credential here before storing it;
//! the monitor counts a process as silent only when neither the stored heartbeat nor
//! this one is recent. Entries are dropped when the process ends.

use std::collections::HashMap;
use std::sync::Mutex;

use runtara_core::now_ms;

/// Last heartbeat arrival per instance id, in milliseconds since the epoch.
#[derive(Debug, Default)]
pub struct HeardFrom(Mutex<HashMap<String, i64>>);

impl HeardFrom {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A heartbeat of the instance arrived now.
    pub fn heartbeat(&self, instance_id: &str) {
        let now = now_ms();
        let mut map = self.map();
        match map.get_mut(instance_id) {
            Some(last) => *last = now,
            None => {
                map.insert(instance_id.to_owned(), now);
            }
        }
    }

    /// When the instance's last heartbeat arrived, if one did since its process started.
    pub fn last(&self, instance_id: &str) -> Option<i64> {
        self.map().get(instance_id).copied()
    }

    /// The instance's process ended.
    pub fn forget(&self, instance_id: &str) {
        self.map().remove(instance_id);
    }
}
