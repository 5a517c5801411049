//! A small Prometheus registry: counters, gauges and histograms with
//! labels, rendered in the text exposition format, and the HTTP endpoint
//! that serves them (`--metrics-addr`).
//!
//! Label values come partly from producers (task types), so the number of
//! series is bounded: once a worker says which task types it handles
//! ([`Metrics::label_task_types`]), a `type` label with any other value is
//! recorded as [`OTHER_TYPE`], and every label value is cut to
//! [`MAX_LABEL_VALUE`] bytes.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// What a metric is, for its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The metrics wasmq exports: name, kind, help and (for histograms) bucket
/// upper bounds.
const DEFINITIONS: &[(&str, Kind, &str, &[f64])] = &[
    (
        "wasmq_tasks_processed_total",
        Kind::Counter,
        "Attempts that completed, by queue and task type.",
        &[],
    ),
    (
        "wasmq_tasks_failed_total",
        Kind::Counter,
        "Attempts that failed, by queue, task type and failure class.",
        &[],
    ),
    (
        "wasmq_task_duration_seconds",
        Kind::Histogram,
        "Wall-clock time of an attempt in its sandbox, instantiation included.",
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ],
    ),
    (
        "wasmq_wasm_instantiation_seconds",
        Kind::Histogram,
        "Time to create a fresh instance of a plugin for one attempt.",
        &[
            0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05,
        ],
    ),
    (
        "wasmq_task_fuel",
        Kind::Histogram,
        "Fuel (about one unit per Wasm instruction) burned by an attempt.",
        &[1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12],
    ),
    (
        "wasmq_queue_tasks",
        Kind::Gauge,
        "Tasks in a queue, by state.",
        &[],
    ),
    (
        "wasmq_queue_latency_seconds",
        Kind::Gauge,
        "How long the oldest pending task of a queue has waited since it was enqueued.",
        &[],
    ),
    (
        "wasmq_worker_running_tasks",
        Kind::Gauge,
        "Tasks this worker is running.",
        &[],
    ),
    (
        "wasmq_worker_concurrency",
        Kind::Gauge,
        "Tasks this worker may run at once.",
        &[],
    ),
    (
        "wasmq_plugin_loads_total",
        Kind::Counter,
        "Plugins loaded (at start or by a deploy), by plugin and version.",
        &[],
    ),
    (
        "wasmq_plugin_on_probation",
        Kind::Gauge,
        "1 while a plugin is on probation on this worker (its attempts kept ending at their limits; its tasks run in the background lane), else 0.",
        &[],
    ),
    (
        "wasmq_probation_postponed_total",
        Kind::Counter,
        "Tasks put back in their queue for a while because their plugin is on probation and the lane was full, by queue and task type.",
        &[],
    ),
    (
        "wasmq_worker_busy_postponed_total",
        Kind::Counter,
        "Tasks put back in their queue for a moment, no attempt counted, because the worker had no room for another instance of their plugin (its --max-instances-per-plugin share, or a full instance pool), by queue and task type.",
        &[],
    ),
    (
        "wasmq_plugin_reloads_total",
        Kind::Counter,
        "Plugins replaced by a new version while running, by plugin.",
        &[],
    ),
];

type Labels = Vec<(String, String)>;

/// The `type` label of task types no plugin declares and no native handler
/// registers.
pub const OTHER_TYPE: &str = "_other";

/// The longest label value kept, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_LABEL_VALUE: usize = 128;

/// Whether a task type gets a `type` label value of its own.
type TypeFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

/// One labelled series of a metric.
struct Series<T> {
    labels: Labels,
    value: T,
}

/// The series of each metric, keyed by their labels encoded into one string
/// (see `encode_labels`), so that updating an existing series, which is
/// what every task does, allocates nothing.
type SeriesMap<T> = HashMap<&'static str, HashMap<String, Series<T>>>;

#[derive(Default)]
struct Registry {
    values: SeriesMap<f64>,
    histograms: SeriesMap<Histogram>,
}

/// The metrics of one process. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Which task types are labelled as themselves (all until set).
    task_types: Arc<std::sync::RwLock<Option<TypeFilter>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The value recorded for label `name`: `value`, cut to
/// [`MAX_LABEL_VALUE`] bytes, or [`OTHER_TYPE`] for a task type `known`
/// does not accept.
fn bounded_value<'a>(name: &str, value: &'a str, known: Option<&TypeFilter>) -> &'a str {
    if name == "type"
        && let Some(known) = known
        && !known(value)
    {
        return OTHER_TYPE;
    }
    if value.len() <= MAX_LABEL_VALUE {
        return value;
    }
    let mut end = MAX_LABEL_VALUE;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Writes `pairs` (their bounded values) into `key` as one string
