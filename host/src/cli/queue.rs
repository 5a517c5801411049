//! `wasmq queue`: list, inspect, pause, resume and remove queues.

use crate::broker::{Broker, keys::validate_queue_name};
use anyhow::Context;
use clap::{Args, Subcommand};

use super::RedisArgs;
use super::format;
use super::parse::Failure;
use super::table::Table;

/// The `wasmq queue` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// List queues with their sizes.
    Ls(ListArgs),
    /// Everything about one queue: sizes by state, the last 7 days,
    /// latency, memory.
    Inspect(InspectArgs),
    /// Pause a queue: workers take no new tasks from it (running ones
    /// finish); enqueues still succeed.
    Pause(QueueArgs),
    /// Resume a paused queue: idle workers start on it at once.
    Resume(QueueArgs),
    /// Remove a queue and every task in it. Refused while it has pending,
    /// active, scheduled, retry or waiting (flow parent) tasks, unless
    /// --force; flow children and batch tasks removed with it count as
    /// ended (deleted) for their parents and batches.
    Rm(RemoveArgs),
}

/// Arguments naming one queue.
#[derive(Debug, Args)]
pub(crate) struct QueueArgs {
    /// The queue.
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq queue ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also show, on a Redis Cluster, each queue's hash slot and the master
    /// and replicas that hold it.
    #[arg(long)]
    pub(crate) cluster: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq queue inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The queue.
    pub(crate) name: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Arguments of `wasmq queue rm`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The queue.
    pub(crate) name: String,
    /// Remove it even if it still has unfinished tasks (they are lost).
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
}

/// Runs a `wasmq queue` subcommand.
pub(crate) async fn run(command: QueueCommand) -> Result<(), Failure> {
    match command {
        QueueCommand::Ls(args) => {
            let broker = args.redis.broker("queue").await?;
            let mut queues = Vec::new();
            for name in broker.queues().await? {
                let counts = broker.queue_counts(&name).await?;
                let paused = broker.queue_stats(&name).await?.paused;
                let placement = if args.cluster {
                    Some(broker.queue_placement(&name).await?)
                } else {
                    None
                };
                queues.push((name, counts, paused, placement));
            }
            if args.json {
                let json: Vec<_> = queues
                    .iter()
                    .map(|(name, counts, paused, placement)| serde_json::json!({"queue": name, "paused": paused, "counts": counts, "placement": placement}))
                    .collect();
                println!("{}", serde_json::Value::Array(json));
                return Ok(());
            }
            let mut columns = vec![
                "QUEUE",
                "STATE",
                "PENDING",
                "ACTIVE",
                "SCHEDULED",
                "RETRY",
                "ARCHIVED",
                "COMPLETED",
            ];
            if args.cluster {
                columns.extend(["SLOT", "MASTER", "REPLICAS"]);
            }
            let mut table = Table::new(&columns);
            for (name, counts, paused, placement) in queues {
                let mut row = vec![name];
                row.extend(format::queue_state_and_counts(paused, &counts));
                if let Some(placement) = placement {
                    row.push(placement.slot.to_string());
                    row.push(placement.master);
                    row.push(if placement.replicas.is_empty() {
                        "-".into()
                    } else {
                        placement.replicas.join(",")
                    });
                }
                table.row(row);
            }
            if table.is_empty() {
                println!("no queues yet: enqueue a task to create one");
            } else {
                print!("{}", table.render());
            }
        }
        QueueCommand::Inspect(args) => {
            validate_queue_name(&args.name)?;
            let broker = args.redis.broker("queue").await?;
            if !broker.queues().await?.contains(&args.name) {
                return Err(Failure::not_found(format!(
                    "no queue named {:?}; `wasmq queue ls` lists them",
                    args.name
                )));
            }
            let stats = broker.queue_stats(&args.name).await?;
            if args.json {
                format::print_json(&stats)?;
                return Ok(());
            }
            let counts = stats.counts;
            println!("queue {}", stats.queue);
            println!(
                "  state:      {}",
                if stats.paused { "paused" } else { "running" }
            );
            println!(
                "  tasks:      {} pending, {} active, {} scheduled, {} retry, {} archived, {} completed",
                counts.pending,
                counts.active,
                counts.scheduled,
                counts.retry,
                counts.archived,
                counts.completed
            );
            println!(
                "  today:      {} processed, {} failed",
                stats.processed_today, stats.failed_today
            );
            println!(
                "  latency:    {}",
                stats.oldest_pending_ms.map_or_else(
                    || "no pending tasks".into(),
                    |ms| format!("oldest pending task enqueued {} ago", format::age(ms))
                )
            );
            println!("  memory:     {}", format::bytes(stats.memory_bytes));
            println!("  last 7 days (processed / failed):");
            for day in &stats.daily {
                println!(
                    "    {}  {:>8} / {}",
                    &format::time(day.day * 86_400_000)[..10],
                    day.processed,
                    day.failed
                );
            }
        }
        QueueCommand::Pause(args) => {
            validate_queue_name(&args.name)?;
            let broker = args.redis.broker("queue").await?;
            require_queue(&broker, &args.name).await?;
            broker
                .pause(&args.name)
                .await
                .with_context(|| format!("pausing queue {:?}", args.name))?;
            println!(
                "queue {:?} paused: workers take no new tasks from it until `wasmq queue resume {}`",
                args.name, args.name
            );
        }
        QueueCommand::Resume(args) => {
            validate_queue_name(&args.name)?;
            let broker = args.redis.broker("queue").await?;
            require_queue(&broker, &args.name).await?;
            broker
                .resume(&args.name)
                .await
                .with_context(|| format!("resuming queue {:?}", args.name))?;
            println!("queue {:?} resumed", args.name);
        }
        QueueCommand::Rm(args) => {
            let broker = args.redis.broker("queue").await?;
            let tasks = broker
                .remove_queue(&args.name, args.force)
                .await
                .with_context(|| format!("removing queue {:?}", args.name))?;
            println!("queue {:?} removed with its {tasks} task(s)", args.name);
        }
    }
    Ok(())
}

/// Fails (exit code 5) unless `name` is a known queue: one enqueued to,
/// one a live worker serves, or the default queue. Pausing any other is
/// most likely a typo.
async fn require_queue(broker: &Broker, name: &str) -> Result<(), Failure> {
    if name == crate::broker::DEFAULT_QUEUE || broker.queues().await?.iter().any(|q| q == name) {
        return Ok(());
    }
    let servers = crate::ops::server::live_servers(broker).await?;
    if servers
        .iter()
        .any(|server| server.queues.iter().any(|(queue, _)| queue == name))
    {
        return Ok(());
    }
    Err(Failure::not_found(format!(
        "no queue named {name:?}: no task was ever enqueued to it and no live worker serves it; `wasmq queue ls` lists the queues"
    )))
}
