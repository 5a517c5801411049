//! The metrics a worker exports, built once on `prometheus-client`: one
//! typed method per thing measured, so a metric's name, help, labels and
//! buckets are written in one place and a caller cannot misspell them.
//!
//! Label values come partly from producers (task types), so the number of
//! series is bounded: once a worker says which task types it handles
//! ([`Metrics::label_task_types`]), a `type` label with any other value is
//! recorded as [`OTHER_TYPE`], and every label value is cut to
//! [`MAX_LABEL_VALUE`] bytes.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::broker::QueueCounts;

/// The `type` label of task types no plugin declares and no native handler
/// registers.
pub const OTHER_TYPE: &str = "_other";

/// The longest label value kept, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_LABEL_VALUE: usize = 128;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether a task type gets a `type` label value of its own.
type TypeFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueType {
    queue: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueTypeClass {
    queue: String,
    r#type: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginType {
    plugin: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginVersion {
    plugin: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueState {
    queue: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ])
}

fn instantiation_histogram() -> Histogram {
    Histogram::new([
        0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
    ])
}

fn fuel_histogram() -> Histogram {
    Histogram::new([1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12])
}

/// Why a task went back to its queue without an attempt, for
/// [`Metrics::postponed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postponed {
    /// Its plugin is on probation (or on trial) and could not take it.
    Probation,
    /// The worker had no room for an instance of its plugin.
    WorkerBusy,
}

/// The metrics of one worker process. Cheap to clone: clones share the
/// same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    /// Which task types are labelled as themselves (all until set).
    task_types: RwLock<Option<TypeFilter>>,
    processed: Family<QueueType, Counter>,
    failed: Family<QueueTypeClass, Counter>,
    duration: Family<TypeLabel, Histogram, fn() -> Histogram>,
    instantiation: Family<PluginLabel, Histogram, fn() -> Histogram>,
    fuel: Family<PluginType, Histogram, fn() -> Histogram>,
    queue_tasks: Family<QueueState, Gauge>,
    queue_latency: Family<QueueLabel, FloatGauge>,
    running: Gauge,
    concurrency: Gauge,
    plugin_loads: Family<PluginVersion, Counter>,
    plugin_reloads: Family<PluginLabel, Counter>,
    on_probation: Family<PluginLabel, Gauge>,
    probation_postponed: Family<QueueType, Counter>,
    busy_postponed: Family<QueueType, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `value` cut to [`MAX_LABEL_VALUE`] bytes at a character boundary, with
