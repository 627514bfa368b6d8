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
//! the same slot, the same decisions after its end. A pool's minimum of workers is kept
//! running ahead of need ([`Workers::keep_minimum`]); a worker beyond it stops once it
//! has hosted nothing for the connection idle timeout. A connected worker sends a
//! heartbeat every heartbeat interval; one silent past the heartbeat timeout (hung,
//! stopped) is killed, and its runs run again.

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
use tokio::time::Instant;

use crate::credentials::CredentialKey;
use crate::image_store::random_hex;
use crate::log_tail::LogTail;

/// The folder under the data dir holding one folder per worker, with its `output.log`.
pub const WORKER_FILES_DIR: &str = "worker-files";

/// How long a placement waits for a worker with room (a new one to start and connect,
/// or a busy one to finish a run).
const PLACE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long after a worker of a pool's minimum exits a new one is launched.
const REPLACE_DELAY: Duration = Duration::from_secs(1);

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
    /// Heartbeat interval of the workers (and of the instances they run).
    pub heartbeat_interval: Duration,
    /// A connected worker silent for this long is killed; its runs are run again.
    pub heartbeat_timeout: Duration,
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
    /// Told how the run ended; dropped (an error) when the worker is gone.
    pub ended: oneshot::Receiver<RunEnd>,
}

/// What [`Workers::place_now`] found.
enum Room {
    /// A worker with room took the run: the placement, and the worker's connection.
    Placed(Placement, quinn::Connection),
    /// None; this worker was launched for the run.
    Launched(String),
    /// None; wait for a change.
    Wait,
}

#[derive(Debug)]
struct Worker {
    image_id: String,
    tenant_id: String,
    /// Once it said hello.
    connection: Option<quinn::Connection>,
    /// The runs it hosts, each with whom to tell when it is over.
    hosted: HashMap<String, oneshot::Sender<RunEnd>>,
    /// When it was last heard from (launched, connected, a heartbeat).
    heard_at: Instant,
    /// Kills its process (taken when used).
    kill: Option<oneshot::Sender<()>>,
    /// Launched for a placement, which learns if it exits before connecting.
    for_placement: bool,
}

/// The server's workers.
#[derive(Debug)]
pub struct Workers {
    key: CredentialKey,
    launch: OnceLock<WorkerLaunch>,
    workers: Mutex<HashMap<String, Worker>>,
    /// The images whose pool has a minimum, by image id: that many of their workers are
    /// kept running, needed or not.
    minimums: Mutex<HashMap<String, (ImageRecord, u32)>>,
    /// Workers that exited before they connected, with how (and their last output), for
    /// the placement that launched them.
    failed_starts: Mutex<HashMap<String, String>>,
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
            minimums: Mutex::new(HashMap::new()),
            failed_starts: Mutex::new(HashMap::new()),
            changed: Notify::new(),
        })
    }

    /// Sets what launching a worker needs (once), and starts watching the workers'
    /// heartbeats. Call it inside the server's tokio runtime.
    pub fn configure(self: &Arc<Self>, launch: WorkerLaunch) {
        let timeout = launch.heartbeat_timeout;
        if self.launch.set(launch).is_ok() && !timeout.is_zero() {
            tokio::spawn(Arc::clone(self).watch_heartbeats(timeout));
        }
    }

    /// Kills every connected worker silent for longer than `timeout` (a hung or stopped
    /// process): its runs end as crashes and run again elsewhere.
    async fn watch_heartbeats(self: Arc<Self>, timeout: Duration) {
        let period = (timeout / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(period).await;
            let mut workers = self.workers();
            for (worker_id, worker) in workers.iter_mut() {
                if worker.connection.is_none() || worker.heard_at.elapsed() <= timeout {
                    continue;
                }
                if let Some(kill) = worker.kill.take() {
                    tracing::warn!(%worker_id, runs = worker.hosted.len(), "no heartbeat from the worker; killing it");
                    let _ = kill.send(());
                }
            }
        }
    }

    fn minimums(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ImageRecord, u32)>> {
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
    fn top_up(self: &Arc<Self>, image_id: &str) {
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
        worker.heard_at = Instant::now();
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

    fn failed_starts(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.failed_starts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A new worker of `image`, starting (not yet connected): its id.
    fn add_worker(
        &self,
        workers: &mut HashMap<String, Worker>,
        image: &ImageRecord,
        for_placement: bool,
    ) -> String {
        let worker_id = format!("wrk-{}", random_hex(12));
        workers.insert(
            worker_id.clone(),
            Worker {
                image_id: image.image_id.clone(),
                tenant_id: image.tenant_id.clone(),
                connection: None,
                hosted: HashMap::new(),
                heard_at: Instant::now(),
                kill: None,
                for_placement,
            },
        );
        worker_id
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
        let (kill, killed) = oneshot::channel();
        if let Some(worker) = self.workers().get_mut(worker_id) {
            worker.kill = Some(kill);
        }
        let (me, worker_id) = (Arc::clone(self), worker_id.to_owned());
        tokio::spawn(async move {
            let exit = tokio::select! {
                exit = child.wait() => exit,
                Ok(()) = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let how = match exit {
                Ok(status) => status.to_string(),
                Err(error) => format!("unknown exit ({error})"),
            };
            me.gone(&worker_id, &how);
        });
        Ok(())
    }

    /// A worker is gone: every run it hosted ends as a crash. A pool below its minimum
    /// gets a new worker after [`REPLACE_DELAY`] (not at once: a worker that cannot
    /// start must not make a busy loop).
    fn gone(self: &Arc<Self>, worker_id: &str, how: &str) {
        let image_id = self.workers().remove(worker_id).map(|worker| {
            tracing::warn!(%worker_id, %how, runs = worker.hosted.len(), "worker exited; its runs end as crashes");
            match worker.connection {
                Some(connection) => connection.close(0u32.into(), b"worker gone"),
                None if !worker.for_placement => {}
                None => {
                    let output = self.launch.get().and_then(|launch| {
                        LogTail::in_dir(&launch.workers_dir.join(worker_id)).text()
                    });
                    let how = match output {
                        Some(output) => format!("the worker exited ({how}) before it connected; last output:\n{output}"),
                        None => format!("the worker exited ({how}) before it connected"),
                    };
                    self.failed_starts().insert(worker_id.to_owned(), how);
                }
            }
            worker.image_id
        });
        self.changed.notify_waiters();
        if let Some(image_id) = image_id.filter(|id| self.minimums().contains_key(id)) {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(REPLACE_DELAY).await;
                me.top_up(&image_id);
            });
        }
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
