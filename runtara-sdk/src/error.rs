//! The error type of `runtara-sdk`.

/// Result type of `runtara-sdk`.
pub type Result<T, E = SdkError> = std::result::Result<T, E>;

/// Everything an SDK call can fail with.
///
/// Durable functions need `E: From<SdkError>` so these errors reach the caller
/// through the function's own error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SdkError {
    /// No SDK is registered for this process (or this task's scope).
    #[error(
        "no runtara sdk is registered; call `RuntaraSdk::init` or `runtara_sdk::register_sdk` \
         before calling a `#[durable]` function"
    )]
    NotInitialized,
    /// `register_sdk` was called a second time.
    #[error("a runtara sdk is already registered for this process; `register_sdk` succeeds once")]
    AlreadyRegistered,
    /// An instance call was made before `register`.
    #[error("instance `{instance_id}` is not registered; call `register` (or `init`) first")]
    NotRegistered {
        /// The SDK's instance id.
        instance_id: String,
    },
    /// The instance was cancelled; stop work.
    #[error("the instance was cancelled")]
    Cancelled,
    /// The instance was paused; its result so far is recorded; exit and resume later.
    #[error("the instance was paused")]
    Paused,
    /// The instance went into a long durable sleep in a worker process: this run ends
    /// here (pass the error on), and the server runs the instance again when it wakes.
    #[error(
        "the instance sleeps for another {remaining:?}: this run ends, and the server runs \
         it again when it wakes"
    )]
    Sleeping {
        /// What is left of the sleep.
        remaining: std::time::Duration,
    },
    /// The instance waits for an external event in a worker process, and has let go of
    /// its slot: this run ends here (pass the error on), and the server runs the instance
    /// again when the event comes or the wait times out.
    #[error(
        "the instance waits for event `{name}`: this run ends, and the server runs it again \
         when the event comes or the wait times out"
    )]
    Waiting {
        /// The event's name.
        name: String,
    },
    /// A child instance this instance waited for (`wait_for_child`) did not complete: it
    /// failed (with its error) or was cancelled.
    #[error("child instance `{child_id}` {status}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    ChildFailed {
        /// The child.
        child_id: String,
        /// `failed` or `cancelled`.
        status: runtara_core::InstanceStatus,
        /// Its error, when it failed.
        error: Option<String>,
    },
    /// `start_child` in an instance that has nowhere to run a child: an embedded
    /// instance outside a [`Runtime`](crate::runtime::Runtime).
    #[error(
        "instance `{instance_id}` cannot start a child: children run in a `Runtime` (embedded) \
         or on a server; this instance has neither"
    )]
    NoChildren {
        /// The instance.
        instance_id: String,
    },
    /// An event's payload or a published value could not be encoded or decoded as JSON.
    #[error("{what} `{name}` is not the json of `{type_name}`: {source}")]
    EventPayload {
        /// `event` or `value`.
        what: &'static str,
        /// The event's name or the value's key.
        name: String,
        /// The Rust type.
        type_name: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A recorded result no longer decodes into the function's return type.
    #[error(
        "the recorded result of durable call `{checkpoint_id}` does not decode as `{type_name}` \
         (did the return type change since it was recorded?)"
    )]
    Decode {
        /// The durable call's checkpoint id, `"{fn_name}::{key}"`.
        checkpoint_id: String,
        /// The Rust type it was decoded into.
        type_name: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The result recorded under a durable call's checkpoint id was produced by another
    /// function (two functions of one name in different modules, or two methods of one
    /// name on different types, share ids). Give one of them a distinct
    /// `#[durable(name = "...")]`, or, after a rename or a move, the old identity.
    #[error(
        "the result recorded under `{checkpoint_id}` was produced by `{recorded_by}`, not by \
         `{caller}`; two durable functions share this id (give one a distinct \
         `#[durable(name = \"...\")]`, or after a rename or a move, name the old function)"
    )]
    WrongProducer {
        /// The checkpoint id, `"{fn_name}::{key}"`.
        checkpoint_id: String,
        /// The function that recorded the result (its module path, with its `Self` type
        /// for a method).
        recorded_by: String,
        /// The function that asked for it.
        caller: String,
    },
    /// The durable call failed for good (its retries were spent, or its error was not
    /// retryable) and its failure is recorded, so it is not run again. Later runs get it
    /// instead of running the call; so does the run where it failed when the function's
    /// error type is not `Send` (the original error cannot be held while the failure is
    /// recorded). An operator lets it run again with `ManagementSdk::retry_step` or
    /// `runtara-ctl retry-step`.
    #[error("durable call `{checkpoint_id}` failed for good and is not run again: {message}")]
    StepFailed {
        /// The durable call's checkpoint id.
        checkpoint_id: String,
        /// The error it failed with (its `Display`).
        message: String,
    },
    /// A durable call's result could not be encoded to JSON.
    #[error("the result of durable call `{checkpoint_id}` cannot be encoded as `{type_name}`")]
    Encode {
        /// The durable call's checkpoint id.
        checkpoint_id: String,
        /// The Rust type being encoded.
        type_name: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The persistence layer refused or failed the operation. Nothing was recorded.
    #[error(transparent)]
    Persistence(#[from] runtara_core::Error),
    /// An environment variable is missing.
    #[error("environment variable `{var}` is required but not set")]
    MissingEnv {
        /// The variable's name.
        var: &'static str,
    },
    /// An environment variable has a value that cannot be used.
    #[error("environment variable `{var}` has an invalid value `{value}`: {reason}")]
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// The value found.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The server could not be reached (after retrying until the deadline).
    #[error("cannot reach the runtara server at {addr}: {message}")]
    Connect {
        /// The server address.
        addr: std::net::SocketAddr,
        /// What went wrong last.
        message: String,
    },
    /// A request did not complete before its deadline (reconnects included).
    #[error("`{operation}` timed out after {after:?}")]
    Timeout {
        /// The request.
        operation: &'static str,
        /// The deadline.
        after: std::time::Duration,
    },
    /// The server refused the request.
    #[error("the server refused `{operation}` ({code}): {message}")]
    Server {
        /// The request.
        operation: &'static str,
        /// The protocol's error code (compares with its name: `code == "not_found"`).
        code: runtara_protocol::ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server answered a request with something this SDK does not expect (a reply of
    /// another kind, a page that contradicts itself).
    #[error("the server answered `{operation}` unexpectedly: {detail}")]
    UnexpectedResponse {
        /// The request.
        operation: &'static str,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A TLS problem: a certificate that cannot be read, or a server certificate that is
    /// not trusted.
    #[error("tls: {0}")]
    Tls(String),
    /// The server sent something this SDK cannot understand.
    #[error("protocol error: {0}")]
    Protocol(#[from] runtara_protocol::ProtocolError),
    /// The start input file (`RUNTARA_INPUT_FILE`) cannot be read or decoded; the
    /// cause is the error's [`source`](std::error::Error::source).
    #[error("cannot read the start input {}: {what}", path.display())]
    Input {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it (`the file cannot be read`, `not valid JSON`, …).
        what: String,
        /// The I/O or JSON error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// [`Runtime::start`](crate::runtime::Runtime::start) named a workflow the runtime
    /// does not have.
    #[error("no workflow `{workflow}` is registered with this runtime (registered: {known})")]
    UnknownWorkflow {
        /// The name given.
        workflow: String,
        /// The names registered, comma-separated.
        known: String,
    },
    /// A start's input does not encode, or does not decode as the workflow's input type;
    /// nothing was started.
    #[error("the start input does not fit workflow `{workflow}`")]
    StartInput {
        /// The workflow.
        workflow: String,
        /// The encoder's or decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// A start named an instance id that is taken by another instance (another
    /// workflow's, another runtime's or tenant's, or one no runtime started); nothing
    /// was started. Starting an id again with the same workflow is not this error: it
    /// returns the instance's handle.
    #[error(
        "instance `{instance_id}` already exists {holder}; a start with its id starts nothing"
    )]
    IdTaken {
        /// The instance id.
        instance_id: String,
        /// What holds it (`and runs workflow \`b\``, …).
        holder: String,
    },
    /// The instance failed (its workflow returned an error, or panicked).
    #[error("instance `{instance_id}` failed: {error}")]
    InstanceFailed {
        /// The instance id.
        instance_id: String,
        /// The recorded error.
        error: String,
    },
    /// The instance was cancelled before it finished.
    #[error("instance `{instance_id}` was cancelled")]
    InstanceCancelled {
        /// The instance id.
        instance_id: String,
    },
    /// The instance's run in this process stopped before the instance finished (its end
    /// could not be stored, or the runtime stopped); the instance is unfinished and
    /// resumes from its last checkpoint when started again or when the runtime restarts.
    #[error("the run of instance `{instance_id}` stopped before it finished: {reason}")]
    RunStopped {
        /// The instance id.
        instance_id: String,
        /// Why.
        reason: String,
    },
    /// A finished instance's output does not decode as the type asked for.
    #[error("the output of instance `{instance_id}` does not decode as `{type_name}`")]
    OutputDecode {
        /// The instance id.
        instance_id: String,
        /// The Rust type asked for.
        type_name: &'static str,
        /// The decoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// Another live process runs this runtime (same name and tenant, same database).
    #[error(
        "runtime `{runtime}` of tenant `{tenant_id}` is already running ({holder}); one \
         process at a time runs a runtime's instances: stop it, or give this one another name"
    )]
    RuntimeInUse {
        /// The runtime's name.
        runtime: String,
        /// The tenant.
        tenant_id: String,
        /// Who holds it: process id, host and since when, as far as known.
        holder: String,
    },
    /// A runtime's schedule could not be created or changed: a bad cron expression or
    /// time zone, an id that holds another schedule, or no such schedule.
    #[error("schedule `{schedule_id}`: {reason}")]
    Schedule {
        /// The schedule's id.
        schedule_id: String,
        /// What is wrong.
        reason: String,
    },
    /// The operation is not available with this backend.
    #[error("`{operation}` is not supported by the {backend} backend")]
    Unsupported {
        /// The operation.
        operation: &'static str,
        /// The backend.
        backend: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_error_shows_its_detail() {
        let error = SdkError::from(runtara_protocol::ProtocolError::Malformed(
            "unexpected end of input".into(),
        ));
        let message = error.to_string();
        assert!(message.starts_with("protocol error: "), "{message}");
        assert!(message.contains("unexpected end of input"), "{message}");
    }
}
