//! The SQLite writer: one connection, group commit.
//!
//! Callers send jobs; the writer thread takes the first job, drains every job already
//! queued (up to [`MAX_BATCH`]), runs them in ONE transaction — each inside its own
//! savepoint, so a failing job undoes only itself — commits once, and only then answers
//! every job. A job alone in its batch needs no savepoint: when it fails, the whole
//! transaction is rolled back instead. A failed commit answers every job of the batch
//! with an error: no caller is ever told that something is stored when it is not.
//!
//! A caller that is the only one in progress runs its job as a batch of one on its own
//! thread instead: handing a job to a sleeping thread and the answer back costs two
//! thread wake-ups, about a tenth of a commit on a VM. It holds the connection for as
//! long as its own commit takes, which it would wait for anyway. As soon as two callers
//! are in progress, both queue to the writer thread and share commits, as above. A store
//! opened with `ConnectOptions::sqlite_commits_on_writer_thread` sends every job to the
//! writer thread, for callers whose thread must not block (a server thread serving many
//! connections).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::wal::WalPages;
use crate::in_progress::InProgress;
use crate::storage_health::STORAGE;
use crate::{Error, Result};

/// Most jobs committed together.
pub(crate) const MAX_BATCH: usize = 512;

/// Handle to the writer; dropping it drains the queue, stops the thread and closes the
/// connection before returning.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// Calls in progress, on this thread or queued.
    in_progress: AtomicUsize,
    /// Whether a caller alone in progress may commit on its own thread.
    commit_on_caller: bool,
    jobs: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<()>>,
}

/// What the callers and the writer thread share.
#[derive(Debug)]
struct Shared {
    /// `None` once closed.
    connection: Mutex<Option<Connection>>,
    /// Messages sent to the thread and not yet dealt with (jobs, checkpoint requests).
    queued: AtomicUsize,
    wal: WalPages,
    /// A checkpoint request is on its way to the thread.
    checkpoint_asked: AtomicBool,
}

type Guard<'a> = MutexGuard<'a, Option<Connection>>;

impl Shared {
    /// The connection, even after a panic while it was held.
    fn lock(&self) -> Guard<'_> {
        recover(self.connection.lock())
    }
}

/// Takes over a lock poisoned by a panic, rolling back the transaction it may have left
/// open.
fn recover<'a>(
    result: std::result::Result<Guard<'a>, std::sync::PoisonError<Guard<'a>>>,
) -> Guard<'a> {
    result.unwrap_or_else(|poisoned| {
        let guard = poisoned.into_inner();
        if let Some(connection) = guard.as_ref().filter(|c| !c.is_autocommit()) {
            if let Err(error) = execute(connection, "ROLLBACK") {
                tracing::error!(%error, "sqlite rollback after a panic failed");
            }
        }
        guard
    })
}

/// What the thread is sent.
enum Message {
    Job(Box<dyn Job>),
    /// Checkpoint the WAL if it is due (after commits made by callers).
    Checkpoint,
}

impl Writer {
    /// Starts the thread that serves the queue. With `commit_on_caller`, a caller alone
    /// in progress runs its job on its own thread (see the module docs); without, every
    /// job goes to the writer thread.
    pub(crate) fn spawn(mut connection: Connection, commit_on_caller: bool) -> Result<Writer> {
        let wal = WalPages::follow(&mut connection).map_err(|e| Error::database("sqlite", e))?;
        let shared = Arc::new(Shared {
            connection: Mutex::new(Some(connection)),
            queued: AtomicUsize::new(0),
            wal,
            checkpoint_asked: AtomicBool::new(false),
        });
        let (jobs, queue) = mpsc::channel::<Message>();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("runtara-sqlite".into())
                .spawn(move || serve(&shared, queue))
                .map_err(|e| Error::database("sqlite", e))?
        };
        Ok(Writer {
            shared,
            in_progress: AtomicUsize::new(0),
            commit_on_caller,
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch's transaction; resolves once the batch is committed
    /// (or with an error when it is not).
    pub(crate) async fn call<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(work, false).await
    }

    /// Runs `work`, which only reads, with the next batch but in a read transaction of
    /// its own after the batch's writes: it sees what was committed, and no failed commit
    /// of other callers' writes (a full disk) fails it.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(work, true).await
    }

