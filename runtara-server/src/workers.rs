//! Worker processes: long-lived processes of an image, each running many of its
//! instances, fed by the server over their one connection ([`runtara_protocol::worker`]).
//!
//! An image with a worker pool (`Persistence::set_image_workers`) has its instances
//! placed on its workers instead of launched one process each: on the least busy
//! connected worker with room, or on a new worker while the pool has fewer than its
//! maximum. A placed instance is *hosted*: the server sends it with `Run`, accepts its
//! requests on that worker's connection only, and learns from the worker when its run is
//! over. A worker that exits (`kill -9` included) ends every run it hosted as a crash,
//! and the supervisor runs each again from its last checkpoint, on another worker.
//!
//! The supervisor treats a hosted run like a process (`supervisor::Process::Hosted`):
//! the same slot, the same decisions after its end. Not yet: a pool's minimum kept
//! running ahead of need, and workers stopped when idle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use anyhow::Context;
use runtara_core::{
    handle_instance_request_within, EventQuota, ImageRecord, InstanceIdentity, InstanceRecord,
    Persistence, WorkerPool,
};
use runtara_protocol::{
    read_frame, write_frame, ByteBuf, ErrorCode, InstanceRequest, InstanceResponse, WireError,
    WorkerCommand, WorkerReply, DEFAULT_MAX_FRAME_LEN,
};
use tokio::sync::{oneshot, Notify};

use crate::credentials::CredentialKey;
use crate::image_store::random_hex;

/// The folder under the data dir holding one folder per worker, with its `output.log`.
pub const WORKER_FILES_DIR: &str = "worker-files";

/// How long a placement waits for a worker with room (a new one to start and connect,
/// or a busy one to finish a run).
const PLACE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a hosted run ended: how (for events and logs), and whether on its own.
pub type RunEnd = (String, bool);

/// What launching a worker needs (known once the server has bound its endpoints).
#[derive(Debug, Clone)]
pub struct WorkerLaunch {
    /// Where image binaries live.
    pub images_dir: PathBuf,
    /// Where each worker gets a folder for its output (`<data-dir>/worker-files`).
    pub workers_dir: PathBuf,
    /// Address workers connect to.
    pub instance_addr: std::net::SocketAddr,
    /// The certificate workers trust.
    pub ca_path: Option<PathBuf>,
    /// Heartbeat interval of the instances they run.
    pub heartbeat_interval: Duration,
    /// Durable sleeps longer than this end the instance's run; it is sent again at the
    /// wake time.
    pub sleep_exit_threshold: Duration,
    /// The store: the server registers each run before sending it.
    pub store: Arc<dyn Persistence>,
    /// The event limits of the instances' requests.
    pub events: EventQuota,
}

/// A run placed on a worker.
#[derive(Debug)]
pub struct Placement {
    /// The worker.
    pub worker_id: String,
    /// Its connection.
    pub connection: quinn::Connection,
    /// Told how the run ended; dropped (an error) when the worker is gone.
    pub ended: oneshot::Receiver<RunEnd>,
}

#[derive(Debug)]
struct Worker {
    image_id: String,
    tenant_id: String,
    /// Once it said hello.
    connection: Option<quinn::Connection>,
    /// The runs it hosts, each with whom to tell when it is over.
    hosted: HashMap<String, oneshot::Sender<RunEnd>>,
}

/// The server's workers.
#[derive(Debug)]
pub struct Workers {
    key: CredentialKey,
    launch: OnceLock<WorkerLaunch>,
    workers: Mutex<HashMap<String, Worker>>,
    /// Woken when a worker connects, a run ends or a worker is gone.
    changed: Notify,
}

/// The name a worker's credential is bound to (a space: no instance id has one).
fn credential_name(worker_id: &str) -> String {
    format!("worker {worker_id}")
}

fn refused(code: ErrorCode, message: String) -> WireError {
    WireError::new(code, message)
}

