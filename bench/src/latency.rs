//! `latency`: how long a task waits between its enqueue and the start of
//! its handler, while tasks arrive at a fixed rate.
//!
//! A worker runs in this process; a producer enqueues `rate` tasks a second
//! for `seconds` seconds, one batch per millisecond, each carrying its
//! enqueue time in µs. With the native no-op handler, the handler records
//! the wait when it starts: the queue's path (enqueue, notification,
//! dequeue, dispatch). With the Wasm plugin (`stamp`, a fresh instance per
//! task with every limit on), the plugin's first act is to read the wall
//! clock and write it to the host's log; a tracing layer in this process
//! picks those lines up by task id, so the wait includes the sandbox's
//! hand-off and the instantiation, and the tasks are forgotten on
//! completion as the native run's are (keeping results would add Redis
//! work to every completion: `--keep-results` shows how much).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, filter};
use wasmq::plugins::LoadOptions;
use wasmq::{Client, NativeTask, NewTask, Worker};

/// Arguments of `latency`.
#[derive(Debug, clap::Args)]
pub struct LatencyArgs {
    /// Tasks enqueued per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long tasks are enqueued.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Worker concurrency.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// What starts each task: a native no-op handler registered through the
    /// library, or the `stamp` Wasm plugin in a fresh instance per task.
    #[arg(long, value_enum, default_value_t = LatencyHandler::Native)]
    pub handler: LatencyHandler,
    /// Keep each task's result for ten minutes instead of forgetting it on
    /// completion (native handler only): what keeping results costs the
    /// wait.
    #[arg(long)]
    pub keep_results: bool,
    /// Threads the worker runs sandboxes on (default: one per core).
    #[arg(long)]
    pub sandbox_threads: Option<usize>,
    /// Use this (empty) Redis instead of starting a private redis-server.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

/// What handles the tasks of a latency run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyHandler {
    /// A native Rust no-op that records the wait itself.
    Native,
    /// The `stamp` plugin: a fresh Wasm instance per task, every limit on.
    Wasm,
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1e6
}

