//! Claims tasks from Redis and runs each in the sandbox of its plugin.
//!
//! # Overview
//! [`run`] drives one worker until its shutdown future completes:
//! - the fetch loop leases as many tasks as there are free slots
//!   (`concurrency`), trying the queues in [`QueueSelection`] order, and
//!   spawns one execution per task; when every queue is empty it sleeps
//!   until a queue notification, the next due time, or `idle_poll`;
//! - the lease keeper extends the leases of running tasks and stops the
//!   ones whose lease was lost;
//! - housekeeping takes back tasks whose worker died (expired leases) and
//!   trims completed tasks, unique locks and the archive.
//!
//! Wasm instances run on a tokio runtime of their own, so that guests
//! burning CPU can never starve the loops above (a lease that is not renewed
//! in time would hand a healthy task to another worker). Plugins whose
//! attempts keep ending at their limits run on a third, at the lowest OS
//! priority, a few at a time, their other tasks parked (`probation`).
//!
//! On shutdown the worker stops fetching, lets running tasks finish for up
//! to `shutdown_timeout`, then stops the rest and puts them back at the head
//! of their queues: nothing is lost. If Redis is unreachable then, their
//! leases expire and another worker takes them back.

mod acks;
mod backoff;
mod execute;
mod housekeeping;
mod lease;
mod native;
mod probation;
mod queues;
mod services;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use native::{NativeHandler, NativeHandlers, NativeTask};
pub use probation::ProbationConfig;
pub use queues::QueueSelection;
pub use services::{BrokerServices, FollowUpCeilings};

use crate::broker::{self, ArchiveLimits, Broker, LeasedTask, QueueEvent};
use crate::ops::metrics::Metrics;
use crate::ops::stats::PluginStats;
use crate::plugins::Plugins;
use crate::sandbox::Sandbox;
use lease::{CancelReason, Running};

/// Most tasks one dequeue call leases.
const MAX_FETCH_BATCH: usize = 64;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The queues to serve and their priorities.
    pub queues: QueueSelection,
    /// Tasks run at once.
    pub concurrency: usize,
    /// How long a lease lasts without renewal. A worker that dies holding
    /// tasks delays them by at most this long.
    pub lease: Duration,
    /// How long running tasks may go on after shutdown is requested before
    /// they are stopped and put back.
    pub shutdown_timeout: Duration,
    /// The delay before retries.
    pub backoff: Backoff,
    /// Caps on each queue's archive.
    pub archive: ArchiveLimits,
    /// The most bytes of results each queue keeps stored (0: no budget):
    /// past it, the completed tasks that expire soonest are forgotten
    /// early, so that results alone cannot fill Redis.
    pub result_budget: u64,
    /// The longest an idle worker sleeps without a notification. Every
    /// change an idle worker must act on (a task pending in an empty queue,
    /// an earlier due time, tasks taken back, a queue resumed) is published,
    /// and the listener looks again after every reconnection: this is a
    /// safety net, and an idle worker's only cost per queue.
    pub idle_poll: Duration,
    /// This worker's name, the prefix of its lease tokens.
    pub worker_id: String,
    /// Threads that run Wasm instances (default: one per CPU). They are
    /// separate from the threads that talk to Redis, so that busy guests
    /// never delay lease renewals.
    pub sandbox_threads: usize,
    /// Where the worker records its metrics (served by `--metrics-addr`).
    pub metrics: Metrics,
    /// Whether housekeeping refreshes the queue gauges of `metrics`
    /// (tasks per state, latency) every 5 s, which costs a few commands per
    /// queue: on when the metrics are served.
    pub queue_gauges: bool,
    /// Task types handled by Rust code of the embedding program, next to
    /// (and before) the Wasm plugins.
    pub native: NativeHandlers,
    /// When a plugin whose attempts keep ending at their limits is moved to
    /// the background lane (see the `probation` module).
    pub probation: ProbationConfig,
    /// Ceilings on follow-up tasks plugins enqueue (depth, descendants per
    /// root, fleet-wide rate per plugin); manifests can only lower them.
    pub follow_ups: FollowUpCeilings,
}

