//! The instance endpoint: handshake, then one request per bidirectional stream.
//!
//! The hello names the instance, its tenant and the credential the server issued at
//! launch. An instance the server launched (its record has an image) must show its
//! credential and its own tenant. Any other instance id (unknown, or created by a process
//! started by hand) is let in without a credential unless the server requires
//! credentials; such a connection is re-checked on every request, so it loses access the
//! moment the server launches an instance of that id.
//!
//! The instance and tenant ids of a hello, and the ids a request names, pass
//! [`check_id`] first: an invalid one is refused with `invalid_input` before anything is
//! looked up.

use std::sync::Arc;
use std::time::Duration;

use runtara_core::{handle_instance_request, Error, EventQuota, InstanceIdentity, Persistence};
use runtara_protocol::{
    check_hello, read_frame, write_frame, ErrorCode, Hello, HelloReply, InstanceRequest,
    InstanceResponse, Role, WireError, WorkerMessage, DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
};

use crate::completions::Completions;
use crate::connection_limits::{read_request, Budgets, Gate, Ticket};
use crate::credentials::CredentialKey;
use crate::heard_from::HeardFrom;
use crate::instance_answer::{answer, ChildLaunches, Notices};
use crate::log_text::{client_text, Refusals};
use crate::valid_ids::check_id;
use crate::workers::Workers;

/// Refused instance hellos, logged as a count.
static REFUSED: Refusals = Refusals::new("instance hello refused");

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest hello accepted.
const MAX_HELLO_LEN: usize = 64 * 1024;

/// How the instance endpoint checks who is connecting.
#[derive(Debug, Clone)]
pub(crate) struct InstanceAuth {
    /// Issues and checks instance credentials.
    pub(crate) key: CredentialKey,
    /// Refuse instances without a valid credential even if the server did not launch them.
    pub(crate) require_credentials: bool,
    /// Where the heartbeats of proven connections are noted as they arrive, stored or not.
    pub(crate) heard_from: Arc<HeardFrom>,
    /// Counts the port's connections and shares out request bytes.
    pub(crate) gate: Arc<Gate>,
    /// Bounds the custom events each instance records.
    pub(crate) events: EventQuota,
    /// The worker processes, whose hellos and runs are checked against it.
    pub(crate) workers: Arc<Workers>,
    /// Told when a request may have ended an instance (its waiters look again).
    pub(crate) completions: Arc<Completions>,
    /// Told of the children the instances start, to launch them.
    pub(crate) children: ChildLaunches,
}

/// Who a connection is, once its hello is accepted.
#[derive(Debug)]
enum Caller {
    /// One instance.
    Instance(Admitted),
    /// A worker running instances the server sends it.
    Worker {
        worker_id: String,
        tenant_id: String,
    },
}

/// A connection's identity, and whether a credential proved it.
#[derive(Debug)]
struct Admitted {
    identity: InstanceIdentity,
    /// `false`: let in without a credential (dev mode); re-checked per request until
    /// `settled`.
    proven: bool,
    /// The epoch the credential's launch registers (`None` without a credential).
    launch: Option<i64>,
    /// The instance was found existing without an image: it can never become one the
    /// server launches (a start with its id is refused as `already_exists`), so no
    /// further check is needed — checkpoints of dev-mode instances pay no extra read.
    settled: std::sync::atomic::AtomicBool,
}

/// Accepts connections until the endpoint closes.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    store: Arc<dyn Persistence>,
    auth: InstanceAuth,
) {
    let auth = Arc::new(auth);
    while let Some(incoming) = endpoint.accept().await {
        let Some(ticket) = auth.gate.enter(incoming.remote_address().ip()) else {
            incoming.refuse();
            continue;
        };
        let (store, auth) = (store.clone(), auth.clone());
        tokio::spawn(async move {
            if let Err(error) = serve_connection(incoming, store, &auth, ticket).await {
                tracing::debug!(%error, "instance connection ended");
            }
        });
    }
}

