//! `cron`: tick precision of scheduler replicas racing for every tick.

use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wasmq::Client;
use wasmq::dev::RedisServer;

#[derive(Debug, clap::Args)]
pub struct CronArgs {
    /// Every-second entries.
    #[arg(long, default_value_t = 100)]
    pub entries: usize,
    /// Scheduler replicas (in this process).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// How long to run.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
}

/// Runs every-second cron entries through scheduler replicas and reports
/// how long after its tick each tick's task was enqueued.
pub async fn run(args: &CronArgs) -> anyhow::Result<()> {
    use wasmq::{Cron, CronEntry, SchedulerConfig};

    let redis = RedisServer::start().context("starting redis-server")?;
    let client = Client::connect(&redis.url()).await?;
    for n in 0..args.entries {
        let entry: CronEntry = serde_json::from_value(serde_json::json!({
            "name": format!("e{n}"),
            "schedule": "* * * * * *",
            "type": "poll",
            "queue": "ticks",
        }))?;
        Cron::new(client.broker().clone())
            .put(&entry, false)
            .await?;
    }
    let stop = CancellationToken::new();
    let replicas: Vec<_> = (0..args.replicas)
        .map(|n| {
            let config = SchedulerConfig {
                host: format!("replica-{n}"),
                ..SchedulerConfig::default()
            };
            let cron = Cron::new(client.broker().clone());
            let stop = stop.clone();
            tokio::spawn(async move { cron.run_replica(config, stop.cancelled_owned()).await })
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
        let records = Cron::new(client.broker().clone())
            .history(&format!("e{n}"), 100_000)
            .await?;
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
    let tasks = client.queue_counts("ticks").await?.pending;
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
