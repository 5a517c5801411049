//! One attempt of a task: in a fresh sandbox instance of its plugin (where
//! the task's path runs, on the sandbox runtime, or on the probation lane),
//! or in a native handler (where the task's path runs), within the task's
//! timeout and deadline, until it ends or is cancelled.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use super::native::{NativeHandler, NativeTask};
use super::services::{AddedChildren, AttemptTrace, BrokerServices};
use crate::broker::{ChildEnd, ChildOutcome, LeasedTask};
use crate::plugins::Plugin;
use crate::sandbox::{ChildResult, Invocation, Sandbox, TaskLabel};
use crate::task::{FailureKind, TaskFailure};

/// The span of an attempt, when the worker traces.
#[cfg(feature = "otel")]
pub(crate) use crate::telemetry::AttemptSpan;

/// Without the `otel` feature no attempt has a span (none is ever made).
#[cfg(not(feature = "otel"))]
pub(crate) enum AttemptSpan {}

/// How an attempt went, with what the worker measures of it.
pub(crate) struct Attempted {
    /// The result bytes, or why there are none.
    pub outcome: Result<Vec<u8>, TaskFailure>,
    /// Fuel burned (plugins, when metered).
    pub fuel_used: Option<u64>,
    /// Time to create the instance (plugins).
    pub instantiate_time: Option<Duration>,
    /// Time from start to finish.
    pub total_time: Duration,
    /// Children the handler added to its own task (plugins granted
    /// `enqueue`): the task waits for them if the attempt succeeded.
    pub added: Option<Arc<AddedChildren>>,
}

impl Attempted {
    /// An attempt that failed before anything ran.
    pub fn refused(failure: TaskFailure) -> Self {
        Attempted {
            outcome: Err(failure),
            fuel_used: None,
            instantiate_time: None,
            total_time: Duration::ZERO,
            added: None,
        }
    }

    /// The children its handler added, if it added any.
    pub fn children_added(&self) -> Option<&Arc<AddedChildren>> {
        self.added.as_ref().filter(|added| !added.is_empty())
    }
}

/// What an attempt in the sandbox needs besides its task.
pub(crate) struct SandboxRun<'a> {
    /// The engine.
    pub sandbox: &'a Arc<Sandbox>,
    /// The probation lane's runtime, for a plugin on probation: the attempt
    /// runs there. Otherwise it runs where the task's path runs, the
    /// worker's sandbox runtime.
    pub lane: Option<&'a tokio::runtime::Handle>,
    /// The services behind the plugin's capabilities.
    pub services: &'a Arc<BrokerServices>,
    /// The attempt's span, when the worker traces: the run's span goes
    /// under it.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub span: Option<&'a AttemptSpan>,
}

/// The time left before the task's deadline (unix ms), or a `timeout`
/// failure when it has passed already.
pub(crate) fn time_left(
    deadline_ms: Option<i64>,
    now_ms: i64,
) -> Result<Option<Duration>, TaskFailure> {
    match deadline_ms {
        None => Ok(None),
        Some(deadline) if deadline > now_ms => {
            Ok(Some(Duration::from_millis((deadline - now_ms) as u64)))
        }
        Some(_) => Err(TaskFailure::new(
            FailureKind::Timeout,
            "the task's deadline passed before this attempt could start",
        )),
    }
}

/// Runs `attempt` here, or on `lane` when given; a panic inside it becomes
/// the error `panicked` describes.
async fn run_guarded<T: Send + 'static>(
    lane: Option<&tokio::runtime::Handle>,
    attempt: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    let panicked = |panic: Box<dyn std::any::Any + Send>| {
        panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string())
    };
    match lane {
        Some(lane) => lane.spawn(attempt).await.map_err(|err| {
            if err.is_panic() {
                panicked(err.into_panic())
            } else {
                err.to_string()
            }
        }),
        None => AssertUnwindSafe(attempt)
            .catch_unwind()
            .await
            .map_err(panicked),
    }
}

