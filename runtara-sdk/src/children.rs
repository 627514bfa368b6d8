//! Child instances: [`RuntaraSdk::start_child`] and [`RuntaraSdk::wait_for_child`].
//!
//! A child's id is its parent's and its key's (`"{parent}:{key}"`), so a rerun of the
//! parent that starts the same key finds the same child and never starts a second one.
//! When a child ends, the store puts the event `child:{id}` in its parent's inbox; a
//! wait for the child is a durable wait for that event, then a read of the child's
//! final output (which never changes once it has ended).

use runtara_core::inbox::{child_event_name, child_instance_id};
use runtara_core::InstanceStatus;
use runtara_protocol::{ByteBuf, InstanceRequest, InstanceResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::calls::ask;
use crate::runtime::Runtime;
use crate::{Result, RuntaraSdk, SdkError};

/// How a child is started ([`RuntaraSdk::start_child_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChildOptions {
    detached: bool,
}

impl ChildOptions {
    /// A child cancelled with its parent (what [`RuntaraSdk::start_child`] starts).
    pub fn new() -> ChildOptions {
        ChildOptions::default()
    }

    /// Detached: cancelling the parent leaves the child running. The parent can still
    /// wait for it ([`RuntaraSdk::wait_for_child`]); its id is the same
    /// `"{parent}:{key}"`, started once per key.
    pub fn with_detached(mut self, detached: bool) -> ChildOptions {
        self.detached = detached;
        self
    }
}

impl RuntaraSdk {
    /// Starts a child instance, once per `key`, and returns its id
    /// (`"{this instance's id}:{key}"`); a rerun of this instance gets the same child
    /// back, never a second one.
    ///
    /// `target` is what the child runs: on a server, an image id of this tenant; in a
    /// [`Runtime`](crate::runtime::Runtime), a workflow name it knows (the child runs as
    /// a task of the same runtime). `input` is its start input (JSON). A key is not
    /// empty and holds no `:`.
    ///
    /// Cancelling this instance cancels its unfinished children (not the detached ones
    /// of [`start_child_with`](Self::start_child_with)). Wait for the child's output
    /// with [`wait_for_child`](Self::wait_for_child).
    pub async fn start_child<I: Serialize + ?Sized>(
        &self,
        target: &str,
        input: &I,
        key: &str,
    ) -> Result<String> {
        self.start_child_with(target, input, key, ChildOptions::new())
            .await
    }

    /// [`start_child`](Self::start_child) with the child's options: a
    /// [detached](ChildOptions::with_detached) child is not cancelled with this
    /// instance. The options count when the child is started: a repeat for a key that
    /// has its child (a rerun) returns it as it was started.
    ///
    /// ```no_run
    /// # async fn f(sdk: &runtara_sdk::RuntaraSdk) -> runtara_sdk::Result<()> {
    /// use runtara_sdk::ChildOptions;
    ///
    /// // The audit trail outlives an order that is cancelled.
    /// let detached = ChildOptions::new().with_detached(true);
    /// let audit = sdk.start_child_with("audit", &"order-42", "audit", detached).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_child_with<I: Serialize + ?Sized>(
        &self,
        target: &str,
        input: &I,
        key: &str,
        options: ChildOptions,
    ) -> Result<String> {
        let child_id = child_instance_id(self.instance_id(), key)?;
        let input = serde_json::to_vec(input).map_err(|source| SdkError::EventPayload {
            what: "child input",
            name: child_id.clone(),
            type_name: std::any::type_name::<I>(),
            source,
        })?;
        if let Some(runtime) = &self.inner.runtime {
            let Some(shared) = runtime.upgrade() else {
                return Err(SdkError::NoChildren {
                    instance_id: self.instance_id().to_owned(),
                });
            };
            let parent = Some(self.instance_id().to_owned());
            Runtime::of(shared)
                .start_json(target, child_id.clone(), input, parent, options.detached)
                .await?;
            return Ok(child_id);
        }
        if self.persistence().is_some() {
            return Err(SdkError::NoChildren {
                instance_id: self.instance_id().to_owned(),
            });
        }
        let (epoch, key, image_id, input) = (
            self.epoch()?,
            key.to_owned(),
            target.to_owned(),
            Some(ByteBuf::from(input)),
        );
        // A plain child in the request every server knows.
        let request = match options.detached {
            false => InstanceRequest::StartChild {
                epoch,
                key,
                image_id,
                input,
            },
            true => InstanceRequest::StartChildWith {
                epoch,
                key,
                image_id,
                input,
                detached: true,
            },
        };
        ask(self.backend(), request, |r| match r {
            InstanceResponse::ChildStarted { instance_id, .. } => Some(instance_id),
            _ => None,
        })
        .await
    }

    /// Waits durably for the child `child_id` (from [`start_child`](Self::start_child))
    /// to end, and returns its output decoded as `T`; a child that failed or was
    /// cancelled is [`SdkError::ChildFailed`]. Like [`wait_for_event`](Self::wait_for_event):
    /// the instance is `waiting` meanwhile, a long wait lets go of its slot, and a rerun
    /// after the child ended does not wait again.
    pub async fn wait_for_child<T: DeserializeOwned>(&self, child_id: &str) -> Result<T> {
        let name = child_event_name(child_id);
        // The payload is the child's final status (a JSON string); its output is read
        // from the child itself.
        let _ended: Option<String> = self.wait_for_event(&name, None).await?;
        let child = self.get_instance_status(child_id).await?;
        match child.status {
            InstanceStatus::Completed => {
                let output = child.output.unwrap_or_default();
                serde_json::from_slice(&output).map_err(|source| SdkError::EventPayload {
                    what: "child output",
                    name: child_id.to_owned(),
                    type_name: std::any::type_name::<T>(),
                    source,
                })
            }
            status => Err(SdkError::ChildFailed {
                child_id: child_id.to_owned(),
                status,
                error: child.error,
            }),
        }
    }
}