pub async fn run(args: &LatencyArgs) -> anyhow::Result<()> {
    let (_private, url) = super::drain::redis_or_private(args.redis.as_deref())?;
    let client = Client::connect(&url).await?;

    #[derive(serde::Deserialize)]
    struct Stamp {
        t: f64,
    }
    let waits = Arc::new(Mutex::new(Vec::<f64>::new()));
    let starts = Starts::default();
    let mut worker = Worker::builder(client.broker().clone()).concurrency(args.concurrency);
    if let Some(threads) = args.sandbox_threads {
        worker = worker.sandbox_threads(threads);
    }
    let (worker, task_type, retention, _plugins) = match args.handler {
        LatencyHandler::Native => {
            let record = {
                let waits = waits.clone();
                move |task: NativeTask| {
                    let waited = task.json::<Stamp>().map(|stamp| now_us() - stamp.t);
                    let waits = waits.clone();
                    async move {
                        waits.lock().expect("never poisoned").push(waited?);
                        Ok(Vec::new())
                    }
                }
            };
            let worker = worker.native("echo", record);
            let retention = if args.keep_results {
                super::drain::KEEP_RESULTS
            } else {
                Duration::ZERO
            };
            (worker, "echo", retention, None)
        }
        LatencyHandler::Wasm => {
            anyhow::ensure!(
                !args.keep_results,
                "--keep-results is for --handler native (the Wasm run's tasks are always forgotten on completion)"
            );
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(
                StampLayer(starts.clone()).with_filter(filter::filter_fn(|metadata| {
                    metadata.target() == "wasmq::plugin"
                })),
            ))?;
            let (worker, plugins) = super::drain::with_plugins(
                worker,
                &[wasmq_testkit::STAMP_COMPONENT],
                LoadOptions::default(),
            );
            (worker, "stamp", Duration::ZERO, Some(plugins))
        }
    };
    let stop = CancellationToken::new();
    let worker = tokio::spawn(worker.build()?.run(stop.clone().cancelled_owned()));
    // Ready once a first task has run: the worker has loaded its plugins,
    // subscribed and leased. That task's wait is not counted.
    let recorded = || match args.handler {
        LatencyHandler::Native => waits.lock().expect("never poisoned").len() as u64,
        LatencyHandler::Wasm => starts.lock().expect("never poisoned").len() as u64,
    };
    let warm_up = NewTask::new(task_type, format!(r#"{{"t":{:.1}}}"#, now_us()))?;
    client.enqueue(warm_up.retention(retention)).await?;
    wait_for_all("ran as the warm-up", 1, &recorded).await?;
    waits.lock().expect("never poisoned").clear();
    starts.lock().expect("never poisoned").clear();

    let total = args.rate * args.seconds;
    let mut enqueued = Vec::with_capacity(total as usize);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut added = 0u64;
    while added < total {
        ticks.tick().await;
        let due = total.min((started.elapsed().as_secs_f64() * args.rate as f64) as u64);
        if due > added {
            let times: Vec<f64> = (added..due).map(|_| now_us()).collect();
            let batch = times
                .iter()
                .map(|t| {
                    NewTask::new(task_type, format!(r#"{{"t":{t:.1}}}"#))
                        .map(|task| task.retention(retention))
                })
                .collect::<Result<Vec<_>, _>>()?;
            added = due;
            for (outcome, enqueued_at) in client.enqueue_batch(batch).await.into_iter().zip(times) {
                let outcome = outcome?;
                if args.handler == LatencyHandler::Wasm {
                    enqueued.push((outcome.id, enqueued_at));
                }
            }
        }
    }
    match args.handler {
        LatencyHandler::Native => {
            wait_for_all("recorded its wait", total, &recorded).await?;
        }
        LatencyHandler::Wasm => {
            wait_for_all("logged its start", total, &recorded).await?;
            let starts = std::mem::take(&mut *starts.lock().expect("never poisoned"));
            let collected = enqueued
                .into_iter()
                .map(|(id, enqueued_at)| match starts.get(&id) {
                    Some(started) => Ok(*started - enqueued_at),
                    None => anyhow::bail!("task {id} ran without logging its start"),
                })
                .collect::<anyhow::Result<Vec<f64>>>()?;
            *waits.lock().expect("never poisoned") = collected;
        }
    }
    stop.cancel();
    worker.await??;

    let mut waits = waits.lock().expect("never poisoned").clone();
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((q * waits.len() as f64) as usize).min(waits.len() - 1)] / 1000.0;
    let round = |ms: f64| (ms * 100.0).round() / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "handler": format!("{:?}", args.handler).to_lowercase(),
            "rate": args.rate,
            "tasks": total,
            "concurrency": args.concurrency,
            "p50_ms": round(at(0.5)),
            "p99_ms": round(at(0.99)),
            "max_ms": round(waits[waits.len() - 1] / 1000.0),
        })
    );
    Ok(())
}

/// When each task of the Wasm run started (unix µs), by task id.
type Starts = Arc<Mutex<HashMap<String, f64>>>;

/// Collects the `stamp` plugin's `started_us=<µs>` log lines, which the
/// host tags with the task's id.
struct StampLayer(Starts);

impl<S: tracing::Subscriber> Layer<S> for StampLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        #[derive(Default)]
        struct Fields {
            task_id: Option<String>,
            message: Option<String>,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "task_id" {
                    self.task_id = Some(value.to_string());
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match field.name() {
                    "message" => self.message = Some(format!("{value:?}")),
                    "task_id" => {
                        self.task_id = Some(format!("{value:?}").trim_matches('"').to_string())
                    }
                    _ => {}
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let started = fields
            .message
            .as_deref()
            .and_then(|message| message.strip_prefix("started_us="))
            .and_then(|micros| micros.parse::<f64>().ok());
        if let (Some(task_id), Some(started)) = (fields.task_id, started) {
            self.0
                .lock()
                .expect("never poisoned")
                .insert(task_id, started);
        }
    }
}

/// How long the count of started tasks may stand still before the run is
/// given up: a task that fails (a plugin over its log budget, say) never
/// reports its start.
const STALL: Duration = Duration::from_secs(30);

/// Waits until `count` reaches `total`; an error naming how far it got if
/// it stops moving for [`STALL`].
async fn wait_for_all(what: &str, total: u64, count: impl Fn() -> u64) -> anyhow::Result<()> {
    let (mut last, mut moved) = (count(), Instant::now());
    while last < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = count();
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > STALL {
            anyhow::bail!(
                "only {last} of {total} tasks {what}, and none more in the last {}s: some failed or never ran (the worker's log above says why)",
                STALL.as_secs()
            );
        }
    }
    Ok(())
}
