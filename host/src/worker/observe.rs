//! What a worker learns from each task, counted once: one report per
//! attempt feeds the metrics and the plugin statistics, and one per
//! recorded settlement feeds the counters and the worker's summary.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Summary;
use super::attempt::Attempted;
use super::probation::{Change, ProbationConfig};
use crate::broker::Settlement;
use crate::ops::metrics::{Metrics, Postponed};
use crate::ops::stats::PluginStats;
use crate::plugins::Plugin;
use crate::task::FailureKind;

/// One attempt that ran, as the worker saw it.
pub(crate) struct AttemptReport<'a> {
    /// The task's type.
    pub task_type: &'a str,
    /// The plugin that ran it (`None`: a native handler).
    pub plugin: Option<&'a Plugin>,
    /// How it went.
    pub attempted: &'a Attempted,
    /// Whether it was stopped because its lease was lost (counted as
    /// `lease-expired` in the statistics, not as `cancelled`).
    pub lease_lost: bool,
}

/// The worker's metrics, plugin statistics and summary counters.
#[derive(Default)]
pub(crate) struct Observer {
    metrics: Metrics,
    stats: PluginStats,
    completed: AtomicU64,
    failed: AtomicU64,
    requeued: AtomicU64,
}

impl Observer {
    /// An observer recording into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Observer {
            metrics,
            ..Observer::default()
        }
    }

    /// The metrics (served at `/metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The plugin statistics waiting to be flushed to Redis.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Records an attempt's measurements. An attempt the worker had no room
    /// for ran nothing and is not measured.
    pub fn attempted(&self, report: &AttemptReport<'_>) {
        let attempted = report.attempted;
        let failure = attempted.outcome.as_ref().err().map(|failure| failure.kind);
        if failure == Some(FailureKind::WorkerBusy) {
            return;
        }
        self.metrics
            .duration(report.task_type, attempted.total_time);
        let Some(plugin) = report.plugin else {
            return;
        };
        let name = &plugin.manifest.name;
        if let Some(took) = attempted.instantiate_time {
            self.metrics.instantiation(name, took);
        }
        if let Some(fuel) = attempted.fuel_used {
            self.metrics.fuel(name, report.task_type, fuel);
        }
        let class = match failure {
            Some(_) if report.lease_lost => Some(FailureKind::LeaseExpired),
            failure => failure,
        };
        self.stats.record(
            name,
            report.task_type,
            class,
            attempted.fuel_used,
            attempted.total_time,
        );
    }

    /// Counts a settlement Redis recorded for a task of `task_type` in
    /// `queue`; `after_attempt` says whether an attempt ran (a task skipped
    /// or put back before it started counts in the metrics, not as a
    /// failed attempt of the summary).
    pub fn recorded(
        &self,
        queue: &str,
        task_type: &str,
        settlement: &Settlement,
        after_attempt: bool,
    ) {
        match settlement {
            Settlement::Complete { .. } => {
                self.completed.fetch_add(1, Ordering::Relaxed);
                self.metrics.processed(queue, task_type);
            }
            Settlement::Retry { error, .. } | Settlement::Archive { error } => {
                if after_attempt {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
                self.metrics.failed(queue, task_type, error.kind.as_str());
            }
            Settlement::Postpone { note, .. } => match note.kind {
                FailureKind::WorkerBusy => {
                    self.metrics
                        .postponed(Postponed::WorkerBusy, queue, task_type)
                }
                FailureKind::Probation => {
                    self.metrics
                        .postponed(Postponed::Probation, queue, task_type)
                }
                _ => {}
            },
            Settlement::Requeue => {
                self.requeued.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Logs and exports a plugin's change of standing.
    pub fn standing_changed(&self, plugin: &Plugin, change: Change, rules: &ProbationConfig) {
        let (name, version) = (&plugin.manifest.name, &plugin.manifest.version);
        let on_probation = change == Change::OnProbation;
        self.metrics.on_probation(name, on_probation);
        if on_probation {
            tracing::warn!(
                plugin = name,
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
                plugin = name,
                version,
                "plugin's probation ended: an attempt succeeded"
            );
        }
    }

    /// What the worker did so far.
    pub fn summary(&self) -> Summary {
        Summary {
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            requeued: self.requeued.load(Ordering::Relaxed),
        }
    }
}
