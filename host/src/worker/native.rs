//! Native handlers: task types that a program embedding wasmq handles in
//! Rust, in its own process, next to the Wasm plugins.
//!
//! A native handler is trusted code: it runs without fuel, memory cap or
//! capability checks. It still gets the task's timeout and deadline, and
//! stops when the task is cancelled. A native handler for a type wins over
//! a plugin declaring the same type. It runs on the worker's runtime like
//! any async code of the program: a handler that computes for long should
//! do so in `tokio::task::spawn_blocking`, as any tokio task should, so
//! that the worker's own loops (lease renewals among them) keep running.
//!
//! ```no_run
//! # async fn run(broker: wasmq::Broker) -> Result<(), wasmq::WorkerError> {
//! use wasmq::{NativeTask, Worker};
//!
//! Worker::builder(broker)
//!     .native("sum", |task: NativeTask| async move {
//!         let numbers: Vec<i64> = task.json()?;
//!         Ok(numbers.iter().sum::<i64>().to_string().into_bytes())
//!     })
//!     .run(async { tokio::signal::ctrl_c().await.ok(); })
//!     .await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::broker::ChildOutcome;
use crate::task::{FailureKind, TaskFailure, TaskMessage};

/// One attempt of a task, as a native handler sees it.
#[derive(Debug, Clone)]
pub struct NativeTask {
    /// The task as it was enqueued.
    pub message: Arc<TaskMessage>,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// A flow parent's children's outcomes, in order (a child that failed
    /// under the `ignore` policy is left out); empty for other tasks.
    pub children: Vec<ChildOutcome>,
}

impl NativeTask {
    /// The payload bytes (always valid JSON).
    pub fn payload(&self) -> &[u8] {
        self.message.payload.get().as_bytes()
    }

    /// The payload decoded into `T`; a payload that does not decode fails
    /// the attempt as `bad-payload`, without retries.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TaskFailure> {
        serde_json::from_str(self.message.payload.get()).map_err(|err| {
            TaskFailure::new(
                FailureKind::BadPayload,
                format!(
                    "the payload of a {:?} task does not decode: {err}",
                    self.message.task_type
                ),
            )
        })
    }
}

/// A task handler written in Rust. Implemented for every
/// `Fn(NativeTask) -> impl Future<Output = Result<Vec<u8>, TaskFailure>>`.
pub trait NativeHandler: Send + Sync + 'static {
    /// Runs one attempt: `Ok` holds the result, `Err` a failure (retried
    /// unless its kind is `gave-up` or `bad-payload`).
    fn handle(&self, task: NativeTask) -> BoxFuture<'static, Result<Vec<u8>, TaskFailure>>;
}

impl<F, Fut> NativeHandler for F
where
    F: Fn(NativeTask) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, TaskFailure>> + Send + 'static,
{
    fn handle(&self, task: NativeTask) -> BoxFuture<'static, Result<Vec<u8>, TaskFailure>> {
        Box::pin(self(task))
    }
}

/// The native handlers of a worker, by task type.
#[derive(Clone, Default)]
pub(crate) struct NativeHandlers {
    by_type: HashMap<String, Arc<dyn NativeHandler>>,
}

impl NativeHandlers {
    /// Handles `task_type` with `handler` (replacing an earlier one).
    pub fn register(&mut self, task_type: impl Into<String>, handler: impl NativeHandler) {
        self.by_type.insert(task_type.into(), Arc::new(handler));
    }

    /// The handler of `task_type`, if one was registered.
    pub fn get(&self, task_type: &str) -> Option<&Arc<dyn NativeHandler>> {
        self.by_type.get(task_type)
    }

    /// The task types handled natively, sorted.
    pub fn task_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.by_type.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }
}

impl fmt::Debug for NativeHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.task_types()).finish()
    }
}
