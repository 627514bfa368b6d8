//! Connecting to PostgreSQL: the pool and the embedded migrations.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::types::ToSql;

use super::capacity_retry::CapacityRetryingConnect;
use super::group_commit::{self, join_all};
use super::queries::{pg, query, TRANSITION};
use crate::migrations::{check_not_newer, compare, Recorded, MIGRATIONS_TABLE, POSTGRES};
use crate::model::now_ms;
use crate::{Error, Result};

/// Session setting added to every connection (see [`pool`]).
const GENERIC_PLANS: &str = "-c plan_cache_mode=force_generic_plan";

/// Connections kept in the pool by default.
pub(crate) const POOL_SIZE: usize = 16;

/// Advisory lock key serializing migrations across processes (`"runtara"` in ASCII).
const MIGRATION_LOCK: i64 = 0x0072_756e_7461_7261;

/// Parses `url` (`postgres://user@host:port/db`).
pub(crate) fn config(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url).map_err(|_| Error::UnsupportedUrl {
        url: url.to_owned(),
    })
}

/// Builds the pool of `size` connections for `url` (`postgres://user@host:port/db`);
/// each connection is opened through capacity refusals until `connect_deadline`.
pub(crate) fn pool(url: &str, size: usize, connect_deadline: Duration) -> Result<Pool> {
    let mut config = config(url)?;
    // Every statement is prepared once per connection and run many times with different
    // parameters; left to itself PostgreSQL keeps re-planning the big checkpoint
    // statements for each call's parameters. Forcing the generic plan raised QUIC +
    // PostgreSQL W2 from ~7,800 to ~9,000 steps/s (seven paired runs). Our statements
    // are key lookups, for which the generic plan is the custom one. (PostgreSQL 12+.)
    let options = match config.get_options() {
        Some(given) if !given.is_empty() => format!("{given} {GENERIC_PLANS}"),
        _ => GENERIC_PLANS.to_owned(),
    };
    config.options(&options);
    let manager = Manager::from_connect(
        config,
        CapacityRetryingConnect {
            deadline: connect_deadline,
        },
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        // The most recently used connection first: a lone caller keeps talking to one warm
        // backend. With the default FIFO, after any burst had opened all 16 connections a
        // lone caller rotated through 16 cold backends, which cost embedded W1 ~40% more
        // per step (W1-history 2.1× the floor against 1.6×).
        .queue_mode(QueueMode::Lifo)
        .build()
        .map_err(|e| Error::database("postgres", e))
}

/// Opens every connection of the pool at once and, on each, prepares and runs once the
/// statements of the checkpoint path with parameters that match no instance, so that
/// PostgreSQL has parsed and planned them (the first plan of the group-commit statement
/// alone costs milliseconds). Nothing is written.
pub(crate) async fn warm_up(pool: &Pool) -> Result<()> {
    let size = pool.status().max_size;
    let mut opened = Vec::with_capacity(size);
    for client in join_all((0..size).map(|_| pool.get())).await {
        opened.push(client.map_err(|e| Error::database("postgres", e))?);
    }
    join_all(opened.iter().map(warm_up_one))
        .await
        .into_iter()
        .collect()
}

/// Runs each hot statement once on `client`, matching no instance.
async fn warm_up_one(client: &Object) -> Result<()> {
    group_commit::warm_up(client).await?;
    let (none, no_bytes, no_text) = (None::<i64>, None::<&[u8]>, None::<&str>);
    let transition: [&(dyn ToSql + Sync); 8] = [
        &"",
        &0_i64,
        &"completed",
        &no_bytes,
        &no_text,
        &none,
        &0_i64,
        &no_bytes,
    ];
    query(client, TRANSITION, &transition).await?;
    Ok(())
}

/// Applies every embedded migration not yet recorded in `runtara_migrations`, in one
/// transaction holding an advisory lock, so that several processes starting at once
/// apply each migration exactly once. Those recorded must be the ones embedded (see
/// [`crate::migrations`]); a database a newer build migrated is refused, and the
/// transaction rolled back, before anything is changed.
pub(crate) async fn migrate(pool: &Pool) -> Result<()> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| Error::database("postgres", e))?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    tx.batch_execute(MIGRATIONS_TABLE).await.map_err(pg)?;
    let newest = tx
        .query_opt(
            "SELECT version, name FROM runtara_migrations ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(pg)?;
    let newest = match newest {
        Some(row) => {
            let version: i32 = row.try_get(0).map_err(pg)?;
            let name: String = row.try_get(1).map_err(pg)?;
            // A negative version is no migration of any build.
            u32::try_from(version).ok().map(|version| (version, name))
        }
        None => None,
    };
    check_not_newer(POSTGRES, newest)?;
    // Tables made before checksums were recorded.
    tx.batch_execute("ALTER TABLE runtara_migrations ADD COLUMN IF NOT EXISTS checksum TEXT")
        .await
        .map_err(pg)?;
    for migration in POSTGRES {
        let version = i32::try_from(migration.version).map_err(|_| Error::Migration {
            version: migration.version,
            source: "version does not fit the migrations table".into(),
        })?;
        let row = tx
            .query_opt(
                "SELECT checksum FROM runtara_migrations WHERE version = $1",
                &[&version],
            )
            .await
            .map_err(pg)?;
        let recorded = match row {
            Some(row) => Some(row.try_get::<_, Option<String>>(0).map_err(pg)?),
            None => None,
        };
        match compare(migration, recorded)? {
            Recorded::Same => continue,
            Recorded::Backfill => {
                tx.execute(
                    "UPDATE runtara_migrations SET checksum = $1 \
                     WHERE version = $2 AND checksum IS NULL",
                    &[&migration.checksum_hex(), &version],
                )
                .await
                .map_err(pg)?;
                continue;
            }
            Recorded::Apply => {}
        }
        tx.batch_execute(migration.sql)
            .await
            .map_err(|e| Error::Migration {
                version: migration.version,
                source: Box::new(e),
            })?;
        tx.execute(
            "INSERT INTO runtara_migrations (version, name, applied_at_ms, checksum) \
             VALUES ($1, $2, $3, $4)",
            &[
                &version,
                &migration.name,
                &now_ms(),
                &migration.checksum_hex(),
            ],
        )
        .await
        .map_err(pg)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied postgres migration"
        );
    }
    tx.commit().await.map_err(pg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::PostgresPersistence;
    use crate::Persistence;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(runtara_test_postgres),
        ignore = "RUNTARA_TEST_POSTGRES_URL is not set"
    )]
    async fn warm_up_opens_every_connection_and_prepares_the_checkpoint_path() {
        let Ok(url) = std::env::var("RUNTARA_TEST_POSTGRES_URL") else {
            eprintln!("RUNTARA_TEST_POSTGRES_URL is not set; PostgreSQL variant not run");
            return;
        };
        let store = PostgresPersistence::connect(&url).await.unwrap();
        store.warm_up().await.unwrap();
        let status = store.pool.status();
        assert_eq!((status.size, status.available), (POOL_SIZE, POOL_SIZE));
        let client = store.pool.get().await.unwrap();
        let prepared: i64 = client
            .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
            .await
            .unwrap()
            .get(0);
        assert!(prepared >= 3, "only {prepared} statements prepared");
        let written: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM instances WHERE instance_id = '') \
                      + (SELECT count(*) FROM checkpoints WHERE instance_id = '') \
                      + (SELECT count(*) FROM events WHERE instance_id = '')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(written, 0, "warming up wrote rows");
    }
}
