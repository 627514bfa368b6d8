//! The instance endpoint served by threads of its own: one single-threaded tokio runtime
//! per thread, each with its own QUIC endpoint, all on one UDP port (`SO_REUSEPORT`).
//!
//! A request's path is a chain of small tasks: the endpoint's driver, the connection's
//! driver, the request. On the server's multi-threaded runtime each task woken along it
//! may wake the other worker and run there, and on a small VM such a wake-up costs as
//! much as the QUIC work itself. On a thread of its own, a connection's whole path stays
//! on that thread, and the kernel still spreads connections over the threads (it picks
//! a socket by a hash of the datagram's addresses, so all of a connection's datagrams
//! reach the same endpoint). Measured with `runtara-bench` on 2 vCPUs with SQLite, ten
//! paired runs against the endpoint on the main runtime:
//! - W1 over QUIC: median 1.77× its floor against 2.07× (better in 8 of 10 pairs), and
//!   1.31× the step floor against 1.71× (better in 10 of 10).
//! - W2 over QUIC: median 20.5k against 19.5k steps/s.
//!
//! With PostgreSQL a query is two more tasks (the pooled connection's driver and the
//! caller), so each thread opens a pool of its own ([`ThreadStore::Own`]) and a query's
//! whole path stays on the thread too. A first prototype that shared the main runtime's
//! pool measured W1 over QUIC at 2.74–2.87× its floor against 2.19–2.58× on the main
//! runtime; with a pool per thread, in seven paired runs on 2 vCPUs: W1 0.38–0.48 ms per
//! step against 0.41–0.58 (faster in six of seven), W2 16.0k–19.0k steps/s against
//! 18.1k–20.1k (group commit now splits over two pools).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use runtara_core::Persistence;
use runtara_protocol::endpoint::{reuse_port_sockets, server_endpoint_on};
use tokio::sync::oneshot;

use crate::instance_endpoint::{self, InstanceAuth};
use crate::tls_setup::TlsMaterial;

/// How long a stopping thread waits for its connections' close frames to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Where the instance endpoint is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// On the server's main runtime, like the management endpoint.
    MainRuntime,
    /// On this many threads of its own.
    Threads(usize),
}

impl Placement {
    /// `configured` threads (0: the main runtime); `None`: a thread per core.
    pub(crate) fn auto(configured: Option<usize>) -> Placement {
        match configured {
            Some(0) => Placement::MainRuntime,
            Some(threads) => Placement::Threads(threads),
            None => Placement::Threads(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        }
    }
}

/// The running threads and their endpoints.
#[derive(Debug)]
pub(crate) struct InstanceThreads {
    endpoints: Vec<quinn::Endpoint>,
    threads: Vec<JoinHandle<()>>,
}

impl InstanceThreads {
    /// Binds `count` endpoints to `addr` and serves each on a thread of its own; returns
    /// the address they share once every endpoint is up.
    pub(crate) async fn start(
        addr: SocketAddr,
        count: usize,
        tls: &TlsMaterial,
        store: ThreadStore,
        auth: InstanceAuth,
    ) -> anyhow::Result<(SocketAddr, InstanceThreads)> {
        let sockets = reuse_port_sockets(addr, count.max(1))?;
        let bound = sockets
            .first()
            .context("no socket was bound")?
            .local_addr()
            .context("reading the bound address")?;
        let mut started = InstanceThreads {
            endpoints: Vec::with_capacity(sockets.len()),
            threads: Vec::with_capacity(sockets.len()),
        };
        for (n, socket) in sockets.into_iter().enumerate() {
            let (ready, endpoint) = oneshot::channel();
            let serving = Serving {
                socket,
                cert_pem: tls.cert_pem.clone(),
                key_pem: tls.key_pem.clone(),
                reset_secret: tls.reset_secret.clone(),
                store: store.clone(),
                auth: auth.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("runtara-instances-{n}"))
                .spawn(move || serving.run(ready))
                .context("starting an instance endpoint thread")?;
            started.threads.push(thread);
            match endpoint.await {
                Ok(Ok(endpoint)) => started.endpoints.push(endpoint),
                Ok(Err(error)) => {
                    started.stop().await;
                    return Err(error);
                }
                Err(_) => {
                    started.stop().await;
                    anyhow::bail!("an instance endpoint thread ended while starting");
                }
            }
        }
        Ok((bound, started))
    }

