//! The process runner: launches instances as OS processes of their image binary and
//! keeps them going through crashes, sleeps, pauses, cancels and server restarts.
//!
//! The status of an instance always comes from what its process acknowledged (stored by
//! the instance endpoint), never from an exit code. When a process exits the supervisor
//! reads the stored status and acts on it:
//!
//! | stored status after the exit | action |
//! |---|---|
//! | `completed`, `failed`, `cancelled`, `suspended` | nothing (the process stopped as asked) |
//! | `sleeping` | relaunch at the wake time |
//! | `running` or `pending` with a cancel queued | `cancelled` |
//! | `running` with a pause queued, after a clean exit (the process returned at the pause without acknowledging it) | `suspended`, the pause settled; if a resume withdrew it meanwhile, relaunched at once |
//! | `running`, nothing queued, after a resume withdrew a pause during the run | relaunched at once (the process may have taken the pause before the resume) |
//! | `running` or `pending` otherwise (a crash) | relaunch from the last checkpoint, at once after a first crash and after a doubling backoff on crashes in a row; after `max_restarts` crashes in a row, `failed` with the reason |
//!
//! The decisions are pure functions in `exit_decision.rs`, tested row by row; this
//! module gathers what they need and carries them out.
//!
//! A process that stops heartbeating for `heartbeat_timeout` is killed and handled as a
//! crash. No instance ever has two live processes: every launch first claims the lock
//! on the instance's output file, which a live process holds for its whole life (see
//! [`crate::instance_process`]); while it is held, the live process — one an earlier
//! server launched and left running — is adopted instead, and watched like one of ours.
//! On start-up the supervisor takes over what a previous server left: `pending`
//! instances are launched (or their live process adopted), `sleeping` ones scheduled,
//! and `running` ones adopted when their process lives; otherwise they are relaunched
//! once their heartbeats stop. A relaunch registers a new epoch, which fences out any
//! older process of the same instance.
//!
//! Each launched instance has a folder, `<data-dir>/instance-files/<digest>` (see
//! [`crate::valid_ids::instance_folder`]), holding its input and output files; a raw
//! instance id is never part of a path, and ids read back from storage pass
//! [`check_id`] before an instance is adopted or launched. The launch count shown in
//! status replies is read from the stored `launched` events, so it survives restarts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use runtara_core::storage_health::STORAGE;
use runtara_core::{now_ms, EventKind, InstanceRecord, InstanceStatus, Persistence, SignalType};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use crate::admission::{Admission, Launch, Limits, Offer, Place};
use crate::credentials::CredentialKey;
use crate::exit_decision::{
    after_crash, by_queued_signal, by_status, AfterCrash, ByQueuedSignal, ByStatus, CrashHistory,
    HowItEnded,
};
use crate::heard_from::HeardFrom;
use crate::instance_process;
use crate::log_tail::{Claim, LogTail};
use crate::valid_ids::{check_id, instance_folder};
use crate::workers::{Placement, RunEnd, Workers};

/// The folder under the data dir holding one folder of files per instance, named by
/// [`instance_folder`] (a digest of tenant and id, never the raw id).
pub const INSTANCE_FILES_DIR: &str = "instance-files";
/// Where servers before 1.0.1 kept instance folders, named by the raw instance id;
/// moved into [`INSTANCE_FILES_DIR`] at start-up ([`Supervisor::recover`]).
pub const LEGACY_INSTANCES_DIR: &str = "instances";

/// The folder under the data dir holding one empty file per live instance process this
/// server (or an earlier one) launched, named as its instance folder: a restarted server
/// finds there the processes still alive that no unfinished instance accounts for (a
/// process that recorded its end and has not exited yet) and counts them against
/// `--max-running` until they exit.
pub const LIVE_PROCESSES_DIR: &str = "live-processes";

/// Finished instances whose launch count is kept in memory, at most.
const MAX_FINISHED_LAUNCHES: usize = 10_000;

/// How often the `waiting` instances whose event is there are looked for.
const WAKE_SWEEP: Duration = Duration::from_secs(1);

/// Timings and paths of the runner.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Heartbeats as they arrive, whether or not they could be stored (shared with the
    /// instance endpoint).
    pub heard_from: Arc<HeardFrom>,
    /// The waits for instances to finish, told when a run's end is decided (shared with
    /// the instance endpoint and the management endpoint).
    pub completions: Arc<crate::completions::Completions>,
    /// Where image binaries live (`<data-dir>/images`).
    pub images_dir: PathBuf,
    /// Where per-instance folders (input and output files) live
    /// (`<data-dir>/instance-files`), one per instance, named by [`instance_folder`].
    pub instances_dir: PathBuf,
    /// Where older servers kept per-instance folders under the raw id
    /// (`<data-dir>/instances`); migrated at start-up.
    pub legacy_instances_dir: PathBuf,
    /// One file per live launched process ([`LIVE_PROCESSES_DIR`]).
    pub live_dir: PathBuf,
    /// Address instances connect to.
    pub instance_addr: std::net::SocketAddr,
    /// The certificate launched instances trust.
    pub ca_path: Option<PathBuf>,
    /// Heartbeat interval given to launched instances.
    pub heartbeat_interval: Duration,
    /// A running instance silent for this long is considered crashed.
    pub heartbeat_timeout: Duration,
    /// Durable sleeps longer than this end the process; the server relaunches it.
    pub sleep_exit_threshold: Duration,
    /// Time a cancelled process gets to stop on its own before it is killed.
    pub cancel_grace: Duration,
    /// Crashes in a row after which the instance is `failed`.
    pub max_restarts: u32,
    /// Wait before relaunching an instance that crashed again (a first crash is relaunched
    /// at once); doubles with each further crash in a row.
    pub restart_backoff: Duration,
    /// Issues each launched process its credential (`RUNTARA_INSTANCE_CREDENTIAL`).
    pub credential_key: CredentialKey,
    /// How many processes run at once (see [`crate::admission`]).
    pub limits: Limits,
    /// The worker processes of images that have a pool ([`crate::workers`]).
    pub workers: Arc<Workers>,
}

/// What the supervisor knows of one instance's processes (this server's lifetime).
#[derive(Debug, Default)]
struct Run {
    /// Processes launched.
    launches: u32,
    /// Crashes in a row (reset when the instance makes progress).
    crashes: u32,
    /// Checkpoint count at the last launch, to tell progress from a crash loop.
    checkpoints_at_launch: i64,
    /// Generation of the live process, if any.
    live: Option<u64>,
    /// Kill switch of the live process.
    kill: Option<oneshot::Sender<()>>,
    /// Per-instance timeout, from the start request.
    timeout: Option<Duration>,
    /// A resume arrived while the paused process was still exiting.
    resume_after_exit: bool,
    /// A resume withdrew a queued pause while this process ran: should it stop for that
    /// pause anyway, it is relaunched at once rather than handled as a crash.
    relaunch_on_exit: bool,
    /// The live run is hosted by a worker, which is watched instead of its heartbeats.
    hosted: bool,
    /// Its last run ended and what follows is decided here (and, for a relaunch, until
    /// the next run is launched): the heartbeat monitor must not judge it a second time.
    ending: bool,
}

