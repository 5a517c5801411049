//! The path of one leased task: resolve its handler once, admit it (its
//! plugin's standing, its concurrency limit, its deadline and tree, its
//! rate limits), run
//! the attempt, decide what follows, and settle it through the acker.
//!
//! Every step reads the one [`Handler`] the task was resolved to when it
//! was leased, so a deploy while the task waits cannot give it one
//! version's admission and another version's run. Every outcome, whatever
//! step produced it, leaves through [`TaskPath::record`]: recording is
//! retried while Redis is unreachable, for as long as the lease holds;
//! after that the lease expires, another worker takes the task back, and it
//! runs again (at-least-once delivery).
//!
//! The path's future is moved whole when it is spawned, and every future
//! it awaits is copied into it: the steps most tasks skip (a concurrency
//! slot, a stopped tree, children's outcomes, rate limits, children added)
//! and the sandbox's run are boxed, so that a plain task's path stays a
//! few kilobytes (it was 8.5 KB, and the copies a tenth of the worker's
//! CPU per task).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::acks::{Acker, Ticket};
use super::attempt::AttemptSpan;
use super::attempt::{self, Attempted, SandboxRun};
use super::backoff::Backoff;
use super::decide::{self, Decision, Facts, Why};
use super::handlers::{Handler, Handlers};
use super::lease::{CancelReason, Running, RunningTask};
use super::observe::{AttemptReport, Observer};
use super::outage::OutageLog;
use super::probation::{Admission, Parking, Probation};
use super::rate::{RateAdmission, RateLimits};
use super::services::AddedChildren;
use super::services::BrokerServices;
use crate::broker::{self, Broker, ChildOutcome, LeasedTask, Settlement};
use crate::sandbox::Sandbox;
use crate::task::{ConcurrencyLimit, ErrorRecord, FailureKind, TaskFailure, WhenBusy};

/// Concurrency limits set per task type, refreshed by housekeeping.
#[derive(Default)]
pub(crate) struct TypeLimits {
    by_type: RwLock<std::collections::HashMap<String, ConcurrencyLimit>>,
}

impl TypeLimits {
    /// Replaces every limit.
    pub fn replace(&self, limits: std::collections::HashMap<String, ConcurrencyLimit>) {
        // A poisoned lock only means a panic elsewhere while swapping in a
        // whole map.
        *self.by_type.write().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    /// The limit of `task_type`, if one is set.
    fn get(&self, task_type: &str) -> Option<ConcurrencyLimit> {
        self.by_type
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_type)
            .cloned()
    }
}

/// What the path of a task needs from its worker.
pub(crate) struct TaskPath {
    /// Redis, for concurrency slots and stopped trees.
    pub broker: Broker,
    /// Who handles each task type.
    pub handlers: Handlers,
    /// The engine plugins run in.
    pub sandbox: Arc<Sandbox>,
    /// The plugins' standing, and the lane for those on probation.
    pub probation: Probation,
    /// Where every outcome is recorded.
    pub acker: Acker,
    /// The tasks this worker holds.
    pub running: Arc<Running>,
    /// Metrics, plugin statistics and the worker's summary.
    pub observer: Arc<Observer>,
    /// Limits set per task type.
    pub type_limits: Arc<TypeLimits>,
    /// Fleet-wide rate limits per task type and queue.
    pub rate_limits: Arc<RateLimits>,
    /// What plugins reach through their capabilities.
    pub services: Arc<BrokerServices>,
    /// Redis outages, logged once each.
    pub outage: Arc<OutageLog>,
    /// The delay before retries.
    pub backoff: Backoff,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
    /// Cancelled when the worker starts shutting down.
    pub stopping: CancellationToken,
    /// Opens the spans of each attempt, when the worker traces.
    #[cfg(feature = "otel")]
    pub tracer: Option<crate::telemetry::Tracer>,
}

/// What became of a task before any attempt.
enum Admitted {
    /// Run the attempt on this runtime (`None`: the worker's sandbox
    /// runtime), holding `held` until it has ended.
    Run {
        lane: Option<tokio::runtime::Handle>,
        held: Held,
        children: Vec<ChildOutcome>,
    },
    /// Record this instead of running (the task went back or was skipped).
    Record(Settlement),
    /// The attempt is refused before it starts (its deadline passed, its
    /// tree was stopped): it fails like an attempt.
    Refuse(TaskFailure),
    /// Nothing to record: Redis answered an admission check with an error
    /// other than being out of reach, and the lease will expire so that the
    /// task is tried again.
    Abandon,
}

