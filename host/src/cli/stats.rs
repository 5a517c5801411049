//! `wasmq stats`: every queue's numbers at a glance.

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
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs `wasmq stats`.
pub(crate) async fn run(args: StatsArgs) -> Result<(), Failure> {
    let broker = args.redis.broker("stats").await?;
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
