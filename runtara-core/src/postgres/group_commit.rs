//! Group commit for checkpoints: concurrent saves share one transaction, one statement
//! and one WAL flush.
//!
//! A save that finds no other save in progress runs alone, in autocommit, as one
//! statement ([`SAVE_CHECKPOINT`]; a sleep always runs alone, with [`SAVE_SLEEP`]): a lone
//! run pays no added latency. Otherwise it is queued to one of [`WRITERS`] background
//! tasks (always the same one for an instance), which takes every save queued to it (up
//! to [`MAX_BATCH`]), opens ONE transaction on one pooled connection, stores them all with
//! one statement per round ([`SAVE_CHECKPOINTS`]: the same guards, over arrays), commits
//! once, and only then answers each save with its own outcome.
//!
//! - A guard refusing a save (fenced epoch, terminal or missing instance) is part of that
//!   save's outcome; it writes nothing for that save, so it undoes none of the others.
//! - When a statement of the batch fails, the transaction is rolled back (nothing of it
//!   was committed) and every save of the batch is run again alone, so a failing save
//!   undoes only itself.
//! - When the COMMIT fails, every save of the batch gets an error: none is claimed
//!   stored.
//!
//! A round holds at most one save per instance; several saves of one instance in a batch
//! go to successive rounds, in order, in the same transaction. An instance's saves go to
//! the same task of a store, so one store's batches never lock the same instance row.
//! Two stores' batches might (a server's endpoint threads each have a store, and an
//! instance that reconnects may land on another thread), so the first round, which holds
//! every instance of the batch, locks their rows in instance id order: batches wait for
//! each other rather than deadlock (a lone save locks a single row).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::task::Poll;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::queries::{col, execute, pg, query, query_one, signal_at, status_epoch_at};
use super::queries::{NOT_STORED, PENDING_SIGNAL, SAVE_CHECKPOINT, SAVE_CHECKPOINTS, SAVE_SLEEP};
use super::{Earlier, Saved};
use crate::guard::check_run;
use crate::in_progress::InProgress;
use crate::{Error, Result};

/// Most saves committed together.
pub(crate) const MAX_BATCH: usize = 256;

/// Batches of one store that may run at once (each on its own pooled connection). One:
/// the server's endpoint threads each have a store, so two already overlap there, and
/// a second writer per store cost quic-postgres W2 ~10 % (six paired runs: 17.3–18.7k
/// steps/s against 19.5–21.5k with one), while embedded-postgres W2 was the same either
/// way (33–38k).
const WRITERS: usize = 1;

/// One checkpoint (or sleep, always saved alone) to store, owned so that a checkpoint
/// can wait in the queue.
pub(crate) struct Save {
    pub(crate) instance_id: String,
    pub(crate) epoch: i64,
    pub(crate) checkpoint_id: String,
    pub(crate) state: Vec<u8>,
    /// The wake time of a sleep; `None` for a checkpoint.
    pub(crate) wake_at_ms: Option<i64>,
    /// The durable function that produced the state, when known.
    pub(crate) producer: Option<String>,
    pub(crate) now: i64,
}

impl Save {
    /// The parameters of [`SAVE_CHECKPOINT`].
    fn checkpoint_params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.instance_id,
            &self.checkpoint_id,
            &self.state,
            &self.now,
            &self.epoch,
            &self.producer,
        ]
    }

    /// The parameters of [`SAVE_SLEEP`].
    fn sleep_params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.instance_id,
            &self.checkpoint_id,
            &self.state,
            &self.now,
            &self.epoch,
            &self.wake_at_ms,
        ]
    }
}

/// A queued save and where to answer it.
struct Job {
    save: Save,
    reply: oneshot::Sender<Result<Saved>>,
}