/// Runs the attempt in a fresh instance of `plugin`, its limits narrowed by
/// the task's timeout and the time `remaining` before its deadline.
pub(crate) async fn in_sandbox(
    run: SandboxRun<'_>,
    plugin: &Arc<Plugin>,
    task: &LeasedTask,
    children: Vec<ChildOutcome>,
    remaining: Option<Duration>,
    cancel: &CancellationToken,
) -> Attempted {
    let message = &task.message;
    let limits = plugin
        .limits
        .narrowed(message.timeout_ms.map(Duration::from_millis), remaining);
    let label = TaskLabel {
        plugin: plugin.manifest.name.clone(),
        task_id: message.id.clone(),
        task_type: message.task_type.clone(),
        attempt: task.attempt,
        queue: message.queue.clone(),
    };
    let children = children
        .into_iter()
        .map(|child| ChildResult {
            outcome: match child.state {
                ChildEnd::Completed => Ok(child.result.unwrap_or_default()),
                end => Err(child.error.map_or_else(
                    || format!("it was {}", end.as_str()),
                    |error| format!("{}: {}", error.kind, error.message),
                )),
            },
            id: child.id,
            queue: child.queue,
            task_type: child.task_type,
        })
        .collect();
    #[cfg(feature = "otel")]
    let sandbox_span = run.span.map(|span| span.sandbox(&plugin.manifest.name));
    let trace = AttemptTrace {
        // Follow-ups descend from the attempt's span, or (not tracing) from
        // what the task descends from.
        #[cfg(feature = "otel")]
        context: run
            .span
            .and_then(|span| span.trace_context())
            .or_else(|| message.trace.clone()),
        #[cfg(not(feature = "otel"))]
        context: message.trace.clone(),
        #[cfg(feature = "otel")]
        http: sandbox_span.as_ref().map(|span| span.http()),
        #[cfg(not(feature = "otel"))]
        http: None,
    };
    let (services, added) = run.services.for_task(
        message,
        &plugin.manifest.name,
        plugin.grants.enqueue.as_ref(),
        trace,
        children,
    );
    let (sandbox, plugin, message) = (run.sandbox.clone(), plugin.clone(), message.clone());
    let (attempt, cancel) = (task.attempt, cancel.clone());
    // Boxed: the run's state (wasmtime's instantiation and call futures
    // among it) is kilobytes, and a future passed by value is copied into
    // each future that awaits it (`run_guarded`, `catch_unwind`, the task
    // path): boxed, those copies are of a pointer.
    let running = Box::pin(async move {
        let invocation = Invocation {
            id: &message.id,
            task_type: &message.task_type,
            payload: message.payload.get().as_bytes(),
            queue: &message.queue,
            attempt,
            max_retry: message.max_retry,
        };
        sandbox
            .run(
                &plugin.prepared,
                label,
                invocation,
                &limits,
                &plugin.grants,
                &services,
                &cancel,
            )
            .await
    });
    let attempted = match run_guarded(run.lane, running).await {
        Ok(outcome) => Attempted {
            outcome: outcome.result,
            fuel_used: outcome.fuel_used,
            instantiate_time: Some(outcome.instantiate_time),
            total_time: outcome.total_time,
            added,
        },
        Err(panic) => Attempted::refused(TaskFailure::new(
            FailureKind::Trap,
            format!("the sandbox failed unexpectedly: {panic}"),
        )),
    };
    #[cfg(feature = "otel")]
    if let Some(span) = sandbox_span {
        span.end(
            attempted.outcome.as_ref().err(),
            attempted.fuel_used,
            attempted.instantiate_time,
        );
    }
    attempted
}

/// Runs the attempt in a native handler, within the task's timeout and the
/// time `remaining` before its deadline (the earlier wins) and until it is
/// cancelled.
pub(crate) async fn native(
    handler: &Arc<dyn NativeHandler>,
    task: &LeasedTask,
    children: Vec<ChildOutcome>,
    remaining: Option<Duration>,
    cancel: &CancellationToken,
) -> Attempted {
    let message = &task.message;
    let limit = [message.timeout_ms.map(Duration::from_millis), remaining]
        .into_iter()
        .flatten()
        .min();
    let call = handler.handle(NativeTask {
        message: message.clone(),
        attempt: task.attempt,
        children,
    });
    let started = Instant::now();
    let bounded = async {
        match limit {
            Some(limit) => tokio::time::timeout(limit, call).await.map_err(|_| {
                TaskFailure::new(
                    FailureKind::Timeout,
                    format!(
                        "the native handler ran past {}",
                        humantime::format_duration(limit)
                    ),
                )
            })?,
            None => call.await,
        }
    };
    let running = async {
        tokio::select! {
            result = bounded => result,
            _ = cancel.cancelled() => Err(TaskFailure::new(
                FailureKind::Cancelled,
                "the task was cancelled while it ran",
            )),
        }
    };
    let outcome = AssertUnwindSafe(running)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let text = panic
                .downcast_ref::<&str>()
                .map(|text| text.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            Err(TaskFailure::new(
                FailureKind::Panic,
                format!("the native handler panicked: {text}"),
            ))
        });
    Attempted {
        outcome,
        fuel_used: None,
        instantiate_time: None,
        total_time: started.elapsed(),
        added: None,
    }
}
