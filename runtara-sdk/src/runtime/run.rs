//! One run of one instance of a runtime, on a task of its own: wait for a slot, register
//! (unless registered when created), run the workflow in the instance's scope, record
//! how it ended, and tell the handles.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::handle::{Ended, Progress};
use super::slot::Slot;
use super::workflow::Workflow;
use super::{Entry, Shared};
use crate::RuntaraSdk;

/// What a run needs.
pub(crate) struct Launch {
    pub(crate) instance_id: String,
    pub(crate) workflow_name: String,
    pub(crate) workflow: Workflow,
    pub(crate) input: Vec<u8>,
    /// The epoch the instance was registered with when it was created; `None`: the run
    /// registers first (a queued, recovered or resumed instance).
    pub(crate) registered: Option<i64>,
    /// The slot taken for it at the start, if one was free.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// Runs `launch` to its end (or to a pause) and publishes where it ended.
pub(crate) async fn run(shared: Arc<Shared>, launch: Launch, entry: Arc<Entry>) {
    let id = launch.instance_id;
    let slot = Slot::new(
        Arc::clone(&shared.slots),
        launch.permit,
        Arc::clone(&entry.interrupt),
    );
    slot.take().await;
    let sdk = RuntaraSdk::for_runtime(
        Arc::clone(&shared.persistence),
        id.clone(),
        shared.tenant_id.clone(),
        slot,
        Arc::downgrade(&shared),
    );
    match launch.registered {
        Some(epoch) => sdk.assume_registered(epoch),
        None => {
            if let Err(error) = sdk.register(None).await {
                drop(sdk);
                let progress = shared.progress_in_store(&id, &error.to_string()).await;
                shared.publish(&id, &entry, progress);
                return;
            }
        }
    }
    entry.progress.send_replace(Progress::Running);
    let body = tokio::spawn(sdk.clone().scope(launch.workflow.run(launch.input)));
    let ending = match body.await {
        Ok(ending) => ending,
        Err(join) if join.is_panic() => Err(format!(
            "workflow `{}` panicked: {}",
            launch.workflow_name,
            panic_message(join.into_panic())
        )),
        Err(_) => Err("the run was aborted (the runtime shut down)".to_owned()),
    };
    let recorded = match ending {
        Ok(output) => sdk
            .completed(&output)
            .await
            .map(|()| Progress::Ended(Arc::new(Ended::Completed(output))))
            .map_err(|error| error.to_string()),
        // The run took a cancel or a pause: the instance is in the state it asked for.
        Err(message) if sdk.is_stopping() => Err(message),
        Err(message) => match sdk.failed(&message).await {
            Ok(()) => Ok(Progress::Ended(Arc::new(Ended::Failed(message)))),
            Err(error) => Err(error.to_string()),
        },
    };
    drop(sdk);
    let progress = match recorded {
        Ok(progress) => progress,
        Err(reason) => shared.progress_in_store(&id, &reason).await,
    };
    shared.publish(&id, &entry, progress);
    // A parent waiting here for this child is told at once (the store put the event in
    // its inbox when this instance ended).
    if let Some(parent) = runtara_core::inbox::parent_of(&id) {
        crate::events::ring(parent);
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(
            || "(a panic without a message)".to_owned(),
            |m| (*m).to_owned(),
        ),
    }
}
