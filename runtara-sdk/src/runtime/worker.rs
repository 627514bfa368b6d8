//! Worker mode of an image: one long-lived process running the instances the server
//! sends it, each as a task with its own SDK, all on one connection
//! ([`runtara_protocol::worker`]).
//!
//! The server launches the image with `RUNTARA_WORKER_ID` (and `RUNTARA_IMAGE_ID`,
//! `RUNTARA_WORKER_CREDENTIAL`, and the server's address and certificate as for an
//! instance); [`run_image`](super::run_image) then serves here. A worker whose
//! connection ends stops: the server runs its instances again elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use runtara_protocol::client::{Client, ClientSettings};
use runtara_protocol::{
    read_frame, write_frame, ByteBuf, Hello, InstanceResponse, Role, WireError, WorkerCommand,
    WorkerMessage, WorkerReply, DEFAULT_MAX_FRAME_LEN,
};

use super::run::panic_message;
use super::workflow::Workflow;
use crate::hosted::Hosted;
use crate::{RuntaraSdk, SdkConfig, SdkError};

/// The variable that makes a launched image a worker: its id.
pub const WORKER_ID_ENV: &str = "RUNTARA_WORKER_ID";

/// Whether the server launched this process as a worker.
pub(crate) fn is_worker() -> bool {
    std::env::var_os(WORKER_ID_ENV).is_some()
}

/// What every instance of this worker shares.
struct Worker {
    connection: quinn::Connection,
    tenant_id: String,
    sleep_exit_threshold: Option<Duration>,
    workflow: Workflow,
    /// The workflow tasks running, by instance, to stop them when asked.
    runs: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

/// Connects as worker `RUNTARA_WORKER_ID` and runs what the server sends until the
/// connection ends (an error saying so).
pub(crate) async fn serve(workflow: Workflow) -> Result<(), SdkError> {
    let required = |var: &'static str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or(SdkError::MissingEnv { var })
    };
    let worker_id = required(WORKER_ID_ENV)?;
    let image_id = required("RUNTARA_IMAGE_ID")?;
    // The instance settings, read the same way; the worker's id stands for an instance's.
    let config = SdkConfig::from_lookup(|var| match var {
        "RUNTARA_INSTANCE_ID" => Some(worker_id.clone()),
        other => std::env::var(other).ok(),
    })?;
    let hello = Hello::new(
        concat!("runtara-sdk/", env!("CARGO_PKG_VERSION"), " worker"),
        Role::Worker {
            worker_id: worker_id.clone(),
            tenant_id: config.tenant_id.clone(),
            image_id,
            credential: std::env::var("RUNTARA_WORKER_CREDENTIAL").ok(),
        },
    );
    let client = Client::new(ClientSettings {
        addrs: vec![config.server_addr],
        shown: config.server_addr.to_string(),
        server_name: config.server_name.clone(),
        tls: crate::quic::client_tls(&config)?,
        hello,
    });
    let lost = |message: String| SdkError::Connect {
        addr: config.server_addr,
        message,
    };
    let (connection, _) = tokio::time::timeout(config.connect_timeout, client.connection())
        .await
        .map_err(|_| lost("no answer before the connect timeout".into()))?
        .map_err(|error| lost(error.to_string()))?;
    tracing::info!(%worker_id, server = %config.server_addr, "worker connected");
    tokio::spawn(heartbeats(connection.clone(), config.heartbeat_interval));
    let worker = Arc::new(Worker {
        connection: connection.clone(),
        tenant_id: config.tenant_id.clone(),
        sleep_exit_threshold: config.sleep_exit_threshold,
        workflow,
        runs: Mutex::new(HashMap::new()),
    });
    loop {
        let (send, recv) = connection
            .accept_bi()
            .await
            .map_err(|error| lost(format!("the worker's connection ended: {error}")))?;
        tokio::spawn(Arc::clone(&worker).command(send, recv));
    }
}

