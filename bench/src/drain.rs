//! `drain`: how fast a worker drains no-op tasks, each in a fresh Wasm
//! instance (or in a native handler, to price the sandbox), how fast tasks
//! are enqueued in batches, and the worker's peak memory.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wasmq::dev::RedisServer;
use wasmq::plugins::LoadOptions;
use wasmq::sandbox::{ComponentCache, Sandbox, SandboxConfig};
use wasmq::{
    Client, DEFAULT_QUEUE, FailureKind, NativeTask, NewTask, QueueSelection, Summary, TaskFailure,
    TraceContext, Tracing, Worker, WorkerBuilder,
};
use wasmq_testkit::PluginDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Tasks per run.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Worker concurrencies to measure, comma-separated.
    #[arg(long, default_value = "50", value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Tasks per enqueue call.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// What handles the no-op: the `echo` Wasm plugin (a fresh instance per
    /// task, every limit on), the same echo written in Python (`py:echo` of
    /// plugins/python/example) or JavaScript (`js:echo` of
    /// plugins/js/example), or a native Rust handler registered through the
    /// library.
    #[arg(long, value_enum, default_value_t = Handler::Wasm)]
    pub handler: Handler,
    /// Use this (empty) Redis instead of starting a private redis-server.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Every task fails instead (the `flaky` plugin's first attempt, or a
    /// native handler's error) with no retry left, and is archived: what
    /// recording failures costs.
    #[arg(long)]
    pub failing: bool,
    /// Compile the Python example plugin (no cache) on a thread of its own
    /// while the worker drains, as a worker does when a new version is
    /// deployed: what a compile costs the tasks running meanwhile.
    #[arg(long)]
    pub compile_beside: bool,
    /// Export the worker's traces over OTLP to this endpoint (`wasmq
    /// worker --otlp-endpoint`): what tracing costs per task.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Each task's payload is a JSON object of this many bytes
    /// (`{"pad":"xx…"}`), which the handler returns as its result; 0 for
    /// `{}`. Not with `--failing`.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub payload_bytes: usize,
    /// Keep each task and its result for ten minutes after it completes
    /// (a producer's default) instead of forgetting it at once: what
    /// storing every result costs.
    #[arg(long)]
    pub keep_results: bool,
    /// With `--handler fetch`: the URL each task GETs.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080/")]
    pub fetch_url: String,
    /// Every task carries this W3C trace context, as from a traced
    /// producer.
    #[arg(long, value_name = "TRACEPARENT")]
    pub traceparent: Option<String>,
    /// Spread the tasks evenly over this many queues (`default` alone for
    /// 1, `q1` to `qN` otherwise, each a contiguous run of the tasks),
    /// which the worker serves with equal weights.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub queues: usize,
}

/// What handles the benchmark's no-op tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Handler {
    /// The `echo` plugin, in a fresh Wasm instance per task.
    Wasm,
    /// The Python example plugin's `py:echo`, in a fresh instance per task.
    Python,
    /// The JavaScript example plugin's `js:echo`, in a fresh instance per
    /// task.
    Js,
    /// The same no-op as a native Rust handler.
    Native,
    /// The `relay` plugin's `relay:fetch`: one outgoing `wasi:http` GET of
    /// `--fetch-url` per task, in a fresh instance (a webhook-style task
    /// that waits on someone else's API).
    Fetch,
}

/// The Redis to run against: the one given, or a private redis-server
/// (returned so that it lives as long as the run).
pub fn redis_or_private(given: Option<&str>) -> anyhow::Result<(Option<RedisServer>, String)> {
    match given {
        Some(url) => Ok((None, url.to_string())),
        None => {
            let private = RedisServer::start().context("starting redis-server")?;
            let url = private.url();
            Ok((Some(private), url))
        }
    }
}

/// How long `--keep-results` keeps each completed task (here and in
/// `latency`).
pub const KEEP_RESULTS: Duration = Duration::from_secs(600);

