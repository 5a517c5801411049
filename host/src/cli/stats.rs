//! `wasmq stats`: every queue's numbers at a glance, or (`--history`) its
//! throughput minute by minute.

use clap::Args;

use super::RedisArgs;
use super::format;
use super::parse::Failure;
use super::table::Table;

/// Arguments of `wasmq stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Show each queue's throughput over the last DURATION instead (up to
    /// a day): attempts completed and failed per minute, as workers sample
    /// them once a minute (a queue no worker serves has none).
    ///
    /// Example: wasmq stats --history 30m
    #[arg(long, value_name = "DURATION", num_args = 0..=1, default_missing_value = "1h", value_parser = super::parse::duration)]
    pub(crate) history: Option<std::time::Duration>,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs `wasmq stats`.
pub(crate) async fn run(args: StatsArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("stats").await?;
    if let Some(span) = args.history {
        return history(&broker, span, args.json).await;
    }
    let mut stats = Vec::new();
    for queue in broker.queues().await? {
        stats.push(broker.queue_stats(&queue).await?);
    }
    if args.json {
        format::print_json(&stats)?;
        return Ok(());
    }
    if stats.is_empty() {
        println!("no queues yet: enqueue a task to create one");
        return Ok(());
    }
    let mut table = Table::new(&[
        "QUEUE",
        "STATE",
        "PENDING",
        "ACTIVE",
        "SCHEDULED",
        "RETRY",
        "ARCHIVED",
        "COMPLETED",
        "PROCESSED TODAY",
        "FAILED TODAY",
        "LATENCY",
        "MEMORY",
    ]);
    for queue in &stats {
        let mut row = vec![queue.queue.clone()];
        row.extend(format::queue_state_and_counts(queue.paused, &queue.counts));
        row.extend([
            queue.processed_today.to_string(),
            queue.failed_today.to_string(),
            queue
                .oldest_pending_ms
                .map_or_else(|| "-".into(), format::age),
            format::bytes(queue.memory_bytes),
        ]);
        table.row(row);
    }
    print!("{}", table.render());
    Ok(())
}

/// The most `--history` shows: what the samples cover.
const HISTORY_SPAN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One queue's history, as `--history --json` prints it.
#[derive(serde::Serialize)]
struct QueueHistory {
    queue: String,
    intervals: Vec<crate::broker::history::Interval>,
}

/// Runs `wasmq stats --history`.
async fn history(
    broker: &crate::broker::Broker,
    span: std::time::Duration,
    json: bool,
) -> Result<(), Failure> {
    if span > HISTORY_SPAN || span.is_zero() {
        return Err(anyhow::anyhow!(
            "--history {} is outside what is kept: a minute to a day (e.g. --history 30m, --history 24h)",
            humantime::format_duration(span)
        )
        .into());
    }
    let minutes = span.as_secs().div_ceil(60) as usize;
    let mut all = Vec::new();
    for queue in broker.queues().await? {
        let intervals = broker.throughput_history(&queue, minutes).await?;
        all.push(QueueHistory { queue, intervals });
    }
    if json {
        format::print_json(&all)?;
        return Ok(());
    }
    let mut table = Table::new(&["UNTIL", "QUEUE", "PROCESSED", "FAILED", "PER SECOND"]);
    for queue in &all {
        for interval in &queue.intervals {
            let seconds = interval.length_ms.max(1) as f64 / 1000.0;
            table.row(vec![
                format::time(interval.end_ms),
                queue.queue.clone(),
                interval.processed.to_string(),
                interval.failed.to_string(),
                format!("{:.1}", interval.processed as f64 / seconds),
            ]);
        }
    }
    if table.is_empty() {
        println!(
            "no history in the last {}: workers sample each queue they serve once a minute",
            humantime::format_duration(span)
        );
    } else {
        print!("{}", table.render());
    }
    Ok(())
}
