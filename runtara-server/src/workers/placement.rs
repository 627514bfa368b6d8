//! Placing a run on a worker with room (launching one if the pool may grow), registering
//! it, and sending it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::Context;
use runtara_core::{
    handle_instance_request_within, ImageRecord, InstanceIdentity, InstanceRecord, WorkerPool,
};
use runtara_protocol::{ByteBuf, InstanceRequest, InstanceResponse, WorkerCommand};
use tokio::sync::oneshot;

use super::{command_worker, Placement, Workers};

/// How long a placement waits for a worker with room (a new one to start and connect,
/// or a busy one to finish a run).
const PLACE_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`Workers::place_now`] found.
enum Room {
    /// A worker with room took the run: the placement, and the worker's connection.
    Placed(Placement, quinn::Connection),
    /// None; this worker was launched for the run.
    Launched(String),
    /// None; wait for a change.
    Wait,
}

impl Workers {
    /// Places `instance`'s run on a worker of `image` with room, launching one while the
    /// pool has fewer than `pool.max`, registers the run and sends it to the worker with
    /// its registration (so the worker's first request is the workflow's own). A run
    /// that cannot register or be sent ends at once as a crash; the placement says so.
    pub async fn place(
        self: &Arc<Self>,
        image: &ImageRecord,
        pool: WorkerPool,
        instance: &InstanceRecord,
        registered: bool,
    ) -> anyhow::Result<Placement> {
        let deadline = tokio::time::Instant::now() + PLACE_TIMEOUT;
        let instance_id = &instance.instance_id;
        let mut launched = Vec::new();
        let (placement, connection) = loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // A worker launched for this run that died before it connected ends the run
            // as a crash of its process would (counted, with its output).
            let failed = {
                let mut failed_starts = self.failed_starts();
                launched.iter().find_map(|id| failed_starts.remove(id))
            };
            if let Some(how) = failed {
                let (told, ended) = oneshot::channel();
                let _ = told.send((how, false));
                let worker_id = launched.pop().unwrap_or_default();
                return Ok(Placement { worker_id, ended });
            }
            match self.place_now(image, pool, instance_id)? {
                Room::Placed(placement, connection) => break (placement, connection),
                Room::Launched(worker_id) => launched.push(worker_id),
                Room::Wait => {}
            }
            tokio::time::timeout_at(deadline, changed)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "no worker of image `{}` had room within {PLACE_TIMEOUT:?}",
                        image.image_id
                    )
                })?;
        };
        let registered = match self.register(instance, registered).await {
            Ok(registered) => registered,
            Err(how) => {
                self.ended(&placement.worker_id, instance_id, (how, false));
                return Ok(placement);
            }
        };
        let command = WorkerCommand::Run {
            instance_id: instance_id.clone(),
            input: instance.input.clone().map(ByteBuf::from),
            checkpoint_id: instance.checkpoint_id.clone(),
            registered: Some(Box::new(registered)),
        };
        if let Err(error) = command_worker(&connection, &command).await {
            let how = format!("the run could not be sent to its worker: {error:#}");
            self.ended(&placement.worker_id, instance_id, (how, false));
        }
        Ok(placement)
    }

    /// Registers a run of `instance` (a new epoch, fencing any earlier run): the answer
    /// its worker starts from, or why it could not register. An instance its start
    /// created registered for this launch (running, epoch 1, nothing recorded) needs no
    /// write: its answer is made here.
    async fn register(
        &self,
        instance: &InstanceRecord,
        registered: bool,
    ) -> Result<InstanceResponse, String> {
        let fresh = instance.status == runtara_core::InstanceStatus::Running
            && instance.epoch == 1
            && instance.checkpoint_count == 0;
        if registered && fresh {
            return Ok(InstanceResponse::RegisteredPage {
                epoch: 1,
                checkpoints: Vec::new(),
                retry_attempts: Vec::new(),
                retry_at_ms: Vec::new(),
                failures: Vec::new(),
                producer_names: Vec::new(),
                produced_by: Vec::new(),
                more_after: None,
            });
        }
        let launch = self
            .launch
            .get()
            .ok_or_else(|| "workers are not configured".to_owned())?;
        let who = InstanceIdentity {
            instance_id: instance.instance_id.clone(),
            tenant_id: instance.tenant_id.clone(),
        };
        let request = InstanceRequest::RegisterPaged {
            checkpoint_id: instance.checkpoint_id.clone(),
        };
        match handle_instance_request_within(&*launch.store, &who, request, &launch.events).await {
            InstanceResponse::Error(error) => Err(format!("it could not register: {error}")),
            registered => Ok(registered),
        }
    }

    /// A worker with room now, or none (having launched one if the pool may grow).
    fn place_now(
        self: &Arc<Self>,
        image: &ImageRecord,
        pool: WorkerPool,
        instance_id: &str,
    ) -> anyhow::Result<Room> {
        let mut workers = self.workers();
        let room = workers
            .iter_mut()
            .filter(|(_, w)| w.image_id == image.image_id && w.connection.is_some())
            .filter(|(_, w)| w.hosted.len() < pool.instances as usize)
            .min_by_key(|(_, w)| w.hosted.len());
        if let Some((worker_id, worker)) = room {
            let (told, ended) = oneshot::channel();
            worker.hosted.insert(instance_id.to_owned(), told);
            let connection = worker.connection.clone().context("a connected worker")?;
            let placement = Placement {
                worker_id: worker_id.clone(),
                ended,
            };
            return Ok(Room::Placed(placement, connection));
        }
        let of_image = workers.values().filter(|w| w.image_id == image.image_id);
        let starting = of_image.clone().any(|w| w.connection.is_none());
        if !starting && of_image.count() < pool.max as usize {
            let worker_id = self.add_worker(&mut workers, image, true);
            drop(workers);
            if let Err(error) = self.spawn_worker(&worker_id, image) {
                self.gone(&worker_id, &format!("could not start: {error:#}"));
                self.failed_starts().remove(&worker_id);
                return Err(error);
            }
            return Ok(Room::Launched(worker_id));
        }
        Ok(Room::Wait)
    }

    pub(super) fn failed_starts(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.failed_starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