/// What an admitted attempt holds while it runs: its place given by
/// probation and its concurrency-limit slot.
#[derive(Default)]
struct Held {
    _seat: Option<super::probation::Seat>,
    slot: Option<ConcurrencyLimit>,
}

impl TaskPath {
    /// Runs one leased task, resolved to `handler`, to its settlement, in
    /// a span that names it. `slot` (one unit of the worker's concurrency)
    /// is given back as soon as the attempt has run, so the next fetch
    /// overlaps with recording its outcome, or as soon as the task parks
    /// for the probation lane.
    pub async fn process(
        &self,
        task: LeasedTask,
        handler: Handler,
        token: Arc<str>,
        slot: OwnedSemaphorePermit,
    ) {
        let span = tracing::info_span!(
            "task",
            queue = task.message.queue,
            id = task.message.id,
            task_type = task.message.task_type,
            attempt = task.attempt,
        );
        self.process_in_span(task, handler, token, slot)
            .instrument(span)
            .await
    }

    async fn process_in_span(
        &self,
        task: LeasedTask,
        handler: Handler,
        token: Arc<str>,
        slot: OwnedSemaphorePermit,
    ) {
        let message = &task.message;
        let running = self.running.register(message, token, self.lease);
        let mut slot = Some(slot);
        // The attempt's span opens once the task is admitted (or refused
        // like an attempt): a task put back by admission has none.
        let (attempted, ran, span) = match self.admit(&task, &handler, &running, &mut slot).await {
            Admitted::Run {
                lane,
                held,
                children,
            } => {
                let span = self.attempt_span(&task, &handler);
                let attempted = self
                    .attempt(
                        &task,
                        &handler,
                        children,
                        &running,
                        lane.as_ref(),
                        span.as_ref(),
                    )
                    .await;
                drop(slot.take());
                self.release(held, &message.id, &running).await;
                (attempted, true, span)
            }
            Admitted::Refuse(failure) => (
                Attempted::refused(failure),
                false,
                self.attempt_span(&task, &handler),
            ),
            Admitted::Record(settlement) => {
                drop(slot.take());
                self.record(&task, &running, settlement, None).await;
                self.running.unregister(&message.queue, &message.id);
                return;
            }
            Admitted::Abandon => {
                self.running.unregister(&message.queue, &message.id);
                return;
            }
        };
        drop(slot);
        let stopped = running.reason();
        if ran {
            self.observe(&task, &handler, &attempted, stopped);
        }
        let facts = Facts {
            attempt: task.attempt,
            max_retry: message.max_retry,
            deadline_ms: message.deadline_ms,
        };
        let took = attempted.total_time;
        let added = attempted.children_added().cloned();
        #[cfg(feature = "otel")]
        let failure = span
            .as_ref()
            .and_then(|_| attempted.outcome.as_ref().err().cloned());
        #[cfg(feature = "otel")]
        let fuel_used = attempted.fuel_used;
        let decide = |outcome| {
            decide::decide(outcome, stopped, facts, now_ms(), |attempt| {
                self.backoff
                    .delay(attempt, &mut rand::make_rng::<rand::rngs::StdRng>())
            })
        };
        let mut decision = decide(attempted.outcome);
        #[cfg(feature = "otel")]
        if let Some(span) = span {
            let outcome = match &decision {
                Decision::Drop(CancelReason::LeaseLost) => "lease-lost",
                Decision::Drop(_) => "cancelled",
                Decision::Record(settlement, _) => settlement_outcome(settlement),
            };
            span.end(outcome, failure.as_ref(), fuel_used);
        }
        #[cfg(not(feature = "otel"))]
        drop(span);
        // A handler that added children to its own task: if it succeeded,
        // the task waits for them instead of completing; if not, they are
        // dropped.
        if let Some(added) = added {
            if matches!(decision, Decision::Record(Settlement::Complete { .. }, _)) {
                match Box::pin(self.await_added(&task, &running, &added)).await {
                    None => {
                        self.running.unregister(&message.queue, &message.id);
                        return;
                    }
                    Some(failure) => {
                        self.services.drop_added(&added).await;
                        decision = decide(Err(failure));
                    }
                }
            } else {
                self.services.drop_added(&added).await;
            }
        }
        match decision {
            Decision::Drop(CancelReason::LeaseLost) => tracing::info!(
                "dropping this attempt's outcome: its lease was lost and another worker owns the task"
            ),
            Decision::Drop(_) => {
                tracing::info!("stopped: the task was cancelled (and archived as such)")
            }
            Decision::Record(settlement, why) => {
                self.record(&task, &running, settlement, Some((why, took)))
                    .await
            }
        }
        self.running.unregister(&message.queue, &message.id);
    }