    async fn submit<T, F>(&self, work: F, read_only: bool) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, mut answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call {
            work: Some(work),
            result: None,
            reply,
            read_only,
        });
        let in_progress = InProgress::enter(&self.in_progress);
        let job = if in_progress.alone && self.commit_on_caller {
            match self.run_here(job) {
                Ok(()) => return answer.try_recv().map_err(|_| Error::Closed)?,
                Err(job) => job,
            }
        } else {
            job
        };
        if !self.send(Message::Job(job)) {
            return Err(Error::Closed);
        }
        let answered = answer.await.map_err(|_| Error::Closed)?;
        drop(in_progress);
        answered
    }

    /// Runs `job` as a batch of one on this thread if nothing is queued and the
    /// connection is free; gives it back otherwise.
    fn run_here(&self, job: Box<dyn Job>) -> std::result::Result<(), Box<dyn Job>> {
        if self.shared.queued.load(Ordering::Acquire) > 0 {
            return Err(job);
        }
        let guard = match self.shared.connection.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => recover(Err(poisoned)),
            Err(TryLockError::WouldBlock) => return Err(job),
        };
        let Some(connection) = guard.as_ref() else {
            return Err(job);
        };
        run_batch(connection, vec![job]);
        let due = self.shared.wal.is_due(true);
        drop(guard);
        if due && !self.shared.checkpoint_asked.swap(true, Ordering::AcqRel) {
            // Counted as queued: until it is done, callers queue behind it.
            self.send(Message::Checkpoint);
        }
        Ok(())
    }

    /// Sends `message` to the thread, counted as queued until the thread has dealt with
    /// it; `false` when the thread is gone.
    fn send(&self, message: Message) -> bool {
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(message).is_ok());
        if !sent {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        }
        sent
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what is queued, then return.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the sqlite writer thread panicked");
            }
        }
        if let Some(connection) = self.shared.lock().take() {
            if let Err((_, error)) = connection.close() {
                tracing::warn!(%error, "closing the sqlite connection failed");
            }
        }
    }
}

/// How running a job left the batch's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The job ran (successfully, or failing and undone by its savepoint) and the
    /// transaction is usable.
    Clean,
    /// The job ran without a savepoint and failed: the transaction must be rolled back,
    /// and the job keeps its own error.
    Failed,
    /// The transaction can no longer be trusted (a savepoint could not be ended, or
    /// SQLite rolled the whole transaction back on its own); the batch must be abandoned.
    Poisoned,
}

/// A unit of work on the writer thread.
trait Job: Send {
    /// Runs the work in the open transaction — inside a savepoint of its own when
    /// `savepoint` — and keeps its result.
    fn run(&mut self, connection: &Connection, savepoint: bool) -> Step;
    /// Answers the caller: with the kept result when the batch committed
    /// (`failure` is `None`), else with the batch's failure.
    fn finish(self: Box<Self>, failure: Option<&str>);
    /// The work only reads ([`Writer::read`]).
    fn read_only(&self) -> bool;
}

struct Call<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    read_only: bool,
}