impl WorkerConfig {
    /// Defaults for the given queues: concurrency 10, 30 s leases, 10 s to
    /// shut down, polynomial backoff.
    pub fn new(queues: QueueSelection) -> Self {
        WorkerConfig {
            queues,
            concurrency: 10,
            lease: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            archive: ArchiveLimits::default(),
            result_budget: broker::DEFAULT_RESULT_BUDGET,
            idle_poll: Duration::from_secs(30),
            worker_id: default_worker_id(),
            sandbox_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            metrics: Metrics::default(),
            queue_gauges: false,
            native: NativeHandlers::default(),
            probation: ProbationConfig::default(),
            follow_ups: FollowUpCeilings::default(),
        }
    }
}

/// `host:pid:random`, unique per worker process.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let nonce = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{nonce}", std::process::id())
}

/// What a worker did, reported when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Attempts that completed.
    pub completed: u64,
    /// Attempts that failed (retried or archived).
    pub failed: u64,
    /// Tasks put back on shutdown.
    pub requeued: u64,
}

/// Counters shared by the executions.
#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    requeued: AtomicU64,
}

/// What every part of a running worker shares.
struct Shared {
    broker: Broker,
    sandbox: Arc<Sandbox>,
    /// Where Wasm instances run: a runtime of its own (see
    /// `WorkerConfig::sandbox_threads`).
    executor: tokio::runtime::Handle,
    plugins: Plugins,
    config: WorkerConfig,
    running: Running,
    counters: Counters,
    outage: housekeeping::OutageLog,
    /// What plugins reach through their capabilities.
    services: Arc<BrokerServices>,
    /// Run statistics per plugin, flushed to Redis by housekeeping.
    plugin_stats: PluginStats,
    /// When the worker started (unix ms), for its heartbeat.
    started_at_ms: i64,
    /// Where completions go to be written in batches.
    acks: acks::Acks,
    /// Which plugins are on probation, and their lane.
    probation: probation::Probation,
    /// Cancelled when the worker starts shutting down: parked tasks go back
    /// to their queues at once instead of starting.
    stopping: CancellationToken,
    /// Concurrency limits set per task type, refreshed by housekeeping.
    type_limits:
        std::sync::RwLock<std::collections::HashMap<String, crate::task::ConcurrencyLimit>>,
}

