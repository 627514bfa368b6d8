//! Worker connections: one process running many instances of one image and tenant.
//!
//! A worker says hello with [`Role::Worker`](crate::Role::Worker) on the instance
//! endpoint. The server then opens a stream per [`WorkerCommand`] (run an instance, stop
//! one), answered by a [`WorkerReply`]; the worker opens a stream per [`WorkerMessage`]:
//! an instance request of an instance the server sent it (answered by its
//! [`InstanceResponse`]), or the end of an instance's run there
//! (answered by [`InstanceResponse::Done`]). The server
//! refuses requests for instances it did not send to this connection.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::{InstanceRequest, InstanceResponse, WireError};

/// From the server to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerCommand {
    /// Run this instance: register it (resuming it from its last checkpoint) and run
    /// the image's workflow on its input.
    Run {
        /// The instance.
        instance_id: String,
        /// Its start input (JSON); `None` without one.
        input: Option<ByteBuf>,
        /// The checkpoint the run resumes from, for the record.
        checkpoint_id: Option<String>,
        /// The server registered the run already: the answer to its register (the
        /// first page of the replay log, [`InstanceResponse::RegisteredPage`]). The worker
        /// reads any further pages and starts the workflow; `None`: the worker registers
        /// it.
        registered: Option<Box<InstanceResponse>>,
    },
    /// Stop running this instance now (a kill: its timeout or its cancel grace ran
    /// out); its run ends as if its process had been killed.
    Stop {
        /// The instance.
        instance_id: String,
    },
}

/// A worker's answer to a [`WorkerCommand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerReply {
    /// Done as asked (the run started, or was stopped).
    Accepted,
    /// Not done, and why.
    Refused(WireError),
}

/// From a worker to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// A request of an instance this worker runs.
    Instance {
        /// The instance.
        instance_id: String,
        /// Its request.
        request: InstanceRequest,
    },
    /// The run of this instance in the worker is over (whatever it recorded).
    Ended {
        /// The instance.
        instance_id: String,
        /// How it ended, for the log (`completed`, `failed`, `stopped by the server`, …).
        how: String,
        /// It ended on its own, as a process that exits with status 0: its end (or its
        /// pause) is recorded. `false`: stopped or cut off, as a crash.
        clean: bool,
    },
    /// The worker is alive and its runtime answers: sent every heartbeat interval by a
    /// task of its own (answered by [`InstanceResponse::Done`]). A worker silent past
    /// the server's heartbeat timeout is killed, and its runs are run again elsewhere.
    Heartbeat,
}