impl<T, F> Job for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, connection: &Connection, savepoint: bool) -> Step {
        let Some(work) = self.work.take() else {
            return Step::Clean;
        };
        if !savepoint {
            let result = work(connection);
            let step = match (&result, connection.is_autocommit()) {
                (_, true) => Step::Poisoned,
                (Ok(_), false) => Step::Clean,
                (Err(_), false) => Step::Failed,
            };
            self.result = Some(result);
            return step;
        }
        if let Err(error) = execute(connection, "SAVEPOINT job") {
            self.result = Some(Err(Error::database("sqlite", error)));
            return Step::Poisoned;
        }
        let result = work(connection);
        let ended = if result.is_ok() {
            execute(connection, "RELEASE job")
        } else {
            execute(connection, "ROLLBACK TO job").and_then(|()| execute(connection, "RELEASE job"))
        };
        self.result = Some(result);
        if ended.is_err() || connection.is_autocommit() {
            Step::Poisoned
        } else {
            Step::Clean
        }
    }

    fn finish(self: Box<Self>, failure: Option<&str>) {
        let result = match (self.result, failure) {
            // A job that failed on its own keeps its own (more precise) error: it never
            // claimed that anything was stored.
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(value)), None) => Ok(value),
            (Some(Ok(_)), Some(message)) | (None, Some(message)) => {
                Err(Error::database("sqlite", message.to_owned()))
            }
            (None, None) => Err(Error::database(
                "sqlite",
                "the job was never run; nothing was stored",
            )),
        };
        // The caller may have given up waiting; the outcome is stored either way.
        let _ = self.reply.send(result);
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Runs a statement without parameters through the statement cache.
fn execute(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection
        .prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .map(drop)
}

fn serve(shared: &Shared, queue: mpsc::Receiver<Message>) {
    let mut next = queue.recv().ok();
    while let Some(first) = next {
        let mut batch = Vec::with_capacity(16);
        let mut checkpoint = false;
        let mut taken = 0;
        let mut take = |message: Message, batch: &mut Vec<Box<dyn Job>>| {
            taken += 1;
            match message {
                Message::Job(job) => batch.push(job),
                Message::Checkpoint => checkpoint = true,
            }
        };
        take(first, &mut batch);
        // Drained once the connection is ours: jobs sent while a caller held it join
        // this batch.
        let guard = shared.lock();
        let Some(connection) = guard.as_ref() else {
            return;
        };
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(message) => take(message, &mut batch),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(connection, batch);
        }
        // Every job of the batch is answered; checkpoint now if the WAL is due.
        let waiting = queue.try_recv();
        let idle = checkpoint || matches!(waiting, Err(mpsc::TryRecvError::Empty));
        shared.wal.checkpoint_if_due(connection, idle);
        if checkpoint {
            shared.checkpoint_asked.store(false, Ordering::Release);
        }
        drop(guard);
        shared.queued.fetch_sub(taken, Ordering::AcqRel);
        next = match waiting {
            Ok(message) => Some(message),
            Err(mpsc::TryRecvError::Empty) => next_message(&queue),
            Err(mpsc::TryRecvError::Disconnected) => None,
        };
    }
}

/// How long the idle writer polls for the next job before it sleeps.
///
/// A sequential caller sends its next checkpoint a few tens of microseconds after the
/// answer to its last one; waking a sleeping thread costs about as much again on a VM.
const SPIN: std::time::Duration = std::time::Duration::from_micros(100);

/// The next message: polled for [`SPIN`], then waited for; `None` once every sender is
/// gone.
fn next_message(queue: &mpsc::Receiver<Message>) -> Option<Message> {
    let started = std::time::Instant::now();
    while started.elapsed() < SPIN {
        match queue.try_recv() {
            Ok(message) => return Some(message),
            Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Disconnected) => return None,
        }
    }
    queue.recv().ok()
}

/// Runs the batch's writes in one transaction, then its reads in another.
fn run_batch(connection: &Connection, batch: Vec<Box<dyn Job>>) {
    let (reads, writes): (Vec<_>, Vec<_>) = batch.into_iter().partition(|job| job.read_only());
    if !writes.is_empty() {
        run_writes(connection, writes);
    }
    if !reads.is_empty() {
        run_reads(connection, reads);
    }
}

/// Runs read-only jobs in one read transaction (one snapshot); its commit writes
/// nothing, so it succeeds on a full disk.
fn run_reads(connection: &Connection, mut reads: Vec<Box<dyn Job>>) {
    let failure = match execute(connection, "BEGIN DEFERRED") {
        Err(error) => Some(format!("could not begin a read: {error}")),
        Ok(()) => {
            let mut poisoned = false;
            for job in &mut reads {
                // A read that fails keeps its own error; there is nothing to undo.
                if job.run(connection, false) == Step::Poisoned {
                    poisoned = true;
                    break;
                }
            }
            let ended = execute(connection, "COMMIT").err();
            if !connection.is_autocommit() {
                let _ = execute(connection, "ROLLBACK");
            }
            match (poisoned, ended) {
                (true, _) => Some("the read transaction ended early".to_owned()),
                (false, Some(error)) => Some(format!("could not end a read: {error}")),
                (false, None) => None,
            }
        }
    };
    reads
        .into_iter()
        .for_each(|job| job.finish(failure.as_deref()));
}

