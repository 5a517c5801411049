//! One task from lease to settlement: run it in its plugin's sandbox, then
//! record the outcome (completed, retry, archived or put back).
//!
//! Recording an outcome is retried while Redis is unreachable, for as long
//! as the lease holds; after that the task's lease expires, another worker
//! takes it back, and it runs again (at-least-once delivery).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Shared;
use super::lease::{CancelReason, RunningTask};
use super::native::{NativeHandler, NativeTask};
use super::probation::{self, Change, Placement};
use crate::broker::{self, LeasedTask};
use crate::sandbox::{Invocation, Outcome, TaskLabel};
use crate::task::{ConcurrencyLimit, ErrorRecord, FailureKind, TaskFailure, WhenBusy};

/// Runs one leased task and records its outcome. `slot` (one unit of the
/// worker's concurrency) is given back as soon as the attempt has run, so
/// the next fetch overlaps with the recording of this outcome, or as soon
/// as the task is parked to wait for the probation lane (a task waiting for
/// the verdict on a plugin on trial keeps it); the task stays registered
/// (and its lease renewed) until the outcome is recorded.
pub async fn execute(
    shared: &Shared,
    task: LeasedTask,
    token: String,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let message = &task.message;
    let running = shared.running.register(
        &message.queue,
        &message.id,
        &message.task_type,
        &token,
        shared.config.lease,
    );
    let mut slot = Some(slot);
    let mut placement = place(shared, message);
    // A plugin on trial with as many attempts running as it has strikes
    // left: wait until one of them ends, then place the task again. The
    // task keeps its slot meanwhile, so that a worker does not lease more
    // tasks of a plugin it does not trust yet than it has slots; once the
    // trial has not moved for a while, it goes back to its queue instead,
    // so that a plugin whose attempts hang cannot hold the worker's slots
    // until its timeout.
    while let Placement::AwaitVerdict { mut ended, until } = placement {
        let wait = until.saturating_duration_since(Instant::now());
        let waited = parked(shared, &running, async {
            let _ = tokio::time::timeout(wait, ended.changed()).await;
        })
        .await;
        if let Err(why) = waited {
            return stopped_while_parked(shared, &task, &running, why).await;
        }
        placement = place(shared, message);
    }
    let turn = match &placement {
        Placement::Regular | Placement::Trial(_) => None,
        Placement::AwaitVerdict { .. } => unreachable!("waited for above"),
        Placement::VerdictOverdue { stuck_for } => {
            Box::pin(postpone_awaiting_verdict(
                shared, &task, &running, *stuck_for,
            ))
            .await;
            shared.running.unregister(&message.queue, &message.id);
            return;
        }
        Placement::Full(delay) => {
            Box::pin(postpone_on_probation(shared, &task, &running, *delay)).await;
            shared.running.unregister(&message.queue, &message.id);
            return;
        }
        Placement::Lane(ticket) => {
            // Parked: the slot goes back, so the worker goes on fetching
            // other work while this task waits for its turn.
            drop(slot.take());
            match parked(shared, &running, ticket.turn()).await {
                Ok(turn) => Some(turn),
                Err(why) => return stopped_while_parked(shared, &task, &running, why).await,
            }
        }
    };
    // What follows (the attempt and its recording) is large and lives in
    // an allocation of its own (as do the writes above), so that a parked
    // task holds only the small state of this function: a worker may park
    // thousands.
    Box::pin(run(shared, &task, &running, placement, turn, slot)).await;
    shared.running.unregister(&message.queue, &message.id);
}

/// Waits, parked, for `waiting`. Returns why it stopped waiting instead,
/// when the worker shuts down (the task is then put back) or the task is
/// cancelled or its lease lost.
async fn parked<T>(
    shared: &Shared,
    running: &RunningTask,
    waiting: impl Future<Output = T>,
) -> Result<T, &'static str> {
    running.set_parked(true);
    let waited = tokio::select! {
        done = waiting => Ok(done),
        _ = shared.stopping.cancelled() => {
            // Shutting down: back to the queue rather than start now.
            running.stop(CancelReason::Shutdown);
            Err("the worker shut down while the task was parked")
        }
        _ = running.cancel.cancelled() => {
            Err("stopped while parked, waiting for its plugin's turn")
        }
    };
    running.set_parked(false);
    waited
}

/// Records a parked task that stopped waiting (see [`parked`]) and lets it
/// go.
async fn stopped_while_parked(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    why: &'static str,
) {
    let stopped = TaskFailure::new(FailureKind::Cancelled, why);
    Box::pin(settle(shared, task, running, Err(stopped), Duration::ZERO)).await;
    shared
        .running
        .unregister(&task.message.queue, &task.message.id);
}

