//! The tasks a worker is running, and the loop that keeps their leases.
//!
//! Every running task is registered with its lease token and a
//! cancellation token. The keeper extends all leases every third of the
//! lease time; a task whose lease was lost (it expired and another worker
//! took the task) is stopped at once, since its outcome would be dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::outage::OutageLog;
use crate::broker::Broker;
use crate::task::TaskMessage;

/// Why a running task was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The worker is shutting down: the task goes back to pending.
    Shutdown,
    /// The lease was lost: another worker owns the task now.
    LeaseLost,
    /// The task was cancelled (`wasmq task cancel`), which already recorded
    /// it as archived.
    Cancelled,
}

/// One running task.
pub struct RunningTask {
    /// The task as it was leased.
    message: Arc<TaskMessage>,
    /// When this attempt started (unix ms), for heartbeats.
    pub started_at_ms: i64,
    /// The lease token it was leased under.
    pub token: Arc<str>,
    /// Fires to stop the task's instance.
    pub cancel: CancellationToken,
    /// Why it was stopped, set once before `cancel` fires.
    reason: OnceLock<CancelReason>,
    /// Until when the lease is known to hold (worker clock).
    lease_until: Mutex<Instant>,
    /// Whether it is parked, waiting for the probation lane (or for its
    /// plugin's verdict, while the plugin is on trial).
    parked: AtomicBool,
    /// Whether its attempt is over and its outcome is being written (or
    /// was). Set before the write is sent, so a renewal that Redis runs
    /// after the write (and finds the task no longer leased, because it
    /// was settled) is never taken for a lost lease.
    settling: AtomicBool,
}

impl RunningTask {
    /// Stops the task for `reason` (the first reason given wins).
    pub fn stop(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.cancel.cancel();
    }

    /// Why the task was stopped, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }

    /// Until when the lease is known to hold.
    pub fn lease_until(&self) -> Instant {
        // A plain Instant behind the lock: never left half-written.
        *self.lease_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the task as parked (see `parked`) or not.
    pub fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Ordering::Relaxed);
    }

    /// Marks the attempt as over, its outcome about to be written (see
    /// `settling`).
    pub fn set_settling(&self) {
        self.settling.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_settling(&self) -> bool {
        self.settling.load(Ordering::SeqCst)
    }

    pub(crate) fn extended(&self, until: Instant) {
        *self.lease_until.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// The registry of running tasks, by (queue, id).
#[derive(Default)]
pub struct Running {
    /// By queue, then by task id: looked up by `&str`, so that neither
    /// finding nor forgetting a task allocates.
    tasks: Mutex<HashMap<String, HashMap<String, Arc<RunningTask>>>>,
}

type ByQueue = HashMap<String, HashMap<String, Arc<RunningTask>>>;

impl Running {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByQueue> {
        // Entries are inserted and removed whole: a panic elsewhere cannot
        // leave the map inconsistent.
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a task that was just leased for `lease`.
    pub fn register(
        &self,
        message: &Arc<TaskMessage>,
        token: Arc<str>,
        lease: Duration,
    ) -> Arc<RunningTask> {
        let task = Arc::new(RunningTask {
            message: message.clone(),
            started_at_ms: crate::broker::unix_ms(std::time::SystemTime::now()),
            token,
            cancel: CancellationToken::new(),
            reason: OnceLock::new(),
            lease_until: Mutex::new(Instant::now() + lease),
            parked: AtomicBool::new(false),
            settling: AtomicBool::new(false),
        });
        let mut tasks = self.lock();
        let queue = match tasks.get_mut(message.queue.as_str()) {
            Some(queue) => queue,
            None => tasks.entry(message.queue.clone()).or_default(),
        };
        queue.insert(message.id.clone(), task.clone());
        task
    }

    /// Forgets a finished task.
    pub fn unregister(&self, queue: &str, id: &str) {
        if let Some(tasks) = self.lock().get_mut(queue) {
            tasks.remove(id);
        }
    }

    /// Every running task.
    fn each(&self, mut f: impl FnMut(&RunningTask)) {
        for task in self.lock().values().flat_map(HashMap::values) {
            f(task);
        }
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }

    /// Stops every running task. Returns how many.
    pub fn cancel_all(&self, reason: CancelReason) -> usize {
        let mut stopped = 0;
        self.each(|task| {
            task.stop(reason);
            stopped += 1;
        });
        stopped
    }

    /// How many tasks are parked, waiting for the probation lane or for
    /// their plugin's verdict.
    pub fn parked(&self) -> usize {
        let mut parked = 0;
        self.each(|task| parked += usize::from(task.parked.load(Ordering::Relaxed)));
        parked
    }

    /// What runs here (parked tasks left out), for heartbeats.
    pub fn describe(&self) -> Vec<crate::ops::server::RunningTaskInfo> {
        let mut running = Vec::new();
        self.each(|task| {
            if !task.parked.load(Ordering::Relaxed) {
                running.push(crate::ops::server::RunningTaskInfo {
                    queue: task.message.queue.clone(),
                    id: task.message.id.clone(),
                    task_type: task.message.task_type.clone(),
                    started_at_ms: task.started_at_ms,
                });
            }
        });
        running
    }

    /// The running tasks grouped by queue, as (id, token) pairs.
    fn held_by_queue(&self) -> HashMap<String, Vec<(String, String)>> {
        self.lock()
            .iter()
            .filter(|(_, tasks)| !tasks.is_empty())
            .map(|(queue, tasks)| {
                let held = tasks
                    .iter()
                    .map(|(id, task)| (id.clone(), task.token.to_string()))
                    .collect();
                (queue.clone(), held)
            })
            .collect()
    }

    /// The running task `id` of `queue`, if it runs here.
    pub fn get(&self, queue: &str, id: &str) -> Option<Arc<RunningTask>> {
        self.lock().get(queue)?.get(id).cloned()
    }
}

/// Extends the leases of running tasks until `stop`.
///
/// A renewal is sent for a snapshot of the running tasks, and an attempt
/// may end and its outcome be written meanwhile: Redis then runs the
/// renewal after the settle script and finds the task no longer leased.
/// Such a task is not stopped nor reported: its outcome's write says
/// whether the lease still held (see `task::TaskPath::record`). Only a task still
/// running under the same lease, whose renewal was refused, lost its lease.
pub async fn keep_leases(
    broker: Broker,
    running: Arc<Running>,
    lease: Duration,
    outage: Arc<OutageLog>,
    stop: CancellationToken,
) {
    let period = (lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for (queue, held) in running.held_by_queue() {
            let asked_at = Instant::now();
            match broker.extend_leases(&queue, lease, &held).await {
                Ok(lost) => {
                    outage.recovered();
                    for (id, token) in &held {
                        let Some(task) = running.get(&queue, id) else {
                            continue;
                        };
                        if *task.token != **token {
                            // A later attempt of the same task, leased
                            // since the snapshot: not the one asked about.
                            continue;
                        }
                        if !lost.contains(id) {
                            task.extended(asked_at + lease);
                        } else if task.is_settling() {
                            tracing::debug!(
                                queue,
                                id,
                                "lease not renewed: the attempt is over and its outcome is being written"
                            );
                        } else {
                            tracing::warn!(
                                queue,
                                id,
                                "lease lost (it expired and the task was taken back): stopping this attempt"
                            );
                            task.stop(CancelReason::LeaseLost);
                        }
                    }
                }
                Err(err) => outage.failed(&err),
            }
        }
    }
}
