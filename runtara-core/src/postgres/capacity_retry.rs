//! Opening PostgreSQL connections through capacity refusals.
//!
//! A server at `max_connections` (SQLSTATE 53300, `too many clients`, also a role's or a
//! database's `CONNECTION LIMIT`) or one still starting or shutting down (57P03,
//! `cannot_connect_now`) refuses new sessions; a moment later it may take them. Every
//! connection this backend opens (the pool's, a run lease's) retries such refusals with
//! jittered exponential backoff until the connect deadline
//! ([`ConnectOptions::postgres_connect_deadline`](crate::ConnectOptions::postgres_connect_deadline)),
//! then gives up with the server's own words.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// Default time a connection keeps being retried while the server refuses it for capacity.
pub(crate) const CONNECT_DEADLINE: Duration = Duration::from_secs(30);

/// First and longest wait between two attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));

/// Whether `error` is a refusal for capacity, worth trying again shortly.
pub(crate) fn refused_for_capacity(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::TOO_MANY_CONNECTIONS || *code == SqlState::CANNOT_CONNECT_NOW
    )
}

/// Connects with `config`, retrying capacity refusals until `deadline` has passed; the
/// connection's task is spawned on the current runtime.
pub(crate) async fn connect(
    config: &Config,
    deadline: Duration,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let give_up_at = Instant::now() + deadline;
    let mut backoff = BACKOFF.0;
    let mut refusals = 0u32;
    loop {
        match config.connect(NoTls).await {
            Ok((client, connection)) => {
                if refusals > 0 {
                    tracing::info!(
                        refusals,
                        "postgres accepted a connection after refusing it for capacity"
                    );
                }
                let task = tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "postgres connection closed with an error");
                    }
                });
                return Ok((client, task));
            }
            Err(error) if refused_for_capacity(&error) => {
                refusals += 1;
                let wait = jitter(backoff);
                if Instant::now() + wait >= give_up_at {
                    tracing::warn!(%error, refusals, ?deadline, "postgres kept refusing a connection for capacity; giving up");
                    return Err(error);
                }
                if refusals == 1 {
                    tracing::warn!(%error, "postgres refused a connection for capacity; retrying with backoff");
                }
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(BACKOFF.1);
            }
            Err(error) => return Err(error),
        }
    }
}

/// `wait` plus up to half of it again, so that many processes refused together do not
/// come back together.
fn jitter(wait: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16);
    let extra = wait.as_micros() as u64 / 2;
    wait + Duration::from_micros(if extra == 0 {
        0
    } else {
        u64::from(nanos) % extra
    })
}

/// The pool's way to open connections: [`connect`] with the store's deadline.
pub(crate) struct CapacityRetryingConnect {
    pub(crate) deadline: Duration,
}

type Connecting<'a> = Pin<
    Box<
        dyn Future<Output = Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>>
            + Send
            + 'a,
    >,
>;

impl deadpool_postgres::Connect for CapacityRetryingConnect {
    fn connect(&self, pg_config: &Config) -> Connecting<'_> {
        let config = pg_config.clone();
        let deadline = self.deadline;
        Box::pin(async move { connect(&config, deadline).await })
    }
}
