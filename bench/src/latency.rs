//! `latency`: how long a task waits between its enqueue and the start of
//! its handler, while tasks arrive at a fixed rate.
//!
//! A worker (native no-op handler) runs in this process; a producer enqueues
//! `rate` tasks a second for `seconds` seconds, one batch per millisecond,
//! each carrying its enqueue time in µs. The handler records the wait when
//! it starts. What is measured is the queue's path (enqueue, notification,
//! dequeue, dispatch); the sandbox's own cost per task is measured by
//! `sandbox`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
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
    /// Use this (empty) Redis instead of starting a private redis-server.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
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
    let worker = Worker::builder(client.broker().clone())
        .concurrency(args.concurrency)
        .native("echo", record)
        .build()?;
    let stop = CancellationToken::new();
    let worker = tokio::spawn(worker.run(stop.clone().cancelled_owned()));
    // Let the worker subscribe and go idle first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let total = args.rate * args.seconds;
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut added = 0u64;
    while added < total {
        ticks.tick().await;
        let due = total.min((started.elapsed().as_secs_f64() * args.rate as f64) as u64);
        if due > added {
            let batch = (added..due)
                .map(|_| {
                    NewTask::new("echo", format!(r#"{{"t":{:.1}}}"#, now_us()))
                        .map(|task| task.retention(Duration::ZERO))
                })
                .collect::<Result<Vec<_>, _>>()?;
            added = due;
            for outcome in client.enqueue_batch(batch).await {
                outcome?;
            }
        }
    }
    while (waits.lock().expect("never poisoned").len() as u64) < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
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
