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
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use runtara_core::{EventQuota, ImageRecord, Persistence};
use runtara_protocol::{
    read_frame, write_frame, ErrorCode, WireError, WorkerCommand, WorkerReply,
    DEFAULT_MAX_FRAME_LEN,
};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::credentials::CredentialKey;
use crate::image_store::random_hex;
use crate::log_tail::LogTail;

mod launch;
mod placement;
mod pool;

use pool::REPLACE_DELAY;

/// The folder under the data dir holding one folder per worker, with its `output.log`.
pub const WORKER_FILES_DIR: &str = "worker-files";

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