/// Takes the task's concurrency-limit slot (if its type has a limit), runs
/// the attempt and records its outcome.
async fn run(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    placement: Placement,
    turn: Option<tokio::sync::OwnedSemaphorePermit>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let message = &task.message;
    let limit = message.limit.clone().or_else(|| {
        shared
            .type_limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&message.task_type)
            .cloned()
    });
    if let Some(limit) = &limit
        && !take_slot(shared, task, running, limit).await
    {
        return;
    }
    let runtime = match &placement {
        Placement::Lane(ticket) => ticket.runtime(),
        _ => &shared.executor,
    };
    let started = Instant::now();
    let outcome = attempt(shared, task, running, runtime).await;
    drop((turn, placement, slot));
    match outcome {
        // No room for an instance (the plugin's share is in use, or the
        // pool is full): nothing ran, so no attempt is counted.
        Err(failure) if failure.kind == FailureKind::WorkerBusy => {
            postpone(
                shared,
                task,
                running,
                BUSY_POSTPONE,
                FailureKind::WorkerBusy,
                failure.message,
            )
            .await;
        }
        outcome => settle(shared, task, running, outcome, started.elapsed()).await,
    }
    if let Some(limit) = &limit
        && let Err(err) = shared.broker.release_slot(limit, &message.id).await
    {
        tracing::warn!(%err, key = limit.key, "could not release a concurrency slot; it frees when its lock-at-most-for runs out");
    }
}

/// Where the task's attempt runs: in the background lane if its plugin is
/// on probation (see the `probation` module), else with everyone else.
/// Native handlers are the embedding program's own code: never on probation.
fn place(shared: &Shared, message: &crate::task::TaskMessage) -> Placement {
    let task_type = message.task_type.as_str();
    if shared.config.native.get(task_type).is_some() {
        return Placement::Regular;
    }
    match shared.plugins.current().for_type(task_type) {
        Some(plugin) => shared.probation.place(
            &plugin.manifest.name,
            &plugin.manifest.version,
            message.payload.get().len(),
        ),
        None => Placement::Regular,
    }
}

/// Puts a task of a plugin on probation back in its queue for a while,
/// without counting an attempt: the park for such plugins is full.
async fn postpone_on_probation(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    delay: Duration,
) {
    let rules = shared.probation.config();
    let why = format!(
        "the plugin for {:?} is on probation (its last {} attempts in a row ended at a limit) and this worker already holds as many of such tasks as it parks ({})",
        task.message.task_type, rules.strikes, rules.park_capacity,
    );
    postpone(shared, task, running, delay, FailureKind::Probation, why).await;
}

/// Puts a task of a plugin on trial back in its queue, without counting an
/// attempt: none of the plugin's attempts being tried has ended for
/// `stuck_for` (see [`probation::overdue_delay`] for how long it goes
/// back for).
async fn postpone_awaiting_verdict(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    stuck_for: Duration,
) {
    let message = &task.message;
    let timeout = shared
        .plugins
        .current()
        .for_type(&message.task_type)
        .map(|plugin| plugin.limits.timeout);
    let delay = probation::overdue_delay(stuck_for, timeout);
    let why = format!(
        "the plugin for {:?} is on trial on this worker (not run here yet, or its last attempt ended at a limit), and none of the attempts being tried (as many at once as it has strikes left before probation) has ended for {}",
        message.task_type,
        humantime::format_duration(whole_ms(stuck_for)),
    );
    postpone(shared, task, running, delay, FailureKind::Probation, why).await;
}

/// `duration` without its part below a millisecond, for messages.
pub(super) fn whole_ms(duration: Duration) -> Duration {
    Duration::from_millis(broker::millis(duration))
}

/// How long a task goes back to its queue for when the worker had no room
/// for an instance of its plugin.
const BUSY_POSTPONE: Duration = Duration::from_millis(500);

/// Puts a task back in its queue for `delay` without counting an attempt,
/// noting `why` on it (as a note of class `kind`).
async fn postpone(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    delay: Duration,
    kind: FailureKind,
    why: String,
) {
    let message = &task.message;
    let note = ErrorRecord {
        kind,
        message: format!(
            "postponed {}: {why}",
            humantime::format_duration(whole_ms(delay))
        ),
        attempt: task.attempt,
        at_ms: now_ms(),
    };
    if record(shared, running, "postpone", || {
        shared.acks.postpone(message, &running.token, delay, &note)
    })
    .await
    {
        let metric = match kind {
            FailureKind::WorkerBusy => "wasmq_worker_busy_postponed_total",
            _ => "wasmq_probation_postponed_total",
        };
        shared.config.metrics.inc(
            metric,
            &[("queue", &message.queue), ("type", &message.task_type)],
            1.0,
        );
        tracing::debug!(
            queue = message.queue,
            id = message.id,
            task_type = message.task_type,
            delay_ms = delay.as_millis() as u64,
            %kind,
            "postponed: its plugin is on probation or on trial, or the worker had no room for it"
        );
    }
}

