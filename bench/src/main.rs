//! wasmq's benchmarks and fault-injection run, against real redis-server
//! processes.
//!
//! ```text
//! cargo run --release -p wasmq-bench -- drain --tasks 20000 --concurrency 1,10,50,200
//! bench/faults.sh                     # the fault-injection run behind RELIABILITY.md
//! ```
//!
//! `drain`: starts a private redis-server, enqueues no-op `echo` tasks in
//! batches (enqueue/s), then starts a worker in this process and measures
//! how fast it drains the queue (processed/s), each task in a fresh Wasm
//! instance. Prints one JSON line per concurrency.
//!
//! `faults`: runs `wasmq_testkit::faults` (worker processes killed, frozen,
//! Redis restarted) and prints its Markdown report.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use wasmq::dev::RedisServer;
use wasmq::plugins::{LoadOptions, Plugin, PluginSet, Plugins};
use wasmq::sandbox::{ComponentCache, Sandbox, SandboxConfig};
use wasmq::worker::{QueueSelection, WorkerConfig};
use wasmq::{Client, NewTask};

#[derive(Debug, Parser)]
enum Bench {
    /// Drain rate of no-op tasks, each in a fresh Wasm instance.
    Drain(Args),
    /// The fault-injection run.
    Faults(FaultArgs),
    /// Tick precision of the cron scheduler.
    Cron(CronArgs),
}

#[derive(Debug, clap::Args)]
struct CronArgs {
    /// Every-second entries.
    #[arg(long, default_value_t = 100)]
    entries: usize,
    /// Scheduler replicas (in this process).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

#[derive(Debug, clap::Args)]
struct FaultArgs {
    /// The wasmq binary that runs the workers.
    #[arg(long, default_value = "target/debug/wasmq")]
    wasmq: std::path::PathBuf,
    /// Tasks to run.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Milliseconds each task hashes.
    #[arg(long, default_value_t = 50)]
    burn_ms: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Concurrency per worker.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// SIGKILLs of a worker.
    #[arg(long, default_value_t = 3)]
    kills: usize,
    /// Redis restarts.
    #[arg(long, default_value_t = 1)]
    redis_restarts: usize,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Tasks per run.
    #[arg(long, default_value_t = 20_000)]
    tasks: usize,
    /// Worker concurrencies to measure, comma-separated.
    #[arg(long, default_value = "50", value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Tasks per enqueue call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Drain(args) => {
            for &concurrency in &args.concurrency {
                run(&args, concurrency).await?;
            }
        }
        Bench::Cron(args) => cron(&args).await?,
        Bench::Faults(args) => {
            let report = wasmq_testkit::faults::run(wasmq_testkit::faults::FaultPlan {
                wasmq: args.wasmq,
                tasks: args.tasks,
                burn_ms: args.burn_ms,
                workers: args.workers,
                concurrency: args.concurrency,
                lease: Duration::from_secs(2),
                worker_kills: args.kills,
                freeze_for: Duration::from_secs(6),
                redis_restarts: args.redis_restarts,
                timeout: Duration::from_secs(600),
            })
            .await;
            print!("{}", report.markdown());
            anyhow::ensure!(
                report.lost == 0 && report.stuck_active == 0,
                "tasks were lost or stuck"
            );
        }
    }
    Ok(())
}