fn run_writes(connection: &Connection, mut batch: Vec<Box<dyn Job>>) {
    if let Err(error) = execute(connection, "BEGIN IMMEDIATE") {
        let message = format!("could not begin a transaction, nothing was stored: {error}");
        STORAGE.failed(&message);
        batch.into_iter().for_each(|job| job.finish(Some(&message)));
        return;
    }
    let savepoints = batch.len() > 1;
    let mut undo = false;
    let mut poisoned = false;
    for job in &mut batch {
        match job.run(connection, savepoints) {
            Step::Clean => {}
            Step::Failed => undo = true,
            Step::Poisoned => {
                poisoned = true;
                break;
            }
        }
    }
    let failure = if poisoned {
        Some("the transaction became unusable and was rolled back; nothing was stored".to_owned())
    } else if undo {
        // The lone job failed: undo its writes; it answers with its own error.
        if let Err(error) = execute(connection, "ROLLBACK") {
            tracing::error!(%error, "sqlite rollback failed");
        }
        None
    } else {
        execute(connection, "COMMIT")
            .err()
            .map(|error| format!("commit failed, nothing was stored: {error}"))
    };
    if let Some(message) = &failure {
        STORAGE.failed(message);
        if !connection.is_autocommit() {
            if let Err(error) = execute(connection, "ROLLBACK") {
                tracing::error!(%error, "sqlite rollback failed");
            }
        }
    }
    if failure.is_none() && !undo {
        STORAGE.succeeded();
    }
    batch
        .into_iter()
        .for_each(|job| job.finish(failure.as_deref()));
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;
    use std::time::Duration;

    use super::*;

    type TestJob = Box<dyn FnOnce(&Connection) -> Result<()> + Send>;

    fn writer() -> Writer {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER
                     REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
                 INSERT INTO parent VALUES (1);",
            )
            .unwrap();
        Writer::spawn(connection, true).unwrap()
    }

    fn insert(id: i64, parent: i64) -> impl FnOnce(&Connection) -> Result<()> + Send {
        move |c| {
            c.execute("INSERT INTO child VALUES (?1, ?2)", [id, parent])
                .map(drop)
                .map_err(|e| Error::database("sqlite", e))
        }
    }

    fn children(writer: &Writer) -> impl std::future::Future<Output = Result<i64>> + '_ {
        writer.call(|c| {
            c.query_row("SELECT COUNT(*) FROM child", [], |r| r.get(0))
                .map_err(|e| Error::database("sqlite", e))
        })
    }

    /// A call holding the connection until released.
    struct Held {
        release: std_mpsc::Sender<()>,
        call: tokio::task::JoinHandle<Result<()>>,
    }

    impl Held {
        /// Starts a call that holds the connection; returns once it does.
        async fn start(writer: &std::sync::Arc<Writer>) -> Held {
            let (release, wait) = std_mpsc::channel::<()>();
            let (started, running) = std_mpsc::channel::<()>();
            let call = {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .call(move |_| {
                            let _ = started.send(());
                            let _ = wait.recv_timeout(Duration::from_secs(5));
                            Ok(())
                        })
                        .await
                })
            };
            tokio::task::spawn_blocking(move || running.recv())
                .await
                .unwrap()
                .unwrap();
            Held { release, call }
        }

        /// Lets the call finish.
        async fn release(self) {
            self.release.send(()).unwrap();
            self.call.await.unwrap().unwrap();
        }
    }

    /// Runs `jobs` as ONE batch: a first call holds the connection until all are queued.
    async fn one_batch(writer: &std::sync::Arc<Writer>, jobs: Vec<TestJob>) -> Vec<Result<()>> {
        let held = Held::start(writer).await;
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.call(job).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.release().await;
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_undoes_only_itself() {
        let writer = std::sync::Arc::new(writer());
        let results = one_batch(
            &writer,
            vec![
                Box::new(insert(1, 1)),
                // Writes, then fails: its write must be undone, and only its write.
                Box::new(|c: &Connection| {
                    insert(5, 1)(c)?;
                    Err(Error::Closed)
                }),
                Box::new(insert(2, 1)),
            ],
        )
        .await;
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        assert!(matches!(results[1], Err(Error::Closed)), "{results:?}");
        assert_eq!(children(&writer).await.unwrap(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_job_of_the_batch() {
        let writer = std::sync::Arc::new(writer());
        let results = one_batch(
            &writer,
            vec![
                Box::new(insert(1, 1)),
                // The deferred foreign key is checked only at COMMIT, which then fails.
                Box::new(insert(2, 99)),
                Box::new(insert(3, 1)),
            ],
        )
        .await;
        for result in &results {
            let error = result.as_ref().unwrap_err();
            assert!(
                format!("{:?}", error).contains("commit failed"),
                "{error:?}"
            );
        }
        assert_eq!(children(&writer).await.unwrap(), 0, "nothing was stored");
        writer.call(insert(4, 1)).await.unwrap();
        assert_eq!(children(&writer).await.unwrap(), 1, "the next batch works");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_transaction_fails_every_job_of_the_batch() {
        let writer = std::sync::Arc::new(writer());
        let results = one_batch(
            &writer,
            vec![
                Box::new(insert(1, 1)),
                // As SQLite does on a full disk or an I/O error: the whole transaction
                // is rolled back under the batch's feet.
                Box::new(|c: &Connection| {
                    c.execute_batch("ROLLBACK")
                        .map_err(|e| Error::database("sqlite", e))
                }),
                Box::new(insert(3, 1)),
            ],
        )
        .await;
        assert!(results.iter().all(Result::is_err), "{results:?}");
        assert_eq!(children(&writer).await.unwrap(), 0);
        writer.call(insert(4, 1)).await.unwrap();
        assert_eq!(children(&writer).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_failing_job_undoes_its_writes() {
        let writer = writer();
        let result = writer
            .call(|c: &Connection| {
                insert(7, 1)(c)?;
                Err::<(), _>(Error::Closed)
            })
            .await;
        assert!(matches!(result, Err(Error::Closed)), "{result:?}");
        assert_eq!(children(&writer).await.unwrap(), 0);
        writer.call(insert(8, 1)).await.unwrap();
        assert_eq!(children(&writer).await.unwrap(), 1, "the next batch works");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_call_commits_on_the_callers_thread() {
        let writer = writer();
        let thread = || |_: &Connection| Ok(std::thread::current().name().map(str::to_owned));
        let here = writer.call(thread()).await.unwrap();
        assert_ne!(
            here.as_deref(),
            Some("runtara-sqlite"),
            "no hand-off when alone"
        );
        // Held by a blocker, the connection is busy: a second call queues to the thread.
        let writer = std::sync::Arc::new(writer);
        let held = Held::start(&writer).await;
        let queued = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.call(thread()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        held.release().await;
        let there = queued.await.unwrap().unwrap();
        assert_eq!(
            there.as_deref(),
            Some("runtara-sqlite"),
            "queued behind a caller"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_commit_on_caller_even_a_lone_call_runs_on_the_writer_thread() {
        let connection = Connection::open_in_memory().unwrap();
        let writer = Writer::spawn(connection, false).unwrap();
        let thread = writer
            .call(|_: &Connection| Ok(std::thread::current().name().map(str::to_owned)))
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("runtara-sqlite"));
    }

    #[tokio::test]
    async fn dropping_the_writer_finishes_queued_jobs() {
        let writer = std::sync::Arc::new(writer());
        let pending = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.call(insert(1, 1)).await })
        };
        pending.await.unwrap().unwrap();
        let writer = std::sync::Arc::try_unwrap(writer).unwrap();
        drop(writer);
    }
}