/// Takes a slot of the task's concurrency limit. When every slot is held,
/// skips the task (archived as `slot-busy`) or puts it back to wait, as the
/// limit says, and returns false.
async fn take_slot(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    limit: &ConcurrencyLimit,
) -> bool {
    let message = &task.message;
    let holders = match shared.broker.acquire_slot(limit, &message.id).await {
        Ok(Ok(())) => return true,
        Ok(Err(holders)) => holders,
        Err(err) => {
            // The lease will expire and the task will be tried again.
            shared.outage.failed(&err);
            return false;
        }
    };
    let held = format!(
        "all {} slot(s) of limit {:?} are held (by {})",
        limit.max_running,
        limit.key,
        holders.join(", ")
    );
    let (queue, id) = (&message.queue, &message.id);
    match limit.when_busy {
        WhenBusy::Skip => {
            let error = ErrorRecord {
                kind: FailureKind::SlotBusy,
                message: format!("skipped: {held}"),
                attempt: task.attempt,
                at_ms: now_ms(),
            };
            let archived = record(shared, running, "skip", || {
                shared.acks.archive(message, &running.token, &error)
            })
            .await;
            if archived {
                tracing::info!(queue, id, task_type = message.task_type, "skipped: {held}");
            }
        }
        WhenBusy::Delay(delay_ms) => {
            let delay = Duration::from_millis(delay_ms);
            let note = ErrorRecord {
                kind: FailureKind::SlotBusy,
                message: format!("delayed {}: {held}", humantime::format_duration(delay)),
                attempt: task.attempt,
                at_ms: now_ms(),
            };
            if record(shared, running, "delay", || {
                shared
                    .broker
                    .postpone(message, &running.token, delay, &note)
            })
            .await
            {
                tracing::debug!(queue, id, task_type = message.task_type, "delayed: {held}");
            }
        }
    }
    false
}

/// Runs the attempt in the sandbox of the plugin for the task's type, on
/// `runtime` (the sandbox runtime, or the probation lane's).
async fn attempt(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<u8>, TaskFailure> {
    let message = &task.message;
    let remaining = match message.deadline_ms {
        Some(deadline) => {
            let left = deadline - now_ms();
            if left <= 0 {
                return Err(TaskFailure::new(
                    FailureKind::Timeout,
                    "the task's deadline passed before this attempt could start",
                ));
            }
            Some(Duration::from_millis(left as u64))
        }
        None => None,
    };
    // A follow-up enqueued while its tree was being stopped may have been
    // missed by the sweep: it is cancelled here instead of run.
    if let Some(lineage) = &message.lineage {
        match shared.broker.tree_stopped(&lineage.root).await {
            Ok(Some(_)) => {
                return Err(TaskFailure::new(
                    FailureKind::Cancelled,
                    format!(
                        "the tree of root task {} was stopped (wasmq task stop-tree)",
                        lineage.root
                    ),
                ));
            }
            Ok(None) => {}
            Err(err) => {
                tracing::debug!(error = %err, "could not check whether the task's tree was stopped")
            }
        }
    }
    if let Some(handler) = shared.config.native.get(&message.task_type) {
        return run_native(shared, handler, task, running, remaining).await;
    }
    let plugins = shared.plugins.current();
    let Some(plugin) = plugins.for_type(&message.task_type) else {
        let mut served = plugins.task_types();
        served.extend(shared.config.native.task_types());
        served.sort_unstable();
        return Err(TaskFailure::new(
            FailureKind::NoHandler,
            format!(
                "no plugin handles task type {:?} (this worker serves: {}); deploy a plugin for it, and the retry will pick it up",
                message.task_type,
                if served.is_empty() {
                    "nothing".to_string()
                } else {
                    served.join(", ")
                }
            ),
        ));
    };
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
    let sandbox = shared.sandbox.clone();
    let services = shared.services.for_task(
        message,
        &plugin.manifest.name,
        plugin.grants.enqueue.as_ref(),
    );
    let plugin_for_run = plugin.clone();
    let message = message.clone();
    let (attempt, cancel) = (task.attempt, running.cancel.clone());
    let run = runtime.spawn(async move {
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
                &plugin_for_run.prepared,
                label,
                invocation,
                &limits,
                &plugin_for_run.grants,
                &services,
                &cancel,
            )
            .await
    });
    match run.await {
        Ok(outcome) => {
            let manifest = &plugin.manifest;
            let failure = outcome.result.as_ref().err().map(|failure| failure.kind);
            if failure != Some(FailureKind::WorkerBusy) {
                record_measurements(
                    shared,
                    &task.message,
                    &manifest.name,
                    &outcome,
                    running.reason(),
                );
            }
            if let Some(change) =
                shared
                    .probation
                    .record(&manifest.name, &manifest.version, failure)
            {
                note_standing(shared, &manifest.name, &manifest.version, change);
            }
            outcome.result
        }
        Err(err) => Err(TaskFailure::new(
            FailureKind::Trap,
            format!("the sandbox failed unexpectedly: {err}"),
        )),
    }
}