    /// Opens the span of this attempt, when the worker traces.
    #[cfg(feature = "otel")]
    fn attempt_span(
        &self,
        task: &LeasedTask,
        handler: &Handler,
    ) -> Option<crate::telemetry::AttemptSpan> {
        use crate::telemetry::Runner;
        let tracer = self.tracer.as_ref()?;
        let runner = match handler {
            Handler::Plugin(plugin) => Runner::Plugin {
                name: &plugin.manifest.name,
                version: &plugin.manifest.version,
            },
            Handler::Native(_) => Runner::Native,
            Handler::Missing(_) => Runner::Missing,
        };
        Some(tracer.attempt(&task.message, task.attempt, runner))
    }

    /// Without the `otel` feature there are no spans.
    #[cfg(not(feature = "otel"))]
    fn attempt_span(&self, _: &LeasedTask, _: &Handler) -> Option<AttemptSpan> {
        None
    }

    /// Feeds an attempt that ran to the metrics and plugin statistics,
    /// and its plugin's standing.
    fn observe(
        &self,
        task: &LeasedTask,
        handler: &Handler,
        attempted: &Attempted,
        stopped: Option<CancelReason>,
    ) {
        let plugin = match handler {
            Handler::Plugin(plugin) => Some(&**plugin),
            Handler::Native(_) => None,
            Handler::Missing(_) => return,
        };
        self.observer.attempted(&AttemptReport {
            task_type: &task.message.task_type,
            plugin,
            attempted,
            lease_lost: stopped == Some(CancelReason::LeaseLost),
        });
        if let Some(plugin) = plugin {
            let failure = attempted.outcome.as_ref().err().map(|failure| failure.kind);
            let manifest = &plugin.manifest;
            if let Some(change) = self
                .probation
                .record(&manifest.name, &manifest.version, failure)
            {
                self.observer
                    .standing_changed(plugin, change, self.probation.config());
            }
        }
    }