/// How a process ended, as `after_exit` weighs it.
#[derive(Debug)]
struct Exited {
    /// The exit status, for events and messages.
    how: String,
    /// It exited on its own with status 0.
    clean: bool,
    /// It was killed for running past its timeout.
    timed_out: bool,
    /// A resume withdrew a pause while it ran ([`Run::relaunch_on_exit`]).
    relaunch: bool,
}

/// A summary for status replies.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// Processes launched for the instance, by this server and earlier ones.
    pub launches: u32,
    /// Tail of the last process's output.
    pub log_tail: Option<String>,
}

/// Launches and watches instance processes.
#[derive(Debug)]
pub struct Supervisor {
    store: Arc<dyn Persistence>,
    settings: RunnerSettings,
    runs: Mutex<HashMap<String, Run>>,
    /// Slots of the processes running and the launches waiting for one.
    admission: Mutex<Admission>,
    /// Launch counts of finished instances, once read (see [`Supervisor::launches`]).
    finished_launches: Mutex<HashMap<String, u32>>,
    generation: AtomicU64,
    me: Weak<Supervisor>,
}

impl Supervisor {
    /// A supervisor over `store`.
    pub fn new(store: Arc<dyn Persistence>, settings: RunnerSettings) -> Arc<Supervisor> {
        Arc::new_cyclic(|me| Supervisor {
            store,
            runs: Mutex::new(HashMap::new()),
            admission: Mutex::new(Admission::new(settings.limits)),
            finished_launches: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            me: me.clone(),
            settings,
        })
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admission(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `instance_id`'s launch waits for a slot, if it does.
    pub fn queue_place(&self, instance_id: &str) -> Option<Place> {
        self.admission().place(instance_id)
    }

    /// The capacity settings in force.
    pub fn limits(&self) -> Limits {
        self.admission().limits()
    }

    /// Processes holding a slot, and launches waiting for one.
    pub fn slots(&self) -> (usize, usize) {
        let admission = self.admission();
        (admission.running(), admission.waiting())
    }

    /// Notes how `image` runs its instances: a worker pool's capacity (workers × instances
    /// each) is the image's own limit of runs at once, so that launches beyond it wait
    /// in the queue rather than for room on a worker.
    pub fn note_image(&self, image: &runtara_core::ImageRecord) {
        let capacity = image.workers.map(|pool| {
            usize::try_from(u64::from(pool.max) * u64::from(pool.instances)).unwrap_or(usize::MAX)
        });
        let admitted = self.admission().set_image_limit(&image.image_id, capacity);
        for launch in admitted {
            self.launch_admitted(launch, true);
        }
        self.settings.workers.keep_minimum(image);
    }

    /// Takes a slot for a start's launch if one is free now (see
    /// [`Admission::reserve`](crate::admission::Admission::reserve)); then the start
    /// creates its instance registered and calls [`launch_reserved`](Self::launch_reserved),
    /// or [`release_reserved`](Self::release_reserved) when it created nothing.
    pub fn reserve(&self, launch: &Launch) -> bool {
        self.admission().reserve(launch)
    }

    /// Launches a start that holds the slot [`reserve`](Self::reserve) took.
    pub fn launch_reserved(&self, launch: Launch) {
        self.launch_admitted(launch, true);
    }

    /// Gives back a slot [`reserve`](Self::reserve) took for a start that created
    /// nothing.
    pub fn release_reserved(&self, instance_id: &str) {
        self.release_slot(instance_id);
    }

    /// Takes `instance_id`'s launch out of the queue before it ran (a pause or a cancel
    /// arrived first). False when it was not waiting.
    pub fn withdraw_queued(&self, instance_id: &str) -> bool {
        self.admission().withdraw(instance_id)
    }

    /// Asks for a slot for `launch` and launches it as soon as it has one: at once when
    /// one is free, else when its turn comes. Synchronous, so that launches offered one
    /// after another keep their order.
    pub fn admit(&self, launch: Launch) {
        let offer = self.admission().offer(launch.clone());
        match offer {
            Offer::Now => self.launch_admitted(launch, true),
            Offer::Held => self.launch_admitted(launch, false),
            Offer::Queued => {
                tracing::debug!(instance_id = %launch.instance_id, "no free slot; the launch waits its turn");
            }
        }
    }

    /// Launches an admitted instance in the background; a slot taken for it goes back
    /// when no process comes of it.
    fn launch_admitted(&self, launch: Launch, owns_slot: bool) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let started = match me.launch(&launch).await {
                Ok(started) => started,
                Err(error) => {
                    tracing::warn!(instance_id = %launch.instance_id, %error, "launch failed");
                    false
                }
            };
            if !started {
                // The slot is the instance's: a run of it that another launch started
                // meanwhile holds it.
                let runs_elsewhere = me
                    .runs()
                    .get(&launch.instance_id)
                    .is_some_and(|run| run.live.is_some());
                if owns_slot && !runs_elsewhere {
                    me.release_slot(&launch.instance_id);
                }
                me.end_handled(&launch.instance_id);
            }
        });
    }

    /// Gives back `instance_id`'s slot and launches the waiting instances it lets in.
    fn release_slot(&self, instance_id: &str) {
        let admitted = self.admission().release(instance_id);
        for launch in admitted {
            self.launch_admitted(launch, true);
        }
    }

    /// Processes this server is running.
    pub fn live_processes(&self) -> u32 {
        let live = self.runs().values().filter(|r| r.live.is_some()).count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }

    /// Launch count and log tail of an instance.
    pub async fn info(&self, instance: &InstanceRecord) -> RunInfo {
        RunInfo {
            launches: self.launches(instance).await,
            log_tail: self.output(instance).and_then(|log| log.text()),
        }
    }

    /// Processes launched for the instance by any server, counted from its stored
    /// `launched` events, so the count survives a server restart. A finished instance's
    /// count cannot change and is kept once read. If the events cannot be read, the
    /// launches this server made.
    async fn launches(&self, instance: &InstanceRecord) -> u32 {
        let id = &instance.instance_id;
        if instance.image_id.is_none() {
            return 0;
        }
        if let Some(&known) = self.finished_launches().get(id) {
            return known;
        }
        // Counted in storage: the instance's events (custom ones included) are not read.
        match self.store.count_events(id, &EventKind::Launched).await {
            Ok(launched) => {
                let launched = u32::try_from(launched).unwrap_or(u32::MAX);
                if instance.status.is_terminal() {
                    let mut finished = self.finished_launches();
                    if finished.len() >= MAX_FINISHED_LAUNCHES {
                        finished.clear();
                    }
                    finished.insert(id.clone(), launched);
                }
                launched
            }
            Err(error) => {
                tracing::warn!(instance_id = %id, %error, "cannot count the launches of an instance; showing this server's");
                self.runs().get(id).map_or(0, |run| run.launches)
            }
        }
    }

    fn finished_launches(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.finished_launches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The folder of the instance's files: derived from its tenant and id, never the
    /// raw id. `None` for an instance the server does not launch (no image: it was
    /// created by a process started by hand, and has no folder here).
    fn instance_dir(&self, instance: &InstanceRecord) -> Option<PathBuf> {
        self.folder_of(&instance.instance_id, instance.image_id.as_deref())
    }

    fn folder_of(&self, instance_id: &str, image_id: Option<&str>) -> Option<PathBuf> {
        image_id?;
        Some(
            self.settings
                .instances_dir
                .join(instance_folder(instance_id)),
        )
    }

    /// The output file of the instance's current (or last) process.
    fn output(&self, instance: &InstanceRecord) -> Option<LogTail> {
        self.instance_dir(instance).map(|dir| LogTail::in_dir(&dir))
    }

    /// Sets the per-instance timeout (counted from the next launch).
    pub fn set_timeout(&self, instance_id: &str, timeout: Option<Duration>) {
        self.runs()
            .entry(instance_id.to_owned())
            .or_default()
            .timeout = timeout;
    }

    /// Adopts what a previous server left behind and starts the heartbeat monitor.
    pub async fn recover(self: &Arc<Self>) -> anyhow::Result<()> {
        self.migrate_legacy_folders().await;
        let mut unfinished = self.store.list_unfinished().await?;
        // The live processes first, so that they hold their slots before any waiting
        // launch is let in; the rest keep the order of their starts.
        unfinished.sort_by_key(|instance| instance.status != InstanceStatus::Running);
        let accounted: std::collections::HashSet<String> = unfinished
            .iter()
            .map(|instance| instance_folder(&instance.instance_id))
            .collect();
        // The limits of images run by workers, before any of their launches.
        let images: std::collections::BTreeSet<&str> = unfinished
            .iter()
            .filter_map(|instance| instance.image_id.as_deref())
            .collect();
        let mut pooled = std::collections::HashSet::new();
        for image in self.store.list_pooled_images().await? {
            self.note_image(&image);
            pooled.insert(image.image_id);
        }
        for image_id in images.into_iter().filter(|id| !pooled.contains(*id)) {
            if let Some(image) = self.store.get_image(image_id).await? {
                self.note_image(&image);
            }
        }
        let mut waiting = Vec::new();
        for instance in unfinished
            .into_iter()
            .filter(|instance| instance.image_id.is_some())
        {
            // Ids read back from storage pass the same rule as ids from clients.
            if let Err(error) = check_id("instance id", &instance.instance_id)
                .and_then(|()| check_id("tenant id", &instance.tenant_id))
            {
                tracing::warn!(instance_id = ?instance.instance_id, error = %error.message, "stored instance not adopted");
                continue;
            }
            match instance.status {
                // Queued again in the order of the starts, once the live processes
                // hold their slots.
                InstanceStatus::Pending => waiting.extend(Launch::of_stored(instance)),
                InstanceStatus::Sleeping | InstanceStatus::Waiting => self.schedule_wake(&instance),
                // A resume acknowledged just before the last server stopped.
                InstanceStatus::Suspended => {
                    match self.store.queued_resume(&instance.instance_id).await {
                        Ok(true) => {
                            tracing::info!(instance_id = %instance.instance_id, "a queued resume is settled at start-up");
                            self.spawn_resume(instance.instance_id);
                        }
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(instance_id = %instance.instance_id, %error, "cannot read a suspended instance's queued resume; resume it again");
                        }
                    }
                }
                // Running: its process may be alive and reconnecting. If it is, it is
                // adopted; if not, the heartbeat monitor relaunches it (a process an
                // older server launched holds no lock, and must not be doubled).
                // Of an image run by workers: its worker ended with the last server (a
                // worker never reconnects), so it runs again at once, ahead of the
                // waiting starts.
                InstanceStatus::Running if self.hosted_before(&instance, &pooled) => {
                    waiting.extend(Launch::of_stored(instance));
                }
                InstanceStatus::Running => self.adopt_if_alive(&instance),
                _ => {}
            }
        }
        self.hold_orphans(&accounted);
        for launch in waiting {
            self.admit(launch);
        }
        let me = self.clone();
        tokio::spawn(async move { me.monitor_heartbeats().await });
        let me = self.clone();
        tokio::spawn(async move { me.wake_the_woken().await });
        Ok(())
    }

    /// Launches the children that instances start, as they are started.
    pub fn launch_children(self: &Arc<Self>, mut started: UnboundedReceiver<String>) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(child_id) = started.recv().await {
                tracing::info!(%child_id, "child instance started");
                me.spawn_launch(child_id, Duration::ZERO);
            }
        });
    }

    /// Runs again, every [`WAKE_SWEEP`], the `waiting` instances whose event is there
    /// and that no run holds: a parent whose child ended (the event comes from the
    /// store), or an event whose wake-up was lost (a server stopped between the send and
    /// the launch).
    async fn wake_the_woken(self: Arc<Self>) {
        loop {
            tokio::time::sleep(WAKE_SWEEP).await;
            match self.store.list_woken().await {
                Ok(woken) => {
                    for instance_id in woken {
                        let live = self
                            .runs()
                            .get(&instance_id)
                            .is_some_and(|run| run.live.is_some());
                        if !live {
                            self.spawn_launch(instance_id, Duration::ZERO);
                        }
                    }
                }
                Err(error) => {
                    STORAGE.failed(&format!("cannot list the woken instances: {error}"));
                }
            }
        }
    }

    /// Whether a running instance found at start-up ran in a worker: its image has a
    /// worker pool and no process of its own holds its output file.
    fn hosted_before(
        &self,
        instance: &InstanceRecord,
        pooled: &std::collections::HashSet<String>,
    ) -> bool {
        let pooled = instance
            .image_id
            .as_ref()
            .is_some_and(|image_id| pooled.contains(image_id));
        let own_process = self
            .instance_dir(instance)
            .is_some_and(|dir| LogTail::in_dir(&dir).in_use().unwrap_or(true));
        pooled && !own_process
    }

    /// Holds a slot for each live process an earlier server launched that no unfinished
    /// instance accounts for (one that recorded its end and has not exited yet), until
    /// it exits; forgets the files of processes that are gone.
    fn hold_orphans(self: &Arc<Self>, accounted: &std::collections::HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.settings.live_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if accounted.contains(&name) {
                continue;
            }
            let dir = self.settings.instances_dir.join(&name);
            if !LogTail::in_dir(&dir).in_use().unwrap_or(false) {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let slot = format!("orphan:{name}");
            self.admission().hold(&slot, "", "");
            tracing::info!(folder = %name, "a process an earlier server launched is still exiting; it holds a slot until it has");
            let Some(me) = self.me.upgrade() else { return };
            tokio::spawn(async move {
                let (how, _) = Process::Adopted(dir.clone()).wait().await;
                tracing::debug!(folder = %name, %how, "orphan process gone");
                me.forget_live(&dir);
                me.release_slot(&slot);
            });
        }
    }

    /// Notes a process about to be launched in instance folder `dir` as live.
    fn note_live(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let Some(name) = dir.file_name() else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.settings.live_dir)?;
        std::fs::write(self.settings.live_dir.join(name), b"")
    }

    /// The process of instance folder `dir` has been reaped.
    fn forget_live(&self, dir: &std::path::Path) {
        if let Some(name) = dir.file_name() {
            let _ = std::fs::remove_file(self.settings.live_dir.join(name));
        }
    }

    /// Moves the folders older servers kept under the raw instance id
    /// (`<data-dir>/instances/<id>`) to their derived place in `instance-files`, so the
    /// logs of instances started before the upgrade are still found. Only a folder whose
    /// name is a valid id of an instance with an image is moved; anything else is left
    /// where it is and never read. The folder of a `running` instance (its process may
    /// still be alive and read its input file through the old path) keeps a symbolic link
    /// at the old place, removed at a later start once the instance no longer runs.
    /// Best effort: a failure is logged and the server starts anyway.
    async fn migrate_legacy_folders(&self) {
        let legacy = &self.settings.legacy_instances_dir;
        let entries = match std::fs::read_dir(legacy) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) => {
                tracing::warn!(dir = %legacy.display(), %error, "cannot read the old instances folder");
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if check_id("instance id", &name).is_err() {
                tracing::warn!(path = %path.display(), "old instance folder with an invalid name left alone");
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let record = match self.store.get_instance(&name).await {
                Ok(record) => record,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot look up the instance of an old folder");
                    continue;
                }
            };
            if meta.file_type().is_symlink() {
                if !record.is_some_and(|r| r.status == InstanceStatus::Running) {
                    if let Err(error) = std::fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), %error, "cannot remove an old link");
                    }
                }
                continue;
            }
            let Some(record) = record.filter(|_| meta.is_dir()) else {
                continue;
            };
            let Some(target) = self.instance_dir(&record) else {
                continue;
            };
            if target.exists() {
                continue;
            }
            let moved = std::fs::create_dir_all(&self.settings.instances_dir)
                .and_then(|()| std::fs::rename(&path, &target))
                .and_then(|()| match record.status {
                    InstanceStatus::Running => link_dir(&target, &path),
                    _ => Ok(()),
                });
            match moved {
                Ok(()) => {
                    tracing::info!(instance_id = %name, to = %target.display(), "old instance folder moved")
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot move an old instance folder")
                }
            }
        }
        // Gone once empty.
        let _ = std::fs::remove_dir(legacy);
    }

    /// An event was sent that the `waiting` instance waits for: it runs again now, unless
    /// a run of it still holds it here (that run's wait is told, and takes the event; had
    /// it let go meanwhile, its end relaunches it).
    pub fn event_sent(&self, instance_id: &str) {
        self.spawn_launch(instance_id.to_owned(), Duration::ZERO);
    }

    /// Launches a process for `instance_id` after `delay`, in the background.
    pub fn spawn_launch(&self, instance_id: String, delay: Duration) {
        self.spawn(instance_id, delay, false);
    }

    /// Relaunches a suspended instance whose resume was just queued.
    pub fn spawn_resume(&self, instance_id: String) {
        self.spawn(instance_id, Duration::ZERO, true);
    }

    fn spawn(&self, instance_id: String, delay: Duration, resume: bool) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            // Its tenant and image, for the limits.
            match me.store.get_instance(&instance_id).await {
                Ok(Some(instance)) => {
                    if let Some(image_id) = instance.image_id {
                        me.admit(Launch {
                            instance_id,
                            tenant_id: instance.tenant_id,
                            image_id,
                            resume,
                            registered: false,
                        });
                    }
                }
                Ok(None) => me.end_handled(&instance_id),
                Err(error) => {
                    tracing::warn!(%instance_id, %error, "launch failed");
                    me.end_handled(&instance_id);
                }
            }
        });
    }

    /// A launch that came to nothing (refused, failed, or not needed): the end of the
    /// instance's last run is handled, and the heartbeat monitor may judge it again
    /// (an instance left `running` with no process is then relaunched, not forgotten).
    fn end_handled(&self, instance_id: &str) {
        if let Some(run) = self.runs().get_mut(instance_id) {
            if run.live.is_none() {
                run.ending = false;
            }
        }
    }

    /// Wakes a sleeping instance at its wake time. A waiting one is looked at now: its
    /// event may be there already; if not, its launch is put off to its wait's deadline
    /// (without one, the event's arrival wakes it: [`Supervisor::event_sent`]).
    fn schedule_wake(&self, instance: &InstanceRecord) {
        match instance.status {
            InstanceStatus::Waiting => self.launch_at(&instance.instance_id, None),
            _ => self.launch_at(
                &instance.instance_id,
                Some(instance.wake_at_ms.unwrap_or(0)),
            ),
        }
    }

    /// Launches the instance at `at_ms` (ms since the Unix epoch; `None`: now).
    fn launch_at(&self, instance_id: &str, at_ms: Option<i64>) {
        let wait_ms = at_ms.map_or(0, |at| at.saturating_sub(now_ms()));
        let delay = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
        tracing::debug!(%instance_id, ?delay, "wake scheduled");
        self.spawn_launch(instance_id.to_owned(), delay);
    }

    /// Starts a process for the instance, unless it is finished, suspended, or already
    /// has a live process here. True when a process of it now runs that this call
    /// started or adopted (it holds the instance's slot until it ends).
    async fn launch(self: &Arc<Self>, launch: &Launch) -> anyhow::Result<bool> {
        let (instance_id, resume) = (launch.instance_id.as_str(), launch.resume);
        let Some(instance) = self.store.get_instance(instance_id).await? else {
            return Ok(false);
        };
        let launchable = match instance.status {
            InstanceStatus::Pending | InstanceStatus::Running => true,
            InstanceStatus::Sleeping => instance.wake_at_ms.unwrap_or(0) <= now_ms(),
            InstanceStatus::Waiting => {
                instance.wake_at_ms.is_some_and(|wake| wake <= now_ms())
                    || self.store.event_arrived(instance_id).await?
            }
            // A resumed instance stays suspended until its new process registers.
            InstanceStatus::Suspended => resume,
            _ => false,
        };
        if !launchable {
            match (instance.status, instance.wake_at_ms) {
                (InstanceStatus::Sleeping, at) => {
                    self.launch_at(instance_id, Some(at.unwrap_or(0)))
                }
                (InstanceStatus::Waiting, Some(deadline)) => {
                    self.launch_at(instance_id, Some(deadline));
                }
                _ => {}
            }
            return Ok(false);
        }
        let Some(image_id) = instance.image_id.clone() else {
            return Ok(false);
        };
        if instance.status == InstanceStatus::Running
            && self.settle_queued_signal(&instance).await?
        {
            return Ok(false);
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (kill_tx, kill_rx) = oneshot::channel();
        let timeout = {
            let mut runs = self.runs();
            let run = runs.entry(instance_id.to_owned()).or_default();
            if run.live.is_some() {
                // The paused process is still on its way out; relaunch once it is gone.
                run.resume_after_exit |= resume;
                return Ok(false);
            }
            run.live = Some(generation);
            run.ending = false;
            run.kill = Some(kill_tx);
            run.launches += 1;
            run.checkpoints_at_launch = instance.checkpoint_count;
            run.timeout
        };
        let registered = launch.registered;
        let (child, dir) = match self.spawn_process(&instance, &image_id, registered).await {
            Ok(Launched::Spawned(child, dir)) => (child, dir),
            Ok(Launched::StillRunning(dir)) => {
                self.adopt(instance_id, generation, resume, dir, kill_rx);
                return Ok(true);
            }
            Ok(Launched::Hosted(placement)) => {
                let _ = self
                    .store
                    .record_event(
                        instance_id,
                        &EventKind::Launched,
                        Some(&format!("worker {}", placement.worker_id)),
                        None,
                    )
                    .await;
                tracing::info!(%instance_id, worker_id = %placement.worker_id, generation, "instance sent to a worker");
                if let Some(run) = self.runs().get_mut(instance_id) {
                    run.hosted = true;
                }
                let me = self.clone();
                let id = instance_id.to_owned();
                let process = Process::Hosted {
                    workers: self.settings.workers.clone(),
                    instance_id: id.clone(),
                    worker_id: placement.worker_id,
                    ended: placement.ended,
                };
                tokio::spawn(
                    async move { me.watch(id, generation, process, kill_rx, timeout).await },
                );
                return Ok(true);
            }
            Err(error) => {
                {
                    let mut runs = self.runs();
                    let run = runs.entry(instance_id.to_owned()).or_default();
                    run.live = None;
                    run.hosted = false;
                }
                let reason = format!("cannot start the image binary of `{image_id}`: {error:#}");
                self.store
                    .set_status(
                        instance_id,
                        &[
                            InstanceStatus::Pending,
                            InstanceStatus::Running,
                            InstanceStatus::Sleeping,
                            InstanceStatus::Waiting,
                            InstanceStatus::Suspended,
                        ],
                        InstanceStatus::Failed,
                        Some(&reason),
                    )
                    .await?;
                self.settings.completions.changed(instance_id);
                anyhow::bail!(reason);
            }
        };
        let pid = child.id();
        let _ = self
            .store
            .record_event(
                instance_id,
                &EventKind::Launched,
                pid.map(|p| p.to_string()).as_deref(),
                None,
            )
            .await;
        tracing::info!(%instance_id, ?pid, generation, "instance process launched");
        let me = self.clone();
        let id = instance_id.to_owned();
        let process = Process::Child { child, pid, dir };
        tokio::spawn(async move { me.watch(id, generation, process, kill_rx, timeout).await });
        Ok(true)
    }

    /// A process of the instance is alive although this server did not start it (an
    /// earlier server did, and was killed), or has not let go of it yet: it is taken
    /// over instead of a launch, watched until it ends and handled then as if this
    /// server had started it. A resume that asked for the launch is carried out once it
    /// has ended. The run must already be marked live with `generation`.
    fn adopt(
        self: &Arc<Self>,
        instance_id: &str,
        generation: u64,
        resume: bool,
        dir: PathBuf,
        kill: oneshot::Receiver<()>,
    ) {
        if let Some(run) = self.runs().get_mut(instance_id) {
            run.launches = run.launches.saturating_sub(1);
            run.resume_after_exit |= resume;
        }
        tracing::info!(%instance_id, generation, "a process of the instance is still alive; adopted instead of a launch");
        let me = self.clone();
        let id = instance_id.to_owned();
        let process = Process::Adopted(dir);
        tokio::spawn(async move { me.watch(id, generation, process, kill, None).await });
    }

    /// Adopts the live process of a `running` instance left by an earlier server, if its
    /// output file shows one; otherwise it is left to the heartbeat monitor.
    fn adopt_if_alive(self: &Arc<Self>, instance: &InstanceRecord) {
        let Some(dir) = self.instance_dir(instance) else {
            return;
        };
        match LogTail::in_dir(&dir).in_use() {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(instance_id = %instance.instance_id, %error, "cannot tell whether an instance's process is alive; the heartbeat monitor decides");
                return;
            }
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let (kill_tx, kill_rx) = oneshot::channel();
        {
            let mut runs = self.runs();
            let run = runs.entry(instance.instance_id.clone()).or_default();
            if run.live.is_some() {
                return;
            }
            run.live = Some(generation);
            run.ending = false;
            run.kill = Some(kill_tx);
            run.launches += 1;
            run.checkpoints_at_launch = instance.checkpoint_count;
        }
        // It runs already: it holds a slot, whatever the limits.
        if let Some(image_id) = &instance.image_id {
            self.admission()
                .hold(&instance.instance_id, &instance.tenant_id, image_id);
        }
        self.adopt(&instance.instance_id, generation, false, dir, kill_rx);
    }

    /// Starts the instance's process — unless a live process of it (launched by an
    /// earlier server, or not yet gone) still holds its output file.
    async fn spawn_process(
        &self,
        instance: &InstanceRecord,
        image_id: &str,
        registered: bool,
    ) -> anyhow::Result<Launched> {
        let image = self
            .store
            .get_image(image_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("image `{image_id}` no longer exists"))?;
        check_id("instance id", &instance.instance_id)
            .and_then(|()| check_id("tenant id", &instance.tenant_id))
            .map_err(|error| anyhow::anyhow!(error.message))?;
        if let Some(pool) = image.workers {
            // Hosted from now on: the heartbeat monitor leaves it to its worker's
            // watchdog (its run registers and is sent while it is placed).
            if let Some(run) = self.runs().get_mut(&instance.instance_id) {
                run.hosted = true;
            }
            let workers = &self.settings.workers;
            let placement = workers.place(&image, pool, instance, registered).await?;
            return Ok(Launched::Hosted(placement));
        }
        let binary = self.settings.images_dir.join(&image.sha256);
        let dir = self
            .instance_dir(instance)
            .ok_or_else(|| anyhow::anyhow!("the instance has no image"))?;
        tokio::fs::create_dir_all(&dir).await?;
        // A file, not a pipe: the process must be able to print after this server is
        // gone (a restart leaves it running for the next one to adopt). Claimed first:
        // its lock tells whether a process of the instance still lives.
        let (stdout, stderr) = match LogTail::in_dir(&dir).claim()? {
            Claim::Claimed(stdout, stderr) => (stdout, stderr),
            Claim::Held => return Ok(Launched::StillRunning(dir)),
        };
        let input_path = dir.join("input.json");
        tokio::fs::write(&input_path, instance.input.as_deref().unwrap_or(b"null")).await?;

        let mut command = crate::instance_process::image_command(&binary);
        command
            .env("RUNTARA_INSTANCE_ID", &instance.instance_id)
            .env("RUNTARA_TENANT_ID", &instance.tenant_id)
            .env(
                "RUNTARA_INSTANCE_CREDENTIAL",
                // Bound to this launch: the epoch its process takes when it registers.
                self.settings
                    .credential_key
                    .issue(&instance.instance_id, instance.epoch + 1),
            )
            .env(
                "RUNTARA_SERVER_ADDR",
                self.settings.instance_addr.to_string(),
            )
            .env("RUNTARA_SERVER_NAME", "localhost")
            .env("RUNTARA_INPUT_FILE", &input_path)
            .env(
                "RUNTARA_HEARTBEAT_INTERVAL_MS",
                self.settings.heartbeat_interval.as_millis().to_string(),
            )
            .env(
                "RUNTARA_SLEEP_EXIT_THRESHOLD_MS",
                self.settings.sleep_exit_threshold.as_millis().to_string(),
            )
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(ca) = &self.settings.ca_path {
            command.env("RUNTARA_CA_CERT", ca);
        }
        if let Some(checkpoint) = &instance.checkpoint_id {
            command.env("RUNTARA_CHECKPOINT_ID", checkpoint);
        }
        self.note_live(&dir)?;
        let child = command.spawn()?;
        // The server's copy of the claimed output closes here: the lock is the child's.
        drop(command);
        if let Some(pid) = child.id() {
            instance_process::record(&dir, pid);
        }
        Ok(Launched::Spawned(child, dir))
    }

    /// Waits for the process to exit (or kills it when asked), then decides what next.
    async fn watch(
        self: Arc<Self>,
        instance_id: String,
        generation: u64,
        mut process: Process,
        kill: oneshot::Receiver<()>,
        timeout: Option<Duration>,
    ) {
        let timeout = async {
            match timeout {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let mut timed_out = false;
        let (exit, clean) = tokio::select! {
            ended = process.wait() => ended,
            _ = kill => {
                process.kill();
                process.wait().await
            }
            () = timeout => {
                timed_out = true;
                process.kill();
                process.wait().await
            }
        };
        self.settings.heard_from.forget(&instance_id);
        if let Some(dir) = process.dir() {
            self.forget_live(dir);
        }
        let _ = self
            .store
            .record_event(&instance_id, &EventKind::Exited, Some(&exit), None)
            .await;
        {
            let mut runs = self.runs();
            let Some(run) = runs.get_mut(&instance_id) else {
                return;
            };
            if run.live != Some(generation) {
                return;
            }
            run.live = None;
            run.kill = None;
            run.hosted = false;
            run.ending = true;
            let resume_waiting = std::mem::take(&mut run.resume_after_exit);
            if resume_waiting {
                run.relaunch_on_exit = false;
            }
            drop(runs);
            self.release_slot(&instance_id);
            if resume_waiting {
                // It stopped as asked (suspended) and a resume is waiting: nothing else
                // to decide, and the new run must not be judged by this exit.
                self.spawn_resume(instance_id.clone());
                return;
            }
        }
        let exited = Exited {
            how: exit,
            clean,
            timed_out,
            relaunch: self
                .runs()
                .get_mut(&instance_id)
                .is_some_and(|run| std::mem::take(&mut run.relaunch_on_exit)),
        };
        let reason = timeout_reason(timeout_of(&self, &instance_id));
        // An instance must never be left `running` with no process: storage errors are
        // waited out (logged once for all, see `STORAGE`), not given up on.
        let mut backoff = EXIT_RETRY.0;
        while let Err(error) = self.after_exit(&instance_id, &exited, reason.clone()).await {
            STORAGE.failed(&format!(
                "handling the exit of instance `{instance_id}`'s process: {error:#}"
            ));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(EXIT_RETRY.1);
        }
        self.settings.completions.changed(&instance_id);
    }

    /// The waits for instances to finish.
    pub fn completions(&self) -> &Arc<crate::completions::Completions> {
        &self.settings.completions
    }

    async fn after_exit(
        self: &Arc<Self>,
        instance_id: &str,
        exited: &Exited,
        timeout_reason: String,
    ) -> anyhow::Result<()> {
        let exit = exited.how.as_str();
        let Some(instance) = self.store.get_instance(instance_id).await? else {
            return Ok(());
        };
        let unfinished = [InstanceStatus::Pending, InstanceStatus::Running];
        let ended = HowItEnded {
            clean: exited.clean,
            timed_out: exited.timed_out,
            pause_withdrawn: exited.relaunch,
        };
        match by_status(instance.status, ended) {
            ByStatus::Nothing => {
                tracing::info!(%instance_id, status = %instance.status, %exit, "instance process exited");
                return Ok(());
            }
            ByStatus::ScheduleWake => {
                self.schedule_wake(&instance);
                return Ok(());
            }
            ByStatus::FailTimedOut => {
                let failed = InstanceStatus::Failed;
                self.store
                    .set_status(instance_id, &unfinished, failed, Some(&timeout_reason))
                    .await?;
                return Ok(());
            }
            ByStatus::AskQueuedSignal => {}
        }
        let queued = self
            .store
            .pending_signal(instance_id)
            .await?
            .map(|s| s.signal_type);
        match by_queued_signal(instance.status, queued, ended) {
            ByQueuedSignal::Cancel => {
                self.store
                    .set_status(instance_id, &unfinished, InstanceStatus::Cancelled, None)
                    .await?;
            }
            // It returned cleanly while a pause was queued, without acknowledging it
            // (the reference's `if result.should_pause() { return Ok(()) }`): paused as
            // asked, not crashed. The acknowledgement takes the pause only if it is still
            // queued, atomically; a resume that withdrew it meanwhile leaves the instance
            // running, and it is relaunched at once.
            ByQueuedSignal::SettlePause => {
                self.store
                    .acknowledge_signal(instance_id, instance.epoch, SignalType::Pause, true)
                    .await?;
                let now = self.store.get_instance(instance_id).await?;
                if now.is_some_and(|i| i.status == InstanceStatus::Running) {
                    self.spawn_launch(instance_id.to_owned(), Duration::ZERO);
                }
            }
            ByQueuedSignal::RelaunchNow => {
                tracing::info!(%instance_id, "relaunching after a withdrawn pause");
                self.spawn_launch(instance_id.to_owned(), Duration::ZERO);
            }
            ByQueuedSignal::Crashed => self.crashed(&instance, exit).await?,
        }
        Ok(())
    }

    /// A resume withdrew a pause queued for the instance: if its process is running and
    /// had already taken the pause, relaunch it when it exits instead of counting a crash.
    pub fn pause_withdrawn(&self, instance_id: &str) {
        if let Some(run) = self.runs().get_mut(instance_id) {
            if run.live.is_some() {
                run.relaunch_on_exit = true;
            }
        }
    }

    /// Before relaunching a running instance whose process is gone (a crash, silence, a
    /// restart): a cancel or pause queued for that process is carried out here instead,
    /// without a launch (cancel → `cancelled`, pause → `suspended`). True when it was.
    async fn settle_queued_signal(&self, instance: &InstanceRecord) -> anyhow::Result<bool> {
        let instance_id = &instance.instance_id;
        let Some(signal) = self.store.pending_signal(instance_id).await? else {
            return Ok(false);
        };
        let signal = signal.signal_type;
        self.store
            .acknowledge_signal(instance_id, instance.epoch, signal, true)
            .await?;
        tracing::info!(%instance_id, %signal, "a signal queued for a process that is gone is carried out without a relaunch");
        Ok(true)
    }

    /// A process ended without a terminal event: relaunch with backoff, or give up.
    async fn crashed(
        self: &Arc<Self>,
        instance: &InstanceRecord,
        exit: &str,
    ) -> anyhow::Result<()> {
        let instance_id = &instance.instance_id;
        let (decision, tail) = {
            let mut runs = self.runs();
            let run = runs.entry(instance_id.clone()).or_default();
            let history = CrashHistory {
                crashes_before: run.crashes,
                progressed: instance.checkpoint_count > run.checkpoints_at_launch,
                storage_failing: STORAGE.is_failing(),
            };
            let decision = after_crash(
                history,
                self.settings.max_restarts,
                self.settings.restart_backoff,
            );
            run.crashes = decision.crashes();
            (decision, self.output(instance).and_then(|log| log.text()))
        };
        match decision {
            AfterCrash::GiveUp { crashes } => {
                let reason = format!(
                    "the instance process exited ({exit}) without finishing {crashes} times \
                     in a row; giving up{}",
                    tail.map(|t| format!("; last output:\n{t}"))
                        .unwrap_or_default()
                );
                tracing::warn!(%instance_id, %exit, crashes, "instance keeps crashing; marking it failed");
                self.store
                    .set_status(
                        instance_id,
                        &[InstanceStatus::Pending, InstanceStatus::Running],
                        InstanceStatus::Failed,
                        Some(&reason),
                    )
                    .await?;
            }
            AfterCrash::Relaunch { crashes, after } => {
                tracing::warn!(%instance_id, %exit, crashes, backoff = ?after, "instance process crashed; relaunching from its last checkpoint");
                self.spawn_launch(instance_id.clone(), after);
            }
        }
        self.settings.completions.changed(instance_id);
        Ok(())
    }

    /// Asks the live process (if any) to be killed now.
    pub fn kill(&self, instance_id: &str) -> bool {
        let kill = self
            .runs()
            .get_mut(instance_id)
            .and_then(|run| run.kill.take());
        kill.is_some_and(|kill| kill.send(()).is_ok())
    }

    /// After a cancel was queued for a running instance: kill its process if it has not
    /// stopped within the grace period.
    pub fn cancel_after_grace(&self, instance_id: &str) {
        let Some(me) = self.me.upgrade() else { return };
        let instance_id = instance_id.to_owned();
        let grace = self.settings.cancel_grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let still_running = match me.store.get_instance(&instance_id).await {
                Ok(Some(i)) => !i.status.is_terminal(),
                Ok(None) => false,
                Err(error) => {
                    // Unknown is not "stopped": the grace ran out, so end it as if running.
                    tracing::warn!(%instance_id, %error, "cancel grace: cannot read the instance; treating it as still running");
                    true
                }
            };
            if still_running {
                if me.kill(&instance_id) {
                    tracing::info!(%instance_id, "cancel grace period over; process killed");
                } else {
                    // No process of ours (adopted after a restart, or gone): end it here.
                    let _ = me
                        .store
                        .set_status(
                            &instance_id,
                            &[InstanceStatus::Pending, InstanceStatus::Running],
                            InstanceStatus::Cancelled,
                            None,
                        )
                        .await;
                }
            }
        });
    }

    /// Relaunches running instances whose heartbeats stopped (killing our own process
    /// first, when it hangs).
    async fn monitor_heartbeats(self: Arc<Self>) {
        let timeout_ms =
            i64::try_from(self.settings.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        let period = (self.settings.heartbeat_timeout / 4).max(Duration::from_millis(50));
        // Instances could not heartbeat while no server was up: count from our start.
        let started_ms = now_ms();
        loop {
            tokio::time::sleep(period).await;
            let running = match self.store.list_running().await {
                Ok(running) => running,
                Err(error) => {
                    STORAGE.failed(&format!(
                        "heartbeat check: cannot list running instances: {error}"
                    ));
                    continue;
                }
            };
            let now = now_ms();
            // Whether an instance has been silent past the timeout: neither a stored
            // heartbeat nor one that arrived but could not be stored is recent.
            let heard = |id: &str| self.settings.heard_from.last(id).unwrap_or(0);
            let silent = |id: &str, heartbeat: Option<i64>, started: Option<i64>, created: i64| {
                let last = heartbeat
                    .or(started)
                    .unwrap_or(created)
                    .max(started_ms)
                    .max(heard(id));
                now.saturating_sub(last) > timeout_ms
            };
            for instance in running {
                // A relaunch waiting for a slot is not silent: it has no process yet.
                if instance.image_id.is_none() || self.queue_place(&instance.instance_id).is_some()
                {
                    continue;
                }
                if let Some(dir) =
                    self.folder_of(&instance.instance_id, instance.image_id.as_deref())
                {
                    LogTail::in_dir(&dir).limit();
                }
                if !silent(
                    &instance.instance_id,
                    instance.heartbeat_at_ms,
                    instance.started_at_ms,
                    instance.created_at_ms,
                ) {
                    continue;
                }
                let (ours, hosted, ending) = self
                    .runs()
                    .get(&instance.instance_id)
                    .map_or((false, false, false), |run| {
                        (run.live.is_some(), run.hosted, run.ending)
                    });
                // Its worker is watched (a worker that dies ends its runs), or its last
                // run's end is being handled (a relaunch may be on its way).
                if hosted || ending {
                    continue;
                }
                if ours {
                    tracing::warn!(instance_id = %instance.instance_id, "no heartbeat; killing the process");
                    self.kill(&instance.instance_id);
                } else {
                    // Read in full, and only if it is still running and silent.
                    match self.store.get_instance(&instance.instance_id).await {
                        Ok(Some(record))
                            if record.status == InstanceStatus::Running
                                && silent(
                                    &record.instance_id,
                                    record.heartbeat_at_ms,
                                    record.started_at_ms,
                                    record.created_at_ms,
                                ) =>
                        {
                            tracing::warn!(instance_id = %instance.instance_id, "no heartbeat from an adopted instance; relaunching it");
                            if let Err(error) = self.crashed(&record, "heartbeats stopped").await {
                                tracing::warn!(instance_id = %instance.instance_id, %error, "could not relaunch a silent adopted instance");
                            }
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(instance_id = %instance.instance_id, %error, "heartbeat check: cannot read a silent instance");
                        }
                    }
                }
            }
        }
    }
}

fn timeout_of(supervisor: &Supervisor, instance_id: &str) -> Option<Duration> {
    supervisor
        .runs()
        .get(instance_id)
        .and_then(|run| run.timeout)
}

fn timeout_reason(timeout: Option<Duration>) -> String {
    format!(
        "timed out: still running after {:?} (the instance's timeout)",
        timeout.unwrap_or_default()
    )
}

/// A symbolic link at `link` to the folder `target`.
fn link_dir(target: &std::path::Path, link: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    return std::os::unix::fs::symlink(target, link);
    #[cfg(not(unix))]
    {
        let _ = (target, link);
        Ok(())
    }
}

/// An instance's process, as the supervisor watches it.
#[derive(Debug)]
enum Process {
    /// Started by this server, in this folder.
    Child {
        child: tokio::process::Child,
        /// Its pid, which is also its process group's id (kept: the child forgets it
        /// once it has been waited for).
        pid: Option<u32>,
        dir: PathBuf,
    },
    /// Started by an earlier server (or not yet gone), holding the output file of the
    /// instance folder: it has ended when the file's lock is released.
    Adopted(PathBuf),
    /// A run on a worker process: over when the worker says so, or when it is gone.
    Hosted {
        workers: Arc<Workers>,
        worker_id: String,
        instance_id: String,
        ended: oneshot::Receiver<RunEnd>,
    },
}

/// What a launch did.
#[derive(Debug)]
enum Launched {
    /// A new process, in this folder.
    Spawned(tokio::process::Child, PathBuf),
    /// None: a live process of the instance (in this folder) holds its output file.
    StillRunning(PathBuf),
    /// A run on a worker.
    Hosted(Placement),
}

/// First and longest wait between attempts to handle a process exit while the storage
/// fails.
const EXIT_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How often an adopted process is checked for its end.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

impl Process {
    /// The instance folder whose output file the process holds.
    fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Process::Child { dir, .. } | Process::Adopted(dir) => Some(dir),
            Process::Hosted { .. } => None,
        }
    }

    /// Waits for the process to end: how (for events and messages), and whether it exited
    /// on its own with status 0 (never known of an adopted process). Whatever it left
    /// behind in its process group is killed.
    async fn wait(&mut self) -> (String, bool) {
        match self {
            Process::Child { child, pid, dir } => {
                let status = child.wait().await;
                // What it started may outlive it in its group; that must not hold the
                // instance's output (and so block the next launch). While it does, the
                // group exists, so its id cannot have been reused.
                if let Some(pid) = *pid {
                    if LogTail::in_dir(dir).in_use().unwrap_or(false) {
                        instance_process::kill(pid);
                    }
                }
                match status {
                    Ok(status) => (status.to_string(), status.success()),
                    Err(error) => (format!("unknown exit ({error})"), false),
                }
            }
            Process::Adopted(dir) => {
                let output = LogTail::in_dir(dir);
                loop {
                    match output.in_use() {
                        Ok(false) => break,
                        Ok(true) => {}
                        Err(error) => {
                            tracing::warn!(dir = %dir.display(), %error, "cannot check an adopted process; checking again");
                        }
                    }
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                (
                    "ended (adopted from an earlier server; exit status unknown)".into(),
                    false,
                )
            }
            Process::Hosted {
                worker_id, ended, ..
            } => match ended.await {
                Ok((how, clean)) => (format!("run on worker {worker_id} over: {how}"), clean),
                Err(_) => (format!("worker {worker_id} exited"), false),
            },
        }
    }

    /// Kills the process and its process group (SIGKILL). Instances run in their own
    /// group, so a Ctrl-C in the server's terminal does not reach them and a server
    /// restart leaves them running.
    fn kill(&mut self) {
        match self {
            // Not yet waited for, so the pid is still the child's.
            Process::Child { child, pid, .. } => match pid {
                Some(pid) => instance_process::kill(*pid),
                None => {
                    let _ = child.start_kill();
                }
            },
            Process::Hosted {
                workers,
                worker_id,
                instance_id,
                ..
            } => workers.stop(worker_id, instance_id),
            Process::Adopted(dir) => {
                let output = LogTail::in_dir(dir);
                match instance_process::holder(dir, output.path()) {
                    Some(pid) => instance_process::kill(pid),
                    None => {
                        tracing::warn!(dir = %dir.display(), "cannot find the adopted process to kill; waiting for it to end");
                    }
                }
            }
        }
    }
}