async fn serve_connection(
    incoming: quinn::Incoming,
    store: Arc<dyn Persistence>,
    auth: &InstanceAuth,
    mut ticket: Ticket,
) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let Some(caller) =
        tokio::time::timeout(HELLO_TIMEOUT, handshake(&connection, &*store, auth)).await??
    else {
        return Ok(());
    };
    ticket.authenticated();
    let admitted = match caller {
        Caller::Instance(admitted) => admitted,
        Caller::Worker {
            worker_id,
            tenant_id,
        } => return serve_worker(connection, store, auth, worker_id, tenant_id).await,
    };
    let budgets = auth.gate.budgets(&admitted.identity.tenant_id);
    let idle = auth.gate.limits().idle_timeout;
    tracing::debug!(
        instance_id = %admitted.identity.instance_id,
        proven = admitted.proven,
        remote = %connection.remote_address(),
        "instance connected"
    );
    let admitted = Arc::new(admitted);
    loop {
        let Ok(accepted) = tokio::time::timeout(idle, connection.accept_bi()).await else {
            // Idle unless a request is still being served (each holds a clone).
            if Arc::strong_count(&admitted) > 1 {
                continue;
            }
            connection.close(0u32.into(), b"idle");
            return Ok(());
        };
        let (send, recv) = accepted?;
        let (store, admitted) = (store.clone(), admitted.clone());
        let (heard_from, budgets) = (auth.heard_from.clone(), budgets.clone());
        let (events, completions) = (auth.events, auth.completions.clone());
        let children = auth.children.clone();
        tokio::spawn(async move {
            let context = RequestContext {
                heard_from: &heard_from,
                budgets: &budgets,
                events: &events,
                completions: &completions,
                children: &children,
            };
            if let Err(error) = serve_request(send, recv, &*store, &admitted, context).await {
                tracing::debug!(%error, "request stream failed");
            }
        });
    }
}

fn unauthorized(message: String) -> WireError {
    WireError::new(ErrorCode::Unauthorized, message)
}

/// The stored instance, if any; an id the store refuses is treated as unknown.
async fn stored(
    store: &dyn Persistence,
    instance_id: &str,
) -> Result<Option<runtara_core::InstanceRecord>, WireError> {
    match store.get_instance(instance_id).await {
        Ok(record) => Ok(record),
        Err(Error::InvalidInput { .. }) => Ok(None),
        Err(error) => Err(runtara_core::wire::to_wire(&error)),
    }
}

/// Decides whether an instance hello is let in.
async fn admit(
    store: &dyn Persistence,
    auth: &InstanceAuth,
    instance_id: String,
    tenant_id: String,
    credential: Option<String>,
) -> Result<Admitted, WireError> {
    // Before anything else: an id that fails the rule is refused, whoever sends it.
    check_id("instance id", &instance_id)?;
    check_id("tenant id", &tenant_id)?;
    let launch = match &credential {
        Some(credential) => Some(auth.key.verify(&instance_id, credential).ok_or_else(|| {
            unauthorized(format!(
                "the instance credential is not valid for instance `{instance_id}`"
            ))
        })?),
        None => None,
    };
    let proven = launch.is_some();
    if !proven && auth.require_credentials {
        // Decided before anything is looked up, in the same words for every id: the
        // refusal must not tell which instance ids exist.
        return Err(unauthorized(format!(
            "this server requires instance credentials and instance `{instance_id}` has none; only instances the server launches get one (RUNTARA_INSTANCE_CREDENTIAL)"
        )));
    }
    let record = stored(store, &instance_id).await?;
    let launched = record.as_ref().is_some_and(|r| r.image_id.is_some());
    if !proven && launched {
        return Err(unauthorized(format!(
            "instance `{instance_id}` was launched by the server and must present its credential (RUNTARA_INSTANCE_CREDENTIAL)"
        )));
    }
    if let (Some(launch), Some(record)) = (launch, &record) {
        // A credential is bound to one launch: useless once the instance is finished or
        // a newer run has registered.
        if record.status.is_terminal() {
            return Err(unauthorized(format!(
                "instance `{instance_id}` is {}: the credential of a finished instance admits nothing",
                record.status
            )));
        }
        if record.epoch > launch {
            return Err(unauthorized(format!(
                "this credential is for the launch of instance `{instance_id}` that registers epoch {launch}; a newer run (epoch {}) has taken over",
                record.epoch
            )));
        }
    }
    if let Some(record) = &record {
        if record.tenant_id != tenant_id {
            return Err(WireError::new(
                ErrorCode::TenantMismatch,
                format!("instance `{instance_id}` is not registered for tenant `{tenant_id}`"),
            ));
        }
    }
    Ok(Admitted {
        identity: InstanceIdentity {
            instance_id,
            tenant_id,
        },
        proven,
        launch,
        settled: std::sync::atomic::AtomicBool::new(false),
    })
}