/// Logs and exports a plugin's change of standing.
fn note_standing(shared: &Shared, plugin: &str, version: &str, change: Change) {
    let rules = shared.probation.config();
    let on_probation = change == Change::OnProbation;
    shared.config.metrics.set(
        "wasmq_plugin_on_probation",
        &[("plugin", plugin)],
        if on_probation { 1.0 } else { 0.0 },
    );
    if on_probation {
        tracing::warn!(
            plugin,
            version,
            strikes = rules.strikes,
            lane = rules.lane_capacity,
            park = rules.park_capacity,
            "plugin on probation: its last {} attempts in a row ended at a limit; its tasks now run in the background lane at the lowest priority, {} at a time, the others parked, until one succeeds",
            rules.strikes,
            rules.lane_capacity,
        );
    } else {
        tracing::info!(
            plugin,
            version,
            "plugin's probation ended: an attempt succeeded"
        );
    }
}

/// Runs the attempt in a native handler, on the sandbox runtime, within the
/// task's timeout and deadline (the earlier wins) and until it is cancelled.
async fn run_native(
    shared: &Shared,
    handler: &Arc<dyn NativeHandler>,
    task: &LeasedTask,
    running: &RunningTask,
    remaining: Option<Duration>,
) -> Result<Vec<u8>, TaskFailure> {
    let message = &task.message;
    let limit = [message.timeout_ms.map(Duration::from_millis), remaining]
        .into_iter()
        .flatten()
        .min();
    let call = handler.handle(NativeTask {
        message: message.clone(),
        attempt: task.attempt,
    });
    let cancel = running.cancel.clone();
    let started = Instant::now();
    let run = shared.executor.spawn(async move {
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
        tokio::select! {
            result = bounded => result,
            _ = cancel.cancelled() => Err(TaskFailure::new(
                FailureKind::Cancelled,
                "the task was cancelled while it ran",
            )),
        }
    });
    let result = run.await.unwrap_or_else(|err| {
        Err(TaskFailure::new(
            FailureKind::Panic,
            format!("the native handler panicked: {err}"),
        ))
    });
    shared.config.metrics.observe(
        "wasmq_task_duration_seconds",
        &[("type", message.task_type.as_str())],
        started.elapsed().as_secs_f64(),
    );
    result
}

/// Feeds an attempt's measurements to the metrics and plugin statistics.
/// An attempt stopped because its lease was lost (`stopped`) counts as
/// `lease-expired` in the statistics, not as `cancelled`.
fn record_measurements(
    shared: &Shared,
    message: &crate::task::TaskMessage,
    plugin: &str,
    outcome: &Outcome,
    stopped: Option<CancelReason>,
) {
    let task_type = message.task_type.as_str();
    let metrics = &shared.config.metrics;
    metrics.observe(
        "wasmq_task_duration_seconds",
        &[("type", task_type)],
        outcome.total_time.as_secs_f64(),
    );
    metrics.observe(
        "wasmq_wasm_instantiation_seconds",
        &[("plugin", plugin)],
        outcome.instantiate_time.as_secs_f64(),
    );
    if let Some(fuel) = outcome.fuel_used {
        metrics.observe(
            "wasmq_task_fuel",
            &[("plugin", plugin), ("type", task_type)],
            fuel as f64,
        );
    }
    shared.plugin_stats.record(
        plugin,
        task_type,
        outcome.result.as_ref().err().map(|failure| match stopped {
            Some(CancelReason::LeaseLost) => FailureKind::LeaseExpired,
            _ => failure.kind,
        }),
        outcome.fuel_used,
        outcome.total_time,
    );
}

