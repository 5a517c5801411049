//! The log of Redis outages: an outage, or Redis being at its memory
//! limit, is logged once when it starts and once when it ends, however
//! many commands fail meanwhile.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::broker;

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
                after = %humantime::format_duration(super::whole_ms(at.elapsed())),
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
                after = %humantime::format_duration(super::whole_ms(at.elapsed())),
                "Redis is reachable again"
            );
        }
    }
}