/// Reads the hello; answers it; returns the caller's identity if it was accepted.
async fn handshake(
    connection: &quinn::Connection,
    store: &dyn Persistence,
    auth: &InstanceAuth,
) -> anyhow::Result<Option<Caller>> {
    let (mut send, mut recv) = connection.accept_bi().await?;
    let refuse = |error: WireError| HelloReply::Refused(error);
    let (reply, identity) = match read_frame::<_, Hello>(&mut recv, MAX_HELLO_LEN).await {
        Ok(Some(hello)) => match (check_hello(&hello), hello.role) {
            (Err(error), _) => (refuse(WireError::from(&error)), None),
            (
                Ok(()),
                Role::Instance {
                    instance_id,
                    tenant_id,
                    credential,
                },
            ) => match admit(store, auth, instance_id, tenant_id, credential).await {
                Ok(admitted) => (welcome(), Some(Caller::Instance(admitted))),
                Err(error) => {
                    let detail = format!(
                        "{} (client `{}`, {})",
                        client_text(&error.message),
                        client_text(&hello.client),
                        error.code
                    );
                    REFUSED.note(&detail);
                    (refuse(error), None)
                }
            },
            (
                Ok(()),
                Role::Worker {
                    worker_id,
                    tenant_id,
                    image_id,
                    credential,
                },
            ) => {
                let connected = check_id("worker id", &worker_id).and_then(|()| {
                    auth.workers.connected(
                        &worker_id,
                        &tenant_id,
                        &image_id,
                        credential.as_deref(),
                        connection.clone(),
                    )
                });
                match connected {
                    Ok(()) => (
                        welcome(),
                        Some(Caller::Worker {
                            worker_id,
                            tenant_id,
                        }),
                    ),
                    Err(error) => {
                        REFUSED.note(&format!(
                            "{} (worker, client `{}`, {})",
                            client_text(&error.message),
                            client_text(&hello.client),
                            error.code
                        ));
                        (refuse(error), None)
                    }
                }
            }
            (Ok(()), Role::Management { .. }) => (
                refuse(WireError::new(
                    ErrorCode::Unsupported,
                    "this is the instance endpoint; management clients connect to the management endpoint",
                )),
                None,
            ),
        },
        Ok(None) => return Ok(None),
        Err(error) => (refuse(WireError::from(&error)), None),
    };
    if identity.is_some() {
        // Raised before the welcome goes out, so the client's next stream need not wait.
        runtara_protocol::endpoint::admit(connection);
    }
    write_frame(&mut send, &reply).await?;
    send.finish()?;
    if identity.is_none() {
        // Let the refusal reach the client before closing.
        let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
        connection.close(1u32.into(), b"handshake refused");
    }
    Ok(identity)
}

/// The welcome of an accepted hello.
fn welcome() -> HelloReply {
    HelloReply::Welcome {
        protocol_version: PROTOCOL_VERSION,
        server: format!("runtara-server/{}", env!("CARGO_PKG_VERSION")),
    }
}