    /// Admits the task: its plugin's standing (which may park it), its
    /// concurrency-limit slot, its deadline, its tree and its rate limits.
    async fn admit(
        &self,
        task: &LeasedTask,
        handler: &Handler,
        running: &RunningTask,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> Admitted {
        let message = &task.message;
        let mut held = Held::default();
        let mut lane = None;
        if let Handler::Plugin(plugin) = handler {
            let parking = Parking {
                running,
                stopping: &self.stopping,
            };
            match self
                .probation
                .admit(plugin, message.payload.get().len(), parking, slot)
                .await
            {
                Ok(Admission::Run(seat)) => {
                    lane = seat.lane.clone();
                    held._seat = Some(seat);
                }
                Ok(Admission::Postpone { delay, why }) => {
                    return Admitted::Record(self.postponement(
                        task,
                        delay,
                        FailureKind::Probation,
                        why,
                    ));
                }
                Err(why) => return Admitted::Refuse(TaskFailure::new(FailureKind::Cancelled, why)),
            }
        }
        let limit = message
            .limit
            .clone()
            .or_else(|| self.type_limits.get(&message.task_type))
            .map(|limit| limit.for_task(message));
        if let Some(limit) = limit {
            match Box::pin(self.take_slot(task, &limit)).await {
                Ok(()) => held.slot = Some(limit),
                Err(admitted) => return admitted,
            }
        }
        if let Err(failure) = attempt::time_left(message.deadline_ms, now_ms()) {
            self.release(held, &message.id, running).await;
            return Admitted::Refuse(failure);
        }
        if let Some(failure) = self.tree_stopped(task).await {
            self.release(held, &message.id, running).await;
            return Admitted::Refuse(failure);
        }
        // A parent's children's outcomes are part of its task. Redis out of
        // reach is not the handler's failure: the attempt is not counted.
        let children = match self.broker.flow_children(message).await {
            Ok(children) => children
                .into_iter()
                .filter(|child| child.is_shown_to_parent())
                .collect(),
            Err(err) if err.is_unreachable() => {
                self.release(held, &message.id, running).await;
                return self.unanswered(&err);
            }
            Err(err) => {
                self.release(held, &message.id, running).await;
                return Admitted::Refuse(TaskFailure::new(
                    FailureKind::HandlerError,
                    format!("its children's outcomes could not be read: {err}"),
                ));
            }
        };
        // Last, so that a start is counted only for a task that starts.
        match self.rate_limits.admit(&self.broker, message).await {
            RateAdmission::Start => Admitted::Run {
                lane,
                held,
                children,
            },
            RateAdmission::Wait { delay, why } => {
                self.release(held, &message.id, running).await;
                Admitted::Record(self.postponement(task, delay, FailureKind::RateLimited, why))
            }
            RateAdmission::Unknown(err) => {
                self.release(held, &message.id, running).await;
                self.unanswered(&err)
            }
        }
    }

    /// What becomes of a task whose admission Redis did not answer: with
    /// Redis out of reach, it goes back to the head of its queue once Redis
    /// answers again (while its lease holds), instead of waiting out its
    /// lease; on any other error it is left to its lease, so that an error
    /// that repeats does not spin it through admission.
    fn unanswered(&self, err: &broker::Error) -> Admitted {
        self.outage.failed(err);
        if err.is_unreachable() {
            Admitted::Record(Settlement::Requeue)
        } else {
            Admitted::Abandon
        }
    }

    /// Takes a slot of the task's concurrency limit, or says what becomes
    /// of the task when every slot is held: skipped (archived as
    /// `slot-busy`) or put back to wait, as the limit says.
    async fn take_slot(&self, task: &LeasedTask, limit: &ConcurrencyLimit) -> Result<(), Admitted> {
        let holders = match self.broker.acquire_slot(limit, &task.message.id).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(holders)) => holders,
            Err(err) => return Err(self.unanswered(&err)),
        };
        let held = format!(
            "all {} slot(s) of limit {:?} are held (by {})",
            limit.max_running,
            limit.key,
            holders.join(", ")
        );
        Err(Admitted::Record(match limit.when_busy {
            WhenBusy::Skip => Settlement::Archive {
                error: ErrorRecord {
                    kind: FailureKind::SlotBusy,
                    message: format!("skipped: {held}"),
                    attempt: task.attempt,
                    at_ms: now_ms(),
                },
            },
            WhenBusy::Delay(delay_ms) => self.postponement(
                task,
                Duration::from_millis(delay_ms),
                FailureKind::SlotBusy,
                held,
            ),
        }))
    }

    /// Gives back what an attempt held: its concurrency-limit slot (its
    /// probation seat goes when `held` is dropped). Retried while Redis is
    /// out of reach and the lease holds, as the settlement that follows is:
    /// a slot left held across a Redis restart would stop every task of its
    /// limit until its lock-at-most-for ran out.
    async fn release(&self, held: Held, id: &str, running: &RunningTask) {
        if let Some(limit) = &held.slot {
            Box::pin(self.release_slot(limit, id, running)).await;
        }
    }

    /// Gives back a concurrency-limit slot (see `release`).
    async fn release_slot(&self, limit: &ConcurrencyLimit, id: &str, running: &RunningTask) {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.broker.release_slot(limit, id).await {
                Ok(()) => return,
                Err(err) if self.waited_out(&err, &mut delay, running).await => {}
                Err(err) => {
                    tracing::warn!(%err, key = limit.key, "could not release a concurrency slot; it frees when its lock-at-most-for runs out");
                    return;
                }
            }
        }
    }

    /// A follow-up enqueued while its tree was being stopped may have been
    /// missed by the sweep: it is refused here instead of run.
    async fn tree_stopped(&self, task: &LeasedTask) -> Option<TaskFailure> {
        let lineage = task.message.lineage.as_ref()?;
        match Box::pin(self.broker.tree_stopped(&lineage.root)).await {
            Ok(Some(_)) => Some(TaskFailure::new(
                FailureKind::Cancelled,
                format!(
                    "the tree of root task {} was stopped (wasmq task stop-tree)",
                    lineage.root
                ),
            )),
            Ok(None) => None,
            Err(err) => {
                tracing::debug!(error = %err, "could not check whether the task's tree was stopped");
                None
            }
        }
    }

    /// Runs the attempt with the task's handler: here, on the worker's
    /// sandbox runtime where every task's path runs, or on the probation
    /// lane's runtime when `lane` is given.
    async fn attempt(
        &self,
        task: &LeasedTask,
        handler: &Handler,
        children: Vec<ChildOutcome>,
        running: &RunningTask,
        lane: Option<&tokio::runtime::Handle>,
        span: Option<&AttemptSpan>,
    ) -> Attempted {
        let remaining = match attempt::time_left(task.message.deadline_ms, now_ms()) {
            Ok(remaining) => remaining,
            Err(failure) => return Attempted::refused(failure),
        };
        match handler {
            Handler::Native(native) => {
                attempt::native(native, task, children, remaining, &running.cancel).await
            }
            Handler::Plugin(plugin) => {
                let run = SandboxRun {
                    sandbox: &self.sandbox,
                    lane,
                    services: &self.services,
                    span,
                };
                attempt::in_sandbox(run, plugin, task, children, remaining, &running.cancel).await
            }
            Handler::Missing(why) => {
                Attempted::refused(TaskFailure::new(FailureKind::NoHandler, why.clone()))
            }
        }
    }

    /// A settlement putting the task back for `delay`, its attempt not
    /// counted, noting `why` (as a note of class `kind`: a task waiting for
    /// a concurrency slot is "delayed", as its limit says, others
    /// "postponed").
    fn postponement(
        &self,
        task: &LeasedTask,
        delay: Duration,
        kind: FailureKind,
        why: String,
    ) -> Settlement {
        let verb = match kind {
            FailureKind::SlotBusy => "delayed",
            _ => "postponed",
        };
        Settlement::Postpone {
            delay,
            note: ErrorRecord {
                kind,
                message: format!(
                    "{verb} {}: {why}",
                    humantime::format_duration(super::whole_ms(delay))
                ),
                attempt: task.attempt,
                at_ms: now_ms(),
            },
        }
    }

    /// Makes the task wait for the children its handler added, retrying
    /// while Redis is out of reach and the lease holds. Returns the failure
    /// to record instead when they were refused (an id taken, a queue not
    /// registered); `None` once it waits, or when the lease was lost (the
    /// task runs again elsewhere, its children not added).
    async fn await_added(
        &self,
        task: &LeasedTask,
        running: &RunningTask,
        added: &AddedChildren,
    ) -> Option<TaskFailure> {
        let message = &task.message;
        running.set_settling();
        let mut delay = Duration::from_millis(50);
        loop {
            match self
                .services
                .await_children(message, &running.token, added)
                .await
            {
                Ok(tasks) => {
                    self.outage.recovered();
                    tracing::info!(
                        tasks,
                        "waiting for the children its handler added; it runs again once they have ended"
                    );
                    return None;
                }
                Err(broker::Error::LeaseLost { .. }) => {
                    self.services.drop_added(added).await;
                    tracing::warn!(
                        "the children its handler added were dropped: the lease was lost and another worker owns the task"
                    );
                    return None;
                }
                Err(err) if self.waited_out(&err, &mut delay, running).await => {}
                Err(err) => {
                    return Some(TaskFailure::new(
                        FailureKind::HandlerError,
                        format!("the children its handler added were refused: {err}"),
                    ));
                }
            }
        }
    }

    /// Whether a write that failed with `err` may be tried again: Redis
    /// out of reach, or at its memory limit (both pass, and the lease is
    /// still renewed meanwhile), with time left on the lease. Waits `delay`
    /// first, and doubles it (up to 2 s).
    async fn waited_out(
        &self,
        err: &broker::Error,
        delay: &mut Duration,
        running: &RunningTask,
    ) -> bool {
        let passing = err.is_unreachable() || err.is_out_of_memory();
        if !passing || Instant::now() + *delay >= running.lease_until() {
            return false;
        }
        self.outage.failed(err);
        tokio::time::sleep(*delay).await;
        *delay = (*delay * 2).min(Duration::from_secs(2));
        true
    }

    /// Records `settlement` through the acker, retrying while Redis is
    /// unreachable (or at its memory limit) and the lease holds; then
    /// reports it. `attempt` is why it was chosen after an attempt that
    /// took so long, if it followed one.
    async fn record(
        &self,
        task: &LeasedTask,
        running: &RunningTask,
        settlement: Settlement,
        attempt: Option<(Why, Duration)>,
    ) {
        let message = &task.message;
        // Before the write is sent: a renewal that Redis runs after it must
        // not be taken for a lost lease.
        running.set_settling();
        let mut delay = Duration::from_millis(50);
        loop {
            let ticket = Ticket::Leased {
                message: message.clone(),
                owner: running.token.clone(),
            };
            match self.acker.settle(ticket, settlement.clone()).await {
                Ok(()) => {
                    self.outage.recovered();
                    self.observer.recorded(
                        &message.queue,
                        &message.task_type,
                        &settlement,
                        attempt.is_some(),
                    );
                    log_recorded(&settlement, attempt);
                    return;
                }
                Err(broker::Error::LeaseLost { .. }) => {
                    tracing::warn!(
                        settlement = settlement_name(&settlement),
                        "not recorded: the lease was lost and another worker owns the task (it expired and was taken back before this attempt's outcome was written)"
                    );
                    return;
                }
                Err(err) if self.waited_out(&err, &mut delay, running).await => {}
                Err(err) => {
                    tracing::error!(%err, settlement = settlement_name(&settlement), "could not record the outcome; the lease will expire and the task will run again");
                    return;
                }
            }
        }
    }
}