/// Runs a worker until `shutdown` completes, then shuts it down gracefully.
pub async fn run(
    broker: Broker,
    sandbox: Arc<Sandbox>,
    plugins: Plugins,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Summary {
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.sandbox_threads.max(1))
        .thread_name("wasmq-sandbox")
        .enable_all()
        .build()
        // Fails only when the OS refuses to create threads, at start.
        .expect("the sandbox runtime starts");
    let lane = probation::start_lane(config.sandbox_threads).expect("the probation lane starts");
    let stop_fetching = CancellationToken::new();
    let stop_background = CancellationToken::new();
    let (acks, acknowledging) = acks::Acks::start(
        broker.clone(),
        config.archive,
        config.result_budget,
        stop_background.clone(),
    );
    let shared = Arc::new(Shared {
        acks,
        broker: broker.clone(),
        sandbox,
        executor: executor.handle().clone(),
        plugins,
        running: Running::default(),
        counters: Counters::default(),
        outage: housekeeping::OutageLog::new(broker.url()),
        type_limits: Default::default(),
        plugin_stats: PluginStats::default(),
        probation: probation::Probation::new(config.probation, lane.handle().clone()),
        stopping: stop_fetching.clone(),
        services: Arc::new(BrokerServices::with_ceilings(
            broker.clone(),
            config.follow_ups,
        )),
        started_at_ms: broker::unix_ms(std::time::SystemTime::now()),
        config,
    });
    {
        // Producers choose task types: only handled ones get a label value.
        let (plugins, native) = (shared.plugins.clone(), shared.config.native.clone());
        shared.config.metrics.label_task_types(move |task_type| {
            native.get(task_type).is_some() || plugins.current().for_type(task_type).is_some()
        });
    }
    let notify = Arc::new(Notify::new());

    let mut background = JoinSet::new();
    background.spawn(acknowledging);
    let events = {
        let (shared, notify) = (shared.clone(), notify.clone());
        move |event| match event {
            QueueEvent::Work => notify.notify_waiters(),
            QueueEvent::Cancel { queue, id } => {
                if let Some(task) = shared.running.get(&queue, &id) {
                    tracing::info!(queue, id, "task cancelled: stopping it");
                    task.stop(CancelReason::Cancelled);
                }
            }
        }
    };
    background.spawn(broker::listen(
        broker.clone(),
        shared.config.queues.names(),
        events,
        stop_background.clone(),
    ));
    background.spawn(lease::keep_leases(shared.clone(), stop_background.clone()));
    background.spawn(housekeeping::run(shared.clone(), stop_background.clone()));

    // The limits per task type must be known before the first task runs,
    // or a limited type could start unchecked.
    // Fused: it is polled again after it may have completed.
    let shutdown = futures::FutureExt::fuse(shutdown);
    tokio::pin!(shutdown);
    let mut stopped_early = false;
    loop {
        match shared.broker.type_limits().await {
            Ok(limits) => {
                *shared
                    .type_limits
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = limits;
                break;
            }
            Err(err) => {
                shared.outage.failed(&err);
                tokio::select! {
                    _ = &mut shutdown => {
                        stopped_early = true;
                        break;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }

    let mut executions = JoinSet::new();
    {
        let fetching = fetch_loop(
            shared.clone(),
            notify,
            stop_fetching.clone(),
            &mut executions,
        );
        tokio::pin!(fetching);
        if stopped_early {
            stop_fetching.cancel();
        }
        tokio::select! {
            _ = &mut fetching => {}
            _ = &mut shutdown => {
                stop_fetching.cancel();
                fetching.await;
            }
        }
    }

    tracing::info!(
        running = shared.running.len(),
        timeout = %humantime::format_duration(shared.config.shutdown_timeout),
        "shutting down: no new tasks; waiting for running ones"
    );
    let drained = tokio::time::timeout(shared.config.shutdown_timeout, async {
        while executions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let stopped = shared.running.cancel_all(CancelReason::Shutdown);
        tracing::info!(
            stopped,
            "shutdown timeout reached: stopping the tasks still running and putting them back"
        );
        while executions.join_next().await.is_some() {}
    }
    stop_background.cancel();
    while background.join_next().await.is_some() {}
    housekeeping::flush_plugin_stats(&shared).await;
    if let Err(err) = shared.broker.forget_server(&shared.config.worker_id).await {
        tracing::debug!(%err, "could not remove this worker's heartbeat; it expires by itself");
    }
    // Every execution has finished: nothing runs on the sandbox runtime.
    executor.shutdown_background();
    lane.shutdown_background();

    let summary = Summary {
        completed: shared.counters.completed.load(Ordering::Relaxed),
        failed: shared.counters.failed.load(Ordering::Relaxed),
        requeued: shared.counters.requeued.load(Ordering::Relaxed),
    };
    tracing::info!(
        completed = summary.completed,
        failed = summary.failed,
        requeued = summary.requeued,
        "worker stopped"
    );
    summary
}

/// Leases tasks while there are free slots and spawns their executions.
async fn fetch_loop(
    shared: Arc<Shared>,
    notify: Arc<Notify>,
    stop: CancellationToken,
    executions: &mut JoinSet<()>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    let mut rng = rand::make_rng::<rand::rngs::StdRng>();
    let mut fetches: u64 = 0;
    let mut retry_delay = Duration::from_millis(50);
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

        // Registered before looking, so a notification that arrives while
        // we look is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let mut leased: Vec<(LeasedTask, String)> = Vec::new();
        let mut wait = shared.config.idle_poll;
        let mut failed = false;
        for queue in shared.config.queues.fetch_order(&mut rng) {
            let wanted = permits.len() - leased.len();
            if wanted == 0 {
                break;
            }
            fetches += 1;
            let token = format!("{}:{fetches}", shared.config.worker_id);
            match shared
                .broker
                .dequeue(queue, wanted, shared.config.lease, &token)
                .await
            {
                Ok(dequeued) => {
                    shared.outage.recovered();
                    if let Some(due) = dequeued.next_due_ms {
                        let until = Duration::from_millis(
                            u64::try_from(due - dequeued.server_now_ms).unwrap_or(0),
                        );
                        wait = wait.min(until);
                    }
                    leased.extend(dequeued.tasks.into_iter().map(|task| (task, token.clone())));
                }
                Err(err) => {
                    shared.outage.failed(&err);
                    failed = true;
                    break;
                }
            }
        }

        let found = !leased.is_empty();
        for (task, token) in leased {
            let permit = permits.pop().expect("never more tasks than permits");
            let shared = shared.clone();
            executions.spawn(async move {
                execute::execute(&shared, task, token, permit).await;
            });
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
