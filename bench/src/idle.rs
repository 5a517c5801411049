//! `idle`: what idle workers cost Redis. Starts a private redis-server and
//! `--workers` worker processes serving the same `--queues` empty queues,
//! waits until every worker sends heartbeats and a warm-up has passed, then
//! counts the commands Redis executed (`INFO commandstats`, which counts the
//! commands scripts run too) over `--seconds`. Prints one JSON line: the
//! commands per second in all and per worker, and the commands that made
//! them up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmq::Client;
use wasmq::dev::RedisServer;
use wasmq_testkit::WasmqProcess;

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    /// The wasmq binary that runs the workers.
    #[arg(long, default_value = "target/debug/wasmq")]
    pub wasmq: PathBuf,
    /// Worker processes.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Empty queues every worker serves.
    #[arg(long, default_value_t = 50)]
    pub queues: usize,
    /// How long to count commands, after the warm-up.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// How long to wait after every worker is up before counting.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
}

/// Runs the idle fleet and prints what it cost Redis.
pub async fn run(args: &IdleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.wasmq.exists(),
        "no wasmq binary at {} (build it with `cargo build -p wasmq`, or pass --wasmq)",
        args.wasmq.display()
    );
    let redis = RedisServer::start().context("starting redis-server")?;
    let url = redis.url();
    let client = Client::connect(&url).await?;
    let queues: Vec<String> = (0..args.queues).map(|n| format!("idle{n:02}")).collect();
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let mut command = WasmqProcess::command(&args.wasmq);
        command
            .arg("worker")
            .args(["--redis", &url])
            .args(["--queues", &queues.join(",")])
            .arg("--no-scheduler");
        workers.push(WasmqProcess::spawn(command));
    }
    let started = Instant::now();
    loop {
        let live = super::drain::live_workers(&client).await?;
        if live == args.workers {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "only {live} of {} workers sent heartbeats within 60 s",
            args.workers
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let before = commandstats(&url)?;
    let counting = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let after = commandstats(&url)?;
    let elapsed = counting.elapsed().as_secs_f64();
    for mut worker in workers {
        worker.terminate(Duration::from_secs(10)).await;
    }

    let mut per_command: BTreeMap<String, f64> = BTreeMap::new();
    for (command, calls) in &after {
        let delta = calls - before.get(command).copied().unwrap_or(0);
        if delta > 0 {
            per_command.insert(command.clone(), delta as f64 / elapsed);
        }
    }
    // This bench's own INFO calls are not the workers'.
    per_command.remove("info");
    let total: f64 = per_command.values().sum();
    let mut top: Vec<(&String, &f64)> = per_command.iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(a.1));
    let top: serde_json::Map<String, serde_json::Value> = top
        .into_iter()
        .take(12)
        .map(|(command, rate)| (command.clone(), serde_json::json!(round(*rate))))
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "bench": "idle",
            "workers": args.workers,
            "queues": args.queues,
            "seconds": round(elapsed),
            "commands_per_s": round(total),
            "per_worker_per_s": round(total / args.workers.max(1) as f64),
            "top_commands_per_s": top,
        })
    );
    Ok(())
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Calls per command so far, from `INFO commandstats`.
pub(crate) fn commandstats(url: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let output = std::process::Command::new("redis-cli")
        .args(["-u", url, "INFO", "commandstats"])
        .output()
        .context("running redis-cli (is it installed?)")?;
    anyhow::ensure!(
        output.status.success(),
        "redis-cli INFO commandstats failed"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut calls = BTreeMap::new();
    // cmdstat_evalsha:calls=12,usec=34,usec_per_call=2.83,...
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((command, fields)) = rest.split_once(':') else {
            continue;
        };
        let count = fields
            .split(',')
            .find_map(|field| field.strip_prefix("calls="))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        calls.insert(command.to_string(), count);
    }
    Ok(calls)
}
