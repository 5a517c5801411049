//! Background upkeep of the served queues, and the log of Redis outages.
//!
//! Every worker takes back tasks whose lease expired (their worker crashed
//! or froze), trims what retention and archive caps say to drop, and
//! refreshes the concurrency limits set per task type. The scripts are
//! idempotent, so any number of workers may do this at once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::broker;
use crate::ops::server::{PluginFailureInfo, PluginInfo, ServerInfo};

/// Most expired leases taken back per queue and round.
const RECLAIM_BATCH: usize = 1000;

/// How often completed tasks, unique locks and the archive are trimmed,
/// queue gauges refreshed, plugin statistics flushed and the heartbeat
/// written.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

/// How long a heartbeat says the worker is alive.
const HEARTBEAT_TTL: Duration = Duration::from_secs(15);

/// Runs upkeep until `stop`.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let period =
        (shared.config.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let queues = shared.config.queues.names();
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
        if last_trim.is_none_or(|at| at.elapsed() >= TRIM_PERIOD) {
            for queue in &queues {
                if let Err(err) = shared.broker.trim(queue, shared.config.archive).await {
                    shared.outage.failed(&err);
                }
            }
            heartbeat(&shared).await;
            flush_plugin_stats(&shared).await;
            refresh_gauges(&shared, &queues).await;
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
    };
    // A ServerInfo holds only strings and numbers.
    let description = serde_json::to_string(&info).expect("a ServerInfo always encodes");
    let now = broker::unix_ms(std::time::SystemTime::now());
    if let Err(err) = shared
        .broker
        .heartbeat(id, &description, HEARTBEAT_TTL, now)
        .await
    {
        shared.outage.failed(&err);
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
        match shared.broker.queue_stats(queue).await {
            Ok(stats) => {
                let counts = stats.counts;
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
                let latency = stats.oldest_pending_ms.unwrap_or(0).max(0) as f64 / 1000.0;
                metrics.set("wasmq_queue_latency_seconds", &[("queue", queue)], latency);
            }
            Err(err) => shared.outage.failed(&err),
        }
    }
}

/// Logs a Redis outage once when it starts and once when it ends, instead
/// of once per failed command.
pub struct OutageLog {
    url: String,
    down: AtomicBool,
    since: Mutex<Option<Instant>>,
}

impl OutageLog {
    /// A log for the Redis at `url`.
    pub fn new(url: &str) -> Self {
        OutageLog {
            url: url.to_string(),
            down: AtomicBool::new(false),
            since: Mutex::new(None),
        }
    }

    /// Records a failed command.
    pub fn failed(&self, err: &broker::Error) {
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
