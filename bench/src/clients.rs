//! `clients`: the bulk-enqueue rate of each wasmq client (Rust, Python,
//! Node) beside its own language's usual queue: BullMQ's `addBulk` for
//! Node, Celery's `apply_async` for Python; same machine, same
//! redis-server, same run, the systems taking turns, Redis flushed in
//! between. Each side but the Rust client runs as a child process
//! (`bench/clients/*`, `bench/bullmq/bench.mjs`) and prints one JSON line.
//! Celery and BullMQ are installed on first use (pip into
//! `bench/clients/.celery`, npm into `bench/bullmq`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;
use wasmq::dev::RedisServer;
use wasmq::{Client, NewTask};

use crate::compare::median;

/// Arguments of `clients`.
#[derive(Debug, clap::Args)]
pub struct ClientsArgs {
    /// Tasks each wasmq client and BullMQ enqueue per run.
    #[arg(long, default_value_t = 50_000)]
    pub tasks: usize,
    /// Tasks per batch (enqueue_batch, addBulk).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Tasks Celery enqueues per run (one apply_async each: fewer, or the
    /// run takes minutes).
    #[arg(long, default_value_t = 5_000)]
    pub celery_tasks: usize,
    /// Times each measurement is repeated (the systems taking turns); the
    /// median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

const SIDES: [&str; 6] = [
    "wasmq Rust client",
    "wasmq Python client",
    "wasmq Python client (asyncio)",
    "Celery apply_async",
    "wasmq Node client",
    "BullMQ addBulk",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn install_celery(dir: &Path) -> anyhow::Result<()> {
    if dir.join("celery").exists() {
        return Ok(());
    }
    eprintln!("installing Celery into {} (pip)", dir.display());
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(dir)
        .arg("-r")
        .arg(root().join("bench/clients/requirements-celery.txt"))
        .status()
        .context("running pip (python3 is needed for the Python side)")?;
    anyhow::ensure!(status.success(), "pip install of Celery failed");
    Ok(())
}

fn install_bullmq(dir: &Path) -> anyhow::Result<()> {
    if dir.join("node_modules/bullmq").exists() {
        return Ok(());
    }
    let status = Command::new("npm")
        .args(["install", "--no-save", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .context("running npm")?;
    anyhow::ensure!(status.success(), "npm install failed in {}", dir.display());
    Ok(())
}

fn flush(redis: &RedisServer) -> anyhow::Result<()> {
    let status = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "flushall"])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "redis-cli flushall failed");
    Ok(())
}

/// Runs a child and returns the `enqueue_per_s` of the JSON line it printed last.
fn child_rate(command: &mut Command) -> anyhow::Result<f64> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("{command:?} printed no result"))?;
    let value: Value = serde_json::from_str(line)?;
    eprintln!("{value}");
    value["enqueue_per_s"]
        .as_f64()
        .with_context(|| format!("no rate in {value}"))
}

async fn rust_rate(url: &str, tasks: usize, batch: usize) -> anyhow::Result<f64> {
    let client = Client::connect(url).await?;
    let started = Instant::now();
    let mut done = 0;
    while done < tasks {
        let count = batch.min(tasks - done);
        let batch: Vec<NewTask> = (0..count)
            .map(|_| NewTask::new("echo", "{}").map(|task| task.queue("bench-rust")))
            .collect::<Result<_, _>>()?;
        for outcome in client.enqueue_batch(batch).await {
            outcome?;
        }
        done += count;
    }
    let rate = tasks as f64 / started.elapsed().as_secs_f64();
    eprintln!("{{\"peer\":\"wasmq-rust\",\"tasks\":{tasks},\"enqueue_per_s\":{rate:.0}}}");
    Ok(rate)
}

pub async fn run(args: &ClientsArgs) -> anyhow::Result<()> {
    let root = root();
    let celery = root.join("bench/clients/.celery");
    install_celery(&celery)?;
    install_bullmq(&root.join("bench/bullmq"))?;
    let redis = RedisServer::start().context("starting redis-server")?;
    let port = redis.port().to_string();
    let (tasks, batch, celery_tasks) = (
        args.tasks.to_string(),
        args.batch.to_string(),
        args.celery_tasks.to_string(),
    );
    let python = |extra: &[&str]| {
        let mut command = Command::new("python3");
        command
            .arg(root.join("bench/clients/python_bench.py"))
            .args([&port, &tasks, &batch])
            .args(extra)
            .env("PYTHONPATH", root.join("clients/python/src"));
        command
    };
    let mut runs: [Vec<f64>; 6] = Default::default();
    for _ in 0..args.repeats.max(1) {
        for (index, runs) in runs.iter_mut().enumerate() {
            flush(&redis)?;
            let rate = match index {
                0 => rust_rate(&redis.url(), args.tasks, args.batch).await?,
                1 => child_rate(&mut python(&[]))?,
                2 => child_rate(&mut python(&["async"]))?,
                3 => child_rate(
                    Command::new("python3")
                        .arg(root.join("bench/clients/celery_bench.py"))
                        .args([&port, &celery_tasks])
                        .env("PYTHONPATH", &celery),
                )?,
                4 => child_rate(
                    Command::new("node")
                        .arg(root.join("bench/clients/node_bench.mjs"))
                        .args([&port, &tasks, &batch]),
                )?,
                _ => child_rate(
                    Command::new("node")
                        .arg(root.join("bench/bullmq/bench.mjs"))
                        .args([&port, "addbulk", "--tasks", &tasks, "--batch", &batch]),
                )?,
            };
            runs.push(rate);
        }
    }
    let rates = runs.map(median);
    println!(
        "| producer | enqueue/s (median of {}) |",
        args.repeats.max(1)
    );
    println!("| :--- | ---: |");
    for (side, rate) in SIDES.iter().zip(rates) {
        println!("| {side} | {rate:.0} |");
    }
    println!();
    println!(
        "wasmq Python client ÷ Celery apply_async: {:.1}; asyncio ÷ Celery: {:.1}; wasmq Node client ÷ BullMQ addBulk: {:.2}; wasmq Rust client ÷ BullMQ addBulk: {:.2}.",
        rates[1] / rates[3],
        rates[2] / rates[3],
        rates[4] / rates[5],
        rates[0] / rates[5],
    );
    Ok(())
}