/// Tells the server every `interval` that this worker is alive, until its connection
/// ends. A worker whose runtime stops answering stops these too, and the server kills it.
async fn heartbeats(connection: quinn::Connection, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while connection.close_reason().is_none() {
        ticks.tick().await;
        if let Err(error) = Hosted::exchange(&connection, &WorkerMessage::Heartbeat).await {
            tracing::debug!(%error, "a worker heartbeat was not delivered");
        }
    }
}

impl Worker {
    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads one command from the server, carries it out and answers.
    async fn command(self: Arc<Self>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let reply = match read_frame::<_, WorkerCommand>(&mut recv, DEFAULT_MAX_FRAME_LEN).await {
            Ok(Some(WorkerCommand::Run {
                instance_id,
                input,
                checkpoint_id,
                registered,
            })) => {
                self.start(instance_id, input, checkpoint_id, registered);
                WorkerReply::Accepted
            }
            Ok(Some(WorkerCommand::Stop { instance_id })) => {
                if let Some(run) = self.runs().remove(&instance_id) {
                    run.abort();
                }
                WorkerReply::Accepted
            }
            Ok(None) => return,
            Err(error) => WorkerReply::Refused(WireError::from(&error)),
        };
        if write_frame(&mut send, &reply).await.is_ok() {
            let _ = send.finish();
        }
    }

    /// Runs an instance on a task of its own; tells the server when its run is over.
    fn start(
        self: &Arc<Self>,
        instance_id: String,
        input: Option<ByteBuf>,
        from: Option<String>,
        registered: Option<Box<InstanceResponse>>,
    ) {
        let worker = Arc::clone(self);
        tokio::spawn(async move {
            let (how, clean) = worker.run(&instance_id, input, from, registered).await;
            worker.runs().remove(&instance_id);
            tracing::debug!(%instance_id, %how, "instance run over");
            let ended = WorkerMessage::Ended {
                instance_id,
                how,
                clean,
            };
            if let Err(error) = Hosted::exchange(&worker.connection, &ended).await {
                tracing::warn!(%error, "the server was not told that an instance's run is over");
            }
        });
    }

    /// Registers the instance (or takes the registration the server made), runs the
    /// workflow in its scope and records how it ended: how it went, and whether it ended
    /// on its own (not stopped or cut off).
    async fn run(
        &self,
        instance_id: &str,
        input: Option<ByteBuf>,
        from: Option<String>,
        registered: Option<Box<InstanceResponse>>,
    ) -> (String, bool) {
        let sdk = RuntaraSdk::hosted(
            self.connection.clone(),
            instance_id.to_owned(),
            self.tenant_id.clone(),
            self.sleep_exit_threshold,
        );
        let registering = match registered {
            Some(first) => sdk.adopt_registration(*first).await,
            None => sdk.register(from.as_deref()).await,
        };
        if let Err(error) = registering {
            return (format!("it could not register: {error}"), false);
        }
        let input = input.map_or_else(|| b"null".to_vec(), ByteBuf::into_vec);
        let body = tokio::spawn(sdk.clone().scope(self.workflow.run(input)));
        self.runs()
            .insert(instance_id.to_owned(), body.abort_handle());
        let ending = match body.await {
            Ok(ending) => ending,
            Err(join) if join.is_cancelled() => {
                return ("stopped by the server".to_owned(), false);
            }
            Err(join) => Err(format!(
                "the workflow panicked: {}",
                panic_message(join.into_panic())
            )),
        };
        let recorded = match ending {
            Ok(output) => sdk.completed(&output).await.map(|()| "completed"),
            // The cancel, the pause or the long sleep is recorded already.
            Err(_) if sdk.is_stopping() => Ok("stopped at a cancel, a pause or a long sleep"),
            Err(message) => sdk.failed(&message).await.map(|()| "failed"),
        };
        match recorded {
            Ok(how) => (how.to_owned(), true),
            Err(error) => (format!("its end could not be recorded: {error}"), false),
        }
    }
}