/// (separators that labels do not contain keep distinct label sets
/// distinct).
fn encode_labels(pairs: &[(&str, &str)], known: Option<&TypeFilter>, key: &mut String) {
    key.clear();
    for (name, value) in pairs {
        key.push_str(name);
        key.push('\u{1f}');
        key.push_str(bounded_value(name, value, known));
        key.push('\u{1e}');
    }
}

thread_local! {
    /// Reused for encoding label sets.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Runs `f` with `pairs` encoded (`encode_labels`) in this thread's reused
/// buffer.
fn with_encoded_labels<R>(
    pairs: &[(&str, &str)],
    known: Option<&TypeFilter>,
    f: impl FnOnce(&str) -> R,
) -> R {
    KEY.with_borrow_mut(|key| {
        encode_labels(pairs, known, key);
        f(key)
    })
}

/// Runs `update` on the series of `name` with labels `pairs`, created with
/// `initial` if new.
fn update_series<T>(
    map: &mut SeriesMap<T>,
    name: &'static str,
    pairs: &[(&str, &str)],
    known: Option<&TypeFilter>,
    initial: impl FnOnce() -> T,
    update: impl FnOnce(&mut T),
) {
    let series = map.entry(name).or_default();
    with_encoded_labels(pairs, known, |key| match series.get_mut(key) {
        Some(existing) => update(&mut existing.value),
        None => {
            let mut value = initial();
            update(&mut value);
            series.insert(
                key.to_string(),
                Series {
                    labels: labels(pairs, known),
                    value,
                },
            );
        }
    });
}

/// The series of `name`, ordered by their labels.
fn sorted_series<'a, T>(map: &'a SeriesMap<T>, name: &str) -> Vec<&'a Series<T>> {
    let mut series: Vec<&Series<T>> = map
        .get(name)
        .map(|series| series.values().collect())
        .unwrap_or_default();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    series
}

fn labels(pairs: &[(&str, &str)], known: Option<&TypeFilter>) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), bounded_value(k, v, known).to_string()))
        .collect()
}

fn definition(name: &str) -> &'static (&'static str, Kind, &'static str, &'static [f64]) {
    DEFINITIONS
        .iter()
        .find(|(defined, ..)| *defined == name)
        .unwrap_or_else(|| panic!("metric {name} is not in DEFINITIONS"))
}

impl Metrics {
    /// From now on, only task types `known` accepts (those some plugin
    /// declares or a native handler registers) get a `type` label value of
    /// their own; the others are counted under [`OTHER_TYPE`], so producers
    /// cannot create series without bound.
    pub fn label_task_types(&self, known: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self.task_types.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(known));
    }

    fn with<T>(&self, f: impl FnOnce(&mut Registry, Option<&TypeFilter>) -> T) -> T {
        // Cloned out of the lock, so the filter never runs under it.
        let known = self
            .task_types
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Each update is a single map operation: a panic elsewhere cannot
        // leave the registry half-written.
        f(
            &mut self.registry.lock().unwrap_or_else(|e| e.into_inner()),
            known.as_ref(),
        )
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)], by: f64) {
        let name = definition(name).0;
        self.with(|registry, known| {
            update_series(
                &mut registry.values,
                name,
                pairs,
                known,
                || 0.0,
                |v| *v += by,
            );
        });
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, pairs: &[(&str, &str)], value: f64) {
        let name = definition(name).0;
        self.with(|registry, known| {
            update_series(
                &mut registry.values,
                name,
                pairs,
                known,
                || 0.0,
                |v| *v = value,
            );
        });
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, pairs: &[(&str, &str)], value: f64) {
        let (name, _, _, bounds) = definition(name);
        self.with(|registry, known| {
            update_series(
                &mut registry.histograms,
                name,
                pairs,
                known,
                || Histogram {
                    buckets: vec![0; bounds.len()],
                    ..Histogram::default()
                },
                |histogram| {
                    for (bucket, bound) in histogram.buckets.iter_mut().zip(bounds.iter()) {
                        if value <= *bound {
                            *bucket += 1;
                        }
                    }
                    histogram.count += 1;
                    histogram.sum += value;
                },
            );
        });
    }

    /// The current value of a counter or gauge (0 when never set).
    pub fn value(&self, name: &'static str, pairs: &[(&str, &str)]) -> f64 {
        self.with(|registry, known| {
            with_encoded_labels(pairs, known, |key| {
                registry
                    .values
                    .get(name)
                    .and_then(|series| series.get(key))
                    .map_or(0.0, |series| series.value)
            })
        })
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, kind, help, bounds) in DEFINITIONS {
            let _ = writeln!(out, "# HELP {name} {help}");
            let kind_name = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# TYPE {name} {kind_name}");
            for series in sorted_series(&registry.values, name) {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    render_labels(&series.labels, None),
                    series.value
                );
            }
            for series in sorted_series(&registry.histograms, name) {
                let (pairs, histogram) = (&series.labels, &series.value);
                for (bound, count) in bounds.iter().zip(&histogram.buckets) {
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        render_labels(pairs, Some(&bound.to_string()))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    render_labels(pairs, Some("+Inf")),
                    histogram.count
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    render_labels(pairs, None),
                    histogram.sum
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    render_labels(pairs, None),
                    histogram.count
                );
            }
        }
        out
    }
}