/// Handle to the background tasks; dropping it lets each task finish what is queued and
/// stop.
pub(crate) struct GroupCommit {
    pool: Pool,
    /// One queue per task; an instance's saves always go to the same task, so two
    /// batches running at once never touch the same instance row.
    jobs: Vec<mpsc::UnboundedSender<Job>>,
    /// Saves in progress through this handle, alone or queued.
    in_progress: AtomicUsize,
}

impl GroupCommit {
    /// Starts the background tasks on the current tokio runtime.
    pub(crate) fn spawn(pool: Pool) -> GroupCommit {
        let jobs = (0..WRITERS)
            .map(|_| {
                let (jobs, queue) = mpsc::unbounded_channel();
                tokio::spawn(serve(pool.clone(), queue));
                jobs
            })
            .collect();
        GroupCommit {
            pool,
            jobs,
            in_progress: AtomicUsize::new(0),
        }
    }

    /// Stores `save`; resolves once it is committed (or with an error when it is not).
    pub(crate) async fn save(&self, save: Save) -> Result<Saved> {
        let in_progress = InProgress::enter(&self.in_progress);
        if in_progress.alone || save.wake_at_ms.is_some() {
            return alone(&self.pool, &save).await;
        }
        let (reply, answer) = oneshot::channel();
        let mut hasher = DefaultHasher::new();
        save.instance_id.hash(&mut hasher);
        // Truncating the hash is fine: it only picks a queue.
        let writer = (hasher.finish() % self.jobs.len() as u64) as usize;
        self.jobs[writer]
            .send(Job { save, reply })
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

async fn serve(pool: Pool, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&pool, batch).await;
    }
}

/// Why a batch was not stored.
enum Failure {
    /// Nothing of the batch was committed: each save may be run again alone.
    NotCommitted(Error),
    /// The COMMIT failed: no save may be claimed stored.
    Commit(tokio_postgres::Error),
}

async fn run_batch(pool: &Pool, batch: Vec<Job>) {
    if batch.len() == 1 {
        for job in batch {
            let result = alone(pool, &job.save).await;
            // The caller may have given up waiting; the outcome stands either way.
            let _ = job.reply.send(result);
        }
        return;
    }
    match together(pool, &batch).await {
        Ok(results) => {
            crate::storage_health::STORAGE.succeeded();
            for (job, result) in batch.into_iter().zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(Failure::NotCommitted(error)) => {
            tracing::warn!(
                error = %error,
                saves = batch.len(),
                "postgres group commit rolled back; running each save alone"
            );
            // One after the other, so that an instance's saves keep their order.
            for job in batch {
                let result = alone(pool, &job.save).await;
                let _ = job.reply.send(result);
            }
        }
        Err(Failure::Commit(error)) => {
            let message = format!("commit failed; the checkpoint may not be stored: {error}");
            crate::storage_health::STORAGE.failed(&message);
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(Error::database("postgres", message.clone())));
            }
        }
    }
}

