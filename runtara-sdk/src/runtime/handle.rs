//! What a runtime tells the holders of an instance's handle.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::{InstanceStatus, Result, SdkError};

/// Where an instance of a runtime is, as its handles see it.
#[derive(Debug, Clone)]
pub(crate) enum Progress {
    /// Waiting for a slot.
    Queued,
    /// Running in this process.
    Running,
    /// Paused; waits for a resume.
    Suspended,
    /// Over, for this process.
    Ended(Arc<Ended>),
}

/// How an instance's run in this process ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// Completed with this output.
    Completed(Vec<u8>),
    /// Failed with this error.
    Failed(String),
    /// Cancelled.
    Cancelled,
    /// Stopped unfinished, for this reason.
    Stopped(String),
}

/// A handle on an instance of a [`Runtime`](super::Runtime): its id, its status, and its
/// result once it finishes.
///
/// Cheap to clone; every clone sees the same instance. Dropping handles does not stop
/// the instance.
#[derive(Debug, Clone)]
pub struct InstanceHandle {
    instance_id: String,
    progress: watch::Receiver<Progress>,
}

impl InstanceHandle {
    pub(crate) fn new(instance_id: String, progress: watch::Receiver<Progress>) -> InstanceHandle {
        InstanceHandle {
            instance_id,
            progress,
        }
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The status as this runtime knows it now: `pending` while it waits for a slot,
    /// `running` (also while it sleeps), `suspended`, or how it finished. A run that
    /// stopped unfinished in this process reads `running`: the instance resumes when
    /// started again or when the runtime restarts.
    pub fn status(&self) -> InstanceStatus {
        match &*self.progress.borrow() {
            Progress::Queued => InstanceStatus::Pending,
            Progress::Running => InstanceStatus::Running,
            Progress::Suspended => InstanceStatus::Suspended,
            Progress::Ended(ended) => match **ended {
                Ended::Completed(_) => InstanceStatus::Completed,
                Ended::Failed(_) => InstanceStatus::Failed,
                Ended::Cancelled => InstanceStatus::Cancelled,
                Ended::Stopped(_) => InstanceStatus::Running,
            },
        }
    }

    /// Waits for the instance to finish and returns its output (JSON bytes): the
    /// workflow's `Ok` value, encoded.
    ///
    /// A failed instance is [`SdkError::InstanceFailed`] with its error, a cancelled one
    /// [`SdkError::InstanceCancelled`]; a paused instance is waited for through its
    /// resume. [`SdkError::RunStopped`] says this process stopped running it unfinished.
    pub async fn output(mut self) -> Result<Vec<u8>> {
        let ended = loop {
            if let Progress::Ended(ended) = &*self.progress.borrow_and_update() {
                break Arc::clone(ended);
            }
            if self.progress.changed().await.is_err() {
                // The runtime let go of the instance: its last word, if it was the end.
                if let Progress::Ended(ended) = &*self.progress.borrow() {
                    break Arc::clone(ended);
                }
                return Err(SdkError::RunStopped {
                    instance_id: self.instance_id,
                    reason: "the runtime stopped".into(),
                });
            }
        };
        let instance_id = self.instance_id;
        match &*ended {
            Ended::Completed(output) => Ok(output.clone()),
            Ended::Failed(error) => Err(SdkError::InstanceFailed {
                instance_id,
                error: error.clone(),
            }),
            Ended::Cancelled => Err(SdkError::InstanceCancelled { instance_id }),
            Ended::Stopped(reason) => Err(SdkError::RunStopped {
                instance_id,
                reason: reason.clone(),
            }),
        }
    }

    /// Waits for the instance to finish and returns its output decoded as `T` (see
    /// [`output`](Self::output)); an output that does not decode is
    /// [`SdkError::OutputDecode`].
    pub async fn result<T: DeserializeOwned>(self) -> Result<T> {
        let instance_id = self.instance_id.clone();
        let output = self.output().await?;
        serde_json::from_slice(&output).map_err(|source| SdkError::OutputDecode {
            instance_id,
            type_name: std::any::type_name::<T>(),
            source,
        })
    }
}