fn render_labels(pairs: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .layer(axum::middleware::map_response(
            |mut response: axum::response::Response| async move {
                crate::ops::dashboard::add_security_headers(
                    response.headers_mut(),
                    crate::ops::dashboard::NO_CONTENT_CSP,
                );
                response
            },
        ));
    tracing::info!(address = %listener.local_addr()?, "serving Prometheus metrics at /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_render_as_prometheus_text() {
        let metrics = Metrics::default();
        metrics.inc(
            "wasmq_tasks_processed_total",
            &[("queue", "default"), ("type", "echo")],
            1.0,
        );
        metrics.inc(
            "wasmq_tasks_processed_total",
            &[("queue", "default"), ("type", "echo")],
            2.0,
        );
        metrics.set(
            "wasmq_queue_tasks",
            &[("queue", "default"), ("state", "pending")],
            7.0,
        );
        metrics.observe("wasmq_task_duration_seconds", &[("type", "echo")], 0.003);
        let text = metrics.render();
        assert!(
            text.contains("wasmq_tasks_processed_total{queue=\"default\",type=\"echo\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE wasmq_queue_tasks gauge\n"), "{text}");
        assert!(
            text.contains("wasmq_queue_tasks{queue=\"default\",state=\"pending\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmq_task_duration_seconds_bucket{type=\"echo\",le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmq_task_duration_seconds_bucket{type=\"echo\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("wasmq_task_duration_seconds_count{type=\"echo\"} 1\n"),
            "{text}"
        );
        assert_eq!(
            metrics.value(
                "wasmq_tasks_processed_total",
                &[("queue", "default"), ("type", "echo")]
            ),
            3.0
        );
    }

    #[test]
    fn undeclared_task_types_share_one_series_and_long_values_are_cut() {
        let metrics = Metrics::default();
        metrics.label_task_types(|task_type| task_type == "echo");
        for n in 0..500 {
            let task_type = format!("random-{n}");
            metrics.inc(
                "wasmq_tasks_failed_total",
                &[
                    ("queue", "default"),
                    ("type", &task_type),
                    ("class", "no-handler"),
                ],
                1.0,
            );
            metrics.observe("wasmq_task_duration_seconds", &[("type", &task_type)], 0.1);
        }
        metrics.inc(
            "wasmq_tasks_processed_total",
            &[("queue", "default"), ("type", "echo")],
            1.0,
        );
        let long = "é".repeat(100_000);
        metrics.inc("wasmq_plugin_reloads_total", &[("plugin", &long)], 1.0);
        let text = metrics.render();
        let series = text.lines().filter(|line| !line.starts_with('#')).count();
        // 1 failed + 1 processed + 1 reload + 19 histogram lines.
        assert_eq!(series, 22, "{text}");
        assert!(
            text.contains(
                "wasmq_tasks_failed_total{queue=\"default\",type=\"_other\",class=\"no-handler\"} 500\n"
            ),
            "{text}"
        );
        assert!(text.contains("type=\"echo\"} 1\n"), "{text}");
        assert!(
            text.lines().all(|line| line.len() < 400),
            "a long label was kept"
        );
        assert_eq!(
            metrics.value(
                "wasmq_tasks_failed_total",
                &[
                    ("queue", "default"),
                    ("type", "random-7"),
                    ("class", "no-handler")
                ]
            ),
            500.0
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let metrics = Metrics::default();
        metrics.inc("wasmq_plugin_reloads_total", &[("plugin", "a\"b")], 1.0);
        assert!(metrics.render().contains("plugin=\"a\\\"b\""));
    }
}
