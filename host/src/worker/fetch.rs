//! The fetch loop: leases as many tasks as the worker has free slots,
//! trying its queues in priority order, and starts each on its path; when
//! every queue is empty it sleeps until a queue notification, the earliest
//! due time a queue reported, or the idle poll.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::acks::{Acker, Ticket};
use super::handlers::Handler;
use super::outage::OutageLog;
use super::queues::QueueSelection;
use super::task::TaskPath;
use crate::broker::{self, Broker, LeasedTask, Settlement, Unreadable};
use crate::task::{ErrorRecord, FailureKind};

/// Most tasks one dequeue call leases.
const MAX_FETCH_BATCH: usize = 64;

/// How long a saturated worker waits for more of its slots to free up
/// before leasing, so that one dequeue call leases several tasks.
const GATHER_WAIT: Duration = Duration::from_millis(2);

/// How many free slots a saturated worker gathers before leasing: a
/// sixteenth of its concurrency, so that a worker of 1,000 long tasks
/// makes one dequeue call per few dozen tasks instead of one per task,
/// and a small worker does not wait at all.
fn gather_target(concurrency: usize) -> usize {
    (concurrency / 16).clamp(1, MAX_FETCH_BATCH)
}

/// What the fetch loop works with.
pub(super) struct Fetch<'a> {
    pub broker: &'a Broker,
    pub queues: &'a QueueSelection,
    pub concurrency: usize,
    pub lease: Duration,
    pub idle_poll: Duration,
    pub worker_id: &'a str,
    pub outage: &'a OutageLog,
    pub path: &'a Arc<TaskPath>,
    pub acker: &'a Acker,
    /// Where every task's path runs (the worker's sandbox runtime, apart
    /// from the threads that talk to Redis and renew leases).
    pub executor: &'a tokio::runtime::Handle,
}

impl Fetch<'_> {
    /// Leases tasks while there are free slots and spawns their paths into
    /// `executions`, until `stop`.
    pub async fn run(
        &self,
        notify: Arc<Notify>,
        stop: CancellationToken,
        executions: &mut JoinSet<()>,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut rng = rand::make_rng::<rand::rngs::StdRng>();
        let mut fetches: u64 = 0;
        let mut retry_delay = Duration::from_millis(50);
        // Whether the last round leased every slot it had: the queues have
        // a backlog and every slot is busy, so waiting a moment for more
        // free slots delays no task that could have started.
        let mut saturated = false;
        let target = gather_target(self.concurrency);
        loop {
            // Reap finished executions so the set does not grow.
            while executions.try_join_next().is_some() {}

            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                permit = slots.clone().acquire_owned() => permit.expect("the slot semaphore is never closed"),
            };
            let mut permits = vec![first];
            while permits.len() < MAX_FETCH_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(permit) => permits.push(permit),
                    Err(_) => break,
                }
            }
            if saturated && permits.len() < target {
                let gathered = tokio::time::sleep(GATHER_WAIT);
                tokio::pin!(gathered);
                while permits.len() < target {
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        permit = slots.clone().acquire_owned() => permits.push(permit.expect("the slot semaphore is never closed")),
                        _ = &mut gathered => break,
                    }
                }
            }

            // Registered before looking, so a notification that arrives
            // while we look is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let mut leased: Vec<(LeasedTask, Arc<str>)> = Vec::new();
            let mut wait = self.idle_poll;
            let mut failed = false;
            for queue in self.queues.fetch_order(&mut rng) {
                let wanted = permits.len() - leased.len();
                if wanted == 0 {
                    break;
                }
                fetches += 1;
                let token: Arc<str> = format!("{}:{fetches}", self.worker_id).into();
                match self.broker.dequeue(queue, wanted, self.lease, &token).await {
                    Ok(dequeued) => {
                        self.outage.recovered();
                        if let Some(due) = dequeued.next_due_ms {
                            let until = Duration::from_millis(
                                u64::try_from(due - dequeued.server_now_ms).unwrap_or(0),
                            );
                            wait = wait.min(until);
                        }
                        for unreadable in dequeued.unreadable {
                            executions.spawn(archive_unreadable(
                                self.acker.clone(),
                                queue.to_string(),
                                token.clone(),
                                unreadable,
                            ));
                        }
                        leased.extend(dequeued.tasks.into_iter().map(|task| (task, token.clone())));
                    }
                    Err(err) => {
                        self.outage.failed(&err);
                        failed = true;
                        break;
                    }
                }
            }

            let found = !leased.is_empty();
            saturated = !failed && leased.len() == permits.len();
            for (task, token) in leased {
                let permit = permits.pop().expect("never more tasks than permits");
                let path = self.path.clone();
                // Resolved once, here: the handler decides where the
                // task's path runs. A plugin's attempt runs a guest that
                // may burn its whole budget: off the threads that talk to
                // Redis and renew leases, on the sandbox runtime, where the
                // path runs too so that the attempt needs no hop. A native
                // handler is the embedding program's own async code, and
                // runs where the rest of its tasks do: here.
                let handler = path.handlers.resolve(&task.message.task_type);
                let on_sandbox = matches!(handler, Handler::Plugin(_));
                let process = async move { path.process(task, handler, token, permit).await };
                if on_sandbox {
                    executions.spawn_on(process, self.executor);
                } else {
                    executions.spawn(process);
                }
            }
            drop(permits);

            if failed {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(retry_delay) => {}
                }
                retry_delay = (retry_delay * 2).min(Duration::from_secs(2));
                continue;
            }
            retry_delay = Duration::from_millis(50);
            if !found {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// A leased task whose stored message wasmq cannot read can never run: it
/// is archived, so that it is visible instead of failing forever.
async fn archive_unreadable(acker: Acker, queue: String, token: Arc<str>, task: Unreadable) {
    tracing::error!(
        queue,
        id = task.id,
        error = task.error,
        "archiving a task whose stored message is unreadable"
    );
    let error = ErrorRecord {
        kind: FailureKind::BadPayload,
        message: format!("the stored task message is unreadable: {}", task.error),
        attempt: task.attempt,
        at_ms: broker::unix_ms(SystemTime::now()),
    };
    let ticket = Ticket::Unreadable {
        queue,
        id: task.id,
        owner: token,
    };
    if let Err(err) = acker.settle(ticket, Settlement::Archive { error }).await {
        tracing::warn!(%err, "could not archive the unreadable task; its lease will expire and it comes back");
    }
}