/// Serves a worker's connection: the requests of the instances the server sent it, and
/// the ends of their runs. Closed when idle with no run hosted (the worker then stops).
async fn serve_worker(
    connection: quinn::Connection,
    store: Arc<dyn Persistence>,
    auth: &InstanceAuth,
    worker_id: String,
    tenant_id: String,
) -> anyhow::Result<()> {
    let budgets = auth.gate.budgets(&tenant_id);
    let idle = auth.gate.limits().idle_timeout;
    let worker_id = Arc::new(worker_id);
    tracing::debug!(%worker_id, remote = %connection.remote_address(), "worker connected");
    // Idle: hosting no run for `idle` (its heartbeats keep arriving, and a run in a long
    // step sends nothing), and not one of its pool's minimum.
    let check_every = (idle / 4).max(Duration::from_millis(10));
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let accepted = tokio::time::timeout(check_every, connection.accept_bi()).await;
        if auth.workers.is_busy(&worker_id) {
            idle_since = tokio::time::Instant::now();
        } else if idle_since.elapsed() >= idle && auth.workers.may_idle_out(&worker_id) {
            connection.close(0u32.into(), b"idle");
            return Ok(());
        }
        let Ok(accepted) = accepted else { continue };
        let (mut send, mut recv) = accepted?;
        let (store, budgets, worker_id) = (store.clone(), budgets.clone(), worker_id.clone());
        let (workers, heard_from, events) =
            (auth.workers.clone(), auth.heard_from.clone(), auth.events);
        let (completions, children) = (auth.completions.clone(), auth.children.clone());
        tokio::spawn(async move {
            let read =
                read_request::<WorkerMessage>(&mut recv, DEFAULT_MAX_FRAME_LEN, &budgets).await;
            let response = match read {
                Ok(Some((
                    WorkerMessage::Instance {
                        instance_id,
                        request,
                    },
                    _held,
                ))) => match workers.hosts(&worker_id, &instance_id) {
                    None => InstanceResponse::Error(unauthorized(format!(
                        "instance `{instance_id}` is not running on worker `{worker_id}`"
                    ))),
                    Some(tenant_id) => match checked_ids(&request) {
                        Err(error) => InstanceResponse::Error(error),
                        Ok(()) => {
                            if matches!(request, InstanceRequest::Heartbeat { .. }) {
                                heard_from.heartbeat(&instance_id);
                            }
                            let who = InstanceIdentity {
                                instance_id,
                                tenant_id,
                            };
                            let notices = Notices {
                                completions: &completions,
                                children: &children,
                            };
                            answer(&*store, &who, request, &events, notices).await
                        }
                    },
                },
                Ok(Some((
                    WorkerMessage::Ended {
                        instance_id,
                        how,
                        clean,
                    },
                    _held,
                ))) => {
                    workers.ended(&worker_id, &instance_id, (how, clean));
                    InstanceResponse::Done
                }
                Ok(Some((WorkerMessage::Heartbeat, _held))) => {
                    workers.heard_from(&worker_id);
                    InstanceResponse::Done
                }
                Ok(None) => return,
                Err(error) => InstanceResponse::Error(error),
            };
            if write_frame(&mut send, &response).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}

/// For a connection let in without a credential: refuses once the server has launched an
/// instance of that id (which only its credential may act on).
async fn still_unclaimed(store: &dyn Persistence, admitted: &Admitted) -> Result<(), WireError> {
    use std::sync::atomic::Ordering;
    if admitted.proven || admitted.settled.load(Ordering::Acquire) {
        return Ok(());
    }
    let instance_id = &admitted.identity.instance_id;
    match stored(store, instance_id).await? {
        Some(record) if record.image_id.is_some() => Err(unauthorized(format!(
            "instance `{instance_id}` was launched by the server; this connection has no credential for it"
        ))),
        Some(_) => {
            admitted.settled.store(true, Ordering::Release);
            Ok(())
        }
        None => Ok(()),
    }
}

/// What a request is served with besides the store and the connection's identity.
struct RequestContext<'a> {
    heard_from: &'a HeardFrom,
    budgets: &'a Budgets,
    events: &'a EventQuota,
    completions: &'a Completions,
    children: &'a ChildLaunches,
}

/// Instances whose launch is registering right now (on any thread of this server).
static REGISTERING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// A register under a credential bound to the launch that registers `launch`: only if
/// no run has registered that epoch (or a newer one) yet, one at a time per instance, so
/// that a credential registers once and a second process holding it cannot take the
/// instance from the process the server launched.
async fn register_once(
    store: &dyn Persistence,
    who: &InstanceIdentity,
    launch: i64,
    request: InstanceRequest,
) -> InstanceResponse {
    let id = &who.instance_id;
    let Some(_turn) = RegisterTurn::take(id) else {
        return InstanceResponse::Error(unauthorized(format!(
            "instance `{id}` is registering already: a launch's credential registers once"
        )));
    };
    match stored(store, id).await {
        Err(error) => InstanceResponse::Error(error),
        Ok(Some(record)) if record.epoch >= launch => InstanceResponse::Error(unauthorized(format!(
            "the launch of instance `{id}` that registers epoch {launch} has registered already (the instance is at epoch {}): a launch's credential registers once",
            record.epoch
        ))),
        Ok(_) => handle_instance_request(store, who, request).await,
    }
}

/// An instance's place in [`REGISTERING`], given back when dropped.
struct RegisterTurn(String);

impl RegisterTurn {
    fn take(instance_id: &str) -> Option<RegisterTurn> {
        let mut registering = REGISTERING.lock().unwrap_or_else(|e| e.into_inner());
        if registering.iter().any(|other| other == instance_id) {
            return None;
        }
        registering.push(instance_id.to_owned());
        Some(RegisterTurn(instance_id.to_owned()))
    }
}

impl Drop for RegisterTurn {
    fn drop(&mut self) {
        REGISTERING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|other| *other != self.0);
    }
}