impl Workers {
    /// No workers yet; they can be launched once [`configure`](Self::configure)d.
    pub fn new(key: CredentialKey) -> Arc<Workers> {
        Arc::new(Workers {
            key,
            launch: OnceLock::new(),
            workers: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    /// Sets what launching a worker needs (once).
    pub fn configure(&self, launch: WorkerLaunch) {
        let _ = self.launch.set(launch);
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A worker's hello: admitted when it is one this server launched, for that image
    /// and tenant, with its credential.
    pub fn connected(
        &self,
        worker_id: &str,
        tenant_id: &str,
        image_id: &str,
        credential: Option<&str>,
        connection: quinn::Connection,
    ) -> Result<(), WireError> {
        let proven = credential
            .and_then(|c| self.key.verify(&credential_name(worker_id), c))
            .is_some();
        if !proven {
            return Err(refused(
                ErrorCode::Unauthorized,
                format!("the worker credential is not valid for worker `{worker_id}`"),
            ));
        }
        let mut workers = self.workers();
        let Some(worker) = workers.get_mut(worker_id) else {
            return Err(refused(
                ErrorCode::Unauthorized,
                format!("worker `{worker_id}` is not running for this server"),
            ));
        };
        if worker.tenant_id != tenant_id || worker.image_id != image_id {
            return Err(refused(
                ErrorCode::Unauthorized,
                format!("worker `{worker_id}` was launched for another image or tenant"),
            ));
        }
        worker.connection = Some(connection);
        drop(workers);
        self.changed.notify_waiters();
        Ok(())
    }

    /// The tenant of `instance_id` when `worker_id` hosts it: only then may the worker
    /// act for it.
    pub fn hosts(&self, worker_id: &str, instance_id: &str) -> Option<String> {
        let workers = self.workers();
        let worker = workers.get(worker_id)?;
        worker
            .hosted
            .contains_key(instance_id)
            .then(|| worker.tenant_id.clone())
    }

    /// Whether `worker_id` hosts any run now.
    pub fn is_busy(&self, worker_id: &str) -> bool {
        self.workers()
            .get(worker_id)
            .is_some_and(|worker| !worker.hosted.is_empty())
    }

    /// The worker says the run of `instance_id` is over.
    pub fn ended(&self, worker_id: &str, instance_id: &str, end: RunEnd) {
        let told = self
            .workers()
            .get_mut(worker_id)
            .and_then(|worker| worker.hosted.remove(instance_id));
        if let Some(told) = told {
            let _ = told.send(end);
        }
        self.changed.notify_waiters();
    }

    /// Places `instance`'s run on a worker of `image` with room, launching one while the
    /// pool has fewer than `pool.max`, registers the run and sends it to the worker with
    /// its registration (so the worker's first request is the workflow's own). A run
    /// that cannot register or be sent ends at once as a crash; the placement says so.
    pub async fn place(
        self: &Arc<Self>,
        image: &ImageRecord,
        pool: WorkerPool,
        instance: &InstanceRecord,
    ) -> anyhow::Result<Placement> {
        let deadline = tokio::time::Instant::now() + PLACE_TIMEOUT;
        let instance_id = &instance.instance_id;
        let placement = loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(placement) = self.place_now(image, pool, instance_id)? {
                break placement;
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
        let registered = match self.register(instance).await {
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
        if let Err(error) = command_worker(&placement.connection, &command).await {
            let how = format!("the run could not be sent to its worker: {error:#}");
            self.ended(&placement.worker_id, instance_id, (how, false));
        }
        Ok(placement)
    }

    /// Registers a run of `instance` (a new epoch, fencing any earlier run): the answer
    /// its worker starts from, or why it could not register.
    async fn register(&self, instance: &InstanceRecord) -> Result<InstanceResponse, String> {
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

    /// A worker with room now, or `None` (having launched one if the pool may grow).
    fn place_now(
        self: &Arc<Self>,
        image: &ImageRecord,
        pool: WorkerPool,
        instance_id: &str,
    ) -> anyhow::Result<Option<Placement>> {
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
            return Ok(Some(Placement {
                worker_id: worker_id.clone(),
                connection,
                ended,
            }));
        }
        let of_image = workers.values().filter(|w| w.image_id == image.image_id);
        let starting = of_image.clone().any(|w| w.connection.is_none());
        if !starting && of_image.count() < pool.max as usize {
            let worker_id = format!("wrk-{}", random_hex(12));
            workers.insert(
                worker_id.clone(),
                Worker {
                    image_id: image.image_id.clone(),
                    tenant_id: image.tenant_id.clone(),
                    connection: None,
                    hosted: HashMap::new(),
                },
            );
            drop(workers);
            if let Err(error) = self.spawn_worker(&worker_id, image) {
                self.gone(&worker_id, &format!("could not start: {error:#}"));
                return Err(error);
            }
        }
        Ok(None)
    }

    /// Starts a worker process of `image` and watches it until it exits.
    fn spawn_worker(self: &Arc<Self>, worker_id: &str, image: &ImageRecord) -> anyhow::Result<()> {
        let launch = self.launch.get().context("workers are not configured")?;
        let binary = launch.images_dir.join(&image.sha256);
        let dir = launch.workers_dir.join(worker_id);
        std::fs::create_dir_all(&dir)?;
        let output = std::fs::File::create(dir.join("output.log"))?;
        let mut command = crate::instance_process::image_command(&binary);
        command
            .env("RUNTARA_WORKER_ID", worker_id)
            .env("RUNTARA_TENANT_ID", &image.tenant_id)
            .env("RUNTARA_IMAGE_ID", &image.image_id)
            .env(
                "RUNTARA_WORKER_CREDENTIAL",
                self.key.issue(&credential_name(worker_id), 0),
            )
            .env("RUNTARA_SERVER_ADDR", launch.instance_addr.to_string())
            .env("RUNTARA_SERVER_NAME", "localhost")
            .env(
                "RUNTARA_HEARTBEAT_INTERVAL_MS",
                launch.heartbeat_interval.as_millis().to_string(),
            )
            .env(
                "RUNTARA_SLEEP_EXIT_THRESHOLD_MS",
                launch.sleep_exit_threshold.as_millis().to_string(),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        if let Some(ca) = &launch.ca_path {
            command.env("RUNTARA_CA_CERT", ca);
        }
        let mut child = command.spawn()?;
        tracing::info!(%worker_id, image_id = %image.image_id, pid = ?child.id(), "worker launched");
        let (me, worker_id) = (Arc::clone(self), worker_id.to_owned());
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(status) => status.to_string(),
                Err(error) => format!("unknown exit ({error})"),
            };
            me.gone(&worker_id, &how);
        });
        Ok(())
    }

    /// A worker is gone: every run it hosted ends as a crash.
    fn gone(&self, worker_id: &str, how: &str) {
        if let Some(worker) = self.workers().remove(worker_id) {
            tracing::warn!(%worker_id, %how, runs = worker.hosted.len(), "worker exited; its runs end as crashes");
            if let Some(connection) = worker.connection {
                connection.close(0u32.into(), b"worker gone");
            }
        }
        self.changed.notify_waiters();
    }

    /// Asks the worker to stop the run of `instance_id` now (a kill).
    pub fn stop(&self, worker_id: &str, instance_id: &str) {
        let connection = self
            .workers()
            .get(worker_id)
            .and_then(|worker| worker.connection.clone());
        let Some(connection) = connection else { return };
        let command = WorkerCommand::Stop {
            instance_id: instance_id.to_owned(),
        };
        tokio::spawn(async move {
            if let Err(error) = command_worker(&connection, &command).await {
                tracing::warn!(%error, "could not stop a run on its worker");
            }
        });
    }
}

/// Sends `command` on a stream of its own and reads the worker's reply.
async fn command_worker(
    connection: &quinn::Connection,
    command: &WorkerCommand,
) -> anyhow::Result<()> {
    let (mut send, mut recv) = connection.open_bi().await?;
    write_frame(&mut send, command).await?;
    send.finish()?;
    match read_frame::<_, WorkerReply>(&mut recv, DEFAULT_MAX_FRAME_LEN).await? {
        Some(WorkerReply::Accepted) => Ok(()),
        Some(WorkerReply::Refused(error)) => {
            anyhow::bail!("the worker refused: {} ({})", error.message, error.code)
        }
        None => anyhow::bail!("the worker closed the stream without an answer"),
    }
}