/// Runs every save of `batch` in one transaction; the results are in batch order.
///
/// The saves are split into rounds holding at most one save per instance (the n-th save
/// of each instance goes to round n); a round is ONE statement ([`SAVE_CHECKPOINTS`]), and
/// the rounds are pipelined in order.
async fn together(pool: &Pool, batch: &[Job]) -> Result<Vec<Result<Saved>>, Failure> {
    debug_assert!(
        batch.iter().all(|job| job.save.wake_at_ms.is_none()),
        "a sleep is saved alone: the batch statement would drop its wake time"
    );
    let not_committed = |e| Failure::NotCommitted(pg(e));
    let mut client = pool
        .get()
        .await
        .map_err(|e| Failure::NotCommitted(Error::database("postgres", e)))?;
    let tx = client.transaction().await.map_err(not_committed)?;
    let many = tx
        .prepare_cached(SAVE_CHECKPOINTS)
        .await
        .map_err(not_committed)?;
    let rounds = rounds(batch);
    let arrays: Vec<Arrays<'_>> = rounds
        .iter()
        .map(|round| Arrays::new(batch, round))
        .collect();
    let params: Vec<_> = arrays.iter().map(Arrays::params).collect();
    // Issued together, the statements are pipelined on the connection, in order.
    let answers = join_all(params.iter().map(|params| tx.query(&many, params))).await;
    let mut results: Vec<Option<Result<Saved>>> = batch.iter().map(|_| None).collect();
    for (round, rows) in rounds.iter().zip(answers) {
        // The saves stored, by instance (a round holds one save per instance), and
        // whether a signal is pending for each.
        let mut stored: HashMap<String, bool> = HashMap::with_capacity(round.len());
        for row in rows.map_err(not_committed)? {
            let stored_one = col(&row, 0).and_then(|id| Ok((id, col(&row, 1)?)));
            let (instance_id, signalled) = stored_one.map_err(Failure::NotCommitted)?;
            stored.insert(instance_id, signalled);
        }
        // The follow-ups (a pending signal, or why nothing was stored) are rare; issued
        // together, they are pipelined too.
        let tx = &tx;
        let outcomes = join_all(round.iter().map(|&index| {
            let save = &batch[index].save;
            let signalled = stored.get(&save.instance_id).copied();
            async move {
                match signalled {
                    Some(signalled) => with_signal(tx, save, signalled).await,
                    None => not_stored(tx, save).await,
                }
            }
        }))
        .await;
        for (&index, outcome) in round.iter().zip(outcomes) {
            match outcome {
                // The transaction can no longer be trusted: drop it (it rolls back).
                Err(error @ Error::Database { .. }) => return Err(Failure::NotCommitted(error)),
                result => results[index] = Some(result),
            }
        }
    }
    tx.commit().await.map_err(Failure::Commit)?;
    Ok(results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| Err(Error::Corrupt("a save of the batch was not run".into())))
        })
        .collect())
}

/// Splits `batch` into rounds of indices with at most one save per instance, keeping the
/// order of each instance's saves.
fn rounds(batch: &[Job]) -> Vec<Vec<usize>> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (index, job) in batch.iter().enumerate() {
        let count = seen.entry(job.save.instance_id.as_str()).or_insert(0);
        if rounds.len() <= *count {
            rounds.push(Vec::new());
        }
        rounds[*count].push(index);
        *count += 1;
    }
    rounds
}

/// The array parameters of [`SAVE_CHECKPOINTS`] for one round (empty by default).
#[derive(Default)]
struct Arrays<'a> {
    instance_ids: Vec<&'a str>,
    checkpoint_ids: Vec<&'a str>,
    states: Vec<&'a [u8]>,
    nows: Vec<i64>,
    epochs: Vec<i64>,
    producers: Vec<Option<&'a str>>,
}

