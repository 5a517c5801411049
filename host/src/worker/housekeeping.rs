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

/// Most expired leases taken back per queue and round.
const RECLAIM_BATCH: usize = 1000;

/// How often completed tasks, unique locks and the archive are trimmed.
const TRIM_PERIOD: Duration = Duration::from_secs(5);

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
            last_trim = Some(Instant::now());
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
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
                after = %humantime::format_duration(Duration::from_millis(at.elapsed().as_millis() as u64)),
                "Redis is reachable again"
            );
        }
    }
}