async fn run(args: &Args, concurrency: usize) -> anyhow::Result<()> {
    let redis = RedisServer::start().context("starting redis-server")?;
    let client = Client::connect(&redis.url()).await?;

    let enqueue_started = Instant::now();
    let mut remaining = args.tasks;
    while remaining > 0 {
        let batch: Vec<NewTask> = (0..remaining.min(args.batch))
            .map(|_| NewTask::new("echo", "{}").map(|task| task.retention(Duration::ZERO)))
            .collect::<Result<_, _>>()?;
        remaining -= batch.len();
        for outcome in client.enqueue_batch(batch).await {
            outcome?;
        }
    }
    let enqueue_time = enqueue_started.elapsed();

    let sandbox = Sandbox::new(SandboxConfig {
        max_instances: u32::try_from(concurrency + 16)?,
        ..SandboxConfig::default()
    })?;
    let cache = ComponentCache::new(wasmq_testkit::component_cache_dir());
    let options = LoadOptions {
        cache: Some(cache),
        ..LoadOptions::default()
    };
    let echo = Plugin::load_file(&sandbox, Path::new(wasmq_testkit::ECHO_COMPONENT), &options)?;
    let plugins = Plugins::new(PluginSet::new(vec![echo])?);
    let mut config = WorkerConfig::new(QueueSelection::single("default"));
    config.concurrency = concurrency;

    let stop = CancellationToken::new();
    let drain_started = Instant::now();
    let worker = tokio::spawn(wasmq::worker::run(
        client.broker().clone(),
        Arc::new(sandbox),
        plugins,
        config,
        stop.clone().cancelled_owned(),
    ));
    loop {
        let counts = client.broker().queue_counts("default").await?;
        if counts.unfinished() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let drain_time = drain_started.elapsed();
    stop.cancel();
    let summary = worker.await?;
    anyhow::ensure!(
        summary.completed as usize == args.tasks,
        "completed {} of {}",
        summary.completed,
        args.tasks
    );

    println!(
        "{}",
        serde_json::json!({
            "tasks": args.tasks,
            "concurrency": concurrency,
            "enqueue_per_s": (args.tasks as f64 / enqueue_time.as_secs_f64()).round(),
            "processed_per_s": (args.tasks as f64 / drain_time.as_secs_f64()).round(),
        })
    );
    Ok(())
}

/// Runs every-second cron entries through scheduler replicas and reports
/// how long after its tick each tick's task was enqueued.
async fn cron(args: &CronArgs) -> anyhow::Result<()> {
    use wasmq::scheduler::{self, CronEntry, SchedulerConfig, TickRecord};

    let redis = RedisServer::start().context("starting redis-server")?;
    let client = Client::connect(&redis.url()).await?;
    for n in 0..args.entries {
        let entry: CronEntry = serde_json::from_value(serde_json::json!({
            "name": format!("e{n}"),
            "schedule": "* * * * * *",
            "type": "poll",
            "queue": "ticks",
        }))?;
        client
            .broker()
            .cron_put(&entry.name, &entry.to_json(), true)
            .await?;
    }
    let stop = CancellationToken::new();
    let replicas: Vec<_> = (0..args.replicas)
        .map(|n| {
            let config = SchedulerConfig {
                host: format!("replica-{n}"),
                ..SchedulerConfig::default()
            };
            tokio::spawn(scheduler::run(
                client.broker().clone(),
                config,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.cancel();
    for replica in replicas {
        replica.await?;
    }

    let mut delays: Vec<i64> = Vec::new();
    let mut ticks = 0usize;
    let mut duplicates = 0usize;
    for n in 0..args.entries {
        let records: Vec<TickRecord> = client
            .broker()
            .cron_history(&format!("e{n}"), 100_000)
            .await?
            .iter()
            .map(|json| serde_json::from_str(json))
            .collect::<Result<_, _>>()?;
        let distinct: std::collections::HashSet<i64> =
            records.iter().map(|record| record.tick_ms).collect();
        duplicates += records.len() - distinct.len();
        ticks += records.len();
        delays.extend(records.iter().map(|record| record.at_ms - record.tick_ms));
    }
    delays.sort();
    let percentile = |p: f64| {
        delays
            .get(((delays.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let tasks = client.broker().queue_counts("ticks").await?.pending;
    println!(
        "{}",
        serde_json::json!({
            "entries": args.entries,
            "replicas": args.replicas,
            "seconds": args.seconds,
            "ticks": ticks,
            "tasks": tasks,
            "duplicates": duplicates,
            "delay_ms_p50": percentile(0.5),
            "delay_ms_p99": percentile(0.99),
            "delay_ms_max": delays.last().copied().unwrap_or(0),
        })
    );
    Ok(())
}