    /// Closes every endpoint: the threads end once their clients have seen the close.
    pub(crate) fn close(&self) {
        for endpoint in &self.endpoints {
            endpoint.close(0u32.into(), b"server shutting down");
        }
    }

    /// Closes every endpoint and waits for the threads to finish.
    pub(crate) async fn stop(mut self) {
        self.close();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("an instance endpoint thread panicked");
                }
            }
        });
        if let Err(error) = joined.await {
            tracing::error!(%error, "waiting for the instance endpoint threads failed");
        }
    }
}

impl Drop for InstanceThreads {
    /// Dropped without [`stop`](Self::stop) (a start that failed later on): the closed
    /// endpoints end their threads on their own.
    fn drop(&mut self) {
        self.close();
    }
}

/// The database the threads serve instances from.
#[derive(Clone)]
pub(crate) enum ThreadStore {
    /// The server's own connection (SQLite: one writer for the whole file).
    Shared(Arc<dyn Persistence>),
    /// A connection pool of each thread's own, on the thread's runtime (PostgreSQL: a
    /// query's path stays on the thread).
    Own {
        /// The database URL.
        url: String,
        /// Connections per thread.
        pool_size: usize,
    },
}

impl ThreadStore {
    /// The store to serve from, opened on the calling thread's runtime when it is its own.
    async fn open(self) -> anyhow::Result<Arc<dyn Persistence>> {
        match self {
            ThreadStore::Shared(store) => Ok(store),
            ThreadStore::Own { url, pool_size } => {
                let options = runtara_core::ConnectOptions::new().postgres_pool_size(pool_size);
                let store = runtara_core::connect_with(&url, options)
                    .await
                    .with_context(|| format!("opening the database {url}"))?;
                let warming = store.clone();
                tokio::spawn(async move {
                    if let Err(error) = warming.warm_up().await {
                        tracing::warn!(%error, "warming up the database connections failed");
                    }
                });
                Ok(store)
            }
        }
    }
}

/// What one thread needs to serve its endpoint.
struct Serving {
    socket: std::net::UdpSocket,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    reset_secret: Vec<u8>,
    store: ThreadStore,
    auth: InstanceAuth,
}

impl Serving {
    /// Builds the thread's runtime and endpoint, reports the endpoint (or why it could
    /// not start) on `ready`, then serves until the endpoint is closed.
    fn run(self, ready: oneshot::Sender<anyhow::Result<quinn::Endpoint>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready.send(Err(anyhow::Error::new(error).context("building a runtime")));
                return;
            }
        };
        runtime.block_on(async move {
            let store = match self.store.open().await {
                Ok(store) => store,
                Err(error) => {
                    let _ = ready.send(Err(error));
                    return;
                }
            };
            let endpoint = match server_endpoint_on(
                self.socket,
                &self.cert_pem,
                &self.key_pem,
                Some(&self.reset_secret),
            ) {
                Ok(endpoint) => endpoint,
                Err(error) => {
                    let _ = ready.send(Err(
                        anyhow::Error::new(error).context("starting the instance endpoint")
                    ));
                    return;
                }
            };
            if ready.send(Ok(endpoint.clone())).is_err() {
                return;
            }
            instance_endpoint::serve(endpoint.clone(), store, self.auth).await;
            // Closed: let the close frames reach the clients before the runtime stops.
            let _ = tokio::time::timeout(CLOSE_WAIT, endpoint.wait_idle()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Placement;

    #[test]
    fn placement_follows_the_setting_else_a_thread_per_core() {
        assert_eq!(Placement::auto(Some(0)), Placement::MainRuntime);
        assert_eq!(Placement::auto(Some(4)), Placement::Threads(4));
        assert!(matches!(Placement::auto(None), Placement::Threads(n) if n >= 1));
    }
}