/// Checks the ids a request names besides the connection's own (checked at the hello).
fn checked_ids(request: &InstanceRequest) -> Result<(), WireError> {
    match request {
        InstanceRequest::GetStatus {
            instance_id: Some(instance_id),
        } => check_id("instance id", instance_id),
        _ => Ok(()),
    }
}

async fn serve_request(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    store: &dyn Persistence,
    admitted: &Admitted,
    context: RequestContext<'_>,
) -> anyhow::Result<()> {
    let RequestContext {
        heard_from,
        budgets,
        events,
        completions,
        children,
    } = context;
    // The request's bytes stay reserved until it is answered.
    let read = read_request::<InstanceRequest>(&mut recv, DEFAULT_MAX_FRAME_LEN, budgets).await;
    let response = match read {
        Ok(Some((request, _held))) => match checked_ids(&request) {
            Err(error) => InstanceResponse::Error(error),
            Ok(()) => match still_unclaimed(store, admitted).await {
                Ok(()) => {
                    if admitted.proven && matches!(request, InstanceRequest::Heartbeat { .. }) {
                        heard_from.heartbeat(&admitted.identity.instance_id);
                    }
                    let registers = matches!(
                        request,
                        InstanceRequest::Register { .. } | InstanceRequest::RegisterPaged { .. }
                    );
                    match (registers, admitted.launch) {
                        (true, Some(launch)) => {
                            register_once(store, &admitted.identity, launch, request).await
                        }
                        _ => {
                            let notices = Notices {
                                completions,
                                children,
                            };
                            answer(store, &admitted.identity, request, events, notices).await
                        }
                    }
                }
                Err(error) => InstanceResponse::Error(error),
            },
        },
        Ok(None) => return Ok(()),
        // Keeps the precise code (`frame_too_large`, `malformed`, …).
        Err(error) => InstanceResponse::Error(error),
    };
    write_frame(&mut send, &response).await?;
    send.finish()?;
    Ok(())
}
