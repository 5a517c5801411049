//! Background upkeep of the served queues, and the log of Redis outages.
//!
//! The workers serving a set of queues take turns to take back tasks whose
//! lease expired (their worker crashed or froze) and to trim what retention
//! and archive caps say to drop; every worker refreshes the concurrency
//! limits set per task type and writes its heartbeat. The scripts are
//! idempotent, so any number of workers may do this at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::lease::Running;
use super::observe::Observer;
use super::outage::OutageLog;
use super::probation::Probation;
use super::queues::QueueSelection;
use super::task::TypeLimits;
use crate::broker::{self, ArchiveLimits, Broker};
use crate::ops::server::{PluginCompilingInfo, PluginFailureInfo, PluginInfo, ServerInfo};
use crate::plugins::Plugins;

/// What upkeep needs from its worker.
pub(crate) struct Upkeep {
    /// Redis.
    pub broker: Broker,
    /// The queues served, with their weights (for the heartbeat).
    pub queues: QueueSelection,
    /// This worker's name.
    pub worker_id: String,
    /// Tasks it runs at once.
    pub concurrency: usize,
    /// How long a lease lasts: sets the reclaiming period.
    pub lease: Duration,
    /// Caps on each queue's archive.
    pub archive: ArchiveLimits,
    /// When the worker started (unix ms).
    pub started_at_ms: i64,
    /// Whether the queue gauges of the metrics are refreshed.
    pub queue_gauges: bool,
    /// The tasks it holds.
    pub running: Arc<Running>,
    /// The plugins it serves.
    pub plugins: Plugins,
    /// Their standing.
    pub probation: Probation,
    /// Its metrics and plugin statistics.
    pub observer: Arc<Observer>,
    /// The limits per task type, refreshed here.
    pub type_limits: Arc<TypeLimits>,
    /// Redis outages, logged once each.
    pub outage: Arc<OutageLog>,
}

/// Most expired leases taken back per queue and round.
const RECLAIM_BATCH: usize = 1000;

/// How often completed tasks, unique locks and the archive are trimmed,
/// queue gauges refreshed, plugin statistics flushed and the heartbeat
/// written.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

/// How often a worker collects the plugin registry's garbage when the fleet
/// keeps a number of versions (`wasmq plugin retention`), besides after
/// each change of its plugins.
const REGISTRY_GC_PERIOD: Duration = Duration::from_secs(600);

/// How long the turn to sample the queues' throughput is held: under a
/// minute, so that it has lapsed when the next minute's first worker asks.
const HISTORY_TURN: Duration = Duration::from_secs(50);

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
pub async fn run(shared: Arc<Upkeep>, stop: CancellationToken) {
    let period = (shared.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let queues = shared.queues.names();
    let id = shared.worker_id.clone();
    let mut last_trim: Option<Instant> = None;
    let mut last_registry_gc: Option<Instant> = None;
    let mut last_sampled_minute: Option<u64> = None;
    loop {
        match shared.broker.type_limits().await {
            Ok(limits) => shared.type_limits.replace(limits),
            Err(err) => shared.outage.failed(&err),
        }
        if take_turn(&shared, "reclaim", &queues, &id, period).await {
            for queue in &queues {
                match shared
                    .broker
                    .reclaim_expired(queue, RECLAIM_BATCH, shared.archive)
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
                    if let Err(err) = shared.broker.trim(queue, shared.archive).await {
                        shared.outage.failed(&err);
                    }
                }
            }
            // The throughput history: a sample per queue and minute, taken
            // by one worker of those serving the same queues (the script
            // also keeps only the first of a minute).
            let minute = minute_now();
            if last_sampled_minute != Some(minute) {
                last_sampled_minute = Some(minute);
                if take_turn(&shared, "history", &queues, &id, HISTORY_TURN).await {
                    for queue in &queues {
                        if let Err(err) = shared.broker.sample_throughput(queue).await {
                            shared.outage.failed(&err);
                        }
                    }
                }
            }
            heartbeat(&shared).await;
            flush_plugin_stats(&shared).await;
            if shared.queue_gauges {
                refresh_gauges(&shared, &queues).await;
            }
            last_trim = Some(Instant::now());
        }
        if last_registry_gc.is_none_or(|at| at.elapsed() >= REGISTRY_GC_PERIOD) {
            apply_plugin_retention(&shared).await;
            last_registry_gc = Some(Instant::now());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
            // A plugin changed: say so at once, so deploys see it; then the
            // version it replaced may be garbage.
            _ = shared.plugins.changed() => {
                heartbeat(&shared).await;
                apply_plugin_retention(&shared).await;
                last_registry_gc = Some(Instant::now());
            }
        }
    }
}

/// The minute it is by this host's clock (only to sample once a minute;
/// samples carry Redis's time).
fn minute_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_secs() / 60)
        .unwrap_or(0)
}

/// Collects the plugin registry's garbage if the fleet keeps a number of
/// versions per plugin. Every worker may do it: the script is atomic and
/// idempotent, and it keeps what any live worker's heartbeat says it runs
/// (this worker's heartbeat is written first).
async fn apply_plugin_retention(shared: &Upkeep) {
    let keep = match shared.broker.plugin_retention().await {
        Ok(Some(keep)) => keep,
        Ok(None) => return,
        Err(err) => return shared.outage.failed(&err),
    };
    match crate::plugins::registry::collect_garbage(&shared.broker, keep, false).await {
        Ok(collected) if !collected.deleted.is_empty() => tracing::info!(
            components = collected.deleted.len(),
            bytes = collected
                .deleted
                .iter()
                .map(|(_, bytes)| bytes)
                .sum::<u64>(),
            keep,
            "deleted plugin components no kept version needs (plugin retention)"
        ),
        Ok(_) => {}
        Err(err) => shared.outage.failed(&err),
    }
}

/// Whether this worker takes the turn of upkeep `what` this period (see
/// [`run`]). If Redis cannot say, it does the work itself: the scripts are
/// idempotent.
async fn take_turn(
    shared: &Upkeep,
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
async fn heartbeat(shared: &Upkeep) {
    let id = &shared.worker_id;
    let mut parts = id.split(':');
    let host = parts.next().unwrap_or_default().to_string();
    let info = ServerInfo {
        id: id.clone(),
        host,
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms: shared.started_at_ms,
        concurrency: shared.concurrency,
        queues: shared.queues.weights(),
        strict: shared.queues.is_strict(),
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
pub async fn flush_plugin_stats(shared: &Upkeep) {
    let stats = shared.observer.stats();
    let counts = stats.take();
    if let Err(err) = shared.broker.add_plugin_stats(&counts).await {
        stats.restore(counts);
        shared.outage.failed(&err);
    }
}

/// Refreshes the queue gauges of the metrics.
async fn refresh_gauges(shared: &Upkeep, queues: &[String]) {
    let metrics = shared.observer.metrics();
    metrics.worker(shared.running.len(), shared.concurrency);
    for queue in queues {
        match shared.broker.queue_gauges(queue).await {
            Ok((counts, oldest_pending_ms)) => {
                let waited = u64::try_from(oldest_pending_ms.unwrap_or(0)).unwrap_or(0);
                metrics.queue(queue, &counts, Duration::from_millis(waited));
            }
            Err(err) => shared.outage.failed(&err),
        }
    }
}
