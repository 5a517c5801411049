//! `flows`: flows of one parent and N children, wasmq against BullMQ's
//! FlowProducer on the same redis-server, in the same run: how many flows a
//! worker finishes per second, and the time from a flow's last child ending
//! to its parent starting (p50, p99). Both sides run no-op handlers (wasmq:
//! native handlers; BullMQ: async processors) at the same concurrency;
//! the children's handlers note when they end, the parent's when it starts.
//!
//! `flows --system wasmq` runs the wasmq side alone and prints one JSON
//! line (what `flows` runs in a child process of its own).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wasmq::{Client, Flow, NativeTask, NewTask, Worker};

use crate::compare::{Runner, install_bullmq, median};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Flows per run.
    #[arg(long, default_value_t = 100)]
    pub flows: usize,
    /// Children per flow.
    #[arg(long, default_value_t = 100)]
    pub children: usize,
    /// Worker concurrency (both systems).
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Times each side runs (taking turns); the medians are reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Run one side alone against this Redis and print its JSON line.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// With --redis: which side (only `wasmq` runs in this process).
    #[arg(long, default_value = "wasmq")]
    pub system: String,
    /// The BullMQ side (package.json and bench.mjs).
    #[arg(long, default_value = "bench/bullmq")]
    pub bullmq: std::path::PathBuf,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// When each flow's children last ended, and how long each parent waited
/// after that.
#[derive(Default)]
struct Timings {
    last_child_end_us: HashMap<String, u64>,
    waits_us: Vec<u64>,
}

/// The wasmq side: enqueue the flows, then drain them with a worker in this
/// process; one JSON line.
async fn wasmq_side(args: &Args, url: &str) -> anyhow::Result<serde_json::Value> {
    let client = Client::connect(url).await?;
    let enqueue_started = Instant::now();
    for _ in 0..args.flows {
        let mut flow = Flow::new(NewTask::new("parent", "{}")?.retention(Duration::ZERO));
        for _ in 0..args.children {
            flow = flow.child(Flow::new(
                NewTask::new("child", "{}")?.retention(Duration::ZERO),
            ));
        }
        client.enqueue_flow(flow).await?;
    }
    let enqueue_time = enqueue_started.elapsed();

    let timings = Arc::new(Mutex::new(Timings::default()));
    let done = CancellationToken::new();
    let flows = args.flows;
    let (child_timings, parent_timings, all_done) =
        (timings.clone(), timings.clone(), done.clone());
    let worker = Worker::builder(client.broker().clone())
        .concurrency(args.concurrency)
        .native("child", move |task: NativeTask| {
            let timings = child_timings.clone();
            async move {
                if let Some(parent) = &task.message.parent {
                    let end = now_us();
                    let mut timings = timings.lock().unwrap();
                    let last = timings
                        .last_child_end_us
                        .entry(parent.id.clone())
                        .or_default();
                    *last = (*last).max(end);
                }
                Ok(Vec::new())
            }
        })
        .native("parent", move |task: NativeTask| {
            let (timings, all_done) = (parent_timings.clone(), all_done.clone());
            async move {
                let start = now_us();
                let mut timings = timings.lock().unwrap();
                if let Some(last) = timings.last_child_end_us.get(&task.message.id).copied() {
                    timings.waits_us.push(start.saturating_sub(last));
                }
                if timings.waits_us.len() == flows {
                    all_done.cancel();
                }
                Ok(Vec::new())
            }
        })
        .build()?;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    tokio::time::timeout(Duration::from_secs(600), done.cancelled())
        .await
        .context("the flows did not finish within 10 minutes")?;
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    running.await??;
    let mut waits = std::mem::take(&mut timings.lock().unwrap().waits_us);
    waits.sort_unstable();
    let at =
        |q: f64| waits[((q * waits.len() as f64) as usize).min(waits.len() - 1)] as f64 / 1000.0;
    Ok(serde_json::json!({
        "peer": "wasmq",
        "flows": args.flows,
        "children": args.children,
        "concurrency": args.concurrency,
        "flows_per_s": (args.flows as f64 / seconds * 10.0).round() / 10.0,
        "tasks_per_s": ((args.flows * (args.children + 1)) as f64 / seconds).round(),
        "enqueue_flows_per_s": (args.flows as f64 / enqueue_time.as_secs_f64() * 10.0).round() / 10.0,
        "parent_wait_p50_ms": (at(0.5) * 100.0).round() / 100.0,
        "parent_wait_p99_ms": (at(0.99) * 100.0).round() / 100.0,
    }))
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    if let Some(url) = &args.redis {
        anyhow::ensure!(args.system == "wasmq", "--redis runs the wasmq side only");
        println!("{}", wasmq_side(args, url).await?);
        return Ok(());
    }
    install_bullmq(&args.bullmq)?;
    let runner = Runner::start(args.bullmq.clone())?;
    let shape = |command: &mut std::process::Command| {
        command
            .args(["--flows", &args.flows.to_string()])
            .args(["--children", &args.children.to_string()])
            .args(["--concurrency", &args.concurrency.to_string()]);
    };
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..args.repeats {
        let mut command = runner.ours("flows");
        shape(&mut command);
        ours.push(runner.measure(&mut command)?);
        let mut command = runner.peer("flows");
        shape(&mut command);
        theirs.push(runner.measure(&mut command)?);
    }
    let field = |runs: &[serde_json::Value], name: &str| {
        median(runs.iter().filter_map(|run| run[name].as_f64()).collect())
    };
    println!(
        "Flows of 1 + {} children, {} flows, concurrency {}, no-op handlers; median of {} runs each, same redis-server.\n",
        args.children, args.flows, args.concurrency, args.repeats
    );
    println!("| | flows/s | tasks/s | flows enqueued/s | last child → parent start, p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (label, runs) in [("wasmq", &ours), ("BullMQ FlowProducer", &theirs)] {
        println!(
            "| {label} | {:.1} | {:.0} | {:.1} | {:.2} ms | {:.2} ms |",
            field(runs, "flows_per_s"),
            field(runs, "tasks_per_s"),
            field(runs, "enqueue_flows_per_s"),
            field(runs, "parent_wait_p50_ms"),
            field(runs, "parent_wait_p99_ms"),
        );
    }
    println!(
        "\nwasmq ÷ BullMQ: flows/s {:.2}×, enqueue {:.2}×, parent wait p50 {:.2}×, p99 {:.2}× (below 1: wasmq waits less)",
        field(&ours, "flows_per_s") / field(&theirs, "flows_per_s"),
        field(&ours, "enqueue_flows_per_s") / field(&theirs, "enqueue_flows_per_s"),
        field(&ours, "parent_wait_p50_ms") / field(&theirs, "parent_wait_p50_ms"),
        field(&ours, "parent_wait_p99_ms") / field(&theirs, "parent_wait_p99_ms"),
    );
    Ok(())
}