/// the characters the exposition format escapes (`\\`, `\"`, line feed)
/// escaped: `prometheus-client` writes label values as they are, and a
/// queue name with a quote would otherwise break the whole scrape.
fn bounded(value: &str) -> String {
    let mut end = value.len().min(MAX_LABEL_VALUE);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let cut = &value[..end];
    if !cut.contains(['\\', '"', '\n']) {
        return cut.to_string();
    }
    let mut escaped = String::with_capacity(cut.len() + 8);
    for c in cut.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

impl Metrics {
    /// Every metric, registered once, with no series yet.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let processed = Family::default();
        registry.register(
            "wasmq_tasks_processed",
            "Attempts that completed, by queue and task type",
            processed.clone(),
        );
        let failed = Family::default();
        registry.register(
            "wasmq_tasks_failed",
            "Attempts that failed, by queue, task type and failure class",
            failed.clone(),
        );
        let duration = Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "wasmq_task_duration_seconds",
            "Wall-clock time of an attempt, instantiation included",
            duration.clone(),
        );
        let instantiation =
            Family::new_with_constructor(instantiation_histogram as fn() -> Histogram);
        registry.register(
            "wasmq_wasm_instantiation_seconds",
            "Time to create a fresh instance of a plugin for one attempt",
            instantiation.clone(),
        );
        let fuel = Family::new_with_constructor(fuel_histogram as fn() -> Histogram);
        registry.register(
            "wasmq_task_fuel",
            "Fuel (about one unit per Wasm instruction) burned by an attempt",
            fuel.clone(),
        );
        let queue_tasks = Family::default();
        registry.register(
            "wasmq_queue_tasks",
            "Tasks in a queue, by state",
            queue_tasks.clone(),
        );
        let queue_latency = Family::default();
        registry.register(
            "wasmq_queue_latency_seconds",
            "How long the oldest pending task of a queue has waited since it was enqueued",
            queue_latency.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "wasmq_worker_running_tasks",
            "Tasks this worker is running",
            running.clone(),
        );
        let concurrency = Gauge::default();
        registry.register(
            "wasmq_worker_concurrency",
            "Tasks this worker may run at once",
            concurrency.clone(),
        );
        let plugin_loads = Family::default();
        registry.register(
            "wasmq_plugin_loads",
            "Plugins loaded (at start or by a deploy), by plugin and version",
            plugin_loads.clone(),
        );
        let plugin_reloads = Family::default();
        registry.register(
            "wasmq_plugin_reloads",
            "Plugins replaced by a new version while running, by plugin",
            plugin_reloads.clone(),
        );
        let on_probation = Family::default();
        registry.register(
            "wasmq_plugin_on_probation",
            "1 while a plugin is on probation on this worker (its attempts kept ending at their limits; its tasks run in the background lane), else 0",
            on_probation.clone(),
        );
        let probation_postponed = Family::default();
        registry.register(
            "wasmq_probation_postponed",
            "Tasks put back in their queue for a while because their plugin is on probation and the lane was full, or on trial and its attempts did not end, by queue and task type",
            probation_postponed.clone(),
        );
        let busy_postponed = Family::default();
        registry.register(
            "wasmq_worker_busy_postponed",
            "Tasks put back in their queue for a moment, no attempt counted, because the worker had no room for another instance of their plugin (its share of instances, or a full instance pool), by queue and task type",
            busy_postponed.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                task_types: RwLock::new(None),
                processed,
                failed,
                duration,
                instantiation,
                fuel,
                queue_tasks,
                queue_latency,
                running,
                concurrency,
                plugin_loads,
                plugin_reloads,
                on_probation,
                probation_postponed,
                busy_postponed,
            }),
        }
    }

    /// From now on, only task types `known` accepts (those some plugin
    /// declares or a native handler registers) get a `type` label value of
    /// their own; the others are counted under [`OTHER_TYPE`], so producers
    /// cannot create series without bound.
    pub fn label_task_types(&self, known: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self
            .inner
            .task_types
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(known));
    }

    /// The `type` label value recorded for `task_type`.
    fn type_label(&self, task_type: &str) -> String {
        // Cloned out of the lock, so the filter never runs under it.
        let known = self
            .inner
            .task_types
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match known {
            Some(known) if !known(task_type) => OTHER_TYPE.to_string(),
            _ => bounded(task_type),
        }
    }

    fn queue_type(&self, queue: &str, task_type: &str) -> QueueType {
        QueueType {
            queue: bounded(queue),
            r#type: self.type_label(task_type),
        }
    }

    /// Counts an attempt that completed.
    pub fn processed(&self, queue: &str, task_type: &str) {
        self.inner
            .processed
            .get_or_create(&self.queue_type(queue, task_type))
            .inc();
    }

    /// Counts an attempt that failed, by its failure class.
    pub fn failed(&self, queue: &str, task_type: &str, class: &str) {
        let labels = QueueTypeClass {
            queue: bounded(queue),
            r#type: self.type_label(task_type),
            class: bounded(class),
        };
        self.inner.failed.get_or_create(&labels).inc();
    }

    /// Records how long an attempt took.
    pub fn duration(&self, task_type: &str, took: Duration) {
        let labels = TypeLabel {
            r#type: self.type_label(task_type),
        };
        self.inner
            .duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records how long a plugin's instance took to create.
    pub fn instantiation(&self, plugin: &str, took: Duration) {
        let labels = PluginLabel {
            plugin: bounded(plugin),
        };
        self.inner
            .instantiation
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records the fuel an attempt burned.
    pub fn fuel(&self, plugin: &str, task_type: &str, fuel: u64) {
        let labels = PluginType {
            plugin: bounded(plugin),
            r#type: self.type_label(task_type),
        };
        self.inner.fuel.get_or_create(&labels).observe(fuel as f64);
    }

    /// Counts a task put back in its queue without an attempt.
    pub fn postponed(&self, why: Postponed, queue: &str, task_type: &str) {
        let family = match why {
            Postponed::Probation => &self.inner.probation_postponed,
            Postponed::WorkerBusy => &self.inner.busy_postponed,
        };
        family
            .get_or_create(&self.queue_type(queue, task_type))
            .inc();
    }

    /// Counts a plugin version loaded.
    pub fn plugin_loaded(&self, plugin: &str, version: &str) {
        let labels = PluginVersion {
            plugin: bounded(plugin),
            version: bounded(version),
        };
        self.inner.plugin_loads.get_or_create(&labels).inc();
    }

    /// Counts a plugin replaced by a new version while running.
    pub fn plugin_reloaded(&self, plugin: &str) {
        let labels = PluginLabel {
            plugin: bounded(plugin),
        };
        self.inner.plugin_reloads.get_or_create(&labels).inc();
    }

    /// Says whether a plugin is on probation.
    pub fn on_probation(&self, plugin: &str, on_probation: bool) {
        let labels = PluginLabel {
            plugin: bounded(plugin),
        };
        self.inner
            .on_probation
            .get_or_create(&labels)
            .set(i64::from(on_probation));
    }

    /// Sets a queue's task counts and latency (seconds its oldest pending
    /// task has waited).
    pub fn queue(&self, queue: &str, counts: &QueueCounts, latency: Duration) {
        for (state, count) in [
            ("pending", counts.pending),
            ("active", counts.active),
            ("scheduled", counts.scheduled),
            ("retry", counts.retry),
            ("archived", counts.archived),
            ("completed", counts.completed),
        ] {
            let labels = QueueState {
                queue: bounded(queue),
                state: state.to_string(),
            };
            self.inner
                .queue_tasks
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let labels = QueueLabel {
            queue: bounded(queue),
        };
        self.inner
            .queue_latency
            .get_or_create(&labels)
            .set(latency.as_secs_f64());
    }

    /// Sets the worker's running tasks and concurrency.
    pub fn worker(&self, running: usize, concurrency: usize) {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner.running.set(as_i64(running));
        self.inner.concurrency.set(as_i64(concurrency));
    }

    /// Completed attempts counted for `queue` and `task_type` so far.
    pub fn processed_count(&self, queue: &str, task_type: &str) -> u64 {
        self.inner
            .processed
            .get_or_create(&self.queue_type(queue, task_type))
            .get()
    }

    /// Everything, in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
            .expect("metrics encode into a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_as_openmetrics_text() {
        let metrics = Metrics::new();
        metrics.processed("default", "echo");
        metrics.processed("default", "echo");
        metrics.queue(
            "default",
            &QueueCounts {
                pending: 7,
                ..QueueCounts::default()
            },
            Duration::from_millis(1500),
        );
        metrics.duration("echo", Duration::from_millis(3));
        let text = metrics.render();
        assert!(
            text.contains("wasmq_tasks_processed_total{queue=\"default\",type=\"echo\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE wasmq_queue_tasks gauge\n"), "{text}");
        assert!(
            text.contains("wasmq_queue_tasks{queue=\"default\",state=\"pending\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmq_queue_latency_seconds{queue=\"default\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmq_task_duration_seconds_bucket{le=\"0.0025\",type=\"echo\"} 0\n")
                || text.contains(
                    "wasmq_task_duration_seconds_bucket{type=\"echo\",le=\"0.0025\"} 0\n"
                ),
            "{text}"
        );
        assert!(
            text.contains("wasmq_task_duration_seconds_count{type=\"echo\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(metrics.processed_count("default", "echo"), 2);
    }

    #[test]
    fn undeclared_task_types_share_one_series_and_long_values_are_cut() {
        let metrics = Metrics::new();
        metrics.label_task_types(|task_type| task_type == "echo");
        for n in 0..500 {
            let task_type = format!("random-{n}");
            metrics.failed("default", &task_type, "no-handler");
            metrics.duration(&task_type, Duration::from_millis(100));
        }
        metrics.processed("default", "echo");
        let long = "é".repeat(100_000);
        metrics.plugin_reloaded(&long);
        let text = metrics.render();
        assert!(
            text.contains(
                "wasmq_tasks_failed_total{queue=\"default\",type=\"_other\",class=\"no-handler\"} 500\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("wasmq_tasks_failed_total{").count(),
            1,
            "one series for every undeclared type: {text}"
        );
        assert_eq!(
            text.matches("wasmq_task_duration_seconds_count{").count(),
            1,
            "{text}"
        );
        assert!(text.contains("type=\"echo\"} 1\n"), "{text}");
        assert!(
            text.lines().all(|line| line.len() < 400),
            "a long label was kept"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::new();
        metrics.plugin_reloaded("a\"b");
        metrics.processed("back\\slash", "echo");
        metrics.processed("new\nline", "echo");
        let text = metrics.render();
        assert!(text.contains("plugin=\"a\\\"b\""), "{text}");
        assert!(text.contains("queue=\"back\\\\slash\""), "{text}");
        assert!(text.contains("queue=\"new\\nline\""), "{text}");
        assert!(
            text.lines()
                .all(|line| line.starts_with('#') || line.starts_with("wasmq_")),
            "every sample on a line of its own: {text}"
        );
    }
}
