//! What a plugin may do beyond computing, when its manifest grants it: a
//! key-value store of its own, enqueuing follow-up tasks and flows; and
//! what every plugin may do: report its progress.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::bindings::wasmq::plugin::{enqueue as wit_enqueue, kv as wit_kv};

/// A capability call the host refused or could not carry out (not granted,
/// over a cap, Redis unavailable). With `?` in a handler it becomes a
/// [`Failure::Retry`](crate::Failure::Retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityError(pub String);

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CapabilityError {}

/// The plugin's key-value store (capability `kv`): shared by all its tasks,
/// kept by the host in Redis, invisible to other plugins.
pub mod kv {
    use super::{CapabilityError, wit_kv};

    /// The value of `key`, if it is set.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, CapabilityError> {
        wit_kv::get(key).map_err(CapabilityError)
    }

    /// Sets `key` to `value`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), CapabilityError> {
        wit_kv::set(key, value).map_err(CapabilityError)
    }

    /// Removes `key`; true if it was set.
    pub fn delete(key: &str) -> Result<bool, CapabilityError> {
        wit_kv::delete(key).map_err(CapabilityError)
    }

    /// Adds `by` to the integer at `key` (0 when unset) and returns the sum.
    pub fn increment(key: &str, by: i64) -> Result<i64, CapabilityError> {
        wit_kv::increment(key, by).map_err(CapabilityError)
    }
}

/// A follow-up task to enqueue (capability `enqueue`).
#[derive(Debug, Clone)]
pub struct FollowUp {
    task_type: String,
    payload: Vec<u8>,
    queue: Option<String>,
    delay: Option<Duration>,
    id: Option<String>,
}

impl FollowUp {
    /// A task of `task_type` whose payload is `payload` encoded as JSON.
    pub fn new(task_type: &str, payload: &impl Serialize) -> Result<Self, CapabilityError> {
        let payload = serde_json::to_vec(payload).map_err(|err| {
            CapabilityError(format!("the payload does not encode as JSON: {err}"))
        })?;
        Ok(FollowUp {
            task_type: task_type.to_string(),
            payload,
            queue: None,
            delay: None,
            id: None,
        })
    }

    /// The queue (default: the current task's).
    pub fn queue(mut self, queue: &str) -> Self {
        self.queue = Some(queue.to_string());
        self
    }

    /// Makes it due after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Gives it an id (refused if the queue holds a task with that id).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }
}

/// Enqueues a follow-up task and returns its id.
pub fn enqueue(task: FollowUp) -> Result<String, CapabilityError> {
    wit_enqueue::enqueue(&wit_enqueue::FollowUp {
        task_type: task.task_type,
        payload: task.payload,
        queue: task.queue,
        delay_ms: task.delay.map(|delay| delay.as_millis() as u64),
        id: task.id,
    })
    .map_err(CapabilityError)
}

/// Flows: the running task's children's outcomes (when it is a flow
/// parent, it runs after all of them ended), and starting flows
/// (capability `enqueue`: every task of the flow counts against its quota,
/// types and queues).
pub mod flow {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::CapabilityError;
    use crate::bindings::wasmq::plugin::flow as wit_flow;

    /// How one child of the running task ended.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Child {
        /// The child's id.
        pub id: String,
        /// The child's queue.
        pub queue: String,
        /// The child's task type.
        pub task_type: String,
        /// Its result when it completed; why it did not (failed,
        /// cancelled, deleted) otherwise.
        pub outcome: Result<Vec<u8>, String>,
    }

    impl Child {
        /// Its result decoded from JSON into `T`; an error when it did not
        /// complete or its result does not decode.
        pub fn json<T: DeserializeOwned>(&self) -> Result<T, CapabilityError> {
            match &self.outcome {
                Ok(result) => serde_json::from_slice(result).map_err(|err| {
                    CapabilityError(format!(
                        "the result of child {} ({}) does not decode: {err}",
                        self.id, self.task_type
                    ))
                }),
                Err(why) => Err(CapabilityError(format!(
                    "child {} ({}) did not complete: {why}",
                    self.id, self.task_type
                ))),
            }
        }
    }

    /// The outcomes of the running task's children, in order: empty unless
    /// it is a flow parent (a child that failed under the `ignore` policy
    /// is left out).
    pub fn children() -> Vec<Child> {
        wit_flow::children()
            .into_iter()
            .map(|child| Child {
                outcome: if child.completed {
                    Ok(child.output)
                } else {
                    Err(child.error.unwrap_or_default())
                },
                id: child.id,
                queue: child.queue,
                task_type: child.task_type,
            })
            .collect()
    }

    /// Starts a flow given as a value that encodes to the JSON of
    /// `wasmq flow add` (a task object with `children`, or an array of
    /// them for a chain); tasks without a queue go to the running task's.
    /// Returns the root's id.
    pub fn start(flow: &impl Serialize) -> Result<String, CapabilityError> {
        let text = serde_json::to_vec(flow)
            .map_err(|err| CapabilityError(format!("the flow does not encode as JSON: {err}")))?;
        wit_flow::start_flow(&text).map_err(CapabilityError)
    }

    /// Adds children to the running task, given as a value that encodes to
    /// a JSON array of task objects (as a flow's `children`: each may have
    /// its own `children` and an `on_failure`); tasks without a queue go to
    /// the running task's. They are enqueued only if this attempt succeeds:
    /// then the task waits until they have all ended and runs again (its
    /// result this time is dropped, and the attempt is not counted), and
    /// [`children`] gives the outcomes of every child it ever added.
    /// Returns how many tasks were added.
    pub fn add_children(children: &impl Serialize) -> Result<u32, CapabilityError> {
        let text = serde_json::to_vec(children)
            .map_err(|err| CapabilityError(format!("the children do not encode as JSON: {err}")))?;
        wit_flow::add_children(&text).map_err(CapabilityError)
    }
}

/// How far the running task has got, shown by `wasmq task show`, the
/// dashboard and the clients. Every plugin may report it; the host writes
/// at most one report every 250 ms (the latest wins, and the last one is
/// written when the attempt ends).
pub mod progress {
    use serde::Serialize;

    use super::CapabilityError;
    use crate::bindings::wasmq::plugin::progress as wit_progress;

    /// Reports `done` (a percentage, or items done: the plugin's unit) with
    /// a note that encodes to JSON (`&()` for none), at most 1 KiB.
    pub fn report(done: f64, note: &impl Serialize) -> Result<(), CapabilityError> {
        let note = serde_json::to_string(note).map_err(|err| {
            CapabilityError(format!("the progress note does not encode as JSON: {err}"))
        })?;
        wit_progress::report(done, &note).map_err(CapabilityError)
    }

    /// Says the task is alive: renews its lease now (at most once a second)
    /// and keeps its last report. The worker also renews the lease on its
    /// own while the instance runs; neither stretches the plugin's time
    /// limit.
    pub fn heartbeat() {
        wit_progress::heartbeat();
    }
}