/// What became of the task, as its attempt's span says.
#[cfg(feature = "otel")]
fn settlement_outcome(settlement: &Settlement) -> &'static str {
    match settlement {
        Settlement::Complete { .. } => "completed",
        Settlement::Retry { .. } => "retry",
        Settlement::Archive { .. } => "archived",
        Settlement::Postpone { .. } => "postponed",
        Settlement::Requeue => "requeued",
    }
}

/// The settlement's kind, for logs.
fn settlement_name(settlement: &Settlement) -> &'static str {
    match settlement {
        Settlement::Complete { .. } => "completion",
        Settlement::Retry { .. } => "retry",
        Settlement::Archive { .. } => "archival",
        Settlement::Postpone { .. } => "postponement",
        Settlement::Requeue => "put back",
    }
}

/// Logs a recorded settlement (the task's span names the task).
fn log_recorded(settlement: &Settlement, attempt: Option<(Why, Duration)>) {
    let ms = attempt.map_or(0.0, |(_, took)| took.as_secs_f64() * 1000.0);
    match settlement {
        Settlement::Complete { .. } => tracing::debug!(ms, "task completed"),
        Settlement::Retry { delay, error } => tracing::info!(
            kind = %error.kind, error = error.message,
            retry_in = %humantime::format_duration(super::whole_ms(*delay)),
            "attempt failed; will retry"
        ),
        Settlement::Archive { error } => match attempt {
            Some((why, _)) => {
                tracing::warn!(kind = %error.kind, error = error.message, why = why.as_str(), "task archived")
            }
            None => tracing::info!(error = error.message, "task archived"),
        },
        Settlement::Postpone { note, .. } => tracing::debug!(
            kind = %note.kind, note = note.message,
            "put back without an attempt"
        ),
        Settlement::Requeue => {
            tracing::info!("put back at the head of its queue without an attempt")
        }
    }
}

/// Unix ms by this machine's clock, for deadlines (which producers give as
/// absolute times).
fn now_ms() -> i64 {
    broker::unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `step` returns, without running it.
    fn future_size<'a, Fut>(
        _step: impl FnOnce(&'a TaskPath, LeasedTask, Handler, Arc<str>, OwnedSemaphorePermit) -> Fut,
    ) -> usize {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn a_tasks_path_stays_small_to_spawn() {
        let bytes = future_size(TaskPath::process);
        assert!(
            bytes <= 4096,
            "a task's path is a {bytes}-byte future, copied whole when spawned: box the step that grew it"
        );
    }
}
