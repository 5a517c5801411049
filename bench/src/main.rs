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
use wasmq::plugins::{Plugin, PluginSet, Plugins};
use wasmq::sandbox::{ComponentCache, Limits, Sandbox, SandboxConfig};
use wasmq::worker::{QueueSelection, WorkerConfig};
use wasmq::{Client, NewTask};

#[derive(Debug, Parser)]
enum Bench {
    /// Drain rate of no-op tasks, each in a fresh Wasm instance.
    Drain(Args),
    /// The fault-injection run.
    Faults(FaultArgs),
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
    let echo = Plugin::load_file(
        &sandbox,
        Path::new(wasmq_testkit::ECHO_COMPONENT),
        Limits::default(),
        Some(&cache),
    )?;
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
