//! Where an instance's requests go: the store in this process (embedded mode), or a
//! `runtara-server` over QUIC ([`crate::quic`]).
//!
//! Both take the protocol's [`InstanceRequest`] and give back its [`InstanceResponse`]:
//! an instance operation is defined once, by its request type and its handler in
//! [`runtara_core::instance_handler`], which the server runs for QUIC requests and the
//! embedded backend runs here. A backend knows no operation by name; it only carries
//! requests (and, embedded, holds the run lease around a run).

use std::sync::Arc;

use async_trait::async_trait;
use runtara_core::instance_handler::{handle, RequestLimits};
use runtara_core::{InstanceIdentity, Persistence, RunLease};
use runtara_protocol::{InstanceRequest, InstanceResponse};

use crate::Result;

/// Carries an instance's requests to where its state lives.
#[async_trait]
pub(crate) trait Backend: Send + Sync + std::fmt::Debug {
    /// `embedded` or `quic`.
    fn name(&self) -> &'static str;
    async fn connect(&self) -> Result<()>;
    async fn is_connected(&self) -> bool;
    /// Runs `request`. A refusal comes back as `Err`; beside the result, whether the
    /// request was sent more than once (its first answer was lost on the way, so a
    /// write may already have been applied).
    async fn send(&self, request: InstanceRequest) -> (Result<InstanceResponse>, bool);
    /// Finishes the requests under way and lets go of the connection, before the
    /// process ends.
    async fn close(&self);
    /// The persistence, when the state lives in this process.
    fn persistence(&self) -> Option<&Arc<dyn Persistence>>;
}

/// Embedded mode: every request runs the instance handler against a `Persistence` in
/// this process.
///
/// A registered run holds the instance's run lease (see
/// [`Persistence::acquire_run_lease`]) until it finishes, suspends, or the SDK is dropped,
/// so that a second run of the instance is refused while this one lives.
#[derive(Debug)]
pub(crate) struct Embedded {
    persistence: Arc<dyn Persistence>,
    who: InstanceIdentity,
    lease: tokio::sync::Mutex<Option<RunLease>>,
    /// Register without the lease (an operator's explicit takeover).
    take_over: bool,
}

/// What a request does to the run lease.
enum LeaseStep {
    /// Take it before the request (a register); let go if the request fails.
    Take,
    /// Let go after the request: the run suspended.
    Release,
    /// Let go after the request, off the async workers: the run finished.
    ReleaseFinished,
    /// Nothing.
    Keep,
}

impl LeaseStep {
    fn of(request: &InstanceRequest) -> LeaseStep {
        match request {
            InstanceRequest::Register { .. } | InstanceRequest::RegisterPaged { .. } => {
                LeaseStep::Take
            }
            InstanceRequest::Suspended { .. } => LeaseStep::Release,
            InstanceRequest::Completed { .. } | InstanceRequest::Failed { .. } => {
                LeaseStep::ReleaseFinished
            }
            _ => LeaseStep::Keep,
        }
    }
}

impl Embedded {
    pub(crate) fn new(
        persistence: Arc<dyn Persistence>,
        instance_id: String,
        tenant_id: String,
        take_over: bool,
    ) -> Embedded {
        Embedded {
            persistence,
            who: InstanceIdentity {
                instance_id,
                tenant_id,
            },
            lease: tokio::sync::Mutex::new(None),
            take_over,
        }
    }

    async fn handle(&self, request: InstanceRequest) -> Result<InstanceResponse> {
        // Only this process writes an embedded run's state and events: no quota and no
        // frame to fit, but a finished instance still records nothing.
        Ok(handle(
            &*self.persistence,
            &self.who,
            request,
            &RequestLimits::EMBEDDED,
        )
        .await?)
    }

    async fn run(&self, request: InstanceRequest) -> Result<InstanceResponse> {
        match LeaseStep::of(&request) {
            LeaseStep::Take => {
                let mut lease = self.lease.lock().await;
                if lease.is_none() && !self.take_over {
                    *lease = self
                        .persistence
                        .acquire_run_lease(&self.who.tenant_id, &self.who.instance_id)
                        .await?;
                }
                let registered = self.handle(request).await;
                if registered.is_err() {
                    // A finished instance, another tenant's: this run does not go ahead.
                    lease.take();
                }
                registered
            }
            LeaseStep::Release => {
                let response = self.handle(request).await?;
                self.lease.lock().await.take();
                Ok(response)
            }
            LeaseStep::ReleaseFinished => {
                let response = self.handle(request).await?;
                // Nothing can run a finished instance again, so nobody waits for the
                // release, and releasing a SQLite lease removes a file (200 instances
                // finishing at once halved W2's rate when done inline).
                if let Some(lease) = self.lease.lock().await.take() {
                    tokio::task::spawn_blocking(move || drop(lease));
                }
                Ok(response)
            }
            LeaseStep::Keep => self.handle(request).await,
        }
    }
}

#[async_trait]
impl Backend for Embedded {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn connect(&self) -> Result<()> {
        Ok(())
    }

    async fn is_connected(&self) -> bool {
        true
    }

    async fn send(&self, request: InstanceRequest) -> (Result<InstanceResponse>, bool) {
        (self.run(request).await, false)
    }

    async fn close(&self) {
        // Every write is stored before its call returns; the store belongs to its owner.
    }

    fn persistence(&self) -> Option<&Arc<dyn Persistence>> {
        Some(&self.persistence)
    }
}
