//! Background upkeep of the served queues, and the log of Redis outages.
//!
//! The workers serving a set of queues take turns to take back tasks whose
//! lease expired (their worker crashed or froze) and to trim what retention
//! and archive caps say to drop; every worker refreshes the concurrency
//! limits set per task type and writes its heartbeat. The scripts are
//! idempotent, so any number of workers may do this at once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::broker;
use crate::ops::server::{PluginCompilingInfo, PluginFailureInfo, PluginInfo, ServerInfo};

/// Most expired leases taken back per queue and round.
const RECLAIM_BATCH: usize = 1000;

/// How often completed tasks, unique locks and the archive are trimmed,
/// queue gauges refreshed, plugin statistics flushed and the heartbeat
/// written.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

/// How long a heartbeat says the worker is alive.
const HEARTBEAT_TTL: Duration = Duration::from_secs(15);

/// Runs upkeep until `stop`.
///
/// Reclaiming and trimming go queue by queue, so they are shared: each
/// period one of the workers serving the same queues takes the turn (a key
/// set with NX for the period) and does them for all; the others only
/// refresh the limits per type and write their heartbeats. What an idle
/// worker costs Redis thus does not grow with its queues, and an idle
/// fleet's reclaiming and trimming cost the same however many workers it
/// has.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let period =
        (shared.config.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let queues = shared.config.queues.names();
    let id = shared.config.worker_id.clone();
    let mut last_trim: Option<Instant> = None;
    loop {
        match shared.broker.type_limits().await {
            Ok(limits) => {
                *shared
                    .type_limits
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = limits
            }
            Err(err) => shared.outage.failed(&err),
        }
        if take_turn(&shared, "reclaim", &queues, &id, period).await {
            for queue in &queues {
                match shared
                    .broker
                    .reclaim_expired(queue, RECLAIM_BATCH, shared.config.archive)
                    .await
                {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::warn!(
                            queue,
                            count = ids.len(),
                            "took back tasks whose worker stopped renewing its lease"
                        );
                    }
                    Ok(_) => {}
                    Err(err) => shared.outage.failed(&err),
                }
            }
        }
        if last_trim.is_none_or(|at| at.elapsed() >= TRIM_PERIOD) {
            if take_turn(&shared, "trim", &queues, &id, TRIM_PERIOD).await {
                for queue in &queues {
                    if let Err(err) = shared.broker.trim(queue, shared.config.archive).await {
                        shared.outage.failed(&err);
                    }
                }
            }
            heartbeat(&shared).await;
            flush_plugin_stats(&shared).await;
            if shared.config.queue_gauges {
                refresh_gauges(&shared, &queues).await;
            }
            last_trim = Some(Instant::now());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            // A plugin changed: say so at once, so deploys see it.
            _ = shared.plugins.changed() => heartbeat(&shared).await,
        }
    }
}

/// Whether this worker takes the turn of upkeep `what` this period (see
/// [`run`]). If Redis cannot say, it does the work itself: the scripts are
/// idempotent.
async fn take_turn(
    shared: &Shared,
    what: &str,
    queues: &[String],
    id: &str,
    period: Duration,
) -> bool {
    match shared
        .broker
        .take_upkeep_turn(what, queues, id, period)
        .await
    {
        Ok(taken) => taken,
        Err(err) => {
            shared.outage.failed(&err);
            !err.is_unreachable()
        }
    }
}

/// Tells the fleet this worker is alive, what it runs and which plugins it
/// has loaded.
async fn heartbeat(shared: &Shared) {
    let id = &shared.config.worker_id;
    let mut parts = id.split(':');
    let host = parts.next().unwrap_or_default().to_string();
    let info = ServerInfo {
        id: id.clone(),
        host,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: shared.started_at_ms,
        concurrency: shared.config.concurrency,
        queues: shared.config.queues.weights(),
        strict: shared.config.queues.is_strict(),
        running: shared.running.describe(),
        parked: shared.running.parked(),
        plugins: shared
            .plugins
            .current()
            .plugins()
            .iter()
            .map(|plugin| PluginInfo {
                name: plugin.manifest.name.clone(),
                version: plugin.manifest.version.clone(),
                digest: plugin.digest.clone(),
                task_types: plugin.manifest.task_types.clone(),
                deployed: plugin.deployed,
                on_probation: shared
                    .probation
                    .is_on_probation(&plugin.manifest.name, &plugin.manifest.version),
            })
            .collect(),
        plugin_errors: shared
            .plugins
            .failures()
            .into_iter()
            .map(|(name, failure)| PluginFailureInfo {
                name,
                digest: failure.digest,
                error: failure.error,
            })
            .collect(),
        compiling: shared
            .plugins
            .loading()
            .into_iter()
            .map(|(name, digest, since)| PluginCompilingInfo {
                name,
                digest,
                since_ms: broker::unix_ms(since),
            })
            .collect(),
    };
    // A ServerInfo holds only strings and numbers.
    let description = serde_json::to_string(&info).expect("a ServerInfo always encodes");
    let now = broker::unix_ms(std::time::SystemTime::now());
    match shared
        .broker
        .heartbeat(id, &description, HEARTBEAT_TTL, now)
        .await
    {
        Ok(broker::fleet::Heartbeat::Written) => shared.outage.writes_accepted(),
        Ok(broker::fleet::Heartbeat::OutOfMemory(refused)) => shared.outage.failed(&refused),
        Err(err) => shared.outage.failed(&err),
    }
}