impl<'a> Arrays<'a> {
    fn new(batch: &'a [Job], round: &[usize]) -> Arrays<'a> {
        let saves = || round.iter().map(|&index| &batch[index].save);
        Arrays {
            instance_ids: saves().map(|s| s.instance_id.as_str()).collect(),
            checkpoint_ids: saves().map(|s| s.checkpoint_id.as_str()).collect(),
            states: saves().map(|s| s.state.as_slice()).collect(),
            nows: saves().map(|s| s.now).collect(),
            epochs: saves().map(|s| s.epoch).collect(),
            producers: saves().map(|s| s.producer.as_deref()).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.instance_ids,
            &self.checkpoint_ids,
            &self.states,
            &self.nows,
            &self.epochs,
            &self.producers,
        ]
    }
}

/// Runs every checkpoint statement once on `client`, for a save of no instance, so that
/// the connection has them parsed and planned. Writes nothing.
pub(crate) async fn warm_up<C: GenericClient + Sync>(client: &C) -> Result<()> {
    let nothing = Save {
        instance_id: String::new(),
        epoch: 0,
        checkpoint_id: String::new(),
        state: Vec::new(),
        wake_at_ms: None,
        producer: None,
        now: 0,
    };
    query(client, SAVE_CHECKPOINT, &nothing.checkpoint_params()).await?;
    query(client, SAVE_SLEEP, &nothing.sleep_params()).await?;
    query(client, SAVE_CHECKPOINTS, &Arrays::default().params()).await?;
    query(
        client,
        NOT_STORED,
        &[&nothing.instance_id, &nothing.checkpoint_id],
    )
    .await?;
    query(client, PENDING_SIGNAL, &[&nothing.instance_id]).await?;
    Ok(())
}

/// Runs one save in autocommit on a pooled connection.
async fn alone(pool: &Pool, save: &Save) -> Result<Saved> {
    let client = pool
        .get()
        .await
        .map_err(|e| Error::database("postgres", e))?;
    if save.wake_at_ms.is_some() {
        let row = query_one(&client, SAVE_SLEEP, &save.sleep_params()).await?;
        return finish(&client, save, &row).await;
    }
    let rows = query(&client, SAVE_CHECKPOINT, &save.checkpoint_params()).await?;
    match rows.first() {
        Some(row) => with_signal(&client, save, col(row, 0)?).await,
        None => not_stored(&client, save).await,
    }
}

/// The outcome of a save that was stored; the pending signal is read only when the
/// checkpoint statement said there is one.
async fn with_signal<C: GenericClient + Sync>(
    c: &C,
    save: &Save,
    signalled: bool,
) -> Result<Saved> {
    let signal = match signalled {
        true => query(c, PENDING_SIGNAL, &[&save.instance_id])
            .await?
            .first()
            .map(|row| signal_at(row, 0))
            .transpose()?
            .flatten(),
        false => None,
    };
    Ok(Saved {
        earlier: None,
        signal,
    })
}

/// Why [`SAVE_CHECKPOINT`] stored nothing: the guard's precise error, or the state stored
/// earlier under the id.
async fn not_stored<C: GenericClient + Sync>(c: &C, save: &Save) -> Result<Saved> {
    let (instance_id, checkpoint_id) = (&save.instance_id, &save.checkpoint_id);
    let row = query_one(c, NOT_STORED, &[instance_id, checkpoint_id]).await?;
    check_run(instance_id, status_epoch_at(&row, 0)?, save.epoch)?;
    let state: Option<Vec<u8>> = col(&row, 2)?;
    let Some(state) = state else {
        // Epochs only grow, so a guard that refused the write cannot pass again.
        return Err(Error::Corrupt(format!(
            "instance `{instance_id}` is running under epoch {} but refused checkpoint \
             `{checkpoint_id}`",
            save.epoch
        )));
    };
    touch(c, save, None).await?;
    Ok(Saved {
        earlier: Some((state, col(&row, 3)?, col(&row, 7)?)),
        signal: signal_at(&row, 4)?,
    })
}

/// Reads what [`SAVE_SLEEP`] found into the save's outcome.
async fn finish<C: GenericClient + Sync>(c: &C, save: &Save, row: &Row) -> Result<Saved> {
    check_run(&save.instance_id, status_epoch_at(row, 0)?, save.epoch)?;
    let inserted: i64 = col(row, 2)?;
    let signal = signal_at(row, 3)?;
    let earlier = match inserted {
        1 => None,
        _ => Some(earlier(c, save).await?),
    };
    Ok(Saved { earlier, signal })
}

/// Reads the checkpoint stored earlier under the save's id (the guard let the save
/// through, so the run may write), and touches the instance (see [`touch`]).
async fn earlier<C: GenericClient + Sync>(c: &C, save: &Save) -> Result<Earlier> {
    let (instance_id, checkpoint_id) = (&save.instance_id, &save.checkpoint_id);
    let rows = query(
        c,
        "SELECT state, wake_at_ms, producer FROM checkpoints \
         WHERE instance_id = $1 AND checkpoint_id = $2",
        &[instance_id, checkpoint_id],
    )
    .await?;
    let row = rows.first().ok_or_else(|| {
        Error::Corrupt(format!(
            "checkpoint `{checkpoint_id}` of instance `{instance_id}` was neither stored nor found"
        ))
    })?;
    let earlier: Earlier = (col(row, 0)?, col(row, 1)?, col(row, 2)?);
    touch(
        c,
        save,
        save.wake_at_ms.map(|given| earlier.1.unwrap_or(given)),
    )
    .await?;
    Ok(earlier)
}

/// After a save that found its id taken: the repeat still counts as a heartbeat (a stored
/// checkpoint counts through the sign of life derived at read time), and a repeated
/// sleep puts the wake time in force back on the instance (`wake_at_ms`). Guarded like
/// every run's write; the rare path, so a statement of its own.
async fn touch<C: GenericClient + Sync>(c: &C, save: &Save, wake_at_ms: Option<i64>) -> Result<()> {
    execute(
        c,
        "UPDATE instances SET heartbeat_at_ms = $3, wake_at_ms = COALESCE($4, wake_at_ms) \
         WHERE instance_id = $1 AND epoch = $2 AND status = 'running'",
        &[&save.instance_id, &save.epoch, &save.now, &wake_at_ms],
    )
    .await
    .map(drop)
}

/// Polls every future concurrently (first polls in order) and returns their outputs in
/// order.
pub(crate) async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::postgres::PostgresPersistence;
    use crate::{Persistence, SignalType};

