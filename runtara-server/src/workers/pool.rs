//! A pool's minimum of workers kept running, idle workers let go, and the heartbeat
//! watchdog that kills a worker gone silent.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use runtara_core::ImageRecord;
use tokio::time::Instant;

use super::Workers;

/// How long after a worker of a pool's minimum exits a new one is launched.
pub(super) const REPLACE_DELAY: Duration = Duration::from_secs(1);

impl Workers {
    /// Kills every worker silent for longer than `timeout` (a hung or stopped process,
    /// or one that has not connected that long after its launch): its runs end as
    /// crashes and run again elsewhere.
    pub(super) async fn watch_heartbeats(self: Arc<Self>, timeout: Duration) {
        let period = (timeout / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(period).await;
            let mut workers = self.workers();
            for (worker_id, worker) in workers.iter_mut() {
                if worker.heard_at.elapsed() <= timeout {
                    continue;
                }
                // A worker that never connected is killed too: while it counts as
                // starting, no other worker of its image is launched, and the run it
                // was launched for would wait for it in vain.
                if let Some(kill) = worker.kill.take() {
                    match worker.connection {
                        Some(_) => {
                            tracing::warn!(%worker_id, runs = worker.hosted.len(), "no heartbeat from the worker; killing it")
                        }
                        None => {
                            tracing::warn!(%worker_id, ?timeout, "the worker did not connect in time; killing it")
                        }
                    }
                    let _ = kill.send(());
                }
            }
        }
    }

    pub(super) fn minimums(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (ImageRecord, u32)>> {
        self.minimums.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes `image`'s pool (or its lack of one) and launches workers until it has its
    /// minimum running. Workers beyond a lowered minimum stop when idle.
    pub fn keep_minimum(self: &Arc<Self>, image: &ImageRecord) {
        match image.workers {
            Some(pool) if pool.min > 0 => {
                self.minimums()
                    .insert(image.image_id.clone(), (image.clone(), pool.min));
            }
            _ => {
                self.minimums().remove(&image.image_id);
                return;
            }
        }
        self.top_up(&image.image_id);
    }

    /// Launches workers of `image_id` until its minimum runs.
    pub(super) fn top_up(self: &Arc<Self>, image_id: &str) {
        let Some((image, min)) = self.minimums().get(image_id).cloned() else {
            return;
        };
        loop {
            let mut workers = self.workers();
            let running = workers.values().filter(|w| w.image_id == image_id).count();
            if running >= min as usize {
                return;
            }
            let worker_id = self.add_worker(&mut workers, &image, false);
            drop(workers);
            if let Err(error) = self.spawn_worker(&worker_id, &image) {
                tracing::warn!(%image_id, error = %format!("{error:#}"), "cannot launch a worker of the pool's minimum");
                self.gone(&worker_id, &format!("could not start: {error:#}"));
                return;
            }
        }
    }

    /// Whether `worker_id` may stop for being idle: its image has more workers than its
    /// pool's minimum.
    pub fn may_idle_out(&self, worker_id: &str) -> bool {
        let workers = self.workers();
        let Some(image_id) = workers.get(worker_id).map(|w| w.image_id.clone()) else {
            return true;
        };
        let min = self.minimums().get(&image_id).map_or(0, |(_, min)| *min);
        workers.values().filter(|w| w.image_id == image_id).count() > min as usize
    }

    /// A heartbeat of `worker_id` arrived.
    pub fn heard_from(&self, worker_id: &str) {
        if let Some(worker) = self.workers().get_mut(worker_id) {
            worker.heard_at = Instant::now();
        }
    }
}