/// Adds this worker's plugin statistics to the fleet's.
pub async fn flush_plugin_stats(shared: &Shared) {
    let counts = shared.plugin_stats.take();
    if let Err(err) = shared.broker.add_plugin_stats(&counts).await {
        shared.plugin_stats.restore(counts);
        shared.outage.failed(&err);
    }
}

/// Refreshes the queue gauges of the metrics.
async fn refresh_gauges(shared: &Shared, queues: &[String]) {
    let metrics = &shared.config.metrics;
    metrics.set(
        "wasmq_worker_running_tasks",
        &[],
        shared.running.len() as f64,
    );
    metrics.set(
        "wasmq_worker_concurrency",
        &[],
        shared.config.concurrency as f64,
    );
    for queue in queues {
        match shared.broker.queue_gauges(queue).await {
            Ok((counts, oldest_pending_ms)) => {
                for (state, count) in [
                    ("pending", counts.pending),
                    ("active", counts.active),
                    ("scheduled", counts.scheduled),
                    ("retry", counts.retry),
                    ("archived", counts.archived),
                    ("completed", counts.completed),
                ] {
                    metrics.set(
                        "wasmq_queue_tasks",
                        &[("queue", queue), ("state", state)],
                        count as f64,
                    );
                }
                let latency = oldest_pending_ms.unwrap_or(0).max(0) as f64 / 1000.0;
                metrics.set("wasmq_queue_latency_seconds", &[("queue", queue)], latency);
            }
            Err(err) => shared.outage.failed(&err),
        }
    }
}

/// Logs a Redis outage once when it starts and once when it ends, instead
/// of once per failed command; likewise Redis being at its memory limit.
pub struct OutageLog {
    url: String,
    down: AtomicBool,
    since: Mutex<Option<Instant>>,
    /// When Redis started refusing writes for want of memory, while it
    /// does.
    out_of_memory_since: Mutex<Option<Instant>>,
}

impl OutageLog {
    /// A log for the Redis at `url`.
    pub fn new(url: &str) -> Self {
        OutageLog {
            url: url.to_string(),
            down: AtomicBool::new(false),
            since: Mutex::new(None),
            out_of_memory_since: Mutex::new(None),
        }
    }

    /// Records a failed command.
    pub fn failed(&self, err: &broker::Error) {
        if err.is_out_of_memory() {
            let mut since = self
                .out_of_memory_since
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if since.is_none() {
                *since = Some(Instant::now());
                tracing::warn!(
                    url = self.url,
                    %err,
                    "Redis is out of memory: it refuses writes that take memory (enqueues may fail); the tasks this worker holds still run and are recorded, and its heartbeat is still written"
                );
            }
            return;
        }
        if !err.is_unreachable() {
            tracing::error!(%err, "a Redis command failed");
            return;
        }
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if since.is_none() {
            *since = Some(Instant::now());
            self.down.store(true, Ordering::Release);
            tracing::warn!(url = self.url, %err, "Redis is unreachable; retrying with backoff (running tasks go on)");
        }
    }

    /// Records a write that Redis would refuse at its memory limit, accepted.
    pub fn writes_accepted(&self) {
        self.recovered();
        let mut since = self
            .out_of_memory_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(at) = since.take() {
            tracing::info!(
                url = self.url,
                after = %humantime::format_duration(super::execute::whole_ms(at.elapsed())),
                "Redis accepts writes again"
            );
        }
    }

    /// Records a successful command.
    pub fn recovered(&self) {
        if !self.down.load(Ordering::Acquire) {
            return;
        }
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = since.take() {
            self.down.store(false, Ordering::Release);
            tracing::info!(
                url = self.url,
                after = %humantime::format_duration(super::execute::whole_ms(at.elapsed())),
                "Redis is reachable again"
            );
        }
    }
}