    async fn store() -> Option<(Arc<PostgresPersistence>, String)> {
        let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
            eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
            return None;
        };
        let store = PostgresPersistence::connect(&url).await.unwrap();
        let prefix = format!("gc-{}-{}", crate::model::now_ms(), std::process::id());
        Some((Arc::new(store), prefix))
    }

    fn job(
        instance_id: &str,
        epoch: i64,
        checkpoint_id: &str,
    ) -> (Job, oneshot::Receiver<Result<Saved>>) {
        let (reply, answer) = oneshot::channel();
        let save = Save {
            instance_id: instance_id.to_owned(),
            epoch,
            checkpoint_id: checkpoint_id.to_owned(),
            state: checkpoint_id.as_bytes().to_vec(),
            wake_at_ms: None,
            producer: None,
            now: crate::model::now_ms(),
        };
        (Job { save, reply }, answer)
    }

    /// Runs `jobs` as ONE batch and returns each job's answer.
    async fn one_batch(
        store: &PostgresPersistence,
        jobs: Vec<(Job, oneshot::Receiver<Result<Saved>>)>,
    ) -> Vec<Result<Saved>> {
        let (batch, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        run_batch(&store.pool, batch).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        results
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(runtara_test_postgres),
        ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
    )]
    async fn concurrent_saves_of_distinct_instances_are_all_stored() {
        let Some((store, prefix)) = store().await else {
            return;
        };
        let ids: Vec<String> = (0..200).map(|n| format!("{prefix}-{n}")).collect();
        for id in &ids {
            store.register_instance(id, "t", None).await.unwrap();
        }
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let (store, id) = (store.clone(), id.clone());
                tokio::spawn(async move { store.save_checkpoint(&id, 1, "c", b"state").await })
            })
            .collect();
        for task in tasks {
            let outcome = task.await.unwrap().unwrap();
            assert_eq!(outcome.existing_state, None);
        }
        for id in &ids {
            let stored = store.get_checkpoint(id, "c").await.unwrap();
            assert_eq!(stored.as_deref(), Some(&b"state"[..]), "{id}");
            let instance = store.get_instance(id).await.unwrap().unwrap();
            assert_eq!(instance.checkpoint_count, 1, "{id}");
            assert_eq!(instance.checkpoint_id.as_deref(), Some("c"), "{id}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(runtara_test_postgres),
        ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
    )]
    async fn a_refused_save_undoes_none_of_the_others() {
        let Some((store, prefix)) = store().await else {
            return;
        };
        let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
        store.register_instance(&a, "t", None).await.unwrap();
        store.register_instance(&b, "t", None).await.unwrap();
        let results = one_batch(
            &store,
            vec![
                job(&a, 1, "one"),
                job(&b, 7, "fenced"),
                // The same instance again: a second round, same transaction.
                job(&a, 1, "two"),
                job(&a, 1, "one"),
                job(&format!("{prefix}-missing"), 1, "x"),
            ],
        )
        .await;
        assert!(results[0].as_ref().unwrap().earlier.is_none());
        assert!(
            matches!(results[1], Err(Error::Fenced { current: 1, .. })),
            "{:?}",
            results[1].as_ref().err()
        );
        assert!(results[2].as_ref().unwrap().earlier.is_none());
        let again = results[3].as_ref().unwrap().earlier.clone();
        assert_eq!(
            again,
            Some((b"one".to_vec(), None, None)),
            "the repeat finds the first"
        );
        assert!(matches!(results[4], Err(Error::InstanceNotFound { .. })));
        assert_eq!(store.get_checkpoint(&b, "fenced").await.unwrap(), None);
        let instance = store.get_instance(&a).await.unwrap().unwrap();
        assert_eq!(instance.checkpoint_count, 2);
        assert_eq!(instance.checkpoint_id.as_deref(), Some("two"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(runtara_test_postgres),
        ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
    )]
    async fn a_batch_answers_each_save_with_its_own_pending_signal() {
        let Some((store, prefix)) = store().await else {
            return;
        };
        let (paused, cancelled, quiet) = (
            format!("{prefix}-paused"),
            format!("{prefix}-cancelled"),
            format!("{prefix}-quiet"),
        );
        for id in [&paused, &cancelled, &quiet] {
            store.register_instance(id, "t", None).await.unwrap();
        }
        store.send_signal(&paused, SignalType::Pause).await.unwrap();
        store
            .send_signal(&cancelled, SignalType::Pause)
            .await
            .unwrap();
        store
            .send_signal(&cancelled, SignalType::Cancel)
            .await
            .unwrap();
        let results = one_batch(
            &store,
            vec![
                job(&paused, 1, "one"),
                job(&cancelled, 1, "one"),
                job(&quiet, 1, "one"),
                // A repeat learns of the signal too.
                job(&paused, 1, "one"),
            ],
        )
        .await;
        let signals: Vec<Option<SignalType>> = results
            .iter()
            .map(|r| r.as_ref().unwrap().signal.as_ref().map(|s| s.signal_type))
            .collect();
        assert_eq!(
            signals,
            [
                Some(SignalType::Pause),
                Some(SignalType::Cancel),
                None,
                Some(SignalType::Pause)
            ]
        );
        assert!(results[3].as_ref().unwrap().earlier.is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(runtara_test_postgres),
        ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
    )]
    async fn a_failing_statement_fails_only_its_own_save() {
        let Some((store, prefix)) = store().await else {
            return;
        };
        let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
        store.register_instance(&a, "t", None).await.unwrap();
        store.register_instance(&b, "t", None).await.unwrap();
        let results = one_batch(
            &store,
            vec![
                job(&a, 1, "one"),
                // PostgreSQL refuses a NUL in text: the batch's statement fails.
                job(&b, 1, "bad\0id"),
                job(&b, 1, "two"),
            ],
        )
        .await;
        assert!(results[0].is_ok(), "{:?}", results[0].as_ref().err());
        assert!(matches!(results[1], Err(Error::Database { .. })));
        assert!(results[2].is_ok(), "{:?}", results[2].as_ref().err());
        assert!(store.get_checkpoint(&a, "one").await.unwrap().is_some());
        assert!(store.get_checkpoint(&b, "two").await.unwrap().is_some());
        assert_eq!(
            store
                .get_instance(&b)
                .await
                .unwrap()
                .unwrap()
                .checkpoint_count,
            1
        );
    }
}