/// Records the outcome of an attempt.
async fn settle(
    shared: &Shared,
    task: &LeasedTask,
    running: &RunningTask,
    outcome: Result<Vec<u8>, TaskFailure>,
    took: Duration,
) {
    let message = &task.message;
    let (queue, id, task_type, attempt) = (
        &message.queue,
        &message.id,
        &message.task_type,
        task.attempt,
    );
    let ms = took.as_secs_f64() * 1000.0;
    match running.reason() {
        Some(CancelReason::LeaseLost) => {
            tracing::info!(
                queue,
                id,
                "dropping this attempt's outcome: its lease was lost and another worker owns the task"
            );
            return;
        }
        Some(CancelReason::Cancelled) => {
            tracing::info!(
                queue,
                id,
                task_type,
                "stopped: the task was cancelled (and archived as such)"
            );
            return;
        }
        Some(CancelReason::Shutdown) if outcome.is_err() => {
            if record(shared, running, "put back", || {
                shared.broker.requeue(message, &running.token)
            })
            .await
            {
                shared
                    .counters
                    .requeued
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    queue,
                    id,
                    task_type,
                    "stopped by shutdown and put back at the head of its queue"
                );
            }
            return;
        }
        _ => {}
    }
    match outcome {
        Ok(result) => {
            if record(shared, running, "completion", || {
                shared.acks.complete(message, &running.token, &result)
            })
            .await
            {
                shared
                    .counters
                    .completed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.config.metrics.inc(
                    "wasmq_tasks_processed_total",
                    &[("queue", queue), ("type", task_type)],
                    1.0,
                );
                tracing::debug!(queue, id, task_type, attempt, ms, "task completed");
            }
        }
        Err(failure) => {
            shared
                .counters
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            shared.config.metrics.inc(
                "wasmq_tasks_failed_total",
                &[
                    ("queue", queue),
                    ("type", task_type),
                    ("class", failure.kind.as_str()),
                ],
                1.0,
            );
            let error = ErrorRecord {
                kind: failure.kind,
                message: failure.message.clone(),
                attempt,
                at_ms: now_ms(),
            };
            let deadline_passed = message
                .deadline_ms
                .is_some_and(|deadline| deadline <= now_ms());
            let retries_left = attempt <= message.max_retry;
            if failure.kind.is_retryable() && retries_left && !deadline_passed {
                let delay = shared
                    .config
                    .backoff
                    .delay(attempt, &mut rand::make_rng::<rand::rngs::StdRng>());
                if record(shared, running, "retry", || {
                    shared.acks.retry(message, &running.token, delay, &error)
                })
                .await
                {
                    tracing::info!(
                        queue, id, task_type, attempt, kind = %failure.kind, error = failure.message,
                        retry_in = %humantime::format_duration(whole_ms(delay)),
                        "attempt failed; will retry"
                    );
                }
            } else {
                let why = if !failure.kind.is_retryable() {
                    "not retryable"
                } else if deadline_passed {
                    "deadline passed"
                } else {
                    "no retries left"
                };
                let archived = record(shared, running, "archive", || {
                    shared.acks.archive(message, &running.token, &error)
                })
                .await;
                if archived {
                    tracing::warn!(queue, id, task_type, attempt, kind = %failure.kind, error = failure.message, why, "task archived");
                }
            }
        }
    }
}

/// Runs a write, retrying while Redis is unreachable and the lease holds.
/// Returns whether it was recorded.
async fn record<F, Fut>(shared: &Shared, running: &RunningTask, what: &str, write: F) -> bool
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), broker::Error>>,
{
    // Before the write is sent: a renewal that Redis runs after it must
    // not be taken for a lost lease.
    running.set_settling();
    let mut delay = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(()) => {
                shared.outage.recovered();
                return true;
            }
            Err(broker::Error::LeaseLost { queue, id }) => {
                tracing::warn!(
                    queue,
                    id,
                    what,
                    "not recorded: the lease was lost and another worker owns the task (it expired and was taken back before this attempt's outcome was written)"
                );
                return false;
            }
            // Redis out of reach, or at its memory limit: both pass, and
            // the lease is still renewed meanwhile.
            Err(err)
                if (err.is_unreachable() || err.is_out_of_memory())
                    && Instant::now() + delay < running.lease_until() =>
            {
                shared.outage.failed(&err);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                tracing::error!(%err, what, "could not record the outcome; the lease will expire and the task will run again");
                return false;
            }
        }
    }
}

/// Unix ms by this machine's clock, for deadlines (which producers give as
/// absolute times).
fn now_ms() -> i64 {
    crate::broker::unix_ms(SystemTime::now())
}
