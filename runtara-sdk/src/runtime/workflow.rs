//! A workflow function, with its input and output types erased: what a runtime keeps
//! under each name.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A run's end as the workflow gave it: its output as JSON, or its error's message.
pub(crate) type Ending = Result<Vec<u8>, String>;

type RunFn = dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Ending> + Send>> + Send + Sync;

/// A registered workflow function.
#[derive(Clone)]
pub(crate) struct Workflow {
    run: Arc<RunFn>,
    check_input: fn(&[u8]) -> serde_json::Result<()>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow").finish_non_exhaustive()
    }
}

impl Workflow {
    /// Wraps `function`: its input is decoded from JSON, its output encoded to JSON, its
    /// error kept as its message (`{:#}`, so an `anyhow::Error` keeps its causes).
    pub(crate) fn new<F, Fut, I, O, E>(function: F) -> Workflow
    where
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        I: DeserializeOwned + 'static,
        O: Serialize + 'static,
        E: fmt::Display + 'static,
    {
        let run = move |input: Vec<u8>| -> Pin<Box<dyn Future<Output = Ending> + Send>> {
            match serde_json::from_slice::<I>(&input) {
                Ok(input) => {
                    let running = function(input);
                    Box::pin(async move {
                        match running.await {
                            Ok(output) => serde_json::to_vec(&output).map_err(|error| {
                                format!("the workflow's output cannot be encoded as JSON: {error}")
                            }),
                            Err(error) => Err(format!("{error:#}")),
                        }
                    })
                }
                Err(error) => {
                    let message = format!(
                        "the input does not decode as `{}`: {error}",
                        std::any::type_name::<I>()
                    );
                    Box::pin(std::future::ready(Err(message)))
                }
            }
        };
        Workflow {
            run: Arc::new(run),
            check_input: |input| serde_json::from_slice::<I>(input).map(drop),
        }
    }

    /// Whether `input` decodes as the workflow's input type.
    pub(crate) fn check_input(&self, input: &[u8]) -> serde_json::Result<()> {
        (self.check_input)(input)
    }

    /// The workflow run on `input`.
    pub(crate) fn run(&self, input: Vec<u8>) -> Pin<Box<dyn Future<Output = Ending> + Send>> {
        (self.run)(input)
    }
}