pub async fn run(args: &Args, concurrency: usize) -> anyhow::Result<()> {
    let (_private, url) = redis_or_private(args.redis.as_deref())?;
    let client = Client::connect(&url).await?;

    anyhow::ensure!(
        args.payload_bytes == 0 || !args.failing,
        "--payload-bytes is measured with tasks that complete, not with --failing"
    );
    let padded = padded_payload(args.payload_bytes);
    let fetch = serde_json::json!({ "url": args.fetch_url }).to_string();
    let (task_type, payload) = match args.handler {
        Handler::Fetch if args.failing || args.payload_bytes > 0 => {
            anyhow::bail!("--handler fetch takes neither --failing nor --payload-bytes")
        }
        Handler::Fetch => ("relay:fetch", fetch.as_str()),
        _ if args.failing && matches!(args.handler, Handler::Python | Handler::Js) => {
            anyhow::bail!("--failing is measured with the Rust plugin or a native handler")
        }
        _ if args.failing => ("flaky", r#"{"fail_times":1}"#),
        Handler::Python => ("py:echo", padded.as_str()),
        Handler::Js => ("js:echo", padded.as_str()),
        _ => ("echo", padded.as_str()),
    };
    let trace = match &args.traceparent {
        Some(traceparent) => {
            Some(TraceContext::new(traceparent, None).map_err(|err| anyhow::anyhow!(err))?)
        }
        None => None,
    };
    let queues = queue_names(args.queues)?;
    let enqueue_time = enqueue_all(&client, args.tasks, args.batch, |index| {
        let task = NewTask::new(task_type, payload)?
            .queue(&queues[index * queues.len() / args.tasks])
            .retention(if args.keep_results {
                KEEP_RESULTS
            } else {
                Duration::ZERO
            })
            .max_retry(0);
        Ok(match &trace {
            Some(trace) => task.trace(trace.clone()),
            None => task,
        })
    })
    .await?;

    let mut worker = Worker::builder(client.broker().clone()).concurrency(concurrency);
    if let Some(endpoint) = &args.otlp_endpoint {
        worker = worker.tracing(Tracing::otlp(endpoint));
    }
    let (worker, _plugins) = match args.handler {
        Handler::Wasm => {
            let component = if args.failing {
                wasmq_testkit::FLAKY_COMPONENT
            } else {
                wasmq_testkit::ECHO_COMPONENT
            };
            with_plugins(worker, &[component], LoadOptions::default())
        }
        Handler::Fetch => with_plugins(
            worker,
            &[wasmq_testkit::RELAY_COMPONENT],
            LoadOptions::default(),
        ),
        Handler::Python | Handler::Js => {
            use wasmq_testkit::polyglot::{self, JS_EXAMPLE, PYTHON_EXAMPLE};
            let plugin = if args.handler == Handler::Python {
                PYTHON_EXAMPLE
            } else {
                JS_EXAMPLE
            };
            let component = polyglot::component(plugin, &polyglot::built_wasmq());
            let component = component
                .to_str()
                .context("the built component's path is not UTF-8")?;
            with_plugins(worker, &[component], LoadOptions::default())
        }
        Handler::Native if args.failing => {
            let worker = worker.native(task_type, |_task: NativeTask| async {
                Err(TaskFailure::new(
                    FailureKind::HandlerError,
                    "failing on purpose",
                ))
            });
            (worker, PluginDir::with(&[]))
        }
        Handler::Native => {
            let worker = worker.native(task_type, |task: NativeTask| async move {
                Ok(task.payload().to_vec())
            });
            (worker, PluginDir::with(&[]))
        }
    };
    // The worker's engine is its own: the compile beside gets an engine of
    // its own with the same settings, in the same process, on the same
    // cores.
    let compile = args.compile_beside.then(|| {
        let wasm = std::fs::read(wasmq_testkit::polyglot::component(
            wasmq_testkit::polyglot::PYTHON_EXAMPLE,
            &wasmq_testkit::polyglot::built_wasmq(),
        ));
        std::thread::spawn(move || -> anyhow::Result<Duration> {
            let sandbox = Sandbox::new(SandboxConfig {
                max_instances: 1,
                ..SandboxConfig::default()
            })?;
            let started = Instant::now();
            sandbox.compile(&wasm?, None)?;
            Ok(started.elapsed())
        })
    });
    let redis_cpu_before = redis_cpu_seconds(&url);
    let redis_commands_before = redis_commands(&url);
    let worker_cpu_before = own_cpu_seconds();
    let (drain_time, summary) = drain_queues(&client, worker, &queues).await?;
    let compile_s = match compile {
        Some(thread) => Some(
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the compile thread panicked"))??
                .as_secs_f64(),
        ),
        None => None,
    };
    let per_task_us = |seconds: f64| (seconds * 1e6 / args.tasks as f64 * 10.0).round() / 10.0;
    let redis_cpu = per_task_us(redis_cpu_seconds(&url) - redis_cpu_before);
    let redis_commands_per_task =
        (redis_commands(&url).saturating_sub(redis_commands_before) as f64 / args.tasks as f64
            * 10.0)
            .round()
            / 10.0;
    let worker_cpu = per_task_us(own_cpu_seconds() - worker_cpu_before);
    let ended = if args.failing {
        summary.failed
    } else {
        summary.completed
    };
    anyhow::ensure!(
        ended as usize == args.tasks,
        "{} of {} tasks {}: {summary:?}",
        ended,
        args.tasks,
        if args.failing { "failed" } else { "completed" }
    );

    println!(
        "{}",
        serde_json::json!({
            "tasks": args.tasks,
            "concurrency": concurrency,
            "queues": args.queues,
            "handler": format!("{:?}", args.handler).to_lowercase(),
            "failing": args.failing,
            "peak_rss_mb": peak_rss_mb(),
            "enqueue_per_s": (args.tasks as f64 / enqueue_time.as_secs_f64()).round(),
            "processed_per_s": (args.tasks as f64 / drain_time.as_secs_f64()).round(),
            "redis_cpu_us_per_task": redis_cpu,
            "redis_commands_per_task": redis_commands_per_task,
            "worker_cpu_us_per_task": worker_cpu,
            "compile_beside_s": compile_s,
            "traced": args.otlp_endpoint.is_some(),
            "payload_bytes": args.payload_bytes,
            "keep_results": args.keep_results,
        })
    );
    Ok(())
}

/// A task payload: `{}`, or a JSON object exactly `bytes` long
/// (`{"pad":"xx…"}`, at least 10 bytes).
pub fn padded_payload(bytes: usize) -> String {
    if bytes == 0 {
        return "{}".into();
    }
    format!(r#"{{"pad":"{}"}}"#, "x".repeat(bytes.saturating_sub(10)))
}

/// `worker` serving the plugin `components` (from a directory returned
/// with it, which must live as long as the worker), loaded with `options`
/// through the shared compiled-component cache.
pub fn with_plugins(
    worker: WorkerBuilder,
    components: &[&str],
    options: LoadOptions,
) -> (WorkerBuilder, PluginDir) {
    let dir = PluginDir::with(components);
    let options = LoadOptions {
        cache: Some(ComponentCache::new(wasmq_testkit::component_cache_dir())),
        ..options
    };
    let worker = worker.plugins_dir(dir.path()).plugin_options(options);
    (worker, dir)
}

/// Runs `worker` in this process on queue `default` until the queue has no
/// unfinished task; returns how long that took and what the worker did.
pub async fn drain(client: &Client, worker: WorkerBuilder) -> anyhow::Result<(Duration, Summary)> {
    drain_watching(client, worker.build()?, true, |_| true).await
}

/// [`drain`], the worker serving `queues` (equal weights) until none of
/// them has an unfinished task.
pub async fn drain_queues(
    client: &Client,
    worker: WorkerBuilder,
    queues: &[String],
) -> anyhow::Result<(Duration, Summary)> {
    let selection = QueueSelection::parse(&queues.join(","), false)
        .with_context(|| format!("serving {} queues", queues.len()))?;
    run_watching(
        client,
        worker.queues(selection).build()?,
        queues,
        true,
        |_| true,
    )
    .await
}

/// [`drain`], calling `ready` with the time taken so far before each look
/// at the queue: the drain ends once `ready` has said true and (when
/// `until_empty`) the queue has no unfinished task. The time counts from
/// when the (built) worker starts.
pub async fn drain_watching(
    client: &Client,
    worker: Worker,
    until_empty: bool,
    ready: impl FnMut(Duration) -> bool,
) -> anyhow::Result<(Duration, Summary)> {
    let queues = [DEFAULT_QUEUE.to_string()];
    run_watching(client, worker, &queues, until_empty, ready).await
}

/// [`drain_watching`] over `queues`: when `until_empty`, the drain ends
/// once none of them has an unfinished task.
async fn run_watching(
    client: &Client,
    worker: Worker,
    queues: &[String],
    until_empty: bool,
    mut ready: impl FnMut(Duration) -> bool,
) -> anyhow::Result<(Duration, Summary)> {
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    let mut finished = 0;
    loop {
        if ready(started.elapsed())
            && (!until_empty || all_finished(client, queues, &mut finished).await?)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    Ok((took, running.await??))
}

/// Whether none of `queues` has an unfinished task. The first `*finished`
/// were found so before (and stay so: a drain adds no task), so each look
/// asks about one queue while that queue still has work, however many
/// queues there are.
async fn all_finished(
    client: &Client,
    queues: &[String],
    finished: &mut usize,
) -> anyhow::Result<bool> {
    while let Some(queue) = queues.get(*finished) {
        if client.queue_counts(queue).await?.unfinished() > 0 {
            return Ok(false);
        }
        *finished += 1;
    }
    Ok(true)
}

/// The names of `count` queues: `default` alone for one, `q1` to
/// `q<count>` otherwise.
pub fn queue_names(count: usize) -> anyhow::Result<Vec<String>> {
    match count {
        0 => anyhow::bail!("--queues must be at least 1"),
        1 => Ok(vec![DEFAULT_QUEUE.to_string()]),
        _ => Ok((1..=count).map(|index| format!("q{index}")).collect()),
    }
}

/// Enqueues `count` tasks, `batch` per call, the one at `index` made by
/// `task(index)`; returns how long that took.
pub async fn enqueue_all(
    client: &Client,
    count: usize,
    batch: usize,
    mut task: impl FnMut(usize) -> anyhow::Result<NewTask>,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(batch > 0, "the enqueue batch must hold at least one task");
    let started = Instant::now();
    let mut next = 0;
    while next < count {
        let end = count.min(next + batch);
        let tasks: Vec<NewTask> = (next..end).map(&mut task).collect::<Result<_, _>>()?;
        for outcome in client.enqueue_batch(tasks).await {
            outcome.with_context(|| format!("enqueuing tasks {next} to {end} of {count}"))?;
        }
        next = end;
    }
    Ok(started.elapsed())
}

/// The `name:value` fields of one `INFO` section, through `redis-cli`;
/// none when it cannot be read.
pub fn redis_info(url: &str, section: &str) -> Vec<(String, String)> {
    let output = std::process::Command::new("redis-cli")
        .args(["-u", url, "INFO", section])
        .output();
    let Ok(output) = output else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (name, value) = line.trim().split_once(':')?;
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// CPU time (user + system) Redis has used so far, from `INFO cpu`
/// through `redis-cli`; 0 when it cannot be read.
pub fn redis_cpu_seconds(url: &str) -> f64 {
    redis_info(url, "cpu")
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "used_cpu_user" | "used_cpu_sys"))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// How many commands Redis has run so far (`INFO commandstats`, the
/// commands scripts call included), or 0 if redis-cli could not say.
pub fn redis_commands(url: &str) -> u64 {
    crate::idle::commandstats(url).map_or(0, |calls| calls.values().sum())
}

/// CPU time (user + system) this process has used so far, from
/// `/proc/self/stat`.
pub fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces), whose
    // 12th and 13th are utime and stime in clock ticks (100 per second).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// This process's peak resident set size so far (`VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    (kib * 1.024).round() / 1000.0
}

/// Drops every key of `queue` (`wasmq:{<queue>}:*`), tasks and all: what
/// `wasmq queue rm --force` does, for a benchmark that ends a phase with
/// tasks left.
pub async fn remove_queue(client: &Client, queue: &str) -> anyhow::Result<()> {
    let url = client.broker().url().to_string();
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("wasmq:{{{queue}}}:*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// How many workers' heartbeats are alive (`wasmq:{fleet}:servers`, a ZSET
/// from worker id to when its heartbeat expires, unix ms).
pub async fn live_workers(client: &Client) -> anyhow::Result<usize> {
    let mut conn = redis::Client::open(client.broker().url())?
        .get_multiplexed_async_connection()
        .await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let live: usize = redis::cmd("ZCOUNT")
        .arg("wasmq:{fleet}:servers")
        .arg(now_ms)
        .arg("+inf")
        .query_async(&mut conn)
        .await?;
    Ok(live)
}
