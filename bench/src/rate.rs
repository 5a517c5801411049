//! `rate`: what a fleet-wide rate limit costs and how closely it holds.
//!
//! Cost: the drain rate of no-op native tasks, and Redis's CPU per task,
//! with no limit and with a limit far above the drain rate (so every start
//! pays `rate_limit.lua` and none waits). Precision: a limit of `--rate`
//! per second over `--workers` workers (in this process) and `--tasks`
//! tasks, judged from each handler's own start time: the busiest one-second
//! window (its overshoot over the limit) and the steady rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use wasmq::{Client, NativeTask, NewTask, Rate, RateLimit, RateTarget, Worker};

use crate::drain::{drain, redis_cpu_seconds, redis_or_private};

#[derive(Debug, clap::Args)]
pub struct RateArgs {
    /// Tasks for the cost runs.
    #[arg(long, default_value_t = 20_000)]
    pub cost_tasks: usize,
    /// The limit of the precision run, starts per second.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// Tasks for the precision run.
    #[arg(long, default_value_t = 2_000)]
    pub tasks: usize,
    /// Workers of the precision run.
    #[arg(long, default_value_t = 3)]
    pub workers: usize,
}

async fn enqueue(client: &Client, tasks: usize) -> anyhow::Result<()> {
    let mut remaining = tasks;
    while remaining > 0 {
        let batch: Vec<NewTask> = (0..remaining.min(1000))
            .map(|_| NewTask::new("noop", "{}").map(|task| task.retention(Duration::ZERO)))
            .collect::<Result<_, _>>()?;
        remaining -= batch.len();
        for outcome in client.enqueue_batch(batch).await {
            outcome?;
        }
    }
    Ok(())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// The drain rate and Redis CPU per task of no-op tasks, limited or not.
async fn cost(args: &RateArgs, limited: bool) -> anyhow::Result<()> {
    let (_private, url) = redis_or_private(None)?;
    let client = Client::connect(&url).await?;
    if limited {
        let limit = RateLimit::new(
            Rate::parse("100000/s").map_err(anyhow::Error::msg)?,
            None,
            None,
        )
        .map_err(anyhow::Error::msg)?;
        client
            .broker()
            .set_rate_limit(&RateTarget::TaskType("noop".into()), &limit)
            .await?;
    }
    enqueue(&client, args.cost_tasks).await?;
    let worker = Worker::builder(client.broker().clone())
        .concurrency(50)
        .native("noop", |task: NativeTask| async move {
            Ok(task.payload().to_vec())
        });
    let before = redis_cpu_seconds(&url);
    let (took, summary) = drain(&client, worker).await?;
    anyhow::ensure!(summary.completed as usize == args.cost_tasks, "{summary:?}");
    let redis_us = (redis_cpu_seconds(&url) - before) * 1e6 / args.cost_tasks as f64;
    println!(
        "{}",
        serde_json::json!({
            "run": if limited { "limited (100000/s, never binding)" } else { "unlimited" },
            "tasks": args.cost_tasks,
            "processed_per_s": (args.cost_tasks as f64 / took.as_secs_f64()).round(),
            "redis_cpu_us_per_task": (redis_us * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

/// The busiest window of starts and the steady rate under a limit.
async fn precision(args: &RateArgs) -> anyhow::Result<()> {
    let (_private, url) = redis_or_private(None)?;
    let client = Client::connect(&url).await?;
    let limit = RateLimit::new(
        Rate {
            count: args.rate,
            interval_ms: 1000,
        },
        None,
        None,
    )
    .map_err(anyhow::Error::msg)?;
    client
        .broker()
        .set_rate_limit(&RateTarget::TaskType("noop".into()), &limit)
        .await?;
    enqueue(&client, args.tasks).await?;
    let starts = Arc::new(Mutex::new(Vec::with_capacity(args.tasks)));
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for n in 0..args.workers {
        let starts = starts.clone();
        let worker = Worker::builder(client.broker().clone())
            .concurrency(16)
            .worker_id(format!("bench-{n}"))
            .native("noop", move |_task: NativeTask| {
                starts.lock().unwrap().push(unix_ms());
                async { Ok(Vec::new()) }
            })
            .build()?;
        workers.push(tokio::spawn(worker.run(stop.clone().cancelled_owned())));
    }
    while client.queue_counts("default").await?.unfinished() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    for worker in workers {
        worker.await??;
    }
    let mut starts = starts.lock().unwrap().clone();
    starts.sort_unstable();
    let mut busiest = 0;
    let mut end = 0;
    for (begin, at) in starts.iter().enumerate() {
        while end < starts.len() && starts[end] < at + 1000 {
            end += 1;
        }
        busiest = busiest.max(end - begin);
    }
    let burst = args.rate as usize;
    let span = (starts[starts.len() - 1] - starts[burst]) as f64 / 1000.0;
    let steady = (starts.len() - burst - 1) as f64 / span;
    println!(
        "{}",
        serde_json::json!({
            "limit_per_s": args.rate,
            "workers": args.workers,
            "tasks": args.tasks,
            "busiest_second": busiest,
            "overshoot": busiest as i64 - args.rate as i64,
            "steady_per_s": (steady * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

/// Runs the cost and precision measurements.
pub async fn run(args: &RateArgs) -> anyhow::Result<()> {
    cost(args, false).await?;
    cost(args, true).await?;
    precision(args).await
}
