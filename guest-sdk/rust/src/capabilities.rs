//! What a plugin may do beyond computing, when its manifest grants it: a
//! key-value store of its own, and enqueuing follow-up tasks.

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
